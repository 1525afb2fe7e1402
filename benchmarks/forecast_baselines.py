"""A trained forecast run against naive, seasonal naive and ARIMA on the same test windows.

Loads a run directory made by ``rnnkit train forecast``, rebuilds its test windows (the
same chronological split and scaler; the ARIMA model saved in preprocess.json), and
prints one table row per method: RMSE and MAE over every step of every test window, then
the RMSE of the first and the last step of the horizon. ``--arima p,d,q[,P,D,Q]`` adds an
extra ARIMA of that order (fitted on everything before the test part). ``--plot`` writes
the history / truth / forecasts figure (``rnnkit.viz.forecast_plots.plot_forecast``).

    python benchmarks/forecast_baselines.py /tmp/fc-sun --plot docs/plots/forecast-sunspots.png
    python benchmarks/forecast_baselines.py /tmp/fc-sun --arima 8,0,1 --json row.json
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import torch

import rnnkit
from rnnkit.models.baselines import ArimaSpec, parse_arima, arima_forecast, fit_arima
from rnnkit.viz.forecast_plots import plot_forecast
from rnnkit.training import TrainConfig


def _order_name(spec: dict | ArimaSpec) -> str:
    spec = ArimaSpec.from_json(spec) if isinstance(spec, dict) else spec
    p, d, q = spec.order
    P, D, Q, m = spec.seasonal_order
    return f"ARIMA({p},{d},{q})" + (f"({P},{D},{Q})[{m}]" if m else "")


def compare(run_dir: str, extra_arima: str = "") -> dict:
    """Rows {method: {rmse, mae, rmse_first, rmse_last}} plus what the plot needs."""
    run = rnnkit.load(run_dir)
    task = run.task
    meta = dict(task.meta)
    test = task.prepare(TrainConfig(**run.config["train"]).seed)["test"]  # reuses the saved ARIMA fit
    task.meta = meta  # the preprocessing the model was trained with
    series = task.series()
    y = series.values
    truth = test.tensors["y"].numpy()  # (n, H)
    origins = test.tensors["origin"].numpy()  # (n,)
    forecasts = {"rnnkit": task.forecast_windows(run.model, test)}
    if "arima" in test.tensors:
        forecasts[_order_name(meta["arima"])] = test.tensors["arima"].numpy()
    if extra_arima:
        spec = parse_arima(extra_arima, series.season)
        fitted, _ = fit_arima(y[: meta["parts"]["test"][0]], spec)
        forecasts[_order_name(fitted)] = arima_forecast(y, origins, task.options.horizon, fitted)
    forecasts["seasonal naive"] = test.tensors["snaive"].numpy()
    forecasts["naive"] = test.tensors["naive"].numpy()
    rows = {}
    for name, f in forecasts.items():
        error = f - truth  # (n, H)
        rows[name] = {"rmse": float(np.sqrt(np.mean(error**2))), "mae": float(np.mean(np.abs(error))),
                      "rmse_first": float(np.sqrt(np.mean(error[:, 0] ** 2))),
                      "rmse_last": float(np.sqrt(np.mean(error[:, -1] ** 2)))}
    return {"rows": rows, "forecasts": forecasts, "origins": origins, "y": y, "dates": series.dates,
            "test_start": meta["parts"]["test"][0], "windows": len(origins), "horizon": task.options.horizon,
            "series": series.name}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run_dir")
    parser.add_argument("--arima", default="", help="an extra ARIMA order p,d,q or p,d,q,P,D,Q to compare")
    parser.add_argument("--plot", default="", help="write the forecast figure to this PNG")
    parser.add_argument("--json", default="", help="write the rows to this JSON file")
    parser.add_argument("--show", default="rnnkit,ARIMA,seasonal naive",
                        help="methods to plot, comma-separated (ARIMA = the run's own)")
    parser.add_argument("--tail", type=int, default=0, help="plot only the last N test origins (0 = all)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    result = compare(args.run_dir, args.arima)
    h = result["horizon"]
    print(f"{result['series']}: {result['windows']} test windows, horizon {h} "
          f"(test span starts at index {result['test_start']})")
    if h > 1:
        print(f"| method | RMSE | MAE | RMSE step 1 | RMSE step {h} |\n|---|---:|---:|---:|---:|")
    else:
        print("| method | RMSE | MAE |\n|---|---:|---:|")
    for name, r in result["rows"].items():
        steps = f" {r['rmse_first']:.4g} | {r['rmse_last']:.4g} |" if h > 1 else ""
        print(f"| {name} | {r['rmse']:.4g} | {r['mae']:.4g} |{steps}")
    if args.plot:
        names = {"rnnkit", "seasonal naive", "naive"}
        own_arima = next((n for n in result["forecasts"] if n.startswith("ARIMA")), None)
        wanted = args.show.split(",")
        shown = {("ARIMA" if name == own_arima else name): f for name, f in result["forecasts"].items()
                 if (name in names and name in wanted) or (name == own_arima and "ARIMA" in wanted)}
        origins, start = result["origins"], result["test_start"]
        if args.tail:
            shown = {name: f[-args.tail:] for name, f in shown.items()}
            origins, start = origins[-args.tail:], int(origins[-args.tail])
        plot_forecast(args.plot, result["y"], origins, shown, result["dates"], start,
                      title=f"{result['series']}, horizon {h}")
        print(f"plot: {args.plot}")
    if args.json:
        Path(args.json).write_text(json.dumps({k: result[k] for k in ("rows", "windows", "horizon", "series")}, indent=1))


if __name__ == "__main__":
    main()
