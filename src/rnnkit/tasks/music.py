"""music: a language model of Bach's four-part chorales that writes new ones (one-to-many).

Each chorale is a token sequence (``rnnkit.data.datasets.chorales``): an eighth-note grid on
which the four voices, soprano, alto, tenor and bass, each have a token per step, a MIDI pitch
where a note starts, ``__`` where it holds on, ``R`` for a rest, interleaved ``S A T B S A T
B ...``; ``<bos>`` begins every piece. The model (``LanguageModel``: embedding, stacked
recurrent layers, a softmax over the tokens) predicts each token from all those before it;
the metric is the negative log-likelihood per token in nats (``nll``).

Data: the ~365 four-part chorales of music21's corpus (or a folder of MusicXML/MIDI files with
``--data``), split by piece (seeded) into train / validation / test (``holdout`` each).
Training reads windows of ``window`` tokens (consecutive windows overlap by a quarter of a
window, whose loss is not counted again) and transposes each window by a random number of
semitones in ``[-max_shift, max_shift]`` (within the vocabulary's pitch range); validation and
test pieces are read whole, untransposed. The vocabulary holds every MIDI pitch from the
training pieces' lowest minus ``max_shift`` to their highest plus ``max_shift``.

Baseline (``baselines``): Witten-Bell interpolated n-grams (``char_ngram_loss``) on the same
tokens, counted on the training pieces in every transposition the model trains on, the order
picked on the validation pieces: ``baseline_<n>gram_test_nll``.

``rnnkit generate RUN --out chorale.mid`` samples a chorale (optionally from a key's tonic chord,
``--prime "G major"``, or the first bars of a test chorale, ``--prime-bars 2``) and writes it with
music21 (``.mid`` / ``.musicxml``), with a piano roll beside it (``chorale.png``).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

import numpy as np
import torch
import torch.nn.functional as F

from ..data import Vocab
from ..data.datasets.chorales import (HOLD, REST, STEP, VOICES, Chorale, decode_tokens, load_bach_chorales,
                                      load_music_folder, opening_chord, parse_music_file, voice_notes)
from ..export import ExportSpec, LanguageModelGraph
from ..models.language_model import LanguageModel, LanguageModelConfig, sample
from ..training import StepOutput, module_device
from ..training.runfiles import non_negative
from .base import IndexLoader, Task, TensorData, register, vocab_field
from .baselines import char_ngram_loss

__all__ = ["MusicTask", "MusicOptions", "MusicGenerateOptions", "MusicPredictOptions", "write_chorale", "piano_roll",
           "NGRAM_ORDERS", "STEPS_PER_BAR"]

SPECIALS = ("<pad>", "<unk>", "<bos>")
NGRAM_ORDERS = (5, 7, 9)  # the n-gram orders the baseline picks from on the validation pieces
STEPS_PER_BAR = int(4 / STEP)  # a bar of four quarter notes (generate's --bars, --prime-bars)
_WRITERS = {".mid": "midi", ".midi": "midi", ".musicxml": "musicxml", ".xml": "musicxml", ".mxl": "mxl"}


@dataclass
class MusicOptions:
    data: str = ""  # a folder of MusicXML/MIDI files (or one file); empty = music21's four-part Bach chorales
    embedding_dim: int = 64
    cell: str = "lstm"  # a name from rnnkit.models.CELLS
    hidden_size: int = 384
    num_layers: int = 1
    dropout: float = 0.2
    window: int = 128  # tokens per training window (4 per eighth-note step: 128 = 4 bars of 4/4)
    max_shift: int = 5  # transpose each training window by up to this many semitones either way (0 = never)
    holdout: float = 0.1  # fraction of the pieces for validation, and as many for test

    def __post_init__(self) -> None:
        owner = "MusicOptions"
        if not 0.0 < self.holdout < 0.34:
            raise ValueError(f"{owner}: holdout must be in (0, 0.34), got {self.holdout}")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"{owner}: dropout must be in [0, 1), got {self.dropout}")
        if self.window < 8 or self.window % 4:
            raise ValueError(f"{owner}: window must be a multiple of 4 that is >= 8, got {self.window}")
        if not 0 <= self.max_shift <= 12:
            raise ValueError(f"{owner}: max_shift must be in [0, 12] semitones, got {self.max_shift}")


@dataclass
class MusicGenerateOptions:
    """What ``rnnkit generate RUN`` (and ``rnnkit.load(RUN).generate``) takes."""

    prime: str = ""  # start on the tonic chord of a key: "G major", "e minor", "Bb" (empty: the model's choice)
    prime_bars: int = 0  # start from the first bars of a test chorale instead (0 = no)
    prime_piece: int = 0  # which test chorale --prime-bars takes its opening from (0 = the first)
    bars: int = 8  # bars of four quarter notes to sample after the prime
    temperature: float = 1.0  # divides the logits: below 1 safer music, above 1 wilder
    top_k: int = 0  # sample from the k likeliest tokens only (0 = all)
    out: str = field(default="", metadata={
        "help": "write the chorale to this .mid / .musicxml file (and a piano roll .png beside it)",
        "writes_file": True})  # a path on this machine: a server must not take it from a request

    def __post_init__(self) -> None:
        owner = "MusicGenerateOptions"
        if not isinstance(self.prime, str) or not isinstance(self.out, str):
            raise TypeError(f"{owner}: prime and out must be str, got {type(self.prime).__name__}, "
                            f"{type(self.out).__name__}")
        for name, low in (("prime_bars", 0), ("prime_piece", 0), ("bars", 1), ("top_k", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{owner}: {name} must be an integer >= {low}, got {value!r}")
        if not self.temperature > 0 or self.temperature == float("inf"):  # (NaN too)
            raise ValueError(f"{owner}: temperature must be a number > 0, got {self.temperature!r}")
        if self.prime and self.prime_bars:
            raise ValueError(f"{owner}: prime and prime_bars exclude each other, got prime={self.prime!r} "
                             f"and prime_bars={self.prime_bars}")
        if self.out and Path(self.out).suffix.lower() not in _WRITERS:
            raise ValueError(f"{owner}: out must end in {' | '.join(_WRITERS)}, got {self.out!r}")


@dataclass
class MusicPredictOptions:
    """``rnnkit predict RUN FILE...`` takes no options: each FILE is a four-part MusicXML/MIDI piece."""


@register
class MusicTask(Task):
    name = "music"
    description = "Bach chorale language model (four voices on an eighth-note grid); rnnkit generate writes a chorale"
    default_data = ("music21's four-part Bach chorales (~365 pieces, ~160 k tokens); a folder of MusicXML/MIDI "
                    "files with --data")
    metric, mode = "nll", "min"
    Options = MusicOptions
    PredictOptions = MusicPredictOptions
    GenerateOptions = MusicGenerateOptions
    export = ExportSpec(LanguageModelGraph, lengths=False)  # the state in and out: generate step by step
    meta_schema = {"vocab": vocab_field(3), "first_pitch": non_negative(int), "low": non_negative(int),
                   "high": non_negative(int), "test_pieces": [str]}
    # 25 epochs x ~88 batches: about 4-5 min on 2 idle cores; on a busy machine the time budget ends
    # training (and the cosine schedule with it) first
    train_defaults = {"epochs": 25, "batch_size": 16, "lr": 3e-3, "clip_norm": 1.0, "schedule": "cosine",
                      "max_minutes": 5.5, "log_every": 20}

    # -- data -------------------------------------------------------------------------------
    def _pieces(self) -> list[Chorale]:
        return load_music_folder(self.options.data) if self.options.data else load_bach_chorales()

    def prepare(self, seed: int) -> dict[str, TensorData]:
        pieces = self._pieces()
        n = len(pieces)
        n_hold = max(1, round(n * self.options.holdout))
        if n - 2 * n_hold < 1:
            raise ValueError(f"music: {n} pieces are too few to split into train/validation/test "
                             f"(holdout {self.options.holdout}: {n_hold} each for validation and test)")
        order = np.random.default_rng(seed).permutation(n)
        test = [pieces[i] for i in order[:n_hold]]
        val = [pieces[i] for i in order[n_hold : 2 * n_hold]]
        train = [pieces[i] for i in order[2 * n_hold :]]
        pitches = [int(t) for p in train for t in p.tokens if t.isdigit()]
        if not pitches:
            raise ValueError("music: the training pieces hold no note")
        shift = self.options.max_shift
        low, high = max(min(pitches) - shift, 0), min(max(pitches) + shift, 127)
        vocab = Vocab(tokens=[HOLD, REST] + [str(p) for p in range(low, high + 1)], specials=SPECIALS)
        self.meta = {"vocab": vocab.to_dict(), "first_pitch": len(SPECIALS) + 2, "low": low, "high": high,
                     "test_pieces": [p.name for p in test]}
        return {"train": self._windows(train), "val": self._whole(val), "test": self._whole(test)}

    def load_data(self, path: str) -> TensorData:
        return self._whole(load_music_folder(path))

    @property
    def vocab(self) -> Vocab:
        return Vocab.from_dict(self.meta["vocab"])

    def _ids(self, tokens: list[str]) -> list[int]:
        """``<bos>`` and the ids of a piece's tokens (``<unk>`` for a pitch outside the vocabulary)."""
        vocab = self.vocab
        return [vocab.bos_index] + vocab.encode(tokens)

    def _whole(self, pieces: list[Chorale]) -> TensorData:
        """Whole pieces, padded: ids (N, T_max + 1), lengths (N,) (tokens + 1 for <bos>); raw: the
        pieces' ids (for the baselines)."""
        rows = [self._ids(p.tokens) for p in pieces]
        ids = torch.zeros(len(rows), max(map(len, rows)), dtype=torch.long)  # (N, T + 1), pad = 0
        for i, row in enumerate(rows):
            ids[i, : len(row)] = torch.tensor(row)
        return TensorData({"ids": ids, "lengths": torch.tensor([len(r) for r in rows])}, raw=rows)

    def _windows(self, pieces: list[Chorale]) -> TensorData:
        """Windows of ``window + 1`` ids every ``3/4 window`` tokens; ``mask`` (N, window) marks the
        targets whose loss counts (not those the window before already counted, not padding)."""
        W = self.options.window
        burn = W // 16 * 4  # tokens the previous window already predicted: context only (a quarter, whole steps)
        stride = W - burn  # a multiple of 4: every window starts on the same voice
        ids_rows, mask_rows, rows = [], [], [self._ids(p.tokens) for p in pieces]
        for row in rows:
            for start in range(0, max(len(row) - 1 - burn, 1), stride):
                chunk = row[start : start + W + 1]
                mask = [start == 0 or j >= burn for j in range(len(chunk) - 1)]
                pad = W + 1 - len(chunk)
                ids_rows.append(chunk + [0] * pad)
                mask_rows.append(mask + [False] * pad)
        return TensorData({"ids": torch.tensor(ids_rows), "mask": torch.tensor(mask_rows)}, raw=rows)

    def loader(self, data: TensorData, batch_size: int, shuffle: bool, seed: int = 0, rank: int = 0, world: int = 1):
        return IndexLoader(data, batch_size, shuffle, seed, rank, world, collate=_trim)

    # -- model and loss ---------------------------------------------------------------------
    def build_model(self) -> LanguageModel:
        o = self.options
        return LanguageModel(LanguageModelConfig(vocab_size=len(self.vocab), embedding_dim=o.embedding_dim,
                                                 cell=o.cell, hidden_size=o.hidden_size, num_layers=o.num_layers,
                                                 dropout=o.dropout))

    def step(self, model, batch, state=None) -> StepOutput:
        ids = batch["ids"]  # (B, T + 1)
        if model.training and self.options.max_shift:
            ids = self._transpose(ids)
        x, y = ids[:, :-1], ids[:, 1:]  # (B, T) each
        mask = batch["mask"] if "mask" in batch else y != 0  # (B, T)
        logits, _ = model(x)  # (B, T, V)
        nll = F.cross_entropy(logits.reshape(-1, logits.shape[-1]).float(), y.reshape(-1), reduction="none")
        loss_sum = (nll.view_as(y) * mask).sum()
        return StepOutput(loss_sum, int(mask.sum()), {}, None)

    def _transpose(self, ids: torch.Tensor) -> torch.Tensor:
        """Each row (B, T + 1) shifted by its own random number of semitones in [-max_shift,
        max_shift], narrowed so that its pitches stay in the vocabulary's range."""
        first, top = self.meta["first_pitch"], self.meta["first_pitch"] + self.meta["high"] - self.meta["low"]
        is_pitch = ids >= first  # (B, T + 1)
        lowest = torch.where(is_pitch, ids, top + 1).min(1).values  # (B,)
        highest = torch.where(is_pitch, ids, first - 1).max(1).values  # (B,)
        s = self.options.max_shift
        down = torch.clamp(first - lowest, min=-s, max=0)  # most negative shift allowed
        up = torch.clamp(top - highest, min=0, max=s)
        u = torch.rand(len(ids)).to(ids.device)  # (B,), torch's global generator
        shift = down + (u * (up - down + 1)).long().clamp(max=(up - down))  # (B,)
        shift = torch.where(is_pitch.any(1), shift, 0)
        return torch.where(is_pitch, ids + shift[:, None], ids)

    def metrics(self, totals: dict) -> dict[str, float]:
        nll = totals["loss_sum"] / max(totals["count"], 1)
        return {"loss": nll, "nll": nll, "bits": nll / math.log(2)}

    # -- baselines --------------------------------------------------------------------------
    def baselines(self, splits) -> dict[str, dict[str, float]]:
        """One n-gram, its order picked from NGRAM_ORDERS on validation (see the module docstring)."""
        train = _stream(splits["train"], self.meta, self.options.max_shift)
        val, test = _stream(splits["val"]), _stream(splits["test"])
        V = len(self.vocab)
        order = min(NGRAM_ORDERS, key=lambda n: char_ngram_loss(train, val, V, n))
        nll = char_ngram_loss(train, test, V, order)
        return {f"{order}gram": {"nll": nll, "bits": nll / math.log(2)}}

    # -- using a trained model --------------------------------------------------------------
    def predict(self, model, inputs: list[str], options) -> list[dict]:
        """How well the model predicts each MusicXML/MIDI file: its NLL per token (nats)."""
        device = module_device(model)
        out = []
        for path in inputs:
            ids = torch.tensor([self._ids(parse_music_file(path))], device=device)  # (1, T + 1)
            with torch.no_grad():
                logits, _ = model(ids[:, :-1])  # (1, T, V)
                nll = F.cross_entropy(logits[0].float(), ids[0, 1:])
            out.append({"input": path, "nll_per_token": float(nll), "tokens": ids.shape[1] - 1,
                        "steps": (ids.shape[1] - 1) // 4})
        return out

    def generate(self, model, options: MusicGenerateOptions) -> Iterator[str]:
        """One line per step (``bar.eighth  S A T B``: note names, ``-`` holds, ``.`` rests) as the
        steps are sampled, after the prime's; then, with ``out``, the files written."""
        for k, line in enumerate(self._generate_lines(model, options)):
            yield line if k == 0 else "\n" + line  # (no newline at the end: the command line adds it)

    def _generate_lines(self, model, options: MusicGenerateOptions) -> Iterator[str]:
        vocab = self.vocab
        tokens = self._prime_tokens(options)
        for t in range(len(tokens) // 4):
            yield _step_line(t, tokens[4 * t : 4 * t + 4])
        step_tokens = []
        for i in sample(model, self._ids(tokens), options.bars * STEPS_PER_BAR * 4, options.temperature, options.top_k):
            step_tokens.append(vocab.itos[i] if i >= len(SPECIALS) else REST)  # a special token rests
            if len(step_tokens) == 4:
                yield _step_line(len(tokens) // 4, step_tokens)
                tokens, step_tokens = tokens + step_tokens, []
        if options.out:
            score_path, png = write_chorale(tokens, options.out)
            yield f"wrote {score_path} and {png}: {len(tokens) // 4} steps, {len(tokens)} tokens"

    def _prime_tokens(self, options: MusicGenerateOptions) -> list[str]:
        if options.prime:
            return opening_chord(options.prime)
        if not options.prime_bars:
            return []
        names = self.meta["test_pieces"]
        if options.prime_piece >= len(names):
            raise ValueError(f"music: prime_piece must be < {len(names)} (the run's test chorales), "
                             f"got {options.prime_piece}")
        piece = {p.name: p for p in self._pieces()}.get(names[options.prime_piece])
        if piece is None:
            raise ValueError(f"music: test chorale {names[options.prime_piece]} is not in the run's data any more")
        n = options.prime_bars * STEPS_PER_BAR * 4
        if n > len(piece.tokens):
            raise ValueError(f"music: prime_bars must be <= {len(piece.tokens) // (4 * STEPS_PER_BAR)} "
                             f"(the length of {piece.name}), got {options.prime_bars}")
        return piece.tokens[:n]


def write_chorale(tokens: list[str], out: str | Path) -> tuple[Path, Path]:
    """Write tokens as a score (``.mid`` / ``.musicxml`` / ``.mxl`` by suffix) and a piano roll PNG beside it."""
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    decode_tokens(tokens, title="rnnkit chorale").write(_WRITERS[out.suffix.lower()], fp=str(out))
    png = out.with_suffix(".png")
    piano_roll(tokens, png)
    return out, png


def piano_roll(tokens: list[str], path: str | Path, title: str = "") -> Path:
    """A piano roll of the four voices (time in quarter notes, MIDI pitch), one colour each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from ..viz.plots import save_figure

    T = len(tokens) // 4
    fig, ax = plt.subplots(figsize=(max(6.0, min(24.0, T * STEP / 4)), 4.0))
    colours = ("tab:red", "tab:orange", "tab:green", "tab:blue")
    for voice, notes, colour in zip(VOICES, voice_notes(tokens), colours):
        for n in notes:  # one bar per note: (start, length) in quarter notes, (pitch - 0.4, 0.8) high
            ax.broken_barh([(n.start * STEP, n.steps * STEP * 0.95)], (n.pitch - 0.4, 0.8), color=colour)
        ax.plot([], [], color=colour, linewidth=6, label=voice)
    for q in range(0, int(T * STEP) + 1, 4):
        ax.axvline(q, color="0.85", linewidth=0.6, zorder=0)
    ax.set_xlabel("quarter notes")
    ax.set_ylabel("MIDI pitch")
    ax.set_xlim(0, max(T * STEP, 1))
    ax.set_title(title or f"{T * STEP:g} quarter notes, four voices")
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.18), fontsize=8, ncol=4, frameon=False)
    return save_figure(fig, path, dpi=110)


def _trim(batch: dict) -> dict:
    """Cut a batch of whole pieces to its longest piece (padding beyond it is all pad)."""
    if "lengths" not in batch:
        return batch
    T = int(batch["lengths"].max())
    return {"ids": batch["ids"][:, :T]}


def _stream(data: TensorData, meta: dict | None = None, max_shift: int = 0) -> torch.Tensor:
    """A split's pieces (``data.raw``: each piece's ids from its <bos>) end to end (N,); with
    ``meta``, repeated in every transposition by up to ``max_shift`` semitones that keeps a
    piece in the vocabulary's pitch range."""
    pieces = [torch.tensor(row) for row in data.raw]
    if meta is None or not max_shift:
        return torch.cat(pieces)
    first, top = meta["first_pitch"], meta["first_pitch"] + meta["high"] - meta["low"]
    out = []
    for shift in range(-max_shift, max_shift + 1):
        for piece in pieces:
            is_pitch = piece >= first
            moved = torch.where(is_pitch, piece + shift, piece)
            if not is_pitch.any() or (moved[is_pitch].min() >= first and moved[is_pitch].max() <= top):
                out.append(moved)
    return torch.cat(out)


_NAMES = ("C", "C#", "D", "Eb", "E", "F", "F#", "G", "Ab", "A", "Bb", "B")


def _step_line(t: int, tokens: list[str]) -> str:
    """``bar.eighth  S A T B`` for one step: note names, ``-`` for a hold, ``.`` for a rest."""
    def name(token: str) -> str:
        if token.isdigit():
            return f"{_NAMES[int(token) % 12]}{int(token) // 12 - 1}"
        return "-" if token == HOLD else "."

    return f"{t // STEPS_PER_BAR + 1:3d}.{t % STEPS_PER_BAR + 1}  " + " ".join(f"{name(k):4s}" for k in tokens).rstrip()
