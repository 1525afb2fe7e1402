"""adding and copy: the generators' layout, targets and baselines, the loaders, the tasks'
metrics against the baselines, a falling loss, and prediction from a saved run."""
import json
import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from rnnkit.cli import main
from rnnkit.data.datasets.memory import (ADDING_BASELINE_MSE, GeneratedData, GeneratedLoader, adding_problem,
                                         copy_baseline_loss, copy_task, stream_generator)
from rnnkit.tasks.adding import AddingOptions, AddingTask
from rnnkit.tasks.copying import CopyOptions, CopyTask
from rnnkit.training import TrainConfig
from rnnkit.runs import load, train


# -- the adding problem ----------------------------------------------------------------------

@pytest.mark.parametrize("T", [2, 7, 10])
def test_adding_markers_one_in_each_half_and_target_is_their_sum(T):
    data = adding_problem(4000, T, torch.Generator().manual_seed(1))
    values, markers = data.x[..., 0], data.x[..., 1]  # (N, T)
    assert data.x.shape == (4000, T, 2) and data.y.shape == (4000,)
    assert ((values >= 0) & (values < 1)).all()
    assert set(markers.unique().tolist()) <= {0.0, 1.0} and (markers.sum(1) == 2).all()
    half = T // 2
    assert (markers[:, :half].sum(1) == 1).all() and (markers[:, half:].sum(1) == 1).all()
    # every position of each half gets the marker sometimes (uniform placement)
    assert (markers[:, :half].sum(0) > 0).all() and (markers[:, half:].sum(0) > 0).all()
    for n in range(0, 4000, 397):  # the target, read off sequence by sequence
        marked = [values[n, t].item() for t in range(T) if markers[n, t] == 1]
        assert data.y[n].item() == pytest.approx(sum(marked), abs=1e-6)


def test_adding_baseline_mse_is_one_sixth():
    # Predicting 1.0 (the mean of U1 + U2) has MSE Var(U1 + U2) = 1/6; the SD of (y - 1)^2 is
    # sqrt(1/15 - 1/36) ~ 0.197, so with 200,000 samples the standard error is ~0.00044.
    assert ADDING_BASELINE_MSE == pytest.approx(1 / 6)
    y = adding_problem(200_000, 4, torch.Generator().manual_seed(2)).y.double()
    assert ((y - 1.0) ** 2).mean().item() == pytest.approx(1 / 6, abs=0.002)
    assert y.mean().item() == pytest.approx(1.0, abs=0.004)  # so 1.0 is the best constant
    assert y.var().item() == pytest.approx(1 / 6, abs=0.002)


def test_generators_are_seeded_and_streams_differ():
    a = adding_problem(8, 12, stream_generator(0, 1))
    b = adding_problem(8, 12, stream_generator(0, 1))
    c = adding_problem(8, 12, stream_generator(0, 2))
    assert torch.equal(a.x, b.x) and torch.equal(a.y, b.y) and not torch.equal(a.x, c.x)


def test_adding_task_baseline_metric_and_constant_predictor():
    """A model that always says 1.0 scores exactly the baseline; the metrics say so."""
    task = AddingTask(AddingOptions(seq_len=20, val_size=500, test_size=500))
    splits = task.prepare(seed=0)

    class PredictOne(nn.Module):
        def forward(self, x):
            return torch.ones(x.shape[0], 1)

    batch = splits["test"].take(list(range(500)))
    out = task.step(PredictOne(), batch)
    m = task.metrics({"loss_sum": float(out.loss_sum), "count": out.count, **out.stats})
    assert m["mse"] == pytest.approx(m["baseline_mse"]) and m["loss"] == m["mse"]
    assert m["baseline_mse"] == pytest.approx(((batch["y"] - 1) ** 2).mean().item(), rel=1e-5)
    assert m["accuracy"] == pytest.approx(((batch["y"] - 1).abs() < 0.04).float().mean().item())
    assert splits["val"].tensors["x"].shape == (500, 20, 2) and len(splits["train"]) == 100_000


# -- the copy task ---------------------------------------------------------------------------

@pytest.mark.parametrize("T, K, L", [(1, 8, 10), (5, 8, 10), (30, 3, 4)])
def test_copy_layout(T, K, L):
    data = copy_task(64, T, torch.Generator().manual_seed(0), num_symbols=K, copy_len=L)
    x, y = data.x, data.y
    assert x.shape == y.shape == (64, T + 2 * L) and x.dtype == y.dtype == torch.long
    symbols = x[:, :L]
    assert ((symbols >= 1) & (symbols <= K)).all()
    assert (x[:, L : L + T - 1] == 0).all() and (x[:, L + T - 1] == K + 1).all() and (x[:, L + T :] == 0).all()
    assert (y[:, : T + L] == 0).all() and torch.equal(y[:, T + L :], symbols)
    assert set(symbols.unique().tolist()) == set(range(1, K + 1))


@pytest.mark.parametrize("T", [1, 100, 500])
def test_copy_baseline_is_the_memoryless_strategy(T):
    """Blanks (probability 1) until the recall, then 1/K on each symbol: its cross-entropy per step."""
    K, L = 8, 10
    data = copy_task(16, T, torch.Generator().manual_seed(0))
    logp = torch.full((16, T + 2 * L, K + 2), -math.inf, dtype=torch.float64)
    logp[:, : T + L, 0] = 0.0
    logp[:, T + L :, 1 : K + 1] = -math.log(K)
    loss = F.nll_loss(logp.reshape(-1, K + 2), data.y.reshape(-1))
    assert copy_baseline_loss(T) == pytest.approx(loss.item(), rel=1e-12)
    assert copy_baseline_loss(100) == pytest.approx(10 * math.log(8) / 120)


def test_copy_task_metrics_of_the_memoryless_model():
    task = CopyTask(CopyOptions(seq_len=12, val_size=40, test_size=40))
    splits = task.prepare(seed=0)

    class Memoryless(nn.Module):  # the baseline's probabilities, as logits
        def forward(self, x):
            B, S = x.shape
            logits = torch.full((B, S, 10), -1e9)
            logits[:, : S - 10, 0] = 0.0
            logits[:, S - 10 :, 1:9] = 0.0
            return logits, None

    out = task.step(Memoryless(), splits["test"].take(list(range(40))))
    m = task.metrics({"loss_sum": float(out.loss_sum), "count": out.count, **out.stats})
    assert m["loss"] == pytest.approx(m["baseline_loss"], rel=1e-5)
    assert m["baseline_loss"] == pytest.approx(10 * math.log(8) / 32)
    assert out.stats["symbols"] == 400 and 0.0 <= m["accuracy"] <= 1.0


# -- bad input -------------------------------------------------------------------------------

@pytest.mark.parametrize("call, words", [
    (lambda: adding_problem(4, 1), "adding_problem: seq_len must be >= 2, got 1"),
    (lambda: adding_problem(0, 5), "adding_problem: num must be >= 1, got 0"),
    (lambda: copy_task(4, 0), "copy_task: seq_len must be >= 1, got 0"),
    (lambda: copy_task(4, 5, num_symbols=0), "copy_task: num_symbols must be >= 1, got 0"),
    (lambda: AddingOptions(seq_len=1), "AddingOptions: seq_len must be an int >= 2, got 1"),
    (lambda: AddingOptions(cell="transformer"), "AddingOptions: cell must be one of .*got 'transformer'"),
    (lambda: CopyOptions(copy_len=0), "CopyOptions: copy_len must be an int >= 1, got 0"),
    (lambda: CopyOptions(cell="x"), "CopyOptions: cell must be one of"),
])
def test_bad_input_is_one_clear_error(call, words):
    with pytest.raises(ValueError, match=words):
        call()


def test_adding_type_error_names_the_argument():
    with pytest.raises(TypeError, match="adding_problem: seq_len must be an int, got float 5.0"):
        adding_problem(4, 5.0)


# -- the loader of fresh batches -------------------------------------------------------------

def _make(num, generator):
    data = adding_problem(num, 6, generator)
    return {"x": data.x, "y": data.y}


def test_generated_loader_resumes_and_draws_new_epochs():
    data = GeneratedData(_make, size=230)
    loader = GeneratedLoader(data, batch_size=50, seed=3)
    assert len(loader) == 5
    first = list(loader)
    assert [len(b["y"]) for b in first] == [50, 50, 50, 50, 30]
    second = list(loader)  # the next epoch: new sequences
    assert not torch.equal(first[0]["x"], second[0]["x"])
    again = GeneratedLoader(data, batch_size=50, seed=3)
    it = iter(again)
    assert torch.equal(next(it)["x"], first[0]["x"])
    next(it)
    state = again.state_dict()
    resumed = GeneratedLoader(data, batch_size=50, seed=3)
    resumed.load_state_dict(json.loads(json.dumps(state)))  # JSON-able
    resumed.set_epoch(0)  # the trainer's call keeps the position
    rest = list(resumed)
    assert len(rest) == 3 and all(torch.equal(a["x"], b["x"]) for a, b in zip(rest, first[2:]))


def test_generated_loader_splits_the_global_batch_across_ranks():
    data = GeneratedData(_make, size=100)
    whole = next(iter(GeneratedLoader(data, 10, seed=0)))
    parts = [next(iter(GeneratedLoader(data, 10, seed=0, rank=r, world=2))) for r in range(2)]
    assert torch.equal(parts[0]["x"], whole["x"][0::2]) and torch.equal(parts[1]["y"], whole["y"][1::2])


# -- training --------------------------------------------------------------------------------

def test_adding_loss_falls_and_predict_reads_marked_values(tmp_path):
    options = AddingOptions(seq_len=8, cell="lstm", hidden_size=16, train_size=16_000, val_size=200, test_size=500)
    config = TrainConfig(epochs=1, batch_size=50, lr=1e-2, clip_norm=1.0, eval_every=80, seed=0)
    summary = train("adding", options, config, tmp_path / "run", progress=False)
    assert summary["steps"] == 320
    # far below the 1/6 of predicting the mean: the network has learned to add the marked values
    assert summary["test_mse"] < 0.3 * summary["test_baseline_mse"]
    run = load(tmp_path / "run")
    rows = run.predict(["0.1 0.9* 0.2 0.3 0.6* 0.1 0.0 0.4", "0.5*, 0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 0.2*"])
    assert [r["target"] for r in rows] == [1.5, 0.7]
    assert all(abs(r["sum"] - r["target"]) < 0.4 for r in rows)
    with pytest.raises(ValueError, match="exactly 2 marked.*got 8 values with 1 marked"):
        run.predict(["0.1 0.9* 0.2 0.3 0.6 0.1 0.0 0.4"])
    with pytest.raises(ValueError, match="must be numbers.*'x'"):
        run.predict(["0.1 0.9* x 0.3*"])


def test_copy_accuracy_rises_above_chance_via_cli(tmp_path, capsys):
    out = tmp_path / "copy"
    status = main(["train", "copy", "--seq-len", "2", "--copy-len", "3", "--num-symbols", "4", "--hidden-size", "32",
                   "--train-size", "6000", "--val-size", "200", "--test-size", "400", "--epochs", "1", "--lr", "0.01",
                   "--eval-every", "60", "--out", str(out), "--no-progress"])
    assert status == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test_accuracy"] > 0.6  # chance is 1/4
    assert summary["test_loss"] < summary["test_baseline_loss"]
    capsys.readouterr()
    assert main(["predict", str(out), "123", "4,4,1"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [len(r["output"]) for r in rows] == [3, 3] and all(0 <= r["correct"] <= 3 for r in rows)
    assert main(["predict", str(out), "125"]) == 2  # 5 is not a symbol of 4
    assert "copy: an input must be 3 symbols in 1..4" in capsys.readouterr().err
