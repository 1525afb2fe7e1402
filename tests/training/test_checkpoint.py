"""Checkpoints: an exact round trip, clear errors for damaged files, and a swap that survives a crash."""
import dataclasses
import json
import os
import random

import numpy as np
import pytest
import torch
from torch import nn

import rnnkit
from rnnkit.tasks.digits import DigitsOptions, DigitsTask
from rnnkit.training import CheckpointError, TrainConfig, load_checkpoint, save_checkpoint
from rnnkit.training.checkpoint import capture_rng, restore_rng, save_weights


class _Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.rnn = rnnkit.LSTM(3, 4, batch_first=True)
        self.head = nn.Linear(4, 2)

    def forward(self, x):
        out, _ = self.rnn(x)  # (B, T, 4)
        return self.head(out[:, -1])  # (B, 2)


def _trained(seed: int = 0):
    """A model and an Adam optimizer with a few steps of state behind them."""
    torch.manual_seed(seed)
    model = _Net()
    opt = torch.optim.Adam(model.parameters(), lr=1e-2, betas=(0.8, 0.99))
    for _ in range(3):
        loss = model(torch.randn(5, 6, 3)).pow(2).sum()
        opt.zero_grad()
        loss.backward()
        opt.step()
    return model, opt


def _one_more_step(model, opt) -> None:
    torch.manual_seed(123)
    loss = model(torch.randn(5, 6, 3)).pow(2).sum()
    opt.zero_grad()
    loss.backward()
    opt.step()


def _draws() -> tuple:
    return random.random(), float(np.random.rand()), torch.rand(3)


def _cut_in_half(path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


@pytest.fixture
def saved(tmp_path):
    """A checkpoint folder of a trained model, its optimizer, RNG state and an extra tensor."""
    model, opt = _trained()
    carry = torch.randn(1, 5, 4)
    rng_json, rng_tensors = capture_rng()
    save_checkpoint(tmp_path / "last", model, opt, {"rng": rng_json, "progress": {"step": 3}},
                    {**rng_tensors, "carry/0": carry})
    return tmp_path / "last", model, opt, carry


def test_round_trip_is_exact(saved):
    directory, model, opt, carry = saved
    expected_draws = _draws()  # what the generators give right after the capture

    fresh, _ = _trained(seed=1)
    fresh_opt = torch.optim.Adam(fresh.parameters(), lr=0.5)
    state, extra = load_checkpoint(directory, fresh, fresh_opt)

    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name
    assert state["progress"] == {"step": 3}
    assert torch.equal(extra["carry/0"], carry)

    saved_opt, loaded_opt = opt.state_dict(), fresh_opt.state_dict()
    assert loaded_opt["param_groups"] == saved_opt["param_groups"]
    assert saved_opt["state"].keys() == loaded_opt["state"].keys()
    for pid, entries in saved_opt["state"].items():
        for key, value in entries.items():
            assert torch.equal(loaded_opt["state"][pid][key], value), (pid, key)

    # The optimizer really continues: one more step gives the same weights on both.
    _one_more_step(model, opt)
    _one_more_step(fresh, fresh_opt)
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name

    random.seed(99), np.random.seed(99), torch.manual_seed(99)
    restore_rng(state["rng"], extra)
    again = _draws()
    assert again[:2] == expected_draws[:2]
    assert torch.equal(again[2], expected_draws[2])


def test_checkpoint_files_hold_no_pickle(saved):
    directory = saved[0]
    assert sorted(p.name for p in directory.iterdir()) == ["model.safetensors", "optimizer.safetensors", "trainer.json"]
    for name in ("model.safetensors", "optimizer.safetensors"):
        header_len = int.from_bytes((directory / name).read_bytes()[:8], "little")
        json.loads((directory / name).read_bytes()[8 : 8 + header_len])  # safetensors: a JSON header


@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.safetensors", "trainer.json"])
def test_a_damaged_file_raises_checkpoint_error_naming_it(saved, name):
    directory = saved[0]
    _cut_in_half(directory / name)
    model, opt = _trained(seed=1)
    with pytest.raises(CheckpointError, match=name):
        load_checkpoint(directory, model, opt)


@pytest.mark.parametrize("name", ["model.safetensors", "optimizer.safetensors"])
def test_a_truncated_file_is_caught_even_without_checksums(saved, name):
    """An older trainer.json without checksums: the safetensors reader must still refuse."""
    directory = saved[0]
    meta = json.loads((directory / "trainer.json").read_text())
    del meta["files"]
    (directory / "trainer.json").write_text(json.dumps(meta))
    _cut_in_half(directory / name)
    with pytest.raises(CheckpointError, match=name):
        load_checkpoint(directory, *_trained(seed=1))


def test_a_changed_file_is_caught_by_its_checksum(saved):
    directory = saved[0]
    other, _ = _trained(seed=5)  # a whole, readable file, but not the one saved
    save_weights(directory / "model.safetensors", other.state_dict())
    with pytest.raises(CheckpointError, match="model.safetensors"):
        load_checkpoint(directory, *_trained(seed=1))


def test_a_missing_checkpoint_raises_checkpoint_error(tmp_path):
    with pytest.raises(CheckpointError, match="trainer.json"):
        load_checkpoint(tmp_path / "last", *_trained())


def test_a_checkpoint_of_another_model_raises_checkpoint_error(saved):
    other = nn.Linear(3, 2)
    with pytest.raises(CheckpointError, match="does not fit"):
        load_checkpoint(saved[0], other)


def test_a_crash_in_the_middle_of_the_swap_leaves_a_loadable_checkpoint(saved):
    directory, model, opt, carry = saved
    # save_checkpoint renames last -> last.old, then last.tmp -> last: die between the two.
    os.replace(directory, directory.with_name("last.old"))
    (directory.with_name("last.tmp")).mkdir()
    (directory.with_name("last.tmp") / "model.safetensors").write_bytes(b"half a fi")
    fresh, fresh_opt = _trained(seed=1)
    state, extra = load_checkpoint(directory, fresh, fresh_opt)
    assert state["progress"] == {"step": 3}
    assert torch.equal(extra["carry/0"], carry)
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name

    # The next save puts a whole checkpoint back in place and clears the leftovers.
    save_checkpoint(directory, fresh, fresh_opt, {"progress": {"step": 4}})
    assert sorted(p.name for p in directory.parent.iterdir()) == ["last"]
    assert load_checkpoint(directory, *_trained(seed=2))[0]["progress"] == {"step": 4}


def test_saving_again_replaces_the_checkpoint_whole(saved):
    directory = saved[0]
    model, opt = _trained(seed=7)
    save_checkpoint(directory, model, opt, {"progress": {"step": 9}})
    fresh, fresh_opt = _trained(seed=1)
    state, extra = load_checkpoint(directory, fresh, fresh_opt)
    assert state["progress"] == {"step": 9}
    assert extra == {}
    for (name, a), b in zip(model.state_dict().items(), fresh.state_dict().values()):
        assert torch.equal(a, b), name
    assert sorted(p.name for p in directory.parent.iterdir()) == ["last"]


def _tiny_digits_run(run_dir) -> None:
    """A run directory as `rnnkit train digits` leaves it, without training (untrained weights)."""
    options = DigitsOptions(hidden_size=4)
    task = DigitsTask(options)
    task.meta = {"labels": [str(d) for d in range(10)], "pixel_max": 16.0}
    run_dir.mkdir()
    (run_dir / "config.json").write_text(json.dumps({
        "task": "digits", "options": dataclasses.asdict(options), "train": dataclasses.asdict(TrainConfig()),
    }))
    (run_dir / "preprocess.json").write_text(json.dumps(task.meta))
    save_weights(run_dir / "model.safetensors", task.build_model().state_dict())


def test_load_of_a_run_with_a_truncated_model_raises_checkpoint_error(tmp_path):
    run_dir = tmp_path / "run"
    _tiny_digits_run(run_dir)
    assert rnnkit.load(run_dir).predict(["3"])[0]["label"] in [str(d) for d in range(10)]
    _cut_in_half(run_dir / "model.safetensors")
    with pytest.raises(CheckpointError, match="model.safetensors"):
        rnnkit.load(run_dir)
    (run_dir / "model.safetensors").unlink()
    with pytest.raises(CheckpointError, match="model.safetensors"):
        rnnkit.load(run_dir)


def test_load_of_a_run_with_corrupt_config_raises_checkpoint_error(tmp_path):
    run_dir = tmp_path / "run"
    _tiny_digits_run(run_dir)
    _cut_in_half(run_dir / "config.json")
    with pytest.raises(CheckpointError, match="corrupt"):
        rnnkit.load(run_dir)
    (run_dir / "config.json").unlink()
    with pytest.raises(CheckpointError, match="config.json"):
        rnnkit.load(run_dir)
