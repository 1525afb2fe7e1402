"""Bach's four-part chorales as token sequences, and token sequences back to a music21 score.

The encoding (version ``ENCODING_VERSION``), in the style of DeepBach and the "JSB chorales":

- time runs on an **eighth-note grid** (``STEP`` = 0.5 quarter notes per step);
- at each step each of the four voices, soprano, alto, tenor, bass (the score's parts from
  top to bottom), has one token: a MIDI pitch (``"67"``) where a note starts on that step,
  the hold symbol ``"__"`` where the note before goes on sounding, or ``"R"`` for a rest;
- the steps are interleaved ``S A T B S A T B ...``: 4 tokens per eighth note, so a chorale of
  55 quarter notes (the corpus's mean) is 440 tokens.

Quantisation to the grid: a note starts on the step its onset falls in (``floor(offset /
STEP)``) and lasts until the step its end falls in (at least one step). Ties are merged into
one note first; a chord in a part (a MIDI file's doubled voice) keeps its highest pitch in
the soprano and alto, its lowest in the tenor and bass; grace notes are dropped. Where two
onsets fall in one step (a sixteenth note after a dotted eighth), the first one wins and the
second only holds it on. The corpus's chorales have few sixteenths (under 1% of the onsets),
so the eighth grid loses little and keeps the sequences short.

The data: the chorales of music21's bundled corpus (``music21.corpus.getComposer("bach")``,
433 files) that have exactly four parts (about 370; the others are harmonisations with
instruments or Roman-numeral analyses), parsed in the order of their file names.
Parsing them all takes a while, so :func:`load_bach_chorales` caches the encoded pieces as
JSON in ``$RNNKIT_CACHE/music/chorales-v<ENCODING_VERSION>.json`` (default root
``~/.cache/rnnkit``); a cache written by another music21 version is rebuilt.

music21 is imported only inside the functions that need it.
"""
from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
from pathlib import Path
from typing import NamedTuple, Sequence

__all__ = ["ENCODING_VERSION", "STEP", "VOICES", "HOLD", "REST", "MUSIC_SUFFIXES", "Chorale", "Note",
           "encode_score", "parse_music_file", "load_music_folder", "load_bach_chorales", "cache_root",
           "voice_notes", "decode_tokens", "key_tonic", "opening_chord"]

log = logging.getLogger(__name__)

ENCODING_VERSION = 1  # bump when the encoding changes: a new cache file
STEP = 0.5  # quarter notes per time step (an eighth note)
VOICES: tuple[str, ...] = ("soprano", "alto", "tenor", "bass")
HOLD = "__"  # the note before goes on sounding
REST = "R"
MUSIC_SUFFIXES = (".mxl", ".musicxml", ".xml", ".mid", ".midi")  # what load_music_folder reads
_MIDI_LOW, _MIDI_HIGH = 0, 127


class Chorale(NamedTuple):
    name: str  # the file name ("bwv104.6.mxl")
    tokens: list[str]  # 4 per step, S A T B interleaved: pitches ("67"), HOLD or REST


class Note(NamedTuple):
    start: int  # the step it starts on
    steps: int  # how many steps it lasts (>= 1)
    pitch: int  # MIDI pitch


# -- encoding -----------------------------------------------------------------------------------

def encode_score(score, where: str = "score") -> list[str]:
    """A four-part music21 score -> its tokens (see the module docstring); ValueError naming
    ``where`` when it does not have exactly 4 parts or holds no note."""
    parts = list(score.parts)
    if len(parts) != 4:
        raise ValueError(f"chorales: {where} has {len(parts)} parts, expected 4 (soprano, alto, tenor, bass)")
    voices = [_voice_events(part, upper=k < 2) for k, part in enumerate(parts)]
    end = max((offset + length for events in voices for offset, length, _ in events), default=0.0)
    T = math.ceil(end / STEP - 1e-6)  # steps
    if T == 0:
        raise ValueError(f"chorales: {where} holds no note")
    grids = [_grid(events, T) for events in voices]  # 4 x (T,)
    return [grids[v][t] for t in range(T) for v in range(4)]


def _voice_events(part, upper: bool) -> list[tuple[float, float, int]]:
    """(offset, length in quarter notes, MIDI pitch) of each note of a part, ties merged."""
    events = []
    for n in part.stripTies(inPlace=False).flatten().notes:
        length = float(n.quarterLength)
        if n.duration.isGrace or length <= 0:
            continue
        midis = [p.midi for p in n.pitches]
        events.append((float(n.offset), length, max(midis) if upper else min(midis)))
    return sorted(events, key=lambda e: e[0])


def _grid(events: list[tuple[float, float, int]], T: int) -> list[str]:
    """One voice's T tokens from its notes (onset steps win over holds; first onset wins)."""
    cells, onset = [REST] * T, [False] * T
    for offset, length, midi in events:
        s = int(math.floor(offset / STEP + 1e-6))
        e = min(max(int(math.floor((offset + length) / STEP + 1e-6)), s + 1), T)
        if s >= T:
            continue
        if not onset[s]:
            cells[s], onset[s] = str(midi), True
        for t in range(s + 1, e):
            if not onset[t]:
                cells[t] = HOLD
    return cells


def parse_music_file(path: str | os.PathLike) -> list[str]:
    """A MusicXML / MIDI file's tokens; ValueError naming the file when music21 cannot read it
    or it is not a four-part piece."""
    from music21 import converter

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"chorales: music file {path} does not exist")
    try:
        score = converter.parse(str(path), forceSource=True)
    except Exception as e:  # music21 raises many kinds of errors on a bad file
        raise ValueError(f"chorales: {path} is not a music file music21 can read "
                         f"({type(e).__name__}: {(str(e).splitlines() or [''])[0][:80]})") from None
    if not hasattr(score, "parts"):
        raise ValueError(f"chorales: {path} holds no score with parts, expected 4 (soprano, alto, tenor, bass)")
    return encode_score(score, str(path))


def load_music_folder(path: str | os.PathLike, cache_dir: str | os.PathLike | None = None) -> list[Chorale]:
    """Every usable four-part piece of a folder (its ``MUSIC_SUFFIXES`` files, sorted by name,
    not recursive) or of a single file. Files music21 cannot parse or without 4 parts are
    skipped (their count is logged); ValueError naming the folder when none is usable.

    The encoded pieces are cached (JSON, under ``cache_root()/folders``, or ``cache_dir``) by
    the sha256 of the files' names and bytes, so a folder is parsed once.
    """
    path = Path(path)
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in MUSIC_SUFFIXES)
    elif path.is_file():
        files = [path]
    else:
        raise ValueError(f"chorales: --data {path} is neither a music file nor a folder")
    digest = hashlib.sha256(f"encoding {ENCODING_VERSION} music21 {_music21_version()}".encode())
    for file in files:
        digest.update(file.name.encode() + b"\0" + hashlib.sha256(file.read_bytes()).digest())
    cache = (Path(cache_dir) if cache_dir else cache_root()) / "folders" / f"{digest.hexdigest()[:24]}.json"
    cached = _read_cache(cache)
    if cached is not None:
        pieces, skipped = cached
    else:
        pieces, skipped = [], []
        for file in files:
            try:
                pieces.append(Chorale(file.name, parse_music_file(file)))
            except ValueError as e:
                skipped.append(file.name)
                log.debug("skipped %s", e)
        _write_cache(cache, pieces, skipped)
    if skipped:
        log.warning("chorales: skipped %d of %d files in %s (unreadable or not four parts), e.g. %s",
                    len(skipped), len(files), path, skipped[0])
    if not pieces:
        raise ValueError(f"chorales: no usable four-part piece in {path} ({len(files)} MusicXML/MIDI files, "
                         f"{len(skipped)} unreadable or not four parts)")
    return pieces


# -- the corpus and its cache -----------------------------------------------------------------

def cache_root() -> Path:
    """``$RNNKIT_CACHE/music``, or ``~/.cache/rnnkit/music``."""
    base = os.environ.get("RNNKIT_CACHE")
    return (Path(base) if base else Path.home() / ".cache" / "rnnkit") / "music"


def load_bach_chorales(cache_dir: str | os.PathLike | None = None, limit: int = 0) -> list[Chorale]:
    """The four-part Bach chorales of music21's corpus, in file-name order, from the JSON cache
    (made on first use). ``limit > 0``: only the first ``limit`` corpus files are read (a
    small slice for tests, cached in a file of its own)."""
    from music21 import corpus

    root = Path(cache_dir) if cache_dir else cache_root()
    path = root / (f"chorales-v{ENCODING_VERSION}" + (f"-first{limit}" if limit else "") + ".json")
    cached = _read_cache(path)
    if cached is not None:
        return cached[0]
    files = sorted(corpus.getComposer("bach"), key=lambda p: Path(p).name)
    if limit:
        files = files[:limit]
    pieces, skipped = [], []
    for file in files:
        if Path(file).suffix.lower() not in MUSIC_SUFFIXES:  # Roman-numeral analyses, Humdrum
            skipped.append(Path(file).name)
            continue
        try:
            pieces.append(Chorale(Path(file).name, parse_music_file(file)))
        except ValueError:
            skipped.append(Path(file).name)
    log.info("chorales: %d four-part chorales of %d corpus files (%d skipped)", len(pieces), len(files), len(skipped))
    if not pieces:
        raise ValueError(f"chorales: no four-part chorale among music21's {len(files)} Bach files")
    _write_cache(path, pieces, skipped)
    return pieces


def _music21_version() -> str:
    import music21

    return music21.__version__


def _read_cache(path: Path) -> tuple[list[Chorale], list[str]] | None:
    """(pieces, skipped file names) from a cache file of this encoding and music21 version, or None."""
    if not path.is_file():
        return None
    try:
        cached = json.loads(path.read_text(encoding="utf-8"))
        if cached.get("music21") != _music21_version() or cached.get("encoding") != ENCODING_VERSION:
            return None
        return [Chorale(p["name"], p["tokens"]) for p in cached["pieces"]], list(cached["skipped"])
    except (ValueError, KeyError, TypeError, AttributeError):
        log.warning("chorales: cache %s is unreadable; parsing again", path)
        return None


def _write_cache(path: Path, pieces: list[Chorale], skipped: list[str]) -> None:
    """Write the cache atomically (complete or absent)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {"encoding": ENCODING_VERSION, "music21": _music21_version(), "step": STEP, "voices": list(VOICES),
               "skipped": skipped, "pieces": [{"name": p.name, "tokens": p.tokens} for p in pieces]}
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(payload, f, separators=(",", ":"))
        os.replace(tmp, path)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)


# -- decoding -----------------------------------------------------------------------------------

def voice_notes(tokens: Sequence[str]) -> list[list[Note]]:
    """The notes of each voice (S, A, T, B) of a token sequence (cut to whole steps).

    A pitch token starts a note, HOLD lengthens the note before (a HOLD after a rest or at
    the start rests on), anything else (REST, a special token) is a rest.
    """
    T = len(tokens) // 4
    out: list[list[Note]] = [[] for _ in range(4)]
    for v in range(4):
        current = None  # the sounding note, or None
        for t in range(T):
            token = tokens[4 * t + v]
            if token == HOLD and current is not None:
                current = current._replace(steps=current.steps + 1)
                continue
            if current is not None:
                out[v].append(current)
            current = None
            if token.isdigit() and _MIDI_LOW <= int(token) <= _MIDI_HIGH:
                current = Note(t, 1, int(token))
        if current is not None:
            out[v].append(current)
    return out


def decode_tokens(tokens: Sequence[str], title: str = "", time_signature: str = "4/4"):
    """A token sequence -> a four-part music21 ``Score`` (soprano, alto, tenor, bass; rests between
    notes), ready for ``score.write("midi", path)`` or ``"musicxml"``."""
    from music21 import clef, meter, metadata, note, stream, tempo

    score = stream.Score()
    if title:
        score.metadata = metadata.Metadata(title=title)
    T = len(tokens) // 4
    clefs = (clef.TrebleClef, clef.TrebleClef, clef.Treble8vbClef, clef.BassClef)
    for v, notes in enumerate(voice_notes(tokens)):
        part = stream.Part(id=VOICES[v])
        part.partName = VOICES[v].capitalize()
        part.insert(0, clefs[v]())
        part.insert(0, meter.TimeSignature(time_signature))
        if v == 0:
            part.insert(0, tempo.MetronomeMark(number=80))
        t = 0
        for n in notes:
            if n.start > t:
                part.append(note.Rest(quarterLength=(n.start - t) * STEP))
            part.append(note.Note(midi=n.pitch, quarterLength=n.steps * STEP))
            t = n.start + n.steps
        if t < T:
            part.append(note.Rest(quarterLength=(T - t) * STEP))
        score.insert(0, part)
    return score


# -- keys ---------------------------------------------------------------------------------------

_NATURAL = {"c": 0, "d": 2, "e": 4, "f": 5, "g": 7, "a": 9, "b": 11}


def key_tonic(key: str) -> tuple[int, str]:
    """``"G major"``, ``"e minor"``, ``"Bb"``, ``"f#"``, ``"B- major"`` -> (tonic pitch class 0-11,
    "major" | "minor").

    Without a mode, an upper-case tonic is major and a lower-case one minor (music21's habit).
    """
    words = key.split()
    if not words or not 1 <= len(words) <= 2:
        raise ValueError(f"chorales: key must be a tonic and a mode such as 'G major' or 'e minor', got {key!r}")
    tonic = words[0]
    mode = words[1].lower() if len(words) == 2 else ("major" if tonic[:1].isupper() else "minor")
    if tonic[:1].lower() not in _NATURAL or mode not in ("major", "minor") or \
            any(c not in "#b-" for c in tonic[1:]) or len(tonic) > 2:
        raise ValueError(f"chorales: key must be a tonic and a mode such as 'G major' or 'e minor', got {key!r}")
    shift = sum(1 if c == "#" else -1 for c in tonic[1:])
    return (_NATURAL[tonic[0].lower()] + shift) % 12, mode


def opening_chord(key: str) -> list[str]:
    """The tonic chord of ``key`` in root position, one step of S A T B tokens: the bass on the
    tonic between G2 and F#3, the tenor a fifth above it, the alto on the third an octave
    above, the soprano two octaves above the bass (C major: C5 E4 G3 C3)."""
    tonic, mode = key_tonic(key)
    bass = 43 + (tonic - 7) % 12  # G2 (43) .. F#3 (54)
    third = 4 if mode == "major" else 3
    return [str(bass + 24), str(bass + 12 + third), str(bass + 7), str(bass)]
