"""Devices and precision: device strings are checked (one-line errors naming the argument, the
expected values and the received one), resolved against the machine (CUDA faked where the
machine has none), batches move inside the trainer, and autocast runs the forward pass while
the weights stay float32. The GPU-only paths are at the end, skipped without CUDA."""
import dataclasses
from collections import OrderedDict
from typing import NamedTuple

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

import rnnkit
from rnnkit.training import StepOutput, TrainConfig, Trainer, evaluate_batches
from rnnkit.training import trainer as trainer_module
from rnnkit.training import evaluation as evaluation_module
from rnnkit.training.device import (DEVICES, Precision, autocast, check_device, check_precision, module_device,
                                    move_to_device, resolve_device)
from rnnkit.training.distributed import DistInfo

CUDA = torch.cuda.is_available()
needs_cuda = pytest.mark.skipif(not CUDA, reason="needs a CUDA GPU")
needs_no_cuda = pytest.mark.skipif(CUDA, reason="checks the errors of a machine without a GPU")


# -- device strings ----------------------------------------------------------------------------

@pytest.mark.parametrize("spec", ["auto", "cpu", "cuda", "cuda:0", "cuda:12", torch.device("cpu")])
def test_good_device_strings_pass(spec):
    assert check_device("TrainConfig", "device", spec) == str(spec)


@pytest.mark.parametrize("spec", ["gpu", "CPU", "cuda:", "cuda:-1", "cuda:x", "cuda 0", " cpu", "mps", "", 0, None,
                                  1.5])
def test_bad_device_strings_are_one_line_errors_naming_what_was_expected_and_received(spec):
    with pytest.raises(ValueError) as e:
        check_device("TrainConfig", "device", spec)
    message = str(e.value)
    assert "\n" not in message
    assert message == f"TrainConfig: device must be {DEVICES}, got {spec!r}"


def test_train_config_checks_device_and_precision():
    TrainConfig(device="cuda:1", precision="16-mixed").validate()  # the form only: no GPU needed
    with pytest.raises(ValueError, match=r"^TrainConfig: device must be auto, cpu, cuda or cuda:N .*got 'gpu'$"):
        TrainConfig(device="gpu").validate()
    with pytest.raises(ValueError, match=r"^TrainConfig: precision must be one of 32, bf16, 16-mixed, got 'fp16'$"):
        TrainConfig(precision="fp16").validate()
    with pytest.raises(ValueError, match=r"got 32$"):  # the int, not the string "32"
        TrainConfig(precision=32).validate()
    defaults = TrainConfig()
    assert (defaults.device, defaults.precision) == ("auto", "32")


def test_cpu_and_auto_resolve_to_the_cpu_without_a_gpu(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device("auto") == torch.device("cpu")
    assert resolve_device("auto", local_rank=1) == torch.device("cpu")  # torchrun on CPUs: gloo


@pytest.mark.parametrize("spec", ["cuda", "cuda:0", "cuda:3"])
def test_a_cuda_device_without_a_gpu_is_a_one_line_error(monkeypatch, spec):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(ValueError) as e:
        resolve_device(spec, "TrainConfig", "device")
    assert str(e.value) == (f"TrainConfig: device {spec!r} needs a CUDA GPU, but torch finds none "
                            "(torch.cuda.is_available() is False); use 'cpu' or 'auto'")


def _fake_gpus(monkeypatch, count: int, current: int = 0) -> None:
    """Make torch report ``count`` CUDA devices (only what resolve_device asks)."""
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: count)
    monkeypatch.setattr(torch.cuda, "current_device", lambda: current)


def test_cuda_resolves_to_an_indexed_device(monkeypatch):
    _fake_gpus(monkeypatch, 2, current=1)
    assert resolve_device("auto") == torch.device("cuda", 1)  # the current device
    assert resolve_device("cuda") == torch.device("cuda", 1)
    assert resolve_device("cuda:0") == torch.device("cuda", 0)
    assert resolve_device("cpu") == torch.device("cpu")


def test_under_torchrun_each_process_takes_the_gpu_of_its_local_rank(monkeypatch):
    _fake_gpus(monkeypatch, 2)
    assert resolve_device("auto", local_rank=1) == torch.device("cuda", 1)
    assert resolve_device("cuda", local_rank=1) == torch.device("cuda", 1)
    assert resolve_device("cuda:1", local_rank=1) == torch.device("cuda", 1)
    with pytest.raises(ValueError, match=r"^TrainConfig: under torchrun .*got 'cuda:0' in the process of LOCAL_RANK 1$"):
        resolve_device("cuda:0", "TrainConfig", "device", local_rank=1)
    with pytest.raises(ValueError, match=r"needs GPU 2, but this machine has 2 CUDA device\(s\) \(cuda:0 to cuda:1\)$"):
        resolve_device("cuda", "TrainConfig", "device", local_rank=2)  # more processes than GPUs


def test_a_gpu_index_beyond_the_count_is_a_one_line_error(monkeypatch):
    _fake_gpus(monkeypatch, 1)
    with pytest.raises(ValueError) as e:
        resolve_device("cuda:1", "load", "device")
    assert str(e.value) == "load: device 'cuda:1' needs GPU 1, but this machine has 1 CUDA device(s) (cuda:0 to cuda:0)"


# -- precision -------------------------------------------------------------------------------

def test_precision_values_and_where_they_run():
    cpu = torch.device("cpu")
    for value in ("32", "bf16"):
        assert check_precision("TrainConfig", "precision", value, cpu) == value
    with pytest.raises(ValueError) as e:
        check_precision("TrainConfig", "precision", "16-mixed", cpu)
    assert str(e.value) == ("TrainConfig: precision '16-mixed' (float16 autocast with a GradScaler) needs a CUDA "
                            "device, got device 'cpu'; use 'bf16' or '32' there")


def test_autocast_runs_the_forward_pass_in_bfloat16_on_the_cpu():
    layer = nn.Linear(4, 3)
    x = torch.randn(2, 4)
    with autocast("bf16", torch.device("cpu")):
        assert layer(x).dtype == torch.bfloat16
    with autocast("32", torch.device("cpu")):
        assert layer(x).dtype == torch.float32
    assert Precision("bf16", torch.device("cpu")).scaler is None  # bfloat16 needs no loss scaling
    assert Precision("32", torch.device("cpu")).state_dict() == {}


# -- moving batches --------------------------------------------------------------------------

class _Pair(NamedTuple):
    x: torch.Tensor
    y: torch.Tensor


@dataclasses.dataclass
class _Batch:
    x: torch.Tensor
    names: list
    pair: _Pair


def test_move_to_device_reaches_every_tensor_and_keeps_the_containers(monkeypatch):
    moved = []
    real_to = torch.Tensor.to

    def spy(self, *args, **kwargs):  # record each tensor's move; the device stays the CPU
        moved.append((tuple(self.shape), args, kwargs))
        return real_to(self, *args, **kwargs)

    monkeypatch.setattr(torch.Tensor, "to", spy)
    t = [torch.full((k + 1,), float(k)) for k in range(6)]
    batch = {"a": t[0], "b": [t[1], (t[2], "text")], "c": OrderedDict(d=t[3]),
             "e": _Batch(t[4], ["n"], _Pair(t[5], t[0])), "n": 3}
    out = move_to_device(batch, "cpu")
    assert len(moved) == 7 and all(kw == {"non_blocking": True} for _, _, kw in moved)
    assert type(out) is dict and type(out["c"]) is OrderedDict and isinstance(out["b"][1], tuple)
    assert isinstance(out["e"], _Batch) and isinstance(out["e"].pair, _Pair) and out["e"].names == ["n"]
    assert out["n"] == 3 and out["b"][1][1] == "text"
    assert torch.equal(out["e"].pair.x, t[5]) and torch.equal(out["c"]["d"], t[3])
    assert move_to_device(t[0], "cpu") is t[0]  # already there: no copy


def test_module_device():
    assert module_device(nn.Linear(2, 2)) == torch.device("cpu")
    assert module_device(nn.Identity()) == torch.device("cpu")  # no parameters


# -- the trainer -----------------------------------------------------------------------------

class _SumModel(nn.Module):
    """A tiny GRU read out at its last step: x (B, T, 1) -> (B,)."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = rnnkit.GRU(1, 8, batch_first=True)
        self.head = nn.Linear(8, 1)

    def forward(self, x):
        out, _ = self.rnn(x)  # (B, T, H)
        return self.head(out[:, -1])[:, 0]  # (B,)


class _SumTask:
    """Predict the sum of a sequence; it records the dtype of each prediction."""

    stateful = False

    def __init__(self) -> None:
        self.dtypes = []

    def step(self, model, batch, state=None) -> StepOutput:
        x, y = batch  # (B, T, 1), (B,)
        y_hat = model(x)
        self.dtypes.append(y_hat.dtype)
        return StepOutput(((y_hat.float() - y) ** 2).sum(), len(y), {})

    def metrics(self, totals: dict) -> dict[str, float]:
        return {"loss": totals["loss_sum"] / max(totals["count"], 1)}

    def split_time(self, batch, window: int) -> list:
        raise ValueError("_SumTask does not support truncated BPTT")


def _loader() -> DataLoader:
    g = torch.Generator().manual_seed(0)
    x = torch.rand(64, 5, 1, generator=g)
    return DataLoader(TensorDataset(x, x.sum((1, 2))), batch_size=16)


def test_the_trainer_moves_every_batch_and_autocasts_the_forward_pass_only(monkeypatch):
    seen = []

    def spy(batch, device, non_blocking=True):
        seen.append(device)
        return move_to_device(batch, device, non_blocking)

    monkeypatch.setattr(trainer_module, "move_to_device", spy)
    monkeypatch.setattr(evaluation_module, "move_to_device", spy)  # validation batches move there
    task, model = _SumTask(), _SumModel()
    trainer = Trainer(task, model, _loader(), _loader(), TrainConfig(epochs=2, device="cpu", precision="bf16", lr=0.01))
    assert trainer.device == torch.device("cpu")
    trainer.fit()
    assert seen == [torch.device("cpu")] * (2 * 4 + 2 * 4)  # 2 epochs of 4 training and 4 validation batches
    assert set(task.dtypes) == {torch.bfloat16}  # training and evaluation alike
    assert all(p.dtype == torch.float32 for p in model.parameters())  # float32 master weights
    assert all(s.dtype == torch.float32 for st in trainer.optimizer.state.values() for k, s in st.items() if k != "step")


class _StreamModel(nn.Module):
    """An LSTM over (B, T, 1) that returns its prediction at every step and its state."""

    def __init__(self) -> None:
        super().__init__()
        self.rnn = rnnkit.LSTM(1, 8, batch_first=True)
        self.head = nn.Linear(8, 1)

    def forward(self, x, state=None):
        out, state = self.rnn(x, state)  # (B, T, H)
        return self.head(out)[..., 0], state  # (B, T)


class _StreamTask(_SumTask):
    """Predict the running sum; the state carries on from window to window and batch to batch."""

    stateful = True

    def step(self, model, batch, state=None) -> StepOutput:
        x, y = batch  # (B, T, 1), (B, T)
        y_hat, state = model(x, state)
        self.dtypes.append(state[0].dtype)
        return StepOutput(((y_hat.float() - y) ** 2).sum(), y.numel(), {}, state)

    def split_time(self, batch, window: int) -> list:
        x, y = batch
        return [(x[:, t : t + window], y[:, t : t + window]) for t in range(0, x.shape[1], window)]


def test_a_state_carried_under_autocast_stays_in_the_weights_dtype(tmp_path):
    x = torch.rand(4, 12, 1, generator=torch.Generator().manual_seed(0))
    batches = [(x, x[..., 0].cumsum(1))] * 3  # the same 4 streams, batch after batch
    task, model = _StreamTask(), _StreamModel()
    trainer = Trainer(task, model, batches, batches, TrainConfig(epochs=2, bptt=4, device="cpu", precision="bf16"),
                      run_dir=tmp_path)
    trainer.fit()  # the layers return a bf16 state; fed back as it is, the next float32 input would refuse it
    assert set(task.dtypes) == {torch.bfloat16}  # what the layer computed in
    assert evaluate_batches(task, model, batches, "cpu", "bf16")["loss"] >= 0  # evaluation carries it too
    resumed = Trainer(_StreamTask(), _StreamModel(), batches, batches,
                      TrainConfig(epochs=3, bptt=4, device="cpu", precision="32"), run_dir=tmp_path)
    assert resumed.fit(resume=True).step == 9  # the bf16 run's checkpoint goes on in float32


def test_evaluate_batches_takes_a_device_and_a_precision():
    task, model = _SumTask(), _SumModel()
    plain = evaluate_batches(task, model, _loader())
    same = evaluate_batches(task, model, _loader(), "cpu", "32")
    assert plain == same and set(task.dtypes) == {torch.float32}
    low = evaluate_batches(task, model, _loader(), "cpu", "bf16")
    assert task.dtypes[-1] == torch.bfloat16
    assert low["loss"] == pytest.approx(plain["loss"], rel=0.05)
    with pytest.raises(ValueError, match="16-mixed"):
        evaluate_batches(task, model, _loader(), "cpu", "16-mixed")


def test_a_trainer_refuses_16_mixed_on_the_cpu():
    with pytest.raises(ValueError, match=r"^TrainConfig: precision '16-mixed' .* needs a CUDA device, got device 'cpu'"):
        Trainer(_SumTask(), _SumModel(), _loader(), None, TrainConfig(device="cpu", precision="16-mixed"))


@needs_no_cuda
def test_a_trainer_on_a_missing_gpu_refuses_before_touching_the_model():
    model = _SumModel()
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(ValueError, match=r"^TrainConfig: device 'cuda' needs a CUDA GPU"):
        Trainer(_SumTask(), model, _loader(), None, TrainConfig(device="cuda"))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_distinfo_wraps_only_when_there_are_several_processes():
    model = nn.Linear(2, 2)
    assert DistInfo().wrap(model, torch.device("cpu")) is model
    assert DistInfo().local_rank == 0


# -- on a GPU ---------------------------------------------------------------------------------

@needs_cuda
def test_batches_and_model_move_to_the_gpu():
    assert resolve_device("cuda") == torch.device("cuda", torch.cuda.current_device())
    batch = move_to_device({"x": torch.ones(2).pin_memory(), "y": [torch.zeros(1)]}, "cuda")
    assert batch["x"].is_cuda and batch["y"][0].is_cuda
    with pytest.raises(ValueError, match="CUDA device"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


@needs_cuda
@pytest.mark.parametrize("precision", ["32", "bf16", "16-mixed"])
def test_training_on_the_gpu_in_each_precision(tmp_path, precision):
    if precision == "bf16" and not torch.cuda.is_bf16_supported():
        pytest.skip("this GPU does not compute in bfloat16")
    task, model = _SumTask(), _SumModel()
    trainer = Trainer(task, model, _loader(), _loader(), TrainConfig(epochs=3, device="cuda", precision=precision,
                                                                      lr=0.01), run_dir=tmp_path)
    first = evaluate_batches(task, model, _loader())
    trainer.fit()
    assert next(model.parameters()).is_cuda and all(p.dtype == torch.float32 for p in model.parameters())
    assert trainer.evaluate(_loader())["loss"] < first["loss"]
    if precision == "16-mixed":
        assert trainer.precision.state_dict()["scale"] > 0  # checkpointed with the run
    # The checkpoint resumes on the CPU, in float32.
    cpu_model = _SumModel()
    resumed = Trainer(_SumTask(), cpu_model, _loader(), _loader(), TrainConfig(epochs=4, device="cpu", lr=0.01),
                      run_dir=tmp_path)
    resumed.fit(resume=True)
    assert resumed.progress.step == 16 and next(cpu_model.parameters()).device.type == "cpu"

