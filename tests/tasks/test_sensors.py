"""sensors: aeon's bundled sets listed from its folder and read with their own split, .ts and CSV
files read strictly (one error naming the file and line), the stratified validation cut, the
per-channel standardisation fitted on train only, a tiny real run (a slice of JapaneseVowels, of
unequal lengths) trained, evaluated on a file, predicted from .ts and .csv, exported; baselines
on unequal lengths; a loss that really falls."""
import json
import math

import numpy as np
import pytest
import torch

pytest.importorskip("aeon")

import rnnkit  # noqa: E402
from rnnkit.cli import main as cli_main  # noqa: E402
from rnnkit.data.datasets.archive import (bundled_sets, load_archive, read_series_csv, read_ts_file,  # noqa: E402
                                          stratified_holdout)
from rnnkit.exporting import export_onnx  # noqa: E402
from rnnkit.runs import evaluate  # noqa: E402
from rnnkit.tasks.base import IndexLoader  # noqa: E402
from rnnkit.tasks.sensors import SensorsOptions, SensorsTask, dtw_accuracy, minirocket_accuracy  # noqa: E402

TINY = ["--hidden-size", "8", "--epochs", "2", "--batch-size", "16", "--no-progress"]


def _write_ts(path, series, labels, classes=None) -> str:
    """Series (C, T_i) and labels as a .ts file (labels None: no class labels)."""
    head = ["@problemName slice", "@timeStamps false", "@missing false",
            f"@univariate {'true' if series[0].shape[0] == 1 else 'false'}", f"@dimensions {series[0].shape[0]}",
            "@equalLength false"]
    head.append(f"@classLabel true {' '.join(classes or sorted(set(labels)))}" if labels else "@classLabel false")
    rows = [":".join(",".join(repr(float(v)) for v in channel) for channel in s) + (f":{y}" if labels else "")
            for s, y in zip(series, labels or [None] * len(series))]
    path.write_text("\n".join(head + ["@data"] + rows) + "\n")
    return str(path)


def _jv_slice(folder, per_class_train=8, per_class_test=4) -> str:
    """A real slice of JapaneseVowels as a X_TRAIN.ts / X_TEST.ts pair; returns the TRAIN path."""
    train, test = load_archive("JapaneseVowels")
    classes = sorted(set(train.labels))
    for name, data, k in (("TRAIN", train, per_class_train), ("TEST", test, per_class_test)):
        picks = [i for c in classes for i in [j for j, y in enumerate(data.labels) if y == c][:k]]
        _write_ts(folder / f"jv_{name}.ts", [data.series[i] for i in picks], [data.labels[i] for i in picks], classes)
    return str(folder / "jv_TRAIN.ts")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    folder = tmp_path_factory.mktemp("sensors")
    data = _jv_slice(folder)
    out = folder / "run"
    assert cli_main(["train", "sensors", "--data", data, *TINY, "--out", str(out)]) == 0
    return out, data, json.loads((out / "summary.json").read_text())


# -- the archive -------------------------------------------------------------------------------

def test_bundled_sets_are_listed_from_aeons_folder():
    names = bundled_sets()
    assert {"JapaneseVowels", "BasicMotions", "PickupGestureWiimoteZ", "GunPoint"} <= set(names)
    assert "Covid3Month" not in names and "Airline" not in names  # regression / forecasting data
    with pytest.raises(ValueError, match=r"sensors: data must be a \.ts file or a set bundled with aeon "
                                         r"\(.*JapaneseVowels.*\), got 'NoSuchSet'"):
        load_archive("NoSuchSet", owner="sensors")


def test_japanese_vowels_keeps_its_own_split_and_unequal_lengths():
    train, test = load_archive("JapaneseVowels")
    assert (len(train), len(test)) == (270, 370) and train.channels == test.channels == 12
    lengths = np.concatenate([train.lengths, test.lengths])
    assert lengths.min() == 7 and lengths.max() == 29 and len(set(lengths.tolist())) > 10
    assert sorted(set(train.labels)) == [str(k) for k in range(1, 10)]
    assert all(train.labels.count(str(k)) == 30 for k in range(1, 10))  # 30 utterances per speaker
    bm_train, bm_test = load_archive("BasicMotions")
    assert (len(bm_train), len(bm_test), bm_train.channels) == (40, 40, 6) and set(bm_train.lengths) == {100}


def test_a_ts_pair_gives_the_split_and_a_lone_file_none(tmp_path):
    path = _jv_slice(tmp_path, 2, 1)
    train, test = load_archive(path)
    again = load_archive(path.replace("_TRAIN", "_TEST"))  # the TEST file finds its TRAIN sibling
    assert (len(train), len(test)) == (18, 9) and [s.shape for s in again.train.series] == [s.shape for s in train.series]
    lone = tmp_path / "lone.ts"
    lone.write_bytes((tmp_path / "jv_TEST.ts").read_bytes())
    only, none = load_archive(str(lone))
    assert none is None and only.labels == test.labels
    assert all(np.array_equal(a, b) for a, b in zip(only.series, test.series))


@pytest.mark.parametrize("data_lines, message", [
    (["1,2,3:4,5,6:a", "1,2:4,5:6,7:b"], "line 9: expected 2 channels separated by ':', got 3"),
    (["1,2,3:4,5,6:a", "1,x,3:4,5,6:b"], "line 9: channel 1 holds 'x', not a number"),
    (["1,2,3:4,5,6:a", "1,2:4,5,6:b"], r"line 9: the channels have different lengths \[2, 3\]"),
    (["1,2,3:4,5,6:a", "1,?,3:4,5,6:b"], "line 9: the series has missing values"),
    (["1,2,3:4,5,6:"], "line 8: the class label after the last ':' is empty"),
])
def test_a_bad_ts_file_is_one_error_naming_the_file_and_line(tmp_path, data_lines, message):
    path = tmp_path / "bad.ts"
    path.write_text("@problemName x\n@univariate false\n@dimensions 2\n@equalLength false\n"
                    "@missing true\n@classLabel true a b\n@data\n" + "\n".join(data_lines) + "\n")
    with pytest.raises(ValueError, match=f"sensors: .*bad.ts {message}"):
        read_ts_file(path, owner="sensors")


def test_ts_headers_and_unlabelled_files(tmp_path):
    path = _write_ts(tmp_path / "u.ts", [np.ones((2, 5))], None)
    with pytest.raises(ValueError, match=r"u.ts has no class labels \(its header says @classLabel false\)"):
        read_ts_file(path, owner="sensors")
    assert read_ts_file(path, labelled=False).series[0].shape == (2, 5)
    (tmp_path / "h.ts").write_text("hello\n")
    with pytest.raises(ValueError, match="h.ts line 1: expected a @key line or @data"):
        read_ts_file(tmp_path / "h.ts")
    (tmp_path / "e.ts").write_text("@classLabel true a\n@data\n\n")
    with pytest.raises(ValueError, match="e.ts holds no series after its @data line 2"):
        read_ts_file(tmp_path / "e.ts")


def test_series_csv_rows_are_time_steps_and_columns_channels(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("ax,ay\n1,2\n3,4\n5,6\n")
    np.testing.assert_array_equal(read_series_csv(path), [[1, 3, 5], [2, 4, 6]])  # (C, T)
    path.write_text("1,2\n3\n")
    with pytest.raises(ValueError, match="s.csv line 2: expected 2 columns"):
        read_series_csv(path)
    path.write_text("a,b\n1,2\n3,inf\n")
    with pytest.raises(ValueError, match="s.csv line 3: values must be finite numbers"):
        read_series_csv(path)
    path.write_text("1,2\n3,abc\n")
    with pytest.raises(ValueError, match="s.csv line 2: 'abc' is not a number"):
        read_series_csv(path)


def test_stratified_holdout_takes_a_share_of_every_class():
    labels = ["a"] * 10 + ["b"] * 20 + ["c"] * 1
    kept, held = stratified_holdout(labels, 0.2, seed=0)
    assert sorted(kept + held) == list(range(31)) and not set(kept) & set(held)
    counts = {c: sum(labels[i] == c for i in held) for c in "abc"}
    assert counts == {"a": 2, "b": 4, "c": 0}  # a class of one keeps it
    assert stratified_holdout(labels, 0.2, seed=0) == (kept, held)
    assert stratified_holdout(labels, 0.2, seed=1)[1] != held
    with pytest.raises(ValueError, match="fraction must be in"):
        stratified_holdout(labels, 0.0, 0)


# -- preprocessing -----------------------------------------------------------------------------

def test_prepare_standardises_with_train_statistics_and_pads_with_lengths():
    task = SensorsTask(SensorsOptions())
    splits = task.prepare(seed=0)
    sizes = {name: len(part) for name, part in splits.items()}
    assert sizes == {"train": 216, "val": 54, "test": 370}  # the archive's 270 / 370, val 20% of train
    val_labels = splits["val"].tensors["y"].bincount(minlength=9)
    assert (val_labels == 6).all()  # stratified: 6 of each speaker's 30
    json.dumps(task.meta)  # JSON-able
    train = splits["train"].tensors
    valid = torch.arange(train["x"].shape[1]) < train["lengths"][:, None]  # (N, T)
    values = train["x"][valid]  # (steps, C)
    assert torch.allclose(values.mean(0), torch.zeros(12), atol=1e-5)
    assert torch.allclose(values.std(0, unbiased=False), torch.ones(12), atol=1e-4)
    assert (train["x"][~valid] == 0).all()  # padding
    test = splits["test"].tensors
    assert test["lengths"].min() == 7 and test["lengths"].max() == 29
    raw, _ = splits["test"].raw
    first = torch.from_numpy((raw.series[0] - np.array(task.meta["mean"])[:, None])
                             / np.array(task.meta["std"])[:, None]).T.float()
    assert torch.allclose(test["x"][0, : raw.series[0].shape[1]], first, atol=1e-6)


def test_the_crop_augmentation_keeps_windows_of_valid_steps():
    task = SensorsTask(SensorsOptions(crop=0.5, noise=0.0, scale=0.0))
    x = torch.arange(1.0, 11.0).view(1, 10, 1).repeat(3, 1, 2)  # (3, 10, 2): step t holds t + 1
    lengths = torch.tensor([10, 6, 2])
    torch.manual_seed(0)
    for _ in range(20):
        out, new = task._augment(x, lengths)
        assert ((new >= (lengths * 0.5).ceil()) & (new <= lengths)).all()
        for b in range(3):
            window = out[b, : new[b], 0]
            assert (window.diff() == 1).all() and window[-1] <= lengths[b]  # consecutive steps, all valid


# -- a tiny real run ---------------------------------------------------------------------------

def test_tiny_run_has_the_baselines_and_evaluates_on_a_file(tiny_run):
    run_dir, data, summary = tiny_run
    for name in ("minirocket", "dtw"):
        value = summary[f"baseline_{name}_test_accuracy"]
        assert 0.0 <= value <= 1.0 and math.isfinite(value)
    assert summary["baseline_minirocket_test_accuracy"] > 0.5  # 9 speakers: far above chance (0.11)
    assert 0.0 <= summary["test_accuracy"] <= 1.0
    result = evaluate(run_dir, data=data.replace("_TRAIN", "_TEST"))  # the pair's TEST file
    assert result["data_accuracy"] == pytest.approx(summary["test_accuracy"])
    assert result["baseline_dtw_data_accuracy"] == pytest.approx(summary["baseline_dtw_test_accuracy"])


def test_predict_from_ts_and_csv_agree(tiny_run, tmp_path, capsys):
    run_dir, data, _ = tiny_run
    series = read_ts_file(data.replace("_TRAIN", "_TEST")).series[5]  # (12, T)
    ts = _write_ts(tmp_path / "one.ts", [series], None)
    csv = tmp_path / "one.csv"
    csv.write_text(",".join(f"c{k}" for k in range(12)) + "\n"
                   + "\n".join(",".join(repr(float(v)) for v in step) for step in series.T) + "\n")
    run = rnnkit.load(run_dir)
    a, b = run.predict([ts, str(csv)])
    assert a["label"] == b["label"] and a["probabilities"] == b["probabilities"]
    assert set(a["probabilities"]) == {str(k) for k in range(1, 10)}
    assert sum(a["probabilities"].values()) == pytest.approx(1.0, abs=1e-3)
    x, lengths = run.task.standardise([series])
    expected = torch.softmax(run.model(x, lengths), -1)[0]
    assert a["label"] == str(int(expected.argmax()) + 1)
    assert cli_main(["predict", str(run_dir), str(csv)]) == 0
    assert json.loads(capsys.readouterr().out)["label"] == a["label"]


def test_bad_input_is_one_line_from_the_command(tiny_run, tmp_path, capsys):
    run_dir, _, _ = tiny_run
    wrong = tmp_path / "three.csv"
    wrong.write_text("1,2,3\n4,5,6\n")
    assert cli_main(["predict", str(run_dir), str(wrong)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "three.csv has 3 channels, the model was trained on 12" in err[0]
    assert "Traceback" not in err[0]
    bad = tmp_path / "bad_TEST.ts"
    bad.write_text("@classLabel true 1 2\n@data\n1,2:3,4:1\n1,2:x,4:2\n")
    assert cli_main(["evaluate", str(run_dir), "--data", str(bad)]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad_TEST.ts line 4: channel 2 holds 'x', not a number" in err[0]
    assert cli_main(["train", "sensors", "--data", "NoSuchSet", "--out", str(tmp_path / "x")]) != 0
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "got 'NoSuchSet'" in err[0] and "BasicMotions" in err[0]
    with pytest.raises(ValueError, match="SensorsOptions: pooling must be one of last, mean, max, got 'sum'"):
        SensorsOptions(pooling="sum")


def test_export_to_onnx_agrees(tiny_run, tmp_path):
    [info] = export_onnx(tiny_run[0], tmp_path / "sensors.onnx")
    assert info.max_abs_diff is not None and info.max_abs_diff <= 1e-4


# -- baselines and learning --------------------------------------------------------------------

def test_baselines_take_unequal_lengths_and_dtw_is_capped(tmp_path):
    train, test = load_archive(_jv_slice(tmp_path, 4, 3))
    assert len(set(train.lengths.tolist())) > 1  # unequal lengths, as they are
    assert minirocket_accuracy(train, test) > 0.5
    full = dtw_accuracy(train, test)
    assert full > 0.5
    capped = dtw_accuracy(train, test, max_cells=len(train) * 29 * 29)  # room for one test series
    assert capped in (0.0, 1.0)


def test_the_loss_really_falls(tmp_path):
    torch.manual_seed(0)
    task = SensorsTask(SensorsOptions(data=_jv_slice(tmp_path, 6, 1), hidden_size=16, noise=0.0, scale=0.0,
                                      dropout=0.0))
    splits = task.prepare(seed=0)
    model = task.build_model()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    batch = next(iter(IndexLoader(splits["train"], 64, shuffle=False)))

    def loss() -> float:
        out = task.step(model, batch)
        return out.loss_sum.item() / out.count

    first = loss()
    for _ in range(40):
        out = task.step(model, batch)
        optimizer.zero_grad()
        (out.loss_sum / out.count).backward()
        optimizer.step()
    assert loss() < 0.3 * first
