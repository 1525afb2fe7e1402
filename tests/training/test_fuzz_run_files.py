"""Fuzzing the run-file loaders: whatever a run directory's files hold, a reader loads the run
or raises the project's one-line ``CheckpointError`` naming the file (issue 13).

Each case starts from a tiny trained digits run and changes one file: a JSON file (config.json,
preprocess.json, summary.json, checkpoints/last/trainer.json) gets one to three structural
mutations (a value anywhere replaced by another JSON value, huge integers, NaN and inf
included; a key deleted or added; a container emptied) or byte mutations; model.safetensors
gets byte flips, truncations or a tensor's values overwritten. The manifest is then recomputed
for most cases (otherwise the hash check refuses everything and the structure checks are
never reached). The reader then runs: ``rnnkit.load`` and one prediction, the trainer's
restore of its checkpoint, or reporting a finished run (``fit_run`` of a complete run).

Nothing a reader does may change the run (no data lost). The guards of
``tests/data/test_fuzz_readers.py`` apply: an address-space limit (a config that allocates for
a huge size fails with MemoryError, which is a failure here) and a hard alarm per example.
CI runs ``CI_EXAMPLES`` per loader, derandomised; ``pytest -m slow`` runs ``SLOW_EXAMPLES``.
"""
from __future__ import annotations

import copy
import hashlib
import json
import os
import math
import resource
import shutil
import signal
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import pytest

hypothesis = pytest.importorskip("hypothesis", reason="the fuzz tests need hypothesis (pip install -e '.[test]')")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import rnnkit  # noqa: E402
from rnnkit.runs import train  # noqa: E402
from rnnkit.tasks import get_task  # noqa: E402
from rnnkit.tasks.digits import DigitsOptions  # noqa: E402
from rnnkit.training import CheckpointError, TrainConfig, Trainer, fit_run  # noqa: E402
from rnnkit.training.runfiles import MANIFEST, RUN_FILES  # noqa: E402

CI_EXAMPLES = 60  # per loader: 360 in all, about 20 s on two cores
SLOW_EXAMPLES = 2000  # per loader, with -m slow
DEADLINE_MS = 3000
HANG_S = 30
MEMORY_HEADROOM = 3 << 30
CONFIG = dict(epochs=1, max_steps=3, batch_size=32)


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fuzz-run") / "run"
    train("digits", DigitsOptions(hidden_size=8), TrainConfig(**CONFIG), out, progress=False)
    return out


# -- the loaders ------------------------------------------------------------------------------------

def _load_and_predict(run: Path) -> None:
    rows = rnnkit.load(run).predict(["0"])
    assert len(rows) == 1


def _report_finished(run: Path) -> None:
    """``--resume`` of a finished run: reads config.json (its train settings) and summary.json."""
    cls = get_task("digits")
    fit_run(cls(DigitsOptions(hidden_size=8)), TrainConfig(**CONFIG), run, resume=True, progress=False)


def _restore_checkpoint(run: Path) -> None:
    """What ``--resume`` does first: the trainer restores checkpoints/last."""
    cls = get_task("digits")
    task = cls(DigitsOptions(hidden_size=8))
    task.meta = json.loads((run / "preprocess.json").read_text())
    model = task.build_model()
    config = TrainConfig(**CONFIG, device="cpu")
    loader = task.loader(_splits()["train"], config.batch_size, shuffle=True, seed=config.seed)
    Trainer(task, model, loader, None, config, run_dir=run)._restore()


_SPLITS: dict = {}


def _splits() -> dict:
    if not _SPLITS:
        task = get_task("digits")(DigitsOptions(hidden_size=8))
        _SPLITS.update(task.prepare(0))
    return _SPLITS


@dataclass(frozen=True)
class Case:
    file: str  # the run file mutated, relative to the run directory
    read: Callable[[Path], None]


CASES = [
    Case("config.json", _load_and_predict),
    Case("preprocess.json", _load_and_predict),
    Case("model.safetensors", _load_and_predict),
    Case("summary.json", _report_finished),
    Case("checkpoints/last/trainer.json", _restore_checkpoint),
    Case("checkpoints/last/optimizer.safetensors", _restore_checkpoint),
]
IDS = [c.file.split("/")[-1] for c in CASES]


# -- mutations --------------------------------------------------------------------------------------

SPECIAL_VALUES = [None, True, False, 0, -1, 1, 2**31, 10**6, 10**12, 2**70, -(2**70), 0.0, -0.0, 1e-300, 1e308,
                  math.nan, math.inf, -math.inf, "", "nan", "x" * 1000, [], {}, [1, 2], {"a": 1}, ["0"] * 3]
json_value = st.recursive(
    st.one_of(st.sampled_from(SPECIAL_VALUES), st.integers(), st.floats(), st.text(max_size=8)),
    lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=6,
)
_index = st.integers(0, 1 << 16)
json_mutation = st.one_of(
    st.tuples(st.just("replace"), _index, json_value),
    st.tuples(st.just("delete"), _index),
    st.tuples(st.just("add"), _index, st.text(max_size=12), json_value),
    st.tuples(st.just("empty"), _index),
)
byte_mutation = st.one_of(
    st.tuples(st.just("flip"), _index, st.integers(1, 255)),
    st.tuples(st.just("truncate"), _index),
    st.tuples(st.just("insert"), _index, st.binary(max_size=16)),
    st.tuples(st.just("float"), _index, st.sampled_from([math.nan, math.inf, -math.inf, 3e38, -1e30, 0.0])),
    st.tuples(st.just("uint64"), _index, st.sampled_from([0, 1, 2**32, 2**63 - 1, 2**64 - 1])),
)


def _paths(value, path=()):
    """Every place in a JSON document: (path, value), the root first."""
    yield path, value
    if isinstance(value, dict):
        for k, v in value.items():
            yield from _paths(v, path + (k,))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _paths(v, path + (i,))


def _apply_json(doc, m):
    places = list(_paths(doc))
    path, value = places[m[1] % len(places)]
    parent = doc
    for step in path[:-1]:
        parent = parent[step]
    if m[0] == "replace":
        if not path:
            return copy.deepcopy(m[2])
        parent[path[-1]] = copy.deepcopy(m[2])  # (a generated value may come twice: no shared objects)
    elif m[0] == "delete" and path:
        del parent[path[-1]]
    elif m[0] == "add" and isinstance(value, dict):
        value[m[2]] = copy.deepcopy(m[3])
    elif m[0] == "add" and isinstance(value, list):
        value.append(copy.deepcopy(m[3]))
    elif m[0] == "empty" and isinstance(value, (dict, list)):
        value.clear()
    return doc


def _apply_bytes(data: bytes, m) -> bytes:
    at = m[1] % (len(data) + 1)
    if m[0] == "flip" and data:
        at %= len(data)
        return data[:at] + bytes([data[at] ^ m[2]]) + data[at + 1:]
    if m[0] == "truncate":
        return data[:at]
    if m[0] == "insert":
        return data[:at] + m[2] + data[at:]
    if m[0] == "float":  # a float32 over 4 bytes, aligned from the end (the tensors' data)
        at -= (at - len(data)) % 4
        return data[:at] + struct.pack("<f", m[2]) + data[at + 4:]
    if m[0] == "uint64":  # a header length or an offset
        return data[:at] + struct.pack("<Q", m[2]) + data[at + 8:]
    return data


def mutate(case: Case, data: bytes, mutations) -> bytes:
    if not mutations:
        return data
    if case.file.endswith(".json") and mutations[0][0] in ("replace", "delete", "add", "empty"):
        doc = json.loads(data)
        for m in mutations:
            doc = _apply_json(doc, m)
        return json.dumps(doc).encode()
    for m in mutations:
        data = _apply_bytes(data, m)
    return data


def rehash(run: Path) -> None:
    entries = {n: hashlib.sha256((run / n).read_bytes()).hexdigest() for n in RUN_FILES if (run / n).is_file()}
    (run / MANIFEST).write_text(json.dumps(entries))


# -- guards (as in tests/data/test_fuzz_readers.py) ---------------------------------------------------

def _mapped_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * resource.getpagesize()


class Hang(Exception):
    pass


@pytest.fixture
def guarded():
    limits = resource.getrlimit(resource.RLIMIT_AS)
    cap = _mapped_bytes() + MEMORY_HEADROOM
    if limits[1] != resource.RLIM_INFINITY:
        cap = min(cap, limits[1])
    resource.setrlimit(resource.RLIMIT_AS, (cap, limits[1]))

    def on_alarm(signum, frame):
        raise Hang("an example ran past the hard time limit")

    previous = signal.signal(signal.SIGALRM, on_alarm)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
        resource.setrlimit(resource.RLIMIT_AS, limits)


# -- the run ------------------------------------------------------------------------------------------

def _snapshot(run: Path) -> dict:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def read_mutated(case: Case, trained: Path, folder: Path, mutations, keep_manifest: bool):
    """Copy the run, mutate ``case.file``, read; (the exception that escaped or None, whether the run changed)."""
    run = folder / "run"
    shutil.copytree(trained, run)
    path = run / case.file
    path.write_bytes(mutate(case, path.read_bytes(), mutations))
    if not keep_manifest:
        rehash(run)
    before = _snapshot(run)
    signal.setitimer(signal.ITIMER_REAL, HANG_S)
    try:
        case.read(run)
        error = None
    except BaseException as e:  # noqa: BLE001 - every escape is what the test looks at
        error = e
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    after = _snapshot(run)
    changed = sorted(k for k in before if before[k] != after.get(k) and k != ".lock")
    return error, changed


def check_escape(case: Case, error: BaseException | None, changed: list[str]) -> None:
    assert not changed, f"reading a run with a mutated {case.file} changed {changed}"
    if error is None:
        return
    message = str(error)
    assert type(error) is CheckpointError, f"{type(error).__name__} escaped for {case.file}: {message[:300]}"
    assert "\n" not in message, f"not one line: {message[:300]!r}"
    named = case.file.split("/")[-1]
    assert any(n in message for n in (named, MANIFEST, "config.json", "preprocess.json", "model.safetensors",
                                      "trainer.json", "optimizer.safetensors")), f"names no file: {message[:300]}"


def run_fuzz(case: Case, trained: Path, tmp_path: Path, max_examples: int, derandomize: bool) -> dict:
    counts = {"examples": 0, "loaded": 0, "refused": 0}
    mutations = json_mutation if case.file.endswith(".json") else byte_mutation

    @settings(max_examples=max_examples, deadline=DEADLINE_MS, derandomize=derandomize, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example,
                                     HealthCheck.function_scoped_fixture])
    @given(ms=st.one_of(st.lists(mutations, min_size=1, max_size=3), st.lists(byte_mutation, min_size=1, max_size=2)),
           keep_manifest=st.sampled_from([False, False, False, True]))  # mostly a manifest made to match
    def fuzz(ms, keep_manifest):
        folder = tmp_path / f"case{counts['examples']}"
        counts["examples"] += 1
        folder.mkdir()
        error, changed = read_mutated(case, trained, folder, ms, keep_manifest)
        check_escape(case, error, changed)
        counts["loaded" if error is None else "refused"] += 1
        shutil.rmtree(folder)

    fuzz()
    assert counts["examples"] >= max_examples, f"only {counts['examples']} examples ran for {case.file}"
    if os.environ.get("RNNKIT_FUZZ_STATS"):  # a file to append the tallies to (for reports)
        with open(os.environ["RNNKIT_FUZZ_STATS"], "a") as f:
            f.write(json.dumps({"file": case.file, **counts}) + "\n")
    return counts


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_the_unchanged_run_loads(case, trained, tmp_path):
    error, changed = read_mutated(case, trained, tmp_path, [], keep_manifest=True)
    assert error is None and not changed, error


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_mutated_run_files_raise_only_the_projects_error(case, trained, tmp_path, guarded):
    run_fuzz(case, trained, tmp_path, CI_EXAMPLES, derandomize=True)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_mutated_run_files_raise_only_the_projects_error_slow(case, trained, tmp_path, guarded):
    run_fuzz(case, trained, tmp_path, SLOW_EXAMPLES, derandomize=False)
