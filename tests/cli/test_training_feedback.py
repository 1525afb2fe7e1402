"""What a run shows while it trains and after: the cadence of records and validations under
a time budget, a budget that holds for the evaluations after training (cut with a note when
they overrun), a progress bar with a running mean loss and the time left, TensorBoard event
files, titled plots with baseline lines, and a classifier's confusion matrix."""
import json
import sys
import time
import types

import pytest
import torch
from torch import nn

from rnnkit.training import StepOutput, TrainConfig, Trainer, evaluate_batches
from rnnkit.training.cadence import Cadence, Clock
from rnnkit.training.callbacks import JsonlLogger, ProgressBar
from rnnkit.viz import plots


class _SlowTask:
    """Fit y = 2x; each step (training or evaluation) sleeps ``pause`` seconds, so time is predictable."""

    stateful = False

    def __init__(self, pause: float) -> None:
        self.pause = pause

    def step(self, model, batch, state=None) -> StepOutput:
        time.sleep(self.pause)
        x, y = batch
        return StepOutput(((model(x) - y) ** 2).sum(), len(y), {})

    def metrics(self, totals: dict) -> dict[str, float]:
        return {"loss": totals["loss_sum"] / max(totals["count"], 1)}

    def split_time(self, batch, window):
        raise ValueError("no BPTT")


def _batches(n: int) -> list:
    g = torch.Generator().manual_seed(0)
    out = []
    for _ in range(n):
        x = torch.randn(4, 1, generator=g)
        out.append((x, 2 * x))
    return out


# -- the cadence -------------------------------------------------------------------------------

def test_without_a_budget_the_configured_intervals_hold():
    c = Cadence(TrainConfig(log_every=10, eval_every=0), planned_steps=1000)
    c.tick(Clock(elapsed=5.0))
    assert [s for s in range(1, 31) if c.log_due(s)] == [1, 10, 20, 30]
    assert not any(c.eval_due(s, -1) for s in range(1, 100))
    assert not c.budget_spent()


def test_under_a_budget_a_short_run_logs_50_times_and_validates_10_times():
    c = Cadence(TrainConfig(max_minutes=1.0, log_every=50, eval_every=500), planned_steps=100_000)
    # 30 s of a 60 s budget spent at step 100: about 200 steps in all
    c.tick(Clock(elapsed=30.0, eval_seconds=1.0, last_eval_seconds=0.5))
    assert c.expected_steps(100) == 200
    c.logged(96)
    assert c.log_due(100) and not c.log_due(98)  # every 200 // 50 = 4 steps (196 // 50 = 3 at step 98)
    assert c.eval_due(100, last_eval_step=80) and not c.eval_due(100, last_eval_step=81)  # every 20 steps
    assert c.seconds_left == 30.0
    # validations that took more than a quarter of the time are not added
    c.tick(Clock(elapsed=30.0, eval_seconds=8.0))
    assert not c.eval_due(100, last_eval_step=0)


def test_training_stops_early_enough_for_the_final_evaluations():
    c = Cadence(TrainConfig(max_minutes=1.0), planned_steps=None)
    c.tick(Clock(elapsed=50.0, last_eval_seconds=4.0))
    assert not c.budget_spent()
    c.tick(Clock(elapsed=53.0, last_eval_seconds=4.0))  # 53 + 2 x 4 > 60
    assert c.budget_spent()


def test_a_budgeted_run_draws_a_curve_and_its_test_evaluation_keeps_the_budget(tmp_path):
    task = _SlowTask(pause=0.01)
    torch.manual_seed(0)
    config = TrainConfig(epochs=1000, max_minutes=0.02, log_every=1000, eval_every=0, lr=0.05, device="cpu")
    trainer = Trainer(task, nn.Linear(1, 1), _batches(500), _batches(10), config,
                      callbacks=[JsonlLogger(tmp_path / "metrics.jsonl")])
    start = time.perf_counter()
    p = trainer.fit()
    test = trainer.evaluate(_batches(200))  # 200 x 10 ms: more than the budget left
    wall = time.perf_counter() - start
    records = [json.loads(line) for line in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    train = [r for r in records if r["split"] == "train"]
    val = [r for r in records if r["split"] == "val"]
    assert "time budget" in p.stopped
    assert len(train) >= 20 and len(val) >= 4  # log_every 1000 and one long epoch would give 1 and 1
    assert 0 < test["evaluated_fraction"] < 1
    assert wall < 1.2 * 60 * config.max_minutes + 0.2


def test_an_evaluation_past_its_deadline_is_cut_after_one_batch_with_a_note(caplog):
    seen = []
    metrics = evaluate_batches(_SlowTask(0.0), nn.Linear(1, 1), _batches(8), deadline=time.perf_counter() - 1,
                               on_batch=lambda done, total: seen.append((done, total)))
    assert seen == [(1, 8)]
    assert metrics["evaluated_fraction"] == 1 / 8
    assert "cut by the time budget" in caplog.text
    assert "evaluated_fraction" not in evaluate_batches(_SlowTask(0.0), nn.Linear(1, 1), _batches(8))


# -- the progress bar ----------------------------------------------------------------------------

def test_the_bar_shows_the_running_mean_loss_and_the_time_left(capsys):
    trainer = types.SimpleNamespace(total_steps=1000, progress=types.SimpleNamespace(step=0), last_val={},
                                    task=types.SimpleNamespace(name="toy"),
                                    cadence=Cadence(TrainConfig(max_minutes=2.0), 1000))
    bar = ProgressBar("loss", window=2)
    bar.on_fit_start(trainer)
    for step, loss in enumerate([9.0, 3.0, 1.0], start=1):
        trainer.progress.step = step
        trainer.cadence.tick(Clock(elapsed=30.0 * step))
        bar.on_train_batch(trainer, loss_sum=loss * 4, count=4)
    assert bar.bar.postfix.startswith("loss=2.0000")  # the mean of the last two steps, not step 1's
    assert "left=0:30" in bar.bar.postfix
    assert bar.bar.total == 4  # 3 steps in 90 s of 120 s: the budget's steps, not 1000
    bar.on_eval_progress(trainer, "test", 1, 3)
    bar.on_fit_end(trainer)


# -- TensorBoard -----------------------------------------------------------------------------------

def test_tensorboard_logger_writes_event_files(tmp_path):
    pytest.importorskip("tensorboard")
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    config = TrainConfig(epochs=2, log_every=1, lr=0.05, device="cpu", logger="tensorboard")
    Trainer(_SlowTask(0.0), nn.Linear(1, 1), _batches(3), _batches(2), config, run_dir=tmp_path).fit()
    events = EventAccumulator(str(tmp_path / "tensorboard"))
    events.Reload()
    assert {"train/loss", "val/loss", "lr"} <= set(events.Tags()["scalars"])
    assert [e.step for e in events.Scalars("val/loss")] == [3, 6]


def test_tensorboard_missing_is_one_line(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "torch.utils.tensorboard", None)  # an import of it fails
    config = TrainConfig(epochs=1, device="cpu", logger="tensorboard")
    with pytest.raises(ValueError, match=r"^TrainConfig: logger 'tensorboard' needs the tensorboard package.*pip install"):
        Trainer(_SlowTask(0.0), nn.Linear(1, 1), _batches(2), None, config, run_dir=tmp_path)
    with pytest.raises(ValueError, match="logger must be one of"):
        TrainConfig(logger="wandb").validate()


# -- plots -----------------------------------------------------------------------------------------

def test_curves_are_titled_with_the_run_and_draw_the_baselines(tmp_path, monkeypatch):
    run = tmp_path / "my-run"
    run.mkdir()
    (run / "metrics.jsonl").write_text("\n".join(json.dumps(r) for r in [
        {"split": "train", "step": 1, "train_loss": 2.0, "train_accuracy": 0.4},
        {"split": "val", "step": 1, "val_loss": 1.5, "val_accuracy": 0.5, "val_evaluated_fraction": 0.5}]))
    figures = {}

    def keep(fig, path, dpi=100):
        figures[path.name] = fig
        return path

    monkeypatch.setattr(plots, "save_figure", keep)
    summary = {"baseline_majority_test_accuracy": 0.1, "baseline_pixel_lr_test_accuracy": 0.96,
               "baseline_trigram_test_loss": 1.8, "baseline_nan_test_loss": float("nan"), "test_accuracy": 0.9}
    plots.plot_curves(run / "metrics.jsonl", run / "plots", title=run.name, baselines=summary)
    assert set(figures) == {"loss.png", "accuracy.png"}  # (evaluated_fraction is no curve)
    ax = figures["accuracy.png"].axes[0]
    assert ax.get_title() == "my-run: accuracy"
    lines = {line.get_label(): line.get_ydata()[0] for line in ax.get_lines() if line.get_label().startswith("baseline")}
    assert lines == {"baseline majority (test)": 0.1, "baseline pixel_lr (test)": 0.96}
    assert [line.get_label() for line in figures["loss.png"].axes[0].get_lines()][-1] == "baseline trigram (test)"


def test_confusion_matrix_and_per_class_report(tmp_path):
    counts = plots.confusion_matrix([0, 0, 1, 1, 2, 2], [0, 1, 1, 1, 2, 0], num_classes=3)
    assert counts.tolist() == [[1, 1, 0], [0, 2, 0], [1, 0, 1]]
    report = plots.class_report(counts, ["a", "b", "c"])
    assert report["b"] == {"precision": 2 / 3, "recall": 1.0, "f1": pytest.approx(0.8), "support": 2}
    assert report["macro avg"]["support"] == 6
    assert plots.plot_confusion(counts, ["a", "b", "c"], tmp_path / "confusion.png", title="run").is_file()
    with pytest.raises(ValueError, match=r"confusion_matrix: predictions must be class ids in \[0, 3\), got 3..3"):
        plots.confusion_matrix([0], [3], num_classes=3)


def test_time_spent_before_training_comes_out_of_the_budget():
    c = Cadence(TrainConfig(max_minutes=1.0), planned_steps=None, spent=45.0)
    c.tick(Clock(elapsed=10.0))
    assert c.seconds_left == 5.0 and not c.budget_spent()
    c.tick(Clock(elapsed=15.5))
    assert c.budget_spent()
    # a command that spent the whole budget before training still trains (1 s), never a negative budget
    assert Cadence(TrainConfig(max_minutes=0.5), None, spent=99.0).budget_s == 1.0


def test_a_run_charges_its_data_preparation_to_the_budget(tmp_path, monkeypatch):
    from rnnkit.tasks.digits import DigitsOptions, DigitsTask
    from rnnkit.training import fit_run, run

    class SlowData(DigitsTask):
        def prepare(self, seed):
            time.sleep(0.5)
            return super().prepare(seed)

    seen = []

    class Recording(Trainer):
        def __init__(self, *args, budget_spent=0.0, **kwargs):
            seen.append(budget_spent)
            super().__init__(*args, budget_spent=budget_spent, **kwargs)

    monkeypatch.setattr(run, "Trainer", Recording)
    config = TrainConfig(epochs=1, max_steps=2, batch_size=64, max_minutes=1.0, seed=0)
    fit_run(SlowData(DigitsOptions(hidden_size=8)), config, tmp_path / "run", progress=False)
    assert len(seen) == 1 and seen[0] >= 0.5  # the prepare's sleep, and the baselines after it


@pytest.mark.parametrize("keep", ["best", "last"])
def test_keep_last_saves_the_final_weights_keep_best_the_best_validations(tmp_path, keep):
    from rnnkit.training.checkpoint import load_weights

    class Scripted(_SlowTask):
        """Validation losses 1.0, 0.5, 0.9 at the three epochs' ends: the best is the second."""
        def __init__(self):
            super().__init__(pause=0.0)
            self.val_losses = iter([1.0, 0.5, 0.9])

        def metrics(self, totals):
            return {"loss": next(self.val_losses)} if totals["count"] == 8 else super().metrics(totals)

    torch.manual_seed(0)
    model = nn.Linear(1, 1)
    config = TrainConfig(epochs=3, lr=0.05, keep=keep, device="cpu")
    snapshots = []

    class Snapshot(JsonlLogger):
        def on_eval_end(self, trainer, record):
            snapshots.append({k: v.clone() for k, v in trainer.raw_model.state_dict().items()})

    trainer = Trainer(Scripted(), model, _batches(5), _batches(2), config, run_dir=tmp_path,
                      callbacks=[Snapshot(tmp_path / "metrics.jsonl")])
    trainer.fit()
    saved = load_weights(tmp_path / "model.safetensors", run_dir=tmp_path)
    want = snapshots[-1] if keep == "last" else snapshots[1]
    assert len(snapshots) == 3 and not torch.equal(snapshots[1]["weight"], snapshots[2]["weight"])
    assert all(torch.equal(saved[k], want[k]) for k in want)


def test_keep_must_be_best_or_last():
    with pytest.raises(ValueError, match="TrainConfig: keep must be one of best, last, got 'first'"):
        TrainConfig(keep="first").validate()


def test_a_budget_shorter_than_a_second_is_kept_whatever_was_spent_before():
    assert Cadence(TrainConfig(max_minutes=1e-9), None, spent=5.0).budget_s == pytest.approx(6e-8)
