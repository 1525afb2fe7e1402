"""alarm: aeon's bundled UCR anomaly set read whole, labelled CSVs read strictly, the UCR scoring
against hand-counted answers, the streamed scores equal to the model on the whole history, a
threshold calibrated from meta, and a tiny real run trained, evaluated on a file, predicted,
exported; a loss that really falls."""
import json

import numpy as np
import pytest
import torch

import rnnkit
from rnnkit.cli import main as cli_main
from rnnkit.data.datasets.anomaly import anomaly_regions, load_kdd_tsad_135, read_anomaly_csv
from rnnkit.exporting import export_onnx
from rnnkit.runs import evaluate
from rnnkit.tasks.alarm import AlarmOptions, AlarmTask, alarm_metrics, alarm_starts, season_of, smoothed

TINY = ["--window", "16", "--hidden-size", "8", "--smooth", "4", "--max-steps", "30", "--batch-size", "32",
        "--no-progress"]
KEYS = ("located", "detection_delay", "false_alarms_per_10k")


def _slice_csv(path, lo=3800, hi=5000, labels=True) -> str:
    """Rows lo..hi-1 of the real signal (they hold the labelled anomaly, rows 4187-4198) as a CSV."""
    sig = load_kdd_tsad_135()
    rows = ["timestamp,value" + (",is_anomaly" if labels else "")]
    rows += [f"{t},{float(sig.values[t, 0])!r}" + (f",{sig.labels[t]}" if labels else "") for t in range(lo, hi)]
    path.write_text("\n".join(rows) + "\n")
    return str(path)


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("alarm") / "run"
    assert cli_main(["train", "alarm", *TINY, "--out", str(out)]) == 0
    return out, json.loads((out / "summary.json").read_text())


# -- data --------------------------------------------------------------------------------------

def test_kdd_tsad_135_is_read_whole_with_its_normal_part():
    sig = load_kdd_tsad_135()
    assert sig.values.shape == (7501, 1) and np.isfinite(sig.values).all() and sig.columns == ("value",)
    assert sig.train_length == 1200 and not sig.labels[:1200].any()
    assert anomaly_regions(sig.labels) == [(4187, 4199)]  # the archive's 4187-4199, end exclusive
    assert 55 < sig.values.min() and sig.values.max() < 105  # blood pressure, mmHg


@pytest.mark.parametrize("text, message", [
    ("value,is_anomaly\n1.0,0\n2.0,2\n", "line 3: column 'is_anomaly' must be 0 or 1, got '2'"),
    ("value,is_anomaly\n1.0,0\nabc,0\n", "line 3: column 'value' must hold a finite number, got 'abc'"),
    ("value,is_anomaly\n1.0,0\n\n3.0\n", "line 4: expected 2 fields, got 1"),
    ("value\n1.0\n", "line 1: no 'is_anomaly' column"),
    ("timestamp,is_anomaly\n0,0\n", "line 1: no value column"),
])
def test_a_bad_csv_is_one_error_naming_the_file_and_line(tmp_path, text, message):
    path = tmp_path / "bad.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=f"bad.csv {message}"):
        read_anomaly_csv(path)


def test_a_csv_with_two_columns_and_no_labels(tmp_path):
    path = tmp_path / "two.csv"
    path.write_text("timestamp,a,b\n0,1.5,2\n1,2.5,3\n")
    sig = read_anomaly_csv(path, labels_required=False)
    assert sig.columns == ("a", "b") and sig.values.tolist() == [[1.5, 2.0], [2.5, 3.0]]
    assert not sig.labelled and sig.labels.tolist() == [0, 0]


# -- scoring -------------------------------------------------------------------------------------

def test_alarm_metrics_against_hand_counted_answers():
    labels = np.zeros(1000, dtype=int)
    labels[500:510] = 1
    scores = np.full(1000, 0.1)
    scores[:50] = np.nan  # warm-up
    scores[450:452] = 5.0  # an alarm 50 rows before the region: inside its tolerance, so early, not false
    scores[505] = 9.0  # the top score, inside the region
    scores[700] = 2.0  # an alarm far from the region: false
    scores[900:903] = 2.0  # one run of three rows: one more false alarm
    m = alarm_metrics(scores, labels, threshold=1.0, scored_from=100, tolerance=100)
    assert m["located"] == 1.0 and m["detection_delay"] == 0.0  # alarmed before the start: 0
    assert m["false_alarms_per_10k"] == pytest.approx(2 * 10_000 / 900)
    assert m["separation"] == pytest.approx(9.0 / 2.0) and m["threshold"] == 1.0
    late = alarm_metrics(np.where(np.arange(1000) == 506, 9.0, 0.1), labels, 1.0, 100, 100)
    assert late["detection_delay"] == 6.0 and late["false_alarms_per_10k"] == 0.0
    missed = alarm_metrics(np.where(np.arange(1000) == 800, 9.0, 0.1), labels, 1.0, 100, 100)
    assert missed["located"] == 0.0 and missed["detection_delay"] == 900.0  # never: the scored part's length
    assert list(alarm_starts(np.array([0, 2, 2, 0, 3, np.nan, 3]), 1.0)) == [1, 4, 6]


def test_smoothing_and_season():
    e = np.array([np.nan, np.nan, 1.0, 2.0, 3.0, 6.0])
    assert np.allclose(smoothed(e, 2), [np.nan, np.nan, np.nan, 1.5, 2.5, 4.5], equal_nan=True)
    t = np.arange(400)
    assert season_of(np.sin(2 * np.pi * t / 25)[:, None], 200) == 25
    noisy = np.sin(2 * np.pi * t / 40) + np.random.default_rng(0).normal(0, 0.3, 400)
    assert season_of(np.stack([noisy, np.cos(2 * np.pi * t / 40)], 1), 200) == 40  # columns averaged
    assert season_of(np.ones((400, 1)), 200) == 1  # nothing varies: no season


def test_streamed_scores_equal_the_model_on_the_whole_history(tiny_run):
    run = rnnkit.load(tiny_run[0])
    task, model = run.task, run.model
    x = task._scale(load_kdd_tsad_135().values[:300])  # (300, 1)
    errors = task.score(model, x).errors
    assert np.isnan(errors[: task.options.window]).all()
    xs = torch.from_numpy(x).float()
    with torch.no_grad():
        for t in (task.options.window, 100, 299):
            y_hat = model(xs[None, :t])[0]  # the forecast of row t from every row before it
            assert errors[t] == pytest.approx(float((y_hat - xs[t]).pow(2).mean()), rel=1e-4, abs=1e-7)


# -- a tiny real run ---------------------------------------------------------------------------

def test_summary_holds_the_alarm_metrics_and_the_baselines(tiny_run):
    run_dir, summary = tiny_run
    for key in KEYS + ("loss", "threshold", "separation"):
        assert np.isfinite(summary[f"test_{key}"]), key
    assert summary["test_located"] in (0.0, 1.0)
    for name in ("zscore", "snaive"):
        for key in KEYS + ("loss",):
            assert np.isfinite(summary[f"baseline_{name}_test_{key}"]), (name, key)
    meta = json.loads((run_dir / "preprocess.json").read_text())
    assert meta["train_length"] == 1200 and meta["parts"]["val"] == [900, 1200]  # 25% of the normal part
    assert meta["season"] > 100  # a heart beat at this sampling rate
    run = rnnkit.load(run_dir)  # the threshold comes back from meta alone
    assert run.task.threshold(run.model) == pytest.approx(summary["test_threshold"], rel=1e-6)


def test_evaluate_a_file_and_predict_its_alarms(tiny_run, tmp_path, capsys):
    run_dir, summary = tiny_run
    data = _slice_csv(tmp_path / "slice.csv")
    metrics = evaluate(run_dir, data)
    for key in KEYS:
        assert np.isfinite(metrics[f"data_{key}"]) and np.isfinite(metrics[f"baseline_snaive_data_{key}"])
    assert metrics["data_threshold"] == pytest.approx(summary["test_threshold"], rel=1e-6)
    # an impossible threshold: nothing; a tiny one: the first row scored starts an alarm
    assert cli_main(["predict", str(run_dir), data, "--threshold", "1e9"]) == 0
    assert capsys.readouterr().out == ""
    assert cli_main(["predict", str(run_dir), _slice_csv(tmp_path / "nolabels.csv", labels=False),
                     "--threshold", "1e-9"]) == 0
    rows = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert rows and rows[0]["index"] == 16 + 4 - 1  # window + smooth - 1: the first row with a score
    assert all(r["score"] > r["threshold"] == 1e-9 and r["end"] >= r["index"] for r in rows)
    # numbers as the input: the same signal, the same alarms
    run = rnnkit.load(run_dir)
    values = [repr(float(v)) for v in load_kdd_tsad_135().values[3800:5000, 0]]
    assert [r["index"] for r in run.predict(values, threshold=1e-9)] == [r["index"] for r in rows]


def test_bad_input_is_one_line_from_the_command(tiny_run, tmp_path, capsys):
    run_dir, _ = tiny_run
    bad = tmp_path / "bad.csv"
    bad.write_text("value,is_anomaly\n1.0,0\nNaN,0\n")
    assert cli_main(["evaluate", str(run_dir), "--data", str(bad)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "bad.csv line 3" in err[0] and "Traceback" not in err[0]
    assert cli_main(["train", "alarm", "--train-length", "5000", "--out", str(tmp_path / "x")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "holds a labelled anomaly at row 4187" in err[0]
    with pytest.raises(ValueError, match="AlarmOptions: quantile must be in"):
        AlarmOptions(quantile=1.5)


def test_export_to_onnx_agrees(tiny_run, tmp_path):
    [info] = export_onnx(tiny_run[0], tmp_path / "alarm.onnx")
    assert info.max_abs_diff <= 1e-4
    [step] = export_onnx(tiny_run[0], tmp_path / "step.onnx", step=True)
    assert step.max_abs_diff <= 1e-4


def test_the_loss_really_falls():
    torch.manual_seed(0)
    task = AlarmTask(AlarmOptions(window=16, hidden_size=16))
    splits = task.prepare(0)
    model = task.build_model()
    batch = splits["train"].take(list(range(0, len(splits["train"]), 7)))  # ~150 windows
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(60):
        out = task.step(model, batch)
        loss = out.loss_sum / out.count
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(float(loss.detach()))
    assert losses[-1] < 0.1 * losses[0], losses[::10]


@pytest.mark.slow
def test_the_default_run_locates_the_bleeding_without_false_alarms(tmp_path):
    out = tmp_path / "full"
    assert cli_main(["train", "alarm", "--no-progress", "--out", str(out)]) == 0
    summary = json.loads((out / "summary.json").read_text())
    assert summary["test_located"] == 1.0 and summary["test_false_alarms_per_10k"] == 0.0
    assert summary["test_detection_delay"] <= 20
