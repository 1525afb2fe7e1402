"""forecast: data loaders, chronological splits without leakage, a scaler fitted on the training
part only, baselines with known answers, ARIMA's fast rolling forecasts against statsmodels,
a loss that really falls, and prediction from a saved run."""
import importlib.util
import json
import math
import sys

import numpy as np
import pytest
import torch

import rnnkit
from rnnkit.cli import main as cli_main
from rnnkit.data.datasets import series as series_module
from rnnkit.data.datasets.series import load_series, read_csv_series
from rnnkit.models.forecaster import Forecaster, ForecasterConfig
from rnnkit.models.baselines import (ArimaSpec, arima_forecast, fit_arima, naive_forecast, parse_arima,
                                    seasonal_naive_forecast)
from rnnkit.tasks.forecast import ForecastOptions, ForecastTask
from rnnkit.viz.forecast_plots import plot_forecast
from rnnkit.training import TrainConfig
from rnnkit.runs import evaluate, train

HAS_STATSMODELS = importlib.util.find_spec("statsmodels") is not None
HAS_PMDARIMA = importlib.util.find_spec("pmdarima") is not None
needs_statsmodels = pytest.mark.skipif(not HAS_STATSMODELS, reason="statsmodels is not installed (pip install statsmodels)")


def _toy_series(n: int = 240, seed: int = 0) -> np.ndarray:
    """Monthly-looking data: trend + a 12-step season + noise, all positive."""
    t = np.arange(n)
    rng = np.random.default_rng(seed)
    return 50 + 0.1 * t + 5 * np.sin(2 * np.pi * t / 12) + rng.normal(0, 0.5, n)


def _write_csv(path, values, dates=True) -> str:
    lines = ["month,value"] + [f"{2000 + k // 12}-{k % 12 + 1:02d},{float(v)!r}" for k, v in enumerate(values)]
    if not dates:
        lines = ["value"] + [repr(float(v)) for v in values]
    path.write_text("\n".join(lines) + "\n")
    return str(path)


def _task(csv: str, **options) -> ForecastTask:
    defaults = dict(data=csv, column="value", date_column="month", season=12, window=24, horizon=3, arima="off")
    return ForecastTask(ForecastOptions(**{**defaults, **options}))


# -- loaders ---------------------------------------------------------------------------------

@needs_statsmodels
@pytest.mark.parametrize("name, length, season, first, last", [
    ("sunspots", 309, 11, "1700", "2008"),
    ("co2", 526, 12, "1958-03", "2001-12"),
])
def test_statsmodels_series_load_whole_and_finite(name, length, season, first, last):
    s = load_series(name)
    assert s.values.shape == (length,) and s.values.dtype == np.float64
    assert np.isfinite(s.values).all()
    assert s.season == season and s.dates[0] == first and s.dates[-1] == last
    if name == "co2":  # monthly means of ppm readings
        assert 310 < s.values.min() and s.values.max() < 380


@pytest.mark.skipif(not HAS_PMDARIMA, reason="pmdarima is not installed (pip install pmdarima)")
def test_msft_close_loads():
    s = load_series("msft")
    assert s.values.shape == (7983,) and np.isfinite(s.values).all() and s.season == 5
    assert s.dates[0] == "1986-03-13" and s.values[-1] == pytest.approx(83.87)


def test_a_missing_package_says_what_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "pmdarima.datasets", None)  # makes the import fail
    with pytest.raises(ValueError, match="pip install pmdarima"):
        series_module.load_msft()


def test_unknown_data_names_the_choices():
    with pytest.raises(ValueError, match="sunspots, co2, msft"):
        load_series("nosuch.csv")


# -- the CSV reader --------------------------------------------------------------------------

def test_csv_reader_reads_a_column_and_its_dates(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("month,value,other\n2020-01,1.5,x\n\n2020-02,2.5,y\n2020-03,-3e1,z\n")
    s = read_csv_series(path, "value", "month", season=4)
    np.testing.assert_array_equal(s.values, [1.5, 2.5, -30.0])
    assert s.dates == ("2020-01", "2020-02", "2020-03") and s.season == 4 and s.name == "s.csv:value"
    only = tmp_path / "one.csv"
    only.write_text("day,price\nmon,1\ntue,2\n")
    assert list(read_csv_series(only, "", "day").values) == [1.0, 2.0]  # the only value column


@pytest.mark.parametrize("bad_row, what", [("2020-03,abc", "'abc'"), ("2020-03,", "''"), ("2020-03,nan", "'nan'"),
                                           ("2020-03", "expected 2 fields")])
def test_csv_reader_names_file_and_line_of_a_malformed_row(tmp_path, bad_row, what):
    path = tmp_path / "bad.csv"
    path.write_text(f"month,value\n2020-01,1\n\n{bad_row}\n2020-04,4\n")  # the bad row is line 4
    with pytest.raises(ValueError) as e:
        read_csv_series(path, "value", "month")
    message = str(e.value)
    assert str(path) in message and "line 4" in message and what in message


def test_csv_reader_names_missing_columns(tmp_path):
    path = tmp_path / "s.csv"
    path.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(ValueError, match="no column 'value'; its columns: a, b, c"):
        read_csv_series(path, "value")
    with pytest.raises(ValueError, match="3 value columns"):
        read_csv_series(path)


# -- baselines -------------------------------------------------------------------------------

def test_seasonal_naive_is_exact_on_a_pure_season_and_naive_on_a_constant():
    t = np.arange(120)
    sine = np.sin(2 * np.pi * t / 12)
    origins = np.arange(60, 120 - 18 + 1)
    truth = np.stack([sine[o:o + 18] for o in origins])  # horizons longer than a season too
    assert np.sqrt(np.mean((seasonal_naive_forecast(sine, origins, 18, 12) - truth) ** 2)) < 1e-12
    assert np.sqrt(np.mean((naive_forecast(sine, origins, 18) - truth) ** 2)) > 0.5
    flat = np.full(50, 3.0)
    np.testing.assert_array_equal(naive_forecast(flat, np.arange(10, 40), 4), 3.0)


def test_naive_error_on_a_line_is_the_slope_times_the_lead():
    line = 2.0 * np.arange(100)
    f = naive_forecast(line, np.arange(10, 90), 5)  # (80, 5)
    truth = np.stack([line[o:o + 5] for o in range(10, 90)])
    np.testing.assert_allclose(truth - f, np.broadcast_to(2.0 * np.arange(1, 6), (80, 5)))


def test_baselines_refuse_origins_without_history():
    with pytest.raises(ValueError, match=r"origins must lie in \[12, 50\]"):
        seasonal_naive_forecast(np.zeros(50), np.arange(5, 20), 3, 12)


@needs_statsmodels
@pytest.mark.parametrize("spec", [  # parameters: trend, ar, ma, seasonal ar, seasonal ma, sigma2
    ArimaSpec((1, 0, 1), trend="c", params=(20.0, 0.6, 0.3, 1.0)),
    ArimaSpec((2, 1, 0), params=(0.5, -0.2, 1.0)),
    ArimaSpec((0, 1, 1), (0, 1, 1, 12), params=(-0.4, -0.6, 0.25)),
])
def test_arima_rolling_forecast_equals_statsmodels_forecast_from_each_origin(spec):
    from statsmodels.tsa.statespace.sarimax import SARIMAX

    y = _toy_series(200)
    fitted = spec
    origins = np.array([150, 163, 190])
    fast = arima_forecast(y, origins, 7, fitted)  # (3, 7)
    for row, t in zip(fast, origins):  # the reference: a fresh filter over y[:t] with the same parameters
        model = SARIMAX(y[:t], order=spec.order, seasonal_order=spec.seasonal_order, trend=spec.trend)
        reference = model.filter(np.asarray(fitted.params)).forecast(7)
        np.testing.assert_allclose(row, reference, rtol=1e-8, atol=1e-8)


@needs_statsmodels
def test_arima_recovers_an_ar1_and_forecasts_it():
    rng = np.random.default_rng(0)
    y = np.zeros(400)
    for t in range(1, 400):
        y[t] = 0.7 * y[t - 1] + rng.normal()
    fitted, _ = fit_arima(y[:300], ArimaSpec((1, 0, 0), trend="n"))
    assert fitted.params[0] == pytest.approx(0.7, abs=0.1)  # phi
    f = arima_forecast(y, np.arange(300, 398), 2, fitted)
    np.testing.assert_allclose(f[:, 0], fitted.params[0] * y[299:397])  # E[y_t | past] = phi y_{t-1}
    np.testing.assert_allclose(f[:, 1], fitted.params[0] ** 2 * y[299:397])


def test_arima_option_is_validated():
    assert parse_arima("2,1,0,0,1,1", 12) == ArimaSpec((2, 1, 0), (0, 1, 1, 12), "n")
    assert parse_arima("auto", 12) is None and parse_arima("off", 1) is None
    for bad in ("2,1", "a,b,c", "1,0,-1"):
        with pytest.raises(ValueError, match="arima must be auto, off"):
            ForecastOptions(arima=bad)
    with pytest.raises(ValueError, match="season length is 1"):
        parse_arima("0,1,1,0,1,1", 1)


# -- options, model --------------------------------------------------------------------------

@pytest.mark.parametrize("field, value, message", [
    ("difference", "second", "difference must be one of none, first, seasonal, got 'second'"),
    ("normalize", "robust", "normalize must be global or window"),
    ("window", 0, "window must be >= 1, got 0"),
    ("highway", 99, "highway must be in [0, window=24], got 99"),
    ("test_fraction", 0.6, "test_fraction must be in (0, 0.5), got 0.6"),
    ("dropout", math.nan, "dropout must be in [0, 1]"),
    ("cell", "tcn", "cell must be one of"),
])
def test_options_name_the_bad_argument(field, value, message):
    with pytest.raises(ValueError) as e:
        ForecastOptions(**{field: value})
    assert str(e.value).startswith("ForecastOptions:") and message in str(e.value)


def test_forecaster_maps_a_window_to_a_horizon():
    torch.manual_seed(0)
    x = torch.randn(5, 12, 1)  # (B, T, 1)
    for highway in (0, 6):
        model = Forecaster(ForecasterConfig(horizon=4, hidden_size=8, highway=highway, cell="gru"))
        assert model(x).shape == (5, 4)
    torch.manual_seed(0)
    with_highway = Forecaster(ForecasterConfig(horizon=4, hidden_size=8, highway=6))
    torch.manual_seed(0)
    plain = Forecaster(ForecasterConfig(horizon=4, hidden_size=8))
    torch.testing.assert_close(with_highway(x), plain(x))  # the highway starts at zero
    with pytest.raises(ValueError, match=r"x must be \(B, T, 1\), got \(5, 12\)"):
        plain(x[..., 0])


# -- splits, scaler, windows -----------------------------------------------------------------

@pytest.mark.parametrize("difference", ["none", "first", "seasonal"])
def test_chronological_split_has_no_leakage(tmp_path, difference):
    csv = _write_csv(tmp_path / "s.csv", _toy_series())
    task = _task(csv, difference=difference, horizon=5)
    splits = task.prepare(seed=0)
    (_, val_start), (_, test_start), (_, n) = (task.meta["parts"][k] for k in ("train", "val", "test"))
    window, h = 24, 5

    def span(name):
        origin = splits[name].tensors["origin"].numpy()
        inputs = origin[:, None] + np.arange(-window, 0)  # (n, T) value indices the model reads
        targets = origin[:, None] + np.arange(h)  # (n, H) value indices it forecasts
        assert (inputs.max(1) < targets.min(1)).all()  # no window reads its own targets
        lag = task.meta["lag"]  # differencing reads `lag` values further back
        assert inputs.min() - lag >= 0
        return inputs.min() - lag, inputs.max(), targets.min(), targets.max()

    train_in_lo, train_in_hi, train_t_lo, train_t_hi = span("train")
    val_in_lo, val_in_hi, val_t_lo, val_t_hi = span("val")
    test_in_lo, test_in_hi, test_t_lo, test_t_hi = span("test")
    # Everything a training window touches (inputs and targets) lies before the validation part ...
    assert max(train_in_hi, train_t_hi) < val_start == val_t_lo
    # ... every validation target before the test part, every test target inside it, up to the end.
    assert val_t_hi < test_start == test_t_lo and test_t_hi == n - 1
    # Validation/test inputs may reach back into earlier parts (known history), never forward.
    assert val_in_lo < val_start and val_in_hi < test_start and test_in_lo < test_start
    assert (np.diff(splits["test"].tensors["origin"].numpy()) == 1).all()  # every test origin, rolling


@pytest.mark.parametrize("options", [dict(), dict(difference="first", log=True), dict(difference="seasonal"),
                                     dict(normalize="window", difference="first")])
def test_scaler_and_arima_are_fitted_on_the_training_part_only(tmp_path, options):
    values = _toy_series()
    task_a = _task(_write_csv(tmp_path / "a.csv", values), **options, arima="1,0,0" if HAS_STATSMODELS else "off")
    changed = values.copy()
    test_start = len(values) - round(0.15 * len(values))
    changed[test_start:] = changed[test_start:] * 3 + 100  # a test part unlike anything before it
    task_b = _task(_write_csv(tmp_path / "b.csv", changed), **options, arima=task_a.options.arima)
    a, b = task_a.prepare(0), task_b.prepare(0)
    assert task_a.meta["parts"]["test"][0] == test_start
    assert task_a.meta["scaler"] == task_b.meta["scaler"]
    assert task_a.meta["arima"] == task_b.meta["arima"]  # fitted before the test part
    for name in ("train", "val"):  # inputs and targets before the test part are untouched
        for key in ("x", "y", "loc", "scale"):
            torch.testing.assert_close(a[name].tensors[key], b[name].tensors[key])
    assert not torch.equal(a["test"].tensors["y"], b["test"].tensors["y"])


@pytest.mark.parametrize("options", [dict(), dict(difference="first", log=True), dict(difference="seasonal", horizon=15),
                                     dict(normalize="window", difference="seasonal")])
def test_integrating_the_true_differences_gives_back_the_targets(tmp_path, options):
    """If the network predicted the true scaled z, the forecast would be the truth exactly."""
    task = _task(_write_csv(tmp_path / "s.csv", _toy_series()), **options)
    batch = task.prepare(0)["val"].tensors
    u_full = np.log(_toy_series()) if task.options.log else _toy_series()
    lag = {"none": 0, "first": 1, "seasonal": 12}[task.options.difference]
    origin = batch["origin"].numpy()
    steps = origin[:, None] + np.arange(task.options.horizon)  # (n, H)
    z_true = u_full[steps] - (u_full[steps - lag] if lag else 0)  # (n, H)
    z_scaled = (torch.from_numpy(z_true) - batch["loc"][:, None]) / batch["scale"][:, None]
    u_hat = task.integrate(z_scaled, batch["anchor"], batch["loc"], batch["scale"])
    torch.testing.assert_close(u_hat, batch["u"])
    torch.testing.assert_close(task.undo_log(batch["u"]), batch["y"])


def test_too_short_a_series_says_which_part_and_what_to_change(tmp_path):
    task = _task(_write_csv(tmp_path / "s.csv", _toy_series(60)), window=24, horizon=12)
    with pytest.raises(ValueError, match="the val part of s.csv:value .* shorten --window/--horizon"):
        task.prepare(0)


# -- training and using a run ----------------------------------------------------------------

@pytest.fixture(scope="module")
def run(tmp_path_factory):
    out = tmp_path_factory.mktemp("forecast") / "run"
    options = ForecastOptions(data="sunspots", window=22, horizon=2, hidden_size=8, normalize="window", difference="none",
                              arima="2,0,0" if HAS_STATSMODELS else "off")
    summary = train("forecast", options, TrainConfig(epochs=8, batch_size=32, lr=0.01, seed=0), out, progress=False)
    return out, summary


@needs_statsmodels
def test_the_loss_really_falls_and_baselines_are_reported(run):
    run_dir, summary = run
    records = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    train_losses = [r["train_loss"] for r in records if r["split"] == "train"]
    val_rmse = [r["val_rmse"] for r in records if r["split"] == "val"]
    assert train_losses[-1] < 0.5 * train_losses[0]
    assert min(val_rmse) < 0.85 * val_rmse[0]
    for key in ("test_rmse", "test_mae", "test_naive_rmse", "test_snaive_rmse", "test_arima_rmse", "val_rmse"):
        assert math.isfinite(summary[key]), key
    assert summary["test_rmse"] < summary["test_naive_rmse"]  # 8 epochs already beat the random walk
    # The baselines saw exactly the test windows: every origin from 263 (= 309 - 46) on, 2 steps each.
    y = load_series("sunspots").values
    errors = [y[t + k] - y[t - 1] for t in range(263, 308) for k in range(2)]
    assert summary["test_naive_rmse"] == pytest.approx(math.sqrt(np.mean(np.square(errors))), rel=1e-12)


@needs_statsmodels
def test_evaluate_rebuilds_the_same_test_windows(run):
    run_dir, summary = run
    metrics = evaluate(run_dir)
    for key in ("test_rmse", "test_naive_rmse", "test_snaive_rmse", "test_arima_rmse"):
        assert metrics[key] == pytest.approx(summary[key], rel=1e-9), key


@needs_statsmodels
def test_predict_forecasts_after_the_series_and_from_a_history(run):
    run_dir, _ = run
    model = rnnkit.load(run_dir)
    (row,) = model.predict([], horizon=3)  # beyond the model's 2 steps: recursive
    assert row["after"] == "2008" and row["dates"] == ["2009", "2010", "2011"] and row["horizon"] == 3
    assert len(row["forecast"]) == 3 and all(math.isfinite(v) for v in row["forecast"])
    (two,) = model.predict([])  # the model's own horizon
    assert two["forecast"] == pytest.approx(row["forecast"][:2], rel=1e-5)

    history = [str(v) for v in model.task.meta["history"]]
    (same,) = model.predict(history, horizon=3)  # the same history given as numbers
    assert same["forecast"] == row["forecast"] and same["after"] is None
    with pytest.raises(ValueError, match="at least 22 values"):
        model.predict(["1", "2"])
    with pytest.raises(ValueError, match="INPUT 2 must be a finite number"):
        model.predict(["1", "x"] + history)
    with pytest.raises(ValueError, match="takes no option"):
        model.predict([], length=3)


@needs_statsmodels
def test_cli_predict_prints_the_forecast(run, capsys):
    run_dir, _ = run
    assert cli_main(["predict", str(run_dir), "--horizon", "4"]) == 0
    row = json.loads(capsys.readouterr().out)
    assert row["horizon"] == 4 and len(row["forecast"]) == 4


def test_plot_forecast_writes_a_png(tmp_path):
    y = _toy_series(100)
    origins = np.arange(80, 97)
    f = {"rnnkit": np.stack([y[o:o + 4] + 1 for o in origins]), "seasonal naive": seasonal_naive_forecast(y, origins, 4, 12)}
    dates = [f"{2000 + k // 12}-{k % 12 + 1:02d}" for k in range(100)]
    path = plot_forecast(tmp_path / "p" / "f.png", y, origins, f, dates, title="toy")
    assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
