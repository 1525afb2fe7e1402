"""Fuzzing every data reader: whatever the bytes, a reader returns data or raises its one-line error.

Each case starts from a small valid file, applies one to three random mutations (byte flips,
truncation, inserted random bytes, a big-endian uint32 such as a huge IDX dimension, a NaN/inf
float32 over the samples of a WAV, huge numbers and NaN strings, long runs such as a 140,000-char
field or 100,000 opening brackets) and calls the reader. The only exception allowed out is
``ValueError`` whose message is one line, starts with the reader's name and names the file (the
project's error, issue 13); a traceback of zlib, gzip, csv, json, soundfile or librosa fails.

Each example must finish within the deadline (2 s; a hard alarm at 20 s stops a hang), and runs
under an address-space limit (``RLIMIT_AS``: the process's size when the test starts plus 3 GiB,
restored afterwards), so a reader that believes an absurd header and allocates for it fails with
``MemoryError`` instead of swapping the machine. (The limit leaves torch alone: it is set after
torch is loaded and only caps what is mapped next.)

CI runs ``CI_EXAMPLES`` per reader, derandomised (the same inputs every run); ``pytest -m slow``
runs ``SLOW_EXAMPLES`` per reader with fresh random inputs.
"""
from __future__ import annotations

import gzip
import io
import resource
import signal
import struct
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis", reason="the fuzz tests need hypothesis (pip install -e '.[test]')")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from rnnkit.data.datasets.idx import read_idx, read_idx_folder  # noqa: E402
from rnnkit.data.datasets.ner import read_conll  # noqa: E402
from rnnkit.data.datasets.numbers import read_parallel_tsv  # noqa: E402
from rnnkit.data.datasets.reviews import read_text_table  # noqa: E402
from rnnkit.data.datasets.series import read_csv_series  # noqa: E402
from rnnkit.data.datasets.shakespeare import read_plays, read_text_file  # noqa: E402

CI_EXAMPLES = 25  # per reader: 375 in all, about 15 s on two cores
SLOW_EXAMPLES = 2000  # per reader, with -m slow
DEADLINE_MS = 2000  # per example
HANG_S = 20  # a hard stop for an example that never returns
MEMORY_HEADROOM = 3 << 30  # bytes the process may map on top of what it holds when a fuzz test starts

# A truncated recording is shorter than one 25 ms window: librosa warns, and the features are still made.
pytestmark = pytest.mark.filterwarnings("ignore:n_fft=400 is too large")


# -- the valid files the mutations start from ------------------------------------------------------

def _idx(array: np.ndarray) -> bytes:
    codes = {np.uint8: 0x08, np.int16: 0x0B, np.float32: 0x0D}
    header = bytes([0, 0, codes[array.dtype.type], array.ndim]) + b"".join(struct.pack(">I", n) for n in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


IMAGES = _idx(np.arange(3 * 4 * 4, dtype=np.uint8).reshape(3, 4, 4))  # 3 images of 4x4
LABELS = _idx(np.array([0, 1, 2], dtype=np.uint8))
FLOAT_IMAGES = _idx(np.linspace(0, 1, 3 * 4 * 4, dtype=np.float32).reshape(3, 4, 4))
REVIEWS_CSV = b'text,label\nnice one,pos\n"quoted, ""text""\nover two lines",neg\n\nawful,neg\n'
REVIEWS_JSONL = b'{"text": "nice", "label": 1}\n\n{"text": "bad", "label": "neg", "extra": [1, {"a": null}]}\n'
SERIES_CSV = b"month,value\n2020-01,1.5\n2020-02,2\n2020-03,-3e2\n2020-04,7\n"
CONLL = b"-DOCSTART- -X- O\n\nTeddy NNP B-PER\nRoosevelt NNP I-PER\nwas VBD O\n\nParis NNP S-LOC\n"
PARALLEL = b"one\tun\ntwo\tdeux\n\nthree hundred\ttrois cents\n"
PLAY = b"# Act 1\n\n**ROMEO**\nBut soft, what light  \n_Enter Juliet_\n"


def _wav(subtype: str) -> bytes:
    import soundfile as sf

    t = np.arange(400) / 8000
    buffer = io.BytesIO()
    sf.write(buffer, (0.5 * np.sin(2 * np.pi * 440 * t)).astype(np.float32), 8000, format="WAV", subtype=subtype)
    return buffer.getvalue()


# -- the readers under test ------------------------------------------------------------------------

@dataclass(frozen=True)
class Case:
    """A reader fed a mutated copy of ``valid`` (``encode`` is applied after mutating, e.g. gzip)."""

    reader: str  # the name its errors start with ("read_idx: ...")
    filename: str
    valid: Callable[[], bytes]
    read: Callable[[Path], object]
    encode: Callable[[bytes], bytes] = bytes
    siblings: tuple[tuple[str, bytes], ...] = ()  # valid files written beside it (an IDX folder's other half)
    folder: bool = False  # the reader is given the folder that holds the file
    prefixes: tuple[str, ...] = ()  # other readers whose errors may come out (read_idx inside read_idx_folder)


def _read_audio_and_features(path: Path) -> None:
    from rnnkit.data.datasets import spoken_digits as sd

    audio, rate = sd.read_audio(path)
    sd.audio_features(audio, rate, 40)  # what the speech task does with it: must not raise either


def _read_idx_folder_and_check(folder: Path) -> None:
    """What a folder gives must be usable as it is: finite pixels, integer labels >= 0."""
    for x, y in read_idx_folder(folder).values():
        assert np.isfinite(x).all() and y.dtype.kind in "iu" and (y >= 0).all(), "read_idx_folder accepted bad values"


def _gzip(data: bytes) -> bytes:
    return gzip.compress(data, mtime=0)


CASES = [
    Case("read_idx", "train-images-idx3-ubyte", lambda: IMAGES, read_idx),
    Case("read_idx", "train-images-idx3-ubyte.gz", lambda: _gzip(IMAGES), read_idx),  # the compressed bytes
    Case("read_idx", "train-images-idx3-ubyte.gz", lambda: IMAGES, read_idx, encode=_gzip),  # the content
    Case("read_idx_folder", "train-labels-idx1-ubyte", lambda: LABELS, _read_idx_folder_and_check,
         siblings=(("train-images-idx3-ubyte", IMAGES),), folder=True, prefixes=("read_idx",)),
    Case("read_idx_folder", "train-images-idx3-ubyte", lambda: FLOAT_IMAGES, _read_idx_folder_and_check,
         siblings=(("train-labels-idx1-ubyte", LABELS),), folder=True, prefixes=("read_idx",)),
    Case("read_text_table", "reviews.csv", lambda: REVIEWS_CSV, read_text_table),
    Case("read_text_table", "reviews.tsv", lambda: REVIEWS_CSV.replace(b",", b"\t"), read_text_table),
    Case("read_text_table", "reviews.jsonl", lambda: REVIEWS_JSONL, read_text_table),
    Case("read_csv_series", "series.csv", lambda: SERIES_CSV, lambda p: read_csv_series(p, "value", "month")),
    Case("read_conll", "ner.conll", lambda: CONLL, read_conll),
    Case("read_parallel_tsv", "pairs.tsv", lambda: PARALLEL, read_parallel_tsv),
    Case("read_audio", "pcm16.wav", lambda: _wav("PCM_16"), _read_audio_and_features),
    Case("read_audio", "float.wav", lambda: _wav("FLOAT"), _read_audio_and_features),
    Case("read_plays", "play.md", lambda: PLAY, read_plays, folder=True),
    Case("read_text_file", "text.txt", lambda: PLAY, read_text_file),
]
IDS = [f"{c.reader}-{c.filename}" + ("-content" if c.encode is not bytes else "") for c in CASES]


# -- mutations --------------------------------------------------------------------------------------

SPECIALS = [b"nan", b"NaN", b"-nan", b"inf", b"-Infinity", b"1e999", b"-1e308", b"9" * 400, b"4294967295",
            b"18446744073709551616", b"-1", b"0", b"99", b"1.5", b"0x10", b"", b"\x00", b"\xff\xfe", b"\xc3",
            b'"', b"'", b"\n", b"\r", b"\r\n", b"\t", b",", b" ", b"[", b"]", b"{", b"}", b":", b"O", b"B-",
            b"-DOCSTART-", b"\xe2\x80\xa8", b'{"text": 1}', b"null", b"true", b"1" * 5000]
RUNS = [b"x", b"9", b"[", b'{"a":', b"[[", b"\n", b'"', b"\x00", b"a\t", b"a,", b" ", b"\xff", b"*", b"B-PER\n"]
UINT32S = [0, 1, 2, 255, 256, 0xFFFF, 1 << 24, 0x7FFFFFFF, 0xFFFFFFFF]

_position = st.integers(0, 1 << 20)  # taken modulo the current length + 1
mutation = st.one_of(
    st.tuples(st.just("flip"), _position, st.integers(1, 255)),
    st.tuples(st.just("truncate"), _position),
    st.tuples(st.just("insert"), _position, st.binary(max_size=32)),
    st.tuples(st.just("special"), _position, st.integers(0, 8), st.sampled_from(SPECIALS)),
    st.tuples(st.just("run"), _position, st.sampled_from(RUNS), st.sampled_from([2, 100, 1_000, 20_000, 140_000])),
    st.tuples(st.just("uint32"), _position, st.one_of(st.sampled_from(UINT32S), st.integers(0, 0xFFFFFFFF))),
    st.tuples(st.just("float"), _position, st.sampled_from([np.nan, np.inf, -np.inf, 3e38, -1e30, 1e6])),
)


def mutate(data: bytes, mutations) -> bytes:
    """``data`` with each mutation applied in turn (positions wrap around the current length)."""
    for m in mutations:
        kind, at = m[0], m[1] % (len(data) + 1)
        if kind == "flip" and data:
            at %= len(data)
            data = data[:at] + bytes([data[at] ^ m[2]]) + data[at + 1 :]
        elif kind == "truncate":
            data = data[:at]
        elif kind == "insert":
            data = data[:at] + m[2] + data[at:]
        elif kind == "special":
            data = data[:at] + m[3] + data[at + m[2] :]
        elif kind == "run":
            data = data[:at] + m[2] * m[3] + data[at:]
        elif kind == "uint32":  # overwrite 4 bytes (an IDX dimension, a WAV chunk size)
            data = data[:at] + struct.pack(">I", m[2]) + data[at + 4 :]
        elif kind == "float":  # overwrite 4 bytes with a little-endian float32 (a WAV sample)
            at -= at % 4
            data = data[:at] + struct.pack("<f", m[2]) + data[at + 4 :]
    return data


# -- guards: memory and hangs -----------------------------------------------------------------------

def _mapped_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[0]) * resource.getpagesize()


class Hang(Exception):
    pass


@pytest.fixture
def guarded():
    """An address-space limit and a hard alarm around a fuzz test (both restored afterwards)."""
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


def read_mutated(case: Case, folder: Path, mutations, hang_s: float = HANG_S) -> BaseException | None:
    """Write the mutated file (and its siblings) into ``folder``, read it; the exception that escaped, if any."""
    for name, data in case.siblings:
        (folder / name).write_bytes(data)
    path = folder / case.filename
    path.write_bytes(case.encode(mutate(case.valid(), mutations)))
    target = folder if case.folder else path
    signal.setitimer(signal.ITIMER_REAL, hang_s)
    try:
        case.read(target)
    except BaseException as e:  # noqa: BLE001 - every escape is what the test looks at
        return e
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
    return None


def check_escape(case: Case, target: Path, error: BaseException | None) -> None:
    """Fail unless ``error`` is None or the reader's one-line ValueError naming ``target``."""
    if error is None:
        return
    message = str(error)
    names = (case.reader,) + case.prefixes
    assert type(error) is ValueError, f"{type(error).__name__} escaped {case.reader}: {message[:300]}"
    assert "\n" not in message, f"{case.reader}: the message is not one line: {message[:300]!r}"
    assert message.startswith(tuple(f"{n}: " for n in names)), \
        f"{case.reader}: the message does not start with its name: {message[:300]}"
    assert str(target) in message, f"{case.reader}: the message does not name {target}: {message[:300]}"


def run_fuzz(case: Case, tmp_path: Path, max_examples: int, derandomize: bool) -> None:
    folders = iter(range(1 << 30))
    warm = tmp_path / "warm-up"  # the first read imports (librosa: seconds); not within an example's deadline
    warm.mkdir()
    assert read_mutated(case, warm, []) is None

    @settings(max_examples=max_examples, deadline=DEADLINE_MS, derandomize=derandomize, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.large_base_example])
    @given(mutations=st.lists(mutation, min_size=1, max_size=3))
    def fuzz(mutations):
        folder = tmp_path / f"case{next(folders)}"
        folder.mkdir()
        error = read_mutated(case, folder, mutations)
        check_escape(case, folder if case.folder else folder / case.filename, error)

    fuzz()
    examples = next(folders)
    assert examples >= max_examples, f"only {examples} examples ran for {case.reader}"  # (none was skipped)


# -- the tests ------------------------------------------------------------------------------------------

@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_valid_seed_files_are_read(case, tmp_path):
    """The files the mutations start from are valid: the fuzzing explores around real data."""
    assert read_mutated(case, tmp_path, []) is None


@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_mutated_files_raise_only_the_readers_error(case, tmp_path, guarded):
    run_fuzz(case, tmp_path, CI_EXAMPLES, derandomize=True)


@pytest.mark.slow
@pytest.mark.parametrize("case", CASES, ids=IDS)
def test_mutated_files_raise_only_the_readers_error_slow(case, tmp_path, guarded):
    run_fuzz(case, tmp_path, SLOW_EXAMPLES, derandomize=False)


def test_the_guards_catch_a_huge_allocation_and_a_hang(tmp_path, guarded):
    """The memory cap turns an absurd allocation into MemoryError, and the alarm stops a hang."""
    with pytest.raises(MemoryError):
        np.ones(MEMORY_HEADROOM * 2, dtype=np.uint8)
    hang = Case("read_text_file", "t.txt", lambda: b"x", lambda p: time.sleep(60))
    start = time.monotonic()
    assert isinstance(read_mutated(hang, tmp_path, [], hang_s=0.2), Hang) and time.monotonic() - start < 5
