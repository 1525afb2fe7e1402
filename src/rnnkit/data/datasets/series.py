"""Univariate time series for forecasting: packaged data sets and any numeric CSV column.

Every loader returns a :class:`Series`: the values as a 1-D float64 array (oldest first),
their dates as ISO strings when the source has them, and the natural season length
(the period a seasonal-naive forecast repeats: 11 years for sunspots, 12 months for
co2, 5 trading days for MSFT, 1 = no season).

* :func:`load_sunspots`: yearly mean sunspot numbers 1700-2008 (309 values), statsmodels.
* :func:`load_co2`: Mauna Loa CO2 (ppm), weekly 1958-2001 with gaps in statsmodels;
  resampled here to monthly means, the 5 empty months linearly interpolated (526 values).
* :func:`load_msft`: Microsoft's daily close 1986-03-13 to 2017-11-10 (7,983 trading days), pmdarima.
* :func:`read_csv_series`: one numeric column of a CSV file with a header row.
* :func:`load_series`: any of these by name, or a CSV file by path.

A package that is missing raises ``ValueError`` saying what to ``pip install``.
"""
from __future__ import annotations

import math
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._files import csv_rows, shown

__all__ = ["Series", "SERIES", "load_sunspots", "load_co2", "load_msft", "read_csv_series", "load_series"]


@dataclass(frozen=True)
class Series:
    """One univariate series, oldest value first."""

    values: np.ndarray  # (N,) float64, all finite
    dates: tuple[str, ...] | None  # N ISO dates/labels, or None when the source has none
    season: int  # natural season length in steps; 1 = no seasonality
    name: str  # where it came from: "sunspots", "co2", "msft" or "file.csv:column"

    def __post_init__(self) -> None:
        if self.values.ndim != 1 or not np.isfinite(self.values).all():
            raise ValueError(f"Series: values must be a 1-D array of finite numbers, got shape {self.values.shape}")
        if self.dates is not None and len(self.dates) != len(self.values):
            raise ValueError(f"Series: {len(self.dates)} dates for {len(self.values)} values")
        if self.season < 1:
            raise ValueError(f"Series: season must be >= 1, got {self.season}")

    def __len__(self) -> int:
        return len(self.values)


def _require(module: str, package: str, what: str):
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError:
        raise ValueError(f"{what} needs the {package} package: pip install {package}") from None


def load_sunspots() -> Series:
    """Yearly mean sunspot numbers, 1700-2008 (309 values); season 11 (the solar cycle)."""
    datasets = _require("statsmodels.datasets", "statsmodels", "the sunspots data set")
    frame = datasets.sunspots.load_pandas().data
    years = tuple(str(int(y)) for y in frame["YEAR"])
    return Series(frame["SUNACTIVITY"].to_numpy(dtype=np.float64), years, 11, "sunspots")


def load_co2() -> Series:
    """Mauna Loa CO2 in ppm, monthly means of the weekly record 1958-03 to 2001-12 (526 values); season 12.

    The weekly record has 59 empty weeks; 5 months have no measurement at all and are
    filled by linear interpolation between their neighbours.
    """
    datasets = _require("statsmodels.datasets", "statsmodels", "the co2 data set")
    weekly = datasets.co2.load_pandas().data["co2"]  # weekly, NaN where no measurement
    monthly = weekly.resample("MS").mean().interpolate(method="linear")
    dates = tuple(d.strftime("%Y-%m") for d in monthly.index)
    return Series(monthly.to_numpy(dtype=np.float64), dates, 12, "co2")


def load_msft() -> Series:
    """Microsoft's daily closing price in USD, 1986-03-13 to 2017-11-10 (7,983 values); season 5 (a trading week)."""
    datasets = _require("pmdarima.datasets", "pmdarima", "the msft data set")
    frame = datasets.load_msft()
    return Series(frame["Close"].to_numpy(dtype=np.float64), tuple(str(d) for d in frame["Date"]), 5, "msft")


SERIES = {"sunspots": load_sunspots, "co2": load_co2, "msft": load_msft}


def read_csv_series(path: str | os.PathLike, column: str = "", date_column: str | None = None,
                    season: int = 1) -> Series:
    """One numeric column of a CSV file whose first row names the columns.

    Args:
        path: the CSV file (comma-separated, rows oldest first).
        column: the column to read; "" picks the only column besides ``date_column``
            (an error lists the columns when there are several).
        date_column: an optional column of dates or labels, kept as strings for plots
            and to name the forecast's position.
        season: the season length to report (the file cannot say).

    Every data row must hold a finite number in ``column``: an empty cell, a word, "NaN"
    or a row too short raises ``ValueError`` naming the file and its line number. The
    reader refuses rather than skips or fills because dropping a row silently shifts every
    later value by one step (a forecast "12 months ahead" would then be 11), and only the
    user knows whether a gap should be interpolated. Blank lines are ignored. A file over
    512 MiB, or a field over the csv module's limit (131,072 characters), is refused too.
    """
    path = Path(path)
    numbered = csv_rows("read_csv_series", path)  # (line, row) of the rows that are not blank
    if not numbered:
        raise ValueError(f"read_csv_series: {path} is empty (expected a header row naming the columns)")
    header = [cell.strip() for cell in numbered[0][1]]
    date_column = date_column or None
    if date_column is not None and date_column not in header:
        raise ValueError(f"read_csv_series: {path} has no date column {date_column!r}; its columns: {shown(header)}")
    if not column:
        others = [name for name in header if name != date_column]
        if len(others) != 1:
            raise ValueError(f"read_csv_series: {path} has {len(others)} value columns ({shown(others)}); "
                             "choose one with column= (--column on the command line)")
        column = others[0]
    if column not in header:
        raise ValueError(f"read_csv_series: {path} has no column {column!r}; its columns: {shown(header)}")
    k = header.index(column)
    k_date = header.index(date_column) if date_column is not None else None
    values, dates = [], []
    for line, row in numbered[1:]:
        if len(row) <= max(k, k_date if k_date is not None else 0):
            raise ValueError(f"read_csv_series: {path} line {line}: expected {len(header)} fields, got {len(row)}")
        cell = row[k].strip()
        try:
            value = float(cell)
        except ValueError:
            value = math.nan
        if not math.isfinite(value):
            quoted = cell if len(cell) <= 40 else cell[:37] + "..."
            raise ValueError(f"read_csv_series: {path} line {line}: column {column!r} must hold a finite number, "
                             f"got {quoted!r}")
        values.append(value)
        if k_date is not None:
            dates.append(row[k_date].strip())
    if not values:
        raise ValueError(f"read_csv_series: {path} has a header but no data rows")
    return Series(np.asarray(values, dtype=np.float64), tuple(dates) if k_date is not None else None,
                  season, f"{path.name}:{column}")


def load_series(data: str, column: str = "", date_column: str = "", season: int = 0) -> Series:
    """A packaged series by name (``SERIES``) or a CSV file by path; ``season`` > 0 overrides its season."""
    if data in SERIES:
        series = SERIES[data]()
    elif Path(data).is_file():
        series = read_csv_series(data, column, date_column or None, season or 1)
    else:
        raise ValueError(f"load_series: data must be one of {', '.join(SERIES)} or a CSV file, got {data!r} "
                         "(no such file)")
    if season and season != series.season:
        series = Series(series.values, series.dates, season, series.name)
    return series
