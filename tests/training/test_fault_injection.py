"""Fault injection: a training killed with SIGKILL at any file operation of its run directory
(every ``os.replace`` / ``os.rename`` / ``shutil.rmtree`` of a checkpoint, of the best weights, of
the manifest, of summary.json), or at a random moment from outside, then resumed as a user
would, ends exactly as the uninterrupted run; ``--resume`` of a finished run changes no byte.

Two tasks: ``digits`` (a batch task: shuffled mini-batches, a checkpoint crossing an epoch
boundary, stopped by a step budget mid-epoch) and ``charlm`` on a small text (stream-batched:
the recurrent state is carried from batch to batch and saved in the checkpoint).

The runs are children of a fork server that has imported rnnkit once (``fault_helpers.start``):
a fresh interpreter costs 4-8 s of imports on this 2-core machine, the training itself ~1 s.
``test_a_forked_run_equals_a_plain_python_m_rnnkit_run`` (slow) checks that a forked run writes
what ``python -m rnnkit`` writes.

"Exact" (:func:`differences`): the same files; every tensor of every ``*.safetensors`` equal
(``torch.equal``, same dtype); metrics.jsonl equal line for line; summary.json, trainer.json
and manifest.json equal but for what measures time; every other file equal byte for byte.

The default run tries a few kill points per task; ``pytest -m slow`` tries them all, before and
after each call (set FAULT_REPORT=path.json to keep the sweep's table).
"""
import hashlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

sys.path.insert(0, str(Path(__file__).parent))
import fault_helpers  # noqa: E402
from fault_helpers import Fault  # noqa: E402

# -- the two trainings -----------------------------------------------------------------------------

COMMON = ["--seed", "0", "--device", "cpu", "--no-progress"]
# digits: 23 batches an epoch; checkpoints at steps 10, 20 (before the epoch boundary), 30 (the step budget)
DIGITS = ["train", "digits", "--epochs", "2", "--max-steps", "30", "--eval-every", "10", "--log-every", "5",
          "--hidden-size", "16", *COMMON]
# charlm on ~2.4 KB: 4 streams of 20-character windows, 28 batches an epoch; checkpoints at 20, 40, 56
CHARLM = ["train", "charlm", "--epochs", "2", "--eval-every", "20", "--log-every", "5", "--hidden-size", "16",
          "--embedding-dim", "8", "--seq-len", "20", "--batch-size", "4", *COMMON]
TASKS = ("digits", "charlm")

# What measures time, and so differs from run to run (a resumed run's clocks also restart):
TIMED_RECORD = {"samples_per_s"}  # metrics.jsonl: the throughput so far
TIMED_SUMMARY = {"train_seconds", "eval_seconds_in_training", "train_samples_per_second", "outside_model_fraction"}
# trainer.json: progress.elapsed and progress.timing's seconds (its "samples" is a count: compared);
# callbacks.JsonlLogger.offset is the byte length of metrics.jsonl, whose throughput figures vary in length
TIMED_TIMING = {"data", "model", "other", "eval"}

# What a kill there is known to leave behind (issue 13; reported, not fixed here).
# Once found here and fixed (kept as sample points below): a kill between the final checkpoint's
# swap and its rmtree left checkpoints/last.old for good (fit_run now finishes the swap on
# resume); a kill after summary.json (the mark of a complete run) left plots/ undrawn and the
# manifest unsettled (plots are now drawn first, and a resume settles the manifest).

KILL = -signal.SIGKILL  # a multiprocessing exitcode
RUN = "run"  # every run directory's name: the plots are titled with it, and compared byte for byte


# -- running rnnkit --------------------------------------------------------------------------------

@dataclass
class Finished:
    exitcode: int
    output: str  # stdout and stderr


def _start(argv, out: Path, fault: Fault = Fault()):
    output = out.with_name(f"{out.name}.{time.monotonic_ns()}.txt")  # beside the run: not one of its files
    output.parent.mkdir(parents=True, exist_ok=True)
    return fault_helpers.start(argv, out, output, fault), output


def _run(argv, out: Path, fault: Fault = Fault(), timeout: float = 300) -> Finished:
    process, output = _start(argv, out, fault)
    process.join(timeout)
    if process.exitcode is None:
        process.kill()
        process.join()
        pytest.fail(f"rnnkit {' '.join(argv)} did not end within {timeout} s")
    return Finished(process.exitcode, output.read_text())


@dataclass
class Call:
    """One file operation of a run, as the injector logged it (paths relative to the run)."""

    n: int
    op: str
    path: str
    target: str | None
    t: float

    @property
    def commits(self) -> bool:
        """Whether this call makes a new checkpoint the one ``--resume`` reads."""
        return self.op == "replace" and (self.path, self.target) == ("checkpoints/last.tmp", "checkpoints/last")


def _calls(log: Path) -> list[Call]:
    calls = []
    for line in log.read_text().splitlines() if log.exists() else []:
        try:
            calls.append(Call(**json.loads(line)))
        except ValueError:  # the last line, cut short by a kill: its call was not made
            break
    return calls


@dataclass
class Reference:
    """The uninterrupted run of a task and the file operations it made."""

    task: str
    argv: list[str]  # without --out
    dir: Path
    calls: list[Call]
    checkpoint_steps: list[int]  # the step of each checkpoint, in order

    def committed(self, n: int, when: str) -> int:
        """How many checkpoints had been committed when a kill at call ``n`` (before/after it) struck."""
        done = self.calls[: n if when == "after" else n - 1]
        return sum(c.commits for c in done)

    def known_defect(self, n: int, when: str) -> str | None:
        """Why a kill at call ``n`` is known not to resume exactly (None: it must). None known."""
        return None

    def checkpoints_at(self, step: int | None) -> int:
        """How many checkpoints had been committed when the one of ``step`` was (None: none)."""
        return 0 if step is None else self.checkpoint_steps.index(step) + 1


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """``reference(task)``: the task's uninterrupted run (made once per module)."""
    root = tmp_path_factory.mktemp("fault")
    text = root / "text.txt"
    text.write_text(_text(2400))
    argvs = {"digits": DIGITS, "charlm": [*CHARLM, "--data", str(text)]}
    made = {}

    def get(task: str) -> Reference:
        if task not in made:
            out, log = root / f"{task}-reference" / RUN, root / f"{task}-reference.calls"
            done = _run(argvs[task] + ["--out", str(out)], out, Fault(log=str(log)))
            assert done.exitcode == 0, done.output
            calls = _calls(log)
            steps = [json.loads(line)["step"] for line in (out / "metrics.jsonl").read_text().splitlines()
                     if json.loads(line)["split"] == "val"]
            assert sum(c.commits for c in calls) == len(steps) >= 3, "every evaluation writes a checkpoint"
            made[task] = Reference(task, argvs[task], out, calls, steps)
        return made[task]

    yield get
    fault_helpers.stop()


def _text(size: int) -> str:
    """Sentences of a few words drawn with a fixed seed: a text for charlm."""
    rng = random.Random(0)
    words = "the quick brown fox jumps over a lazy dog while seven wizards hex bold nymphs".split()
    lines = []
    while sum(map(len, lines)) < size:
        lines.append(" ".join(rng.choice(words) for _ in range(rng.randint(4, 10))) + ".\n")
    return "".join(lines)


# -- killing and resuming --------------------------------------------------------------------------

@dataclass
class Outcome:
    """A killed run, resumed to its end."""

    exitcode: int  # of the killed process (-9)
    resumed_from: int | None  # the step of the checkpoint on disk after the kill (None: none)
    how: str  # "resumed", "started over" (--resume: an incomplete first checkpoint) or "rerun" (no checkpoint)
    differences: list[str] = field(default_factory=list)


def _checkpoint_step(out: Path) -> int | None:
    """The step of the checkpoint --resume reads (``last``, or ``last.old`` in the middle of a swap)."""
    for name in ("last", "last.old"):
        try:
            return json.loads((out / "checkpoints" / name / "trainer.json").read_text())["progress"]["step"]
        except (OSError, ValueError, KeyError):
            continue
    return None


def _resume(ref: Reference, out: Path, exitcode: int) -> Outcome:
    """Resume ``out`` as a user would: ``--resume``; if it says there is nothing to resume from,
    the original command again. Then compare with the reference."""
    step = _checkpoint_step(out)
    done = _run(["train", ref.task, "--out", str(out), "--resume", "--no-progress"], out)
    how = "started over" if "incomplete first checkpoint" in done.output else "resumed"
    if done.exitcode == 2 and ("holds no checkpoint to resume from" in done.output
                               or "config.json is missing" in done.output):
        how = "rerun"
        done = _run([*ref.argv, "--out", str(out)], out)
    assert done.exitcode == 0, done.output
    return Outcome(exitcode, step, how, differences(ref.dir, out))


def kill_at(ref: Reference, out: Path, n: int, when: str) -> Outcome:
    """Run ``ref``'s training into ``out``, killed at its ``n``-th file operation, then resume it."""
    killed = _run([*ref.argv, "--out", str(out)], out, Fault(kill_at=n, when=when))
    return _resume(ref, out, killed.exitcode)


def kill_from_outside(ref: Reference, out: Path, rng: random.Random) -> tuple[Outcome, list[Call]]:
    """Start the training, SIGKILL it after a random delay within its writing time, resume it.
    Also returns the file operations it had started (the last may not have happened)."""
    log = out.with_name(out.name + ".calls")
    process, _ = _start([*ref.argv, "--out", str(out)], out, Fault(log=str(log)))
    deadline = time.monotonic() + 120
    while process.is_alive() and not log.exists() and time.monotonic() < deadline:
        time.sleep(0.002)
    span = ref.calls[-1].t - ref.calls[0].t  # from the run's first file operation to its last
    time.sleep(rng.uniform(0.0, span))
    if process.is_alive():
        os.kill(process.pid, signal.SIGKILL)
    process.join(60)
    return _resume(ref, out, process.exitcode), _calls(log)


def _kept_its_checkpoints(ref: Reference, outcome: Outcome, calls: list[Call]) -> bool:
    """After a kill from outside, the checkpoint on disk is the newest committed one (the kill
    came before or after the last logged call: either count is right)."""
    if outcome.exitcode != KILL:  # it ended first: that was a resume of a finished run
        return True
    lo, hi = sum(c.commits for c in calls[:-1]), sum(c.commits for c in calls)
    return lo <= ref.checkpoints_at(outcome.resumed_from) <= hi


def _known_after_outside_kill(ref: Reference, calls: list[Call]) -> bool:
    """Whether a kill from outside struck where a known defect is (before or after the last logged call)."""
    return bool(calls) and any(ref.known_defect(calls[-1].n, when) for when in ("before", "after"))


def expected_step(ref: Reference, committed: int) -> int | None:
    return ref.checkpoint_steps[committed - 1] if committed else None


# -- comparing run directories ---------------------------------------------------------------------

def _files(run: Path) -> set[str]:
    return {p.relative_to(run).as_posix() for p in run.rglob("*") if p.is_file()}


def _untimed_trainer(state: dict) -> dict:
    state = json.loads(json.dumps(state))  # a copy
    state["progress"].pop("elapsed", None)
    for key in TIMED_TIMING:
        state["progress"].get("timing", {}).pop(key, None)
    state.get("callbacks", {}).get("JsonlLogger", {}).pop("offset", None)
    return state


def differences(reference: Path, run: Path) -> list[str]:
    """What in ``run`` is not as in ``reference`` (see the module docstring); [] if nothing."""
    found = []
    ours, theirs = _files(run), _files(reference)
    if ours != theirs:
        found.append(f"files: extra {sorted(ours - theirs)}, missing {sorted(theirs - ours)}")
    for name in sorted(ours & theirs):
        a, b = reference / name, run / name
        if name.endswith(".safetensors"):
            ta, tb = load_file(a), load_file(b)
            if ta.keys() != tb.keys():
                found.append(f"{name}: tensors {sorted(ta.keys() ^ tb.keys())} in one file only")
            found += [f"{name}: tensor {k} differs" for k in sorted(ta.keys() & tb.keys())
                      if ta[k].dtype != tb[k].dtype or not torch.equal(ta[k], tb[k])]
        elif name == "metrics.jsonl":
            la, lb = ([{k: v for k, v in json.loads(line).items() if k not in TIMED_RECORD}
                       for line in p.read_text().splitlines()] for p in (a, b))
            if len(la) != len(lb):
                found.append(f"{name}: {len(lb)} lines, not {len(la)}")
            found += [f"{name}: line {i + 1} differs: {y} instead of {x}" for i, (x, y) in enumerate(zip(la, lb))
                      if x != y]
        elif name == "summary.json":
            sa, sb = ({k: v for k, v in json.loads(p.read_text()).items() if k not in TIMED_SUMMARY} for p in (a, b))
            if sa != sb:
                found.append(f"{name}: {sorted(k for k in sa.keys() | sb.keys() if sa.get(k) != sb.get(k))} differ")
        elif name.endswith("trainer.json"):
            if _untimed_trainer(json.loads(a.read_text())) != _untimed_trainer(json.loads(b.read_text())):
                found.append(f"{name} differs (beyond its timings)")
        elif name == "manifest.json":
            found += _manifest_differences(reference, run)
        elif a.read_bytes() != b.read_bytes():
            found.append(f"{name} differs")
    return found


def _manifest_differences(reference: Path, run: Path) -> list[str]:
    """The manifest lists the same files, each with the one digest of the file as it is now
    (summary.json's digest is of timings, so it is compared with the file, not the reference)."""
    ma, mb = (json.loads((p / "manifest.json").read_text()) for p in (reference, run))
    found = [] if ma.keys() == mb.keys() else [f"manifest.json lists {sorted(mb)}, not {sorted(ma)}"]
    for name, digest in mb.items():
        if not (run / name).is_file() or digest != hashlib.sha256((run / name).read_bytes()).hexdigest():
            found.append(f"manifest.json: {name}'s entry {digest!r:.80} is not the file's one sha256")
        elif name != "summary.json" and digest != ma.get(name):
            found.append(f"manifest.json: {name}'s digest differs")
    return found


def _snapshot(run: Path) -> dict[str, str]:
    return {p.relative_to(run).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(run.rglob("*")) if p.is_file()}


# -- the default sample of kill points -------------------------------------------------------------

@dataclass(frozen=True)
class Point:
    """A kill point named by what it interrupts: the ``occurrence``-th call (1-based; -1: the
    last) whose op and source path are ``op`` and ``path``; ``when`` "before" or "after" it."""

    when: str
    op: str
    path: str
    occurrence: int

    def resolve(self, ref: Reference) -> int:
        matching = [c.n for c in ref.calls if (c.op, c.path) == (self.op, self.path)]
        return matching[self.occurrence - 1 if self.occurrence > 0 else self.occurrence]

    def __str__(self) -> str:
        which = {1: "1st", 2: "2nd", 3: "3rd", -1: "final"}.get(self.occurrence, f"#{self.occurrence}")
        return f"{self.when}-{which}-{self.op}-{self.path}"


SAMPLE = [
    Point("before", "replace", "checkpoints/last.tmp", 1),  # the first checkpoint's swap: nothing to resume yet
    Point("after", "replace", "checkpoints/last", 1),  # in the second one's swap: only checkpoints/last.old is whole
    Point("before", "replace", "checkpoints/last.tmp", -1),  # the final checkpoint's swap
]
FIXED = [  # the points of the two defects this suite found (see the top of the file)
    pytest.param("digits", Point("after", "replace", "checkpoints/last.tmp", -1), id="digits-after-final-swap"),
    pytest.param("digits", Point("after", "replace", ".summary.json.tmp", 1), id="digits-after-summary"),
]


@pytest.mark.parametrize("task, point", [pytest.param(t, p, id=f"{t}-{p}") for t in TASKS for p in SAMPLE] + FIXED)
def test_a_run_killed_at_a_file_operation_resumes_exactly(reference, tmp_path, task, point):
    ref = reference(task)
    n = point.resolve(ref)
    outcome = kill_at(ref, tmp_path / RUN, n, point.when)
    assert outcome.exitcode == KILL
    assert outcome.resumed_from == expected_step(ref, ref.committed(n, point.when)), "a committed checkpoint was lost"
    assert outcome.how == "resumed" if outcome.resumed_from is not None else outcome.how in ("rerun", "started over")
    assert outcome.differences == []


@pytest.mark.parametrize("task", TASKS)
def test_a_run_killed_from_outside_resumes_exactly(reference, tmp_path, task):
    ref = reference(task)
    outcome, calls = kill_from_outside(ref, tmp_path / RUN, random.Random(f"{task}-0"))
    assert _kept_its_checkpoints(ref, outcome, calls)
    assert outcome.differences == [] or _known_after_outside_kill(ref, calls)


@pytest.mark.parametrize("task", TASKS)
def test_resuming_a_finished_run_changes_no_byte(reference, tmp_path, task):
    ref = reference(task)
    run = tmp_path / RUN
    shutil.copytree(ref.dir, run)
    before = _snapshot(run)
    for _ in range(2):
        done = _run(["train", task, "--out", str(run), "--resume", "--no-progress"], run)
        assert done.exitcode == 0, done.output
        assert "is a complete run" in done.output
        assert _snapshot(run) == before


# -- the full sweep (pytest -m slow) ---------------------------------------------------------------

def _report(name: str, row: dict) -> None:
    """Add a row to the sweep's table, kept in the JSON file FAULT_REPORT names (if set)."""
    path = os.environ.get("FAULT_REPORT")
    if path:
        table = json.loads(Path(path).read_text()) if Path(path).exists() else {}
        table[name] = row
        Path(path).write_text(json.dumps(table, indent=2) + "\n")


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_every_kill_point_resumes_exactly(reference, tmp_path, task):
    """Before and after every file operation of the run: the resumed run is exact, except at
    the points ``Reference.known_defect`` names, which must not be (they are reported bugs)."""
    ref = reference(task)
    inexact, unexpected, lost = {}, {}, []
    for call in ref.calls:
        for when in ("before", "after"):
            point = f"{when}-{call.n}-{call.op}-{call.path}"
            out = tmp_path / f"{call.n}-{when}" / RUN
            outcome = kill_at(ref, out, call.n, when)
            assert outcome.exitcode == KILL, point
            if outcome.resumed_from != expected_step(ref, ref.committed(call.n, when)):
                lost.append(point)
            if outcome.differences:
                inexact[point] = outcome.differences
            if bool(outcome.differences) != bool(ref.known_defect(call.n, when)):
                unexpected[point] = outcome.differences or "exact, but listed as a known defect"
            shutil.rmtree(out)
    _report(task, {"kill points": 2 * len(ref.calls), "exact": 2 * len(ref.calls) - len(inexact),
                   "not exact": inexact, "data lost": lost})
    assert lost == []
    assert unexpected == {}


@pytest.mark.slow
@pytest.mark.parametrize("task", TASKS)
def test_random_external_kills_resume_exactly(reference, tmp_path, task):
    ref = reference(task)
    rng = random.Random(f"{task}-sweep")
    hit, inexact = [], {}
    for i in range(6):
        outcome, calls = kill_from_outside(ref, tmp_path / f"run{i}" / RUN, rng)
        fate = "killed" if outcome.exitcode == KILL else f"ended ({outcome.exitcode}) before the kill"
        hit.append(f"{fate} after {len(calls)} of {len(ref.calls)} file operations ({outcome.how})")
        if not _kept_its_checkpoints(ref, outcome, calls):
            inexact[hit[-1]] = ["a committed checkpoint was lost"]
        if outcome.differences and not _known_after_outside_kill(ref, calls):
            inexact[hit[-1]] = outcome.differences
    _report(f"{task} external", {"kills": hit, "not exact": inexact})
    assert inexact == {}


@pytest.mark.slow
def test_a_forked_run_equals_a_plain_python_m_rnnkit_run(reference, tmp_path):
    """The fork server's children write what a fresh interpreter writes."""
    ref = reference("digits")
    out = tmp_path / "plain" / RUN
    done = subprocess.run([sys.executable, "-m", "rnnkit", *ref.argv, "--out", str(out)], capture_output=True,
                          text=True, timeout=600, env={**os.environ, "OMP_NUM_THREADS": "1"})
    assert done.returncode == 0, done.stderr
    assert differences(ref.dir, out) == []
