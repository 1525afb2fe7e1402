"""Every escape issue 13 measured, one test each: a bad file now gives the reader's one-line
ValueError naming the file (and the line where there is one), and the limits hold.

The limits (sizes, nesting, header dimensions, audio length) are checked before anything large
is allocated; `tests/data/test_fuzz_readers.py` mutates valid files at random on top of these.
"""
import gzip
import json
import re
import struct
import time
import tracemalloc

import numpy as np
import pytest

from rnnkit.data.datasets.idx import MAX_IDX_BYTES, read_idx, read_idx_folder
from rnnkit.data.datasets.ner import read_conll
from rnnkit.data.datasets.numbers import read_parallel_tsv
from rnnkit.data.datasets.reviews import MAX_JSON_DEPTH, read_text_table
from rnnkit.data.datasets.series import read_csv_series
from rnnkit.data.datasets.shakespeare import MAX_TEXT_BYTES, read_plays, read_text_file, strip_markdown


def refused(call, reader, path, words=""):
    """Run ``call``; it must raise the reader's one-line ValueError naming ``path`` and matching ``words``."""
    with pytest.raises(ValueError) as info:
        call()
    message = str(info.value)
    assert "\n" not in message, message
    assert message.startswith(f"{reader}: "), message
    assert str(path) in message, message
    assert re.search(words, message), message
    return message


def idx_bytes(array: np.ndarray) -> bytes:
    codes = {np.uint8: 0x08, np.int8: 0x09, np.int16: 0x0B, np.int32: 0x0C, np.float32: 0x0D, np.float64: 0x0E}
    header = bytes([0, 0, codes[array.dtype.type], array.ndim]) + b"".join(struct.pack(">I", n) for n in array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


def sparse_file(path, size):
    """A file of ``size`` bytes that takes no disk space (a hole): its size alone must refuse it."""
    with open(path, "wb") as f:
        f.truncate(size)
    return path


IMAGES = np.arange(3 * 4 * 4, dtype=np.uint8).reshape(3, 4, 4)


# -- read_idx ------------------------------------------------------------------------------------------

def test_idx_corrupt_truncated_and_fake_gzip_are_refused(tmp_path):
    good = gzip.compress(idx_bytes(IMAGES), mtime=0)
    corrupt = tmp_path / "corrupt-images.gz"  # was zlib.error
    corrupt.write_bytes(good[:12] + bytes(b ^ 0x5A for b in good[12:30]) + good[30:])
    refused(lambda: read_idx(corrupt), "read_idx", corrupt, "is not a readable gzip file")
    cut = tmp_path / "cut-images.gz"  # was EOFError
    cut.write_bytes(good[: len(good) // 2])
    refused(lambda: read_idx(cut), "read_idx", cut, "is not a readable gzip file")
    fake = tmp_path / "fake-images.gz"  # was gzip.BadGzipFile
    fake.write_bytes(idx_bytes(IMAGES))
    refused(lambda: read_idx(fake), "read_idx", fake, r"is not a readable gzip file \(Not a gzipped file")
    refused(lambda: read_idx(tmp_path / "none.gz"), "read_idx", tmp_path / "none.gz", "does not exist")


@pytest.mark.parametrize("gz", [False, True])
def test_idx_header_beyond_the_limits_is_refused_before_allocating(tmp_path, gz):
    path = tmp_path / ("huge-images.gz" if gz else "huge-images")
    huge = bytes([0, 0, 0x0E, 3]) + struct.pack(">3I", 0xFFFFFFFF, 0xFFFFFFFF, 0xFFFFFFFF) + b"\0" * 64
    path.write_bytes(gzip.compress(huge) if gz else huge)
    tracemalloc.start()
    try:
        refused(lambda: read_idx(path), "read_idx", path, f"more than the {MAX_IDX_BYTES:,}-byte limit")
        assert tracemalloc.get_traced_memory()[1] < 1 << 20  # nothing near the declared size was allocated
    finally:
        tracemalloc.stop()
    many = tmp_path / "many-dims"  # numpy would stop at 32 (64) dimensions with its own message
    many.write_bytes(bytes([0, 0, 0x08, 40]) + struct.pack(">40I", *[1] * 40) + b"\1")
    refused(lambda: read_idx(many), "read_idx", many, "declares 40 dimensions, at most 8")


def test_idx_gzip_decompresses_no_more_than_the_header_declares(tmp_path):
    """A small header followed by 64 MB of zeros (a decompression bomb): refused after 49 bytes."""
    bomb = tmp_path / "bomb-images.gz"
    bomb.write_bytes(gzip.compress(idx_bytes(IMAGES) + bytes(64 << 20), compresslevel=1))
    tracemalloc.start()
    try:
        refused(lambda: read_idx(bomb), "read_idx", bomb, r"holds more than 48 data bytes, its header \(3, 4, 4\)")
        assert tracemalloc.get_traced_memory()[1] < 4 << 20
    finally:
        tracemalloc.stop()


def test_idx_trailing_and_missing_bytes_and_short_headers(tmp_path):
    long = tmp_path / "long-images"
    long.write_bytes(idx_bytes(IMAGES) + b"\0")
    refused(lambda: read_idx(long), "read_idx", long, r"holds 49 data bytes, its header \(3, 4, 4\) needs 48")
    short = tmp_path / "short-header"
    short.write_bytes(bytes([0, 0, 0x08, 3]) + b"\0\0\0\3")
    refused(lambda: read_idx(short), "read_idx", short, "ends inside its header")


def write_pair(folder, images: np.ndarray, labels: np.ndarray):
    folder.mkdir(exist_ok=True)
    (folder / "train-images-idx3-ubyte").write_bytes(idx_bytes(images))
    (folder / "train-labels-idx1-ubyte").write_bytes(idx_bytes(labels))
    return folder / "train-images-idx3-ubyte", folder / "train-labels-idx1-ubyte"


@pytest.mark.parametrize("images, labels, which, words", [
    (np.array([[[0.5, np.nan]]] * 2, np.float32), np.array([0, 1], np.uint8), 0, "image 0 holds a NaN or infinite"),
    (np.array([[[0.5, np.inf]]] * 2, np.float64), np.array([0, 1], np.uint8), 0, "image 0 holds a NaN or infinite"),
    (IMAGES, np.array([0, 1.5, 2], np.float32), 1, "labels must be an integer IDX type .* got float32"),
    (IMAGES, np.array([0, -3, 2], np.int8), 1, "label 1 is -3, labels must be >= 0"),
    (IMAGES[:0], np.zeros(0, np.uint8), 0, r"do not pair up .* N, rows, cols >= 1"),
])
def test_idx_folder_refuses_nan_pixels_and_bad_labels(tmp_path, images, labels, which, words):
    paths = write_pair(tmp_path / "idx", images, labels)
    refused(lambda: read_idx_folder(tmp_path / "idx"), "read_idx_folder", paths[which], words)


def test_idx_folder_checks_labels_against_the_class_count(tmp_path):
    _, labels = write_pair(tmp_path / "idx", IMAGES, np.array([0, 99, 2], np.uint8))  # was IndexError: Target 99
    assert read_idx_folder(tmp_path / "idx")["train"][1].tolist() == [0, 99, 2]  # no class count: any label >= 0
    refused(lambda: read_idx_folder(tmp_path / "idx", num_classes=10), "read_idx_folder", labels,
            r"label 1 is 99, labels must be in 0..9")


# -- read_text_table (CSV / TSV / JSONL) -------------------------------------------------------------

@pytest.mark.parametrize("suffix", [".csv", ".tsv"])
def test_table_field_over_the_csv_limit_names_its_line(tmp_path, suffix):
    sep = "," if suffix == ".csv" else "\t"
    path = tmp_path / f"long{suffix}"  # was _csv.Error
    path.write_text(f"text{sep}label\nshort{sep}pos\n\n{'x' * 131_073}{sep}neg\n", encoding="utf-8")
    refused(lambda: read_text_table(path), "read_text_table", path,
            "line 4: a field is longer than 131,072 characters, the CSV field size limit")


def test_table_deep_json_is_refused_before_parsing(tmp_path):
    path = tmp_path / "deep.jsonl"  # was RecursionError
    path.write_text('{"text": "a", "label": 1}\n{"text": "b", "label": 2, "x": ' + "[" * 100_000 + "\n")
    refused(lambda: read_text_table(path), "read_text_table", path,
            f"line 2: JSON nested deeper than {MAX_JSON_DEPTH} arrays/objects")
    deep_ok = tmp_path / "ok.jsonl"  # nesting up to the limit is read; brackets inside strings do not count
    nested = "[" * (MAX_JSON_DEPTH - 1) + "]" * (MAX_JSON_DEPTH - 1)
    deep_ok.write_text(json.dumps({"text": "[[[[\\\"", "label": "y"})[:-1] + f', "x": {nested}}}\n')
    assert read_text_table(deep_ok) == (["[[[[\\\""], ["y"])


def test_table_json_numbers_beyond_python_limits_name_the_line(tmp_path):
    path = tmp_path / "big.jsonl"  # was a ValueError without the reader's name or the file
    path.write_text('{"text": "a", "label": ' + "9" * 5000 + "}\n")
    refused(lambda: read_text_table(path), "read_text_table", path, r"line 1: not valid JSON \(Exceeds the limit")
    nan = tmp_path / "nan.jsonl"
    nan.write_text('{"text": "a", "label": NaN}\n')
    refused(lambda: read_text_table(nan), "read_text_table", nan, "line 1: label column 'label' must be a string "
            "or an integer, got float")


def test_table_encoding_and_size(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"text,label\nok,pos\ncaf\xe9,neg\n")
    refused(lambda: read_text_table(path), "read_text_table", path, "is not UTF-8 text .* at byte 21, line 3")
    huge = sparse_file(tmp_path / "huge.csv", MAX_TEXT_BYTES + 1)
    refused(lambda: read_text_table(huge), "read_text_table", huge, f"more than the {MAX_TEXT_BYTES:,}-byte limit")


def test_table_messages_stay_one_line_with_odd_headers(tmp_path):
    path = tmp_path / "odd.csv"
    path.write_text('"multi\nline ' + "y" * 500 + '",label\na,b\n')
    message = refused(lambda: read_text_table(path), "read_text_table", path, "text_column 'text' is not a column")
    assert len(message) < 400


# -- read_csv_series ------------------------------------------------------------------------------------

def test_series_field_over_the_csv_limit_names_its_line(tmp_path):
    path = tmp_path / "s.csv"  # was _csv.Error
    path.write_text("month,value\n2020-01,1\n2020-02," + "9" * 131_073 + "\n")
    refused(lambda: read_csv_series(path, "value"), "read_csv_series", path,
            "line 3: a field is longer than 131,072 characters")


@pytest.mark.parametrize("cell", ["nan", "inf", "-Infinity", "1e999", "", "one"])
def test_series_refuses_non_finite_cells(tmp_path, cell):
    path = tmp_path / "s.csv"
    path.write_text(f"value\n1\n{cell}\n" if cell else "value,b\n1,2\n,3\n")
    refused(lambda: read_csv_series(path, "value"), "read_csv_series", path,
            "line 3: column 'value' must hold a finite")


def test_series_encoding_size_and_odd_headers(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes(b"value\n1\n\xe9\n")
    refused(lambda: read_csv_series(path), "read_csv_series", path, "is not UTF-8 text .* line 3")
    huge = sparse_file(tmp_path / "huge.csv", MAX_TEXT_BYTES + 1)
    refused(lambda: read_csv_series(huge), "read_csv_series", huge, "byte limit")
    odd = tmp_path / "odd.csv"
    odd.write_text('"a\nb",c\n1,2\n')
    refused(lambda: read_csv_series(odd, "value"), "read_csv_series", odd, r"its columns: a\\nb, c")


# -- read_conll, read_parallel_tsv -----------------------------------------------------------------------

def test_conll_encoding_size_and_long_lines(tmp_path):
    path = tmp_path / "latin1.conll"
    path.write_bytes(b"Paris B-LOC\n\nZ\xfcrich B-LOC\n")
    refused(lambda: read_conll(path), "read_conll", path, "is not UTF-8 text .* line 3")
    huge = sparse_file(tmp_path / "huge.conll", MAX_TEXT_BYTES + 1)
    refused(lambda: read_conll(huge), "read_conll", huge, "byte limit")
    long = tmp_path / "long.conll"
    long.write_text("Paris B-LOC\n" + "x" * 200_000 + " NOTATAG\n")
    message = refused(lambda: read_conll(long), "read_conll", long, "line 2: the last column must be")
    assert len(message) < 400


def test_parallel_tsv_encoding_and_size(tmp_path):
    path = tmp_path / "latin1.tsv"
    path.write_bytes(b"one\tun\r\ncaf\xe9\tcaf\xe9\n")
    refused(lambda: read_parallel_tsv(path), "read_parallel_tsv", path, "is not UTF-8 text .* line 2")
    huge = sparse_file(tmp_path / "huge.tsv", MAX_TEXT_BYTES + 1)
    refused(lambda: read_parallel_tsv(huge), "read_parallel_tsv", huge, "byte limit")


# -- read_plays, read_text_file ----------------------------------------------------------------------------

def test_plays_refuse_non_utf8_files_and_strip_long_emphasis_runs_fast(tmp_path):
    (tmp_path / "comedies").mkdir()
    play = tmp_path / "comedies" / "a.md"
    play.write_bytes(b"**ROMEO**\nBut soft\n\xff\n")  # was UnicodeDecodeError
    refused(lambda: read_plays(tmp_path), "read_plays", play, "is not UTF-8 text .* line 3")
    refused(lambda: read_plays(tmp_path / "comedies" / "none"), "read_plays", tmp_path / "comedies" / "none",
            "no .md plays")
    start = time.monotonic()  # a regex took quadratic time on a run of '*' inside a line (a hang)
    assert strip_markdown("*" * 200_000 + "x" + "_" * 10 + "\n_Exit_\n") == "x\nExit\n"
    assert time.monotonic() - start < 1.0


def test_read_text_file(tmp_path):
    path = tmp_path / "t.txt"
    path.write_bytes(b"to be\r\nor not\rto be\n")
    assert read_text_file(path) == "to be\nor not\nto be\n"
    path.write_bytes(b"ok\n\xc3(\n")
    refused(lambda: read_text_file(path), "read_text_file", path, "is not UTF-8 text .* at byte 3, line 2")
    refused(lambda: read_text_file(tmp_path / "none.txt"), "read_text_file", tmp_path / "none.txt", "is not a file")
    huge = sparse_file(tmp_path / "huge.txt", MAX_TEXT_BYTES + 1)
    refused(lambda: read_text_file(huge), "read_text_file", huge, "byte limit")
    refused(lambda: read_text_file(tmp_path), "read_text_file", tmp_path, "is not a file")


# -- read_audio ----------------------------------------------------------------------------------------------

def wav(path, samples, rate=8000, subtype="FLOAT"):
    sf = pytest.importorskip("soundfile", reason="reading audio needs soundfile")
    sf.write(path, samples, rate, subtype=subtype)
    return path


@pytest.mark.parametrize("bad, words", [
    (np.nan, "sample 100 is nan"), (np.inf, "sample 100 is inf"), (-np.inf, "sample 100 is -inf"),
    (3e38, "a sample of magnitude 3e\\+38, beyond \\+-1000"),
])
def test_audio_with_nan_inf_or_absurd_float_samples_is_refused(tmp_path, bad, words):
    sd = pytest.importorskip("rnnkit.data.datasets.spoken_digits")
    samples = np.zeros(400, np.float32)
    samples[100] = bad  # was librosa ParameterError ("Audio buffer is not finite everywhere")
    path = wav(tmp_path / "bad.wav", samples)
    refused(lambda: sd.read_audio(path), "read_audio", path, words)


def test_audio_limits_on_rate_length_and_samples(tmp_path, monkeypatch):
    sd = pytest.importorskip("rnnkit.data.datasets.spoken_digits")
    slow = wav(tmp_path / "slow.wav", np.zeros(100, np.float32), rate=100)
    refused(lambda: sd.read_audio(slow), "read_audio", slow, "sample rate of 100 Hz, expected 1000 to 384000 Hz")
    long = wav(tmp_path / "long.wav", np.zeros(1000 * 601, np.int16), rate=1000, subtype="PCM_16")
    refused(lambda: sd.read_audio(long), "read_audio", long,
            r"601,000 frames .* \(601.0 s\), more than the limits of 600 s")
    monkeypatch.setattr(sd, "MAX_AUDIO_SAMPLES", 1000)
    wide = wav(tmp_path / "wide.wav", np.zeros((600, 2), np.float32))
    refused(lambda: sd.read_audio(wide), "read_audio", wide, "600 frames of 2 channels .* 1,000 samples")


@pytest.mark.filterwarnings("ignore:n_fft=400 is too large")
def test_audio_that_is_read_gives_features(tmp_path):
    """Anything read_audio accepts, however short or loud, goes through the features without error."""
    sd = pytest.importorskip("rnnkit.data.datasets.spoken_digits")
    pytest.importorskip("librosa", reason="the speech features need librosa")
    for k, samples in enumerate([np.full(1, 0.5, np.float32), np.full(300, -1000.0, np.float32)]):
        audio, rate = sd.read_audio(wav(tmp_path / f"ok{k}.wav", samples, rate=44100))
        feats = sd.audio_features(audio, rate, 40)  # (T, 40)
        assert feats.shape[1] == 40 and len(feats) >= 1 and np.isfinite(feats).all()
