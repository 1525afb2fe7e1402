"""Labelled biological sequences: the StatLog splice-junction windows, and labelled FASTA files.

**The splice junctions** (``load_splice``): 3,186 windows of 60 nucleotides of primate DNA
(Genbank 64.1), each labelled ``ei`` (an exon/intron boundary, a donor site, in the middle),
``ie`` (an intron/exon boundary, an acceptor site) or ``n`` (neither). They come as R's
``mlbench`` package ships them (``data(DNA)``: the StatLog version by Ross King), in Debian's
``r-cran-mlbench``: ``DNA.rda``, read with the ``rdata`` package (no R needed). Its 180
columns ``V1..V180`` are StatLog's binary encoding, three per nucleotide; mlbench's
documentation (``man/DNA.Rd``) gives it as::

    A -> 1 0 0    C -> 0 1 0    G -> 0 0 1    T -> 0 0 0

and the data agree: decoded so, 759 of the 767 ``ei`` windows read ``GT`` at positions 31-32
(the donor consensus right after the junction) and 761 of the 765 ``ie`` windows read ``AG``
at positions 29-30 (the acceptor consensus right before it). ``decode_statlog_bits`` turns
the columns back into ``A/C/G/T`` strings.

**Getting DNA.rda** (``fetch_splice``): it is looked for in ``splice_cache_dir()``
(``$RNNKIT_CACHE/mlbench``, else ``~/.cache/rnnkit/mlbench``); when missing, it is fetched
with ``apt-get download r-cran-mlbench`` in a temporary folder and unpacked with
``dpkg-deb -x`` (about a second; no root needed). Where apt-get or dpkg-deb are missing or
fail, one ValueError says how to get the file. ``python -m rnnkit.data.datasets.splice``
runs the fetch and prints the file's path.

**FASTA files** (``read_fasta``): records of a header line and sequence lines::

    >seq1 label=ei
    CCAGCTGCATCACAGGAGGCCAGCGAGCAGGTCTGTTCCAAGGGCCTTCGAGCCAGTCTG
    >seq2|n
    GAGCCCAGGAAAGGG
    CTTTACAGC

The label is the value of a ``label=VALUE`` word of the header, else, when the header's
first word holds a ``|``, the part after its last ``|`` (``>seq2|n``: name ``seq2``, label ``n``). Sequence lines may
wrap; spaces are dropped and letters upper-cased; the symbols allowed are letters, ``*``
(a stop) and ``-`` / ``.`` (gaps), so DNA, RNA and protein files all read. Blank lines and
``;`` comment lines are skipped. Anything else (a sequence before the first header, a header
without a label, a record without a sequence, another symbol) raises ValueError naming the
file and the line.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import tempfile
import warnings
from pathlib import Path
from typing import NamedTuple

from ._files import read_text

__all__ = ["LabelledSequences", "SPLICE_CLASSES", "SPLICE_LENGTH", "STATLOG_CODES", "DEBIAN_PACKAGE",
           "RDA_IN_PACKAGE", "splice_cache_dir", "fetch_splice", "load_splice", "read_splice_rda",
           "decode_statlog_bits", "read_fasta", "parse_fasta", "FASTA_SYMBOLS"]

log = logging.getLogger(__name__)

SPLICE_CLASSES: tuple[str, ...] = ("ei", "ie", "n")  # exon/intron (donor), intron/exon (acceptor), neither
SPLICE_LENGTH = 60  # nucleotides per window: positions -30..-1 and +1..+30 around the (possible) junction
# StatLog's three indicator bits of each nucleotide (mlbench's man/DNA.Rd; checked in the module docstring)
STATLOG_CODES: dict[tuple[int, int, int], str] = {(1, 0, 0): "A", (0, 1, 0): "C", (0, 0, 1): "G", (0, 0, 0): "T"}
DEBIAN_PACKAGE = "r-cran-mlbench"
RDA_IN_PACKAGE = "usr/lib/R/site-library/mlbench/data/DNA.rda"  # where DNA.rda lies in the unpacked .deb
FASTA_SYMBOLS = re.compile(r"[A-Z*.\-]*")  # a sequence line, once spaces are dropped and letters upper-cased
_FETCH_TIMEOUT = 300  # seconds for each of apt-get download and dpkg-deb -x


class LabelledSequences(NamedTuple):
    """Sequences (upper-case strings) with one label each, and their names (FASTA ids, or row numbers)."""

    names: list[str]
    sequences: list[str]
    labels: list[str]


# -- the splice junctions ---------------------------------------------------------------------

def splice_cache_dir() -> Path:
    """``$RNNKIT_CACHE/mlbench``, or ``~/.cache/rnnkit/mlbench``: where ``DNA.rda`` is kept."""
    base = os.environ.get("RNNKIT_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "rnnkit") / "mlbench"


def _how_to_get(cache: Path, why: str) -> ValueError:
    return ValueError(
        f"splice: the splice-junction data (DNA.rda of R's mlbench) is not in {cache} and could not be fetched "
        f"({why}); on Debian/Ubuntu run `python -m rnnkit.data.datasets.splice` (it runs `apt-get download "
        f"{DEBIAN_PACKAGE}` and `dpkg-deb -x`), or copy mlbench's data/DNA.rda into {cache}, "
        "or train on your own labelled FASTA file with --data FILE.fasta")


def fetch_splice(cache_dir: str | os.PathLike | None = None) -> Path:
    """The path of ``DNA.rda`` in ``cache_dir`` (default ``splice_cache_dir()``), fetched when missing.

    The fetch runs ``apt-get download r-cran-mlbench`` in a temporary folder, then
    ``dpkg-deb -x`` on the package, and copies ``DNA.rda`` into the cache (written under a
    temporary name and renamed, so a reader never sees half a file). Raises ValueError, saying
    how to get the file, when apt-get or dpkg-deb are missing or fail.
    """
    cache = Path(cache_dir) if cache_dir else splice_cache_dir()
    path = cache / "DNA.rda"
    if path.is_file():
        return path
    apt, dpkg = shutil.which("apt-get"), shutil.which("dpkg-deb")
    if apt is None or dpkg is None:
        raise _how_to_get(cache, "this machine has no " + " and no ".join(
            name for name, found in (("apt-get", apt), ("dpkg-deb", dpkg)) if found is None))
    log.info("fetching %s with apt-get download into %s", DEBIAN_PACKAGE, cache)
    with tempfile.TemporaryDirectory(prefix="rnnkit-mlbench-") as tmp:
        _run([apt, "download", DEBIAN_PACKAGE], Path(tmp), cache)
        debs = sorted(Path(tmp).glob(f"{DEBIAN_PACKAGE}_*.deb"))
        if not debs:
            raise _how_to_get(cache, f"apt-get download left no {DEBIAN_PACKAGE}_*.deb")
        _run([dpkg, "-x", str(debs[-1]), str(Path(tmp) / "out")], Path(tmp), cache)
        found = Path(tmp) / "out" / RDA_IN_PACKAGE
        if not found.is_file():
            raise _how_to_get(cache, f"{debs[-1].name} holds no {RDA_IN_PACKAGE}")
        try:
            cache.mkdir(parents=True, exist_ok=True)
            partial = cache / f".DNA.rda.{os.getpid()}.partial"
            shutil.copyfile(found, partial)
            os.replace(partial, path)
        except OSError as e:
            raise _how_to_get(cache, f"cannot write there: {e.strerror or type(e).__name__}") from None
    return path


def _run(command: list[str], cwd: Path, cache: Path) -> None:
    """Run ``command`` (no shell) in ``cwd``; a failure becomes the how-to-get ValueError."""
    try:
        done = subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=_FETCH_TIMEOUT)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise _how_to_get(cache, f"`{Path(command[0]).name} {command[1]}` failed: {type(e).__name__}") from None
    if done.returncode != 0:
        last = (done.stderr.strip().splitlines() or [f"exit status {done.returncode}"])[-1][:200]
        raise _how_to_get(cache, f"`{Path(command[0]).name} {command[1]}` failed: {last}")


def load_splice(cache_dir: str | os.PathLike | None = None) -> LabelledSequences:
    """The 3,186 splice-junction windows (60 nucleotides, ``A/C/G/T``) and their classes (``SPLICE_CLASSES``),
    in the file's order; names are the 1-based row numbers. Fetches ``DNA.rda`` when missing (``fetch_splice``)."""
    return read_splice_rda(fetch_splice(cache_dir))


def read_splice_rda(path: str | os.PathLike) -> LabelledSequences:
    """mlbench's ``DNA.rda`` (a data frame ``DNA``: ``V1..V180`` factors of 0/1 and ``Class``), decoded.

    Needs the ``rdata`` package. Raises ValueError naming the file for a file that is not
    that data frame, and the row and position for bits that are no nucleotide.
    """
    path = Path(path)
    try:
        import rdata
    except ModuleNotFoundError:
        raise ValueError("read_splice_rda: reading DNA.rda needs the rdata package (pip install rdata), "
                         "or give a labelled FASTA file with --data") from None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # "Unknown encoding. Assumed ASCII." (the file's strings are ASCII)
            frames = rdata.read_rda(path)
    except Exception as e:  # a truncated or foreign file: the parser's own errors are many
        raise ValueError(f"read_splice_rda: {path} is not a readable R data file ({type(e).__name__}: "
                         f"{str(e)[:120]})") from None
    frame = frames.get("DNA")
    columns = [f"V{k}" for k in range(1, 3 * SPLICE_LENGTH + 1)] + ["Class"]
    if frame is None or not hasattr(frame, "columns") or [str(c) for c in frame.columns] != columns:
        raise ValueError(f"read_splice_rda: {path} must hold a data frame DNA with columns V1..V180 and Class, "
                         f"got {sorted(str(k) for k in frames)}")
    bits = [[int(str(v)) for v in frame[f"V{k}"]] for k in range(1, 3 * SPLICE_LENGTH + 1)]  # (180, N)
    rows = [list(r) for r in zip(*bits)]  # (N, 180)
    labels = [str(v) for v in frame["Class"]]
    unknown = sorted(set(labels) - set(SPLICE_CLASSES))
    if unknown:
        raise ValueError(f"read_splice_rda: {path}: Class must be one of {', '.join(SPLICE_CLASSES)}, got {unknown}")
    sequences = [decode_statlog_bits(row, f"{path} row {i + 1}") for i, row in enumerate(rows)]
    return LabelledSequences([str(i + 1) for i in range(len(rows))], sequences, labels)


def decode_statlog_bits(bits: list[int], where: str = "decode_statlog_bits") -> str:
    """StatLog's 3 indicator bits per nucleotide (``STATLOG_CODES``) -> an ``A/C/G/T`` string of len(bits) / 3.

    ValueError naming ``where`` and the position for a triple that is no nucleotide (two bits set).
    """
    if len(bits) % 3:
        raise ValueError(f"{where}: the bits must come in threes, got {len(bits)}")
    out = []
    for k in range(0, len(bits), 3):
        triple = tuple(bits[k:k + 3])
        if triple not in STATLOG_CODES:
            raise ValueError(f"{where}: position {k // 3 + 1} has bits {triple}, which is no nucleotide")
        out.append(STATLOG_CODES[triple])
    return "".join(out)


# -- FASTA ------------------------------------------------------------------------------------

def read_fasta(path: str | os.PathLike) -> LabelledSequences:
    """The labelled records of a FASTA file (the format is in the module docstring), in file order."""
    path = Path(path)
    return parse_fasta(read_text("read_fasta", path), str(path))


def parse_fasta(text: str, source: str = "<fasta>") -> LabelledSequences:
    """The labelled records of FASTA ``text``; errors name ``source`` and the line."""
    names, sequences, labels = [], [], []
    parts: list[str] = []
    header_line = 0

    def close() -> None:
        if header_line and not parts:
            raise ValueError(f"read_fasta: {source} line {header_line}: record {names[-1]!r} has no sequence")
        if header_line:
            sequences.append("".join(parts))

    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.strip()
        if not line or line.startswith(";"):
            continue
        if line.startswith(">"):
            close()
            name, label = _header(line[1:], source, number)
            names.append(name)
            labels.append(label)
            parts, header_line = [], number
            continue
        if not header_line:
            raise ValueError(f"read_fasta: {source} line {number}: a sequence line before the first >header")
        symbols = "".join(line.split()).upper()
        if not FASTA_SYMBOLS.fullmatch(symbols):
            bad = next(c for c in symbols if not FASTA_SYMBOLS.fullmatch(c))
            raise ValueError(f"read_fasta: {source} line {number}: symbol {bad!r} is not a letter, * or a gap (- .)")
        parts.append(symbols)
    close()
    if not names:
        raise ValueError(f"read_fasta: {source} holds no records (a record is a >header line and its sequence)")
    return LabelledSequences(names, sequences, labels)


def _header(header: str, source: str, number: int) -> tuple[str, str]:
    """(name, label) of a header line without its ``>``."""
    words = header.split()
    if not words:
        raise ValueError(f"read_fasta: {source} line {number}: an empty >header")
    name = words[0]
    tagged = [w[len("label="):] for w in words if w.startswith("label=")]
    if tagged:
        label = tagged[0]
    elif "|" in words[0]:
        name, label = words[0].rsplit("|", 1)
    else:
        raise ValueError(f"read_fasta: {source} line {number}: header {words[0][:40]!r} has no label; "
                         "write >id label=LABEL or >id|LABEL")
    if not label:
        raise ValueError(f"read_fasta: {source} line {number}: header {words[0][:40]!r} has an empty label")
    return name, label


if __name__ == "__main__":  # python -m rnnkit.data.datasets.splice: fetch DNA.rda into the cache
    import sys

    try:
        print(fetch_splice(sys.argv[1] if len(sys.argv) > 1 else None))
    except ValueError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(1)
