"""speech: spoken digit strings to text with CTC ("three one four one" from a recording).

Default data: digit strings synthesised with espeak-ng in many voices, speeds and pitches
(``rnnkit.data.datasets.spoken_digits``); the test voices are accents and voice variants
that training never hears. With ``rnnkit evaluate RUN --data FILE``: a CSV/TSV/JSONL table
with a ``path`` column (audio files, relative to the table's folder) and a ``text`` column.

The pipeline (seed 003: many-to-many without alignment)::

    WAV (any rate, mono or stereo) --mix down, resample to 16 kHz--> log-mel (T, 40), 10 ms frames
        --CTCModel: normalise, stack 3 frames, bi-LSTM x2, Linear--> log-probs (T/3, C)
        --CTC loss (training) | greedy or prefix-beam-search decoding (evaluation, predict)--> text

Labels (``labels``): ``"words"`` (default): the ten digit words + blank; ``"chars"``: the
letters of the digit words and the space, 15 labels + blank, so the model spells. On the
held-out voices words make about half the word errors (2.8% against 5.1% WER, seed 0,
docs/results-speech.md): a spelled-out word can come out misspelled ("tree" for "three")
where a word label can only be one of the ten words.
Metrics: loss (CTC, per utterance), ``cer`` (character edits / reference characters,
spaces included) and ``wer`` (word edits / reference words), summed over the split.
The data are fixed by ``data_seed``, not by the training seed, so runs with different
seeds share the cached features.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data.datasets import spoken_digits as sd
from ..export import CTCGraph, ExportSpec
from ..models import CELLS
from ..models.ctc import CTCConfig, CTCModel, ctc_greedy_decode, ctc_prefix_beam_search, error_counts
from ..training import StepOutput, module_device
from ..training.runfiles import non_empty, one_of, positive
from .base import NoOptions, Task, TensorData, register

__all__ = ["SpeechTask", "SpeechOptions", "SpeechData", "speech_tokens", "min_ctc_steps"]

log = logging.getLogger(__name__)

BLANK = "<blank>"


@dataclass
class SpeechOptions:
    # -- data (synthesised once, then cached; see rnnkit.data.datasets.spoken_digits)
    train_size: int = 4000  # utterances in the 60 training voices
    val_size: int = 400  # utterances in the 24 validation voices (model selection)
    test_size: int = 800  # utterances in the 52 held-out test voices
    min_digits: int = 2  # digits per utterance: uniform in [min_digits, max_digits]
    max_digits: int = 6
    min_rate: int = 130  # speaking rate, words per minute: uniform in [min_rate, max_rate]
    max_rate: int = 260
    data_seed: int = 0  # fixes texts, voices, rates and pitches (the training seed does not)
    n_mels: int = 40  # log-mel bands per 10 ms frame
    max_frequency: float = 8000.0  # Hz, the top of the mel bands (3800: all inside the telephone band)
    cache_dir: str = ""  # "" = $RNNKIT_CACHE/speech or ~/.cache/rnnkit/speech
    workers: int = 2  # processes that synthesise the data (once per setting)
    labels: str = "words"  # "words": the ten digit words; "chars": letters and space (spelled out)
    # synthesisers of the training voices, comma-separated: espeak, flite, festival (one not
    # installed is skipped with a warning)
    engines: str = "espeak"
    # "": validate and test on espeak's held-out voices; an engine not in engines: on every voice
    # of that synthesiser (a whole way of making speech that training never hears)
    held_out_engine: str = ""
    # channel of the training audio, comma-separated from speed, pitch, reverb, noise, telephone,
    # or "all"; "" = clean (rnnkit.data.audio_augment)
    augment: str = ""
    spec_augment: bool = False  # SpecAugment (2 frequency and 2 time masks) on training batches
    # -- model
    normalize: bool = True  # per-utterance mean/variance normalisation of the features
    stack: int = 3  # frames stacked into one step: 30 ms steps (frame subsampling)
    cell: str = "lstm"  # a name from rnnkit.models.CELLS
    hidden_size: int = 128
    num_layers: int = 2
    bidirectional: bool = True
    dropout: float = 0.1
    # -- decoding (validation, test, predict)
    decoder: str = "greedy"  # "greedy" (best path) or "beam" (prefix beam search)
    beam_size: int = 8

    def __post_init__(self) -> None:
        owner = "SpeechOptions"
        for name in ("min_digits", "stack", "hidden_size", "num_layers", "n_mels", "workers", "beam_size",
                     "train_size", "val_size", "test_size"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{owner}: {name} must be an int >= 1, got {value!r}")
        if self.max_digits < self.min_digits:
            raise ValueError(f"{owner}: max_digits must be >= min_digits, got {self.max_digits} < {self.min_digits}")
        if not 0.0 <= self.dropout <= 1.0:
            raise ValueError(f"{owner}: dropout must be in [0, 1], got {self.dropout}")
        choices = {"labels": ("chars", "words"), "decoder": ("greedy", "beam"), "cell": tuple(CELLS)}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{owner}: {name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        try:
            self.data_config()
        except ValueError as e:
            raise ValueError(str(e).replace("SpokenDigitsConfig", owner)) from None

    def data_config(self) -> sd.SpokenDigitsConfig:
        from ..data.audio_augment import AUGMENTATIONS

        augment = AUGMENTATIONS if self.augment == "all" else _names(self.augment)
        return sd.SpokenDigitsConfig(
            train_size=self.train_size, val_size=self.val_size, test_size=self.test_size,
            min_digits=self.min_digits, max_digits=self.max_digits, min_rate=self.min_rate, max_rate=self.max_rate,
            n_mels=self.n_mels, max_frequency=self.max_frequency, seed=self.data_seed, engines=_names(self.engines),
            held_out_engine=self.held_out_engine, augment=augment)


def _names(text: str) -> tuple[str, ...]:
    """Split "espeak, flite" into ("espeak", "flite")."""
    return tuple(name.strip() for name in text.split(",") if name.strip())


def speech_tokens(labels: str) -> list[str]:
    """The output labels, blank first: characters (space + letters of the digit words) or words."""
    if labels == "words":
        return [BLANK, *sd.DIGIT_WORDS]
    return [BLANK, " ", *sorted({c for w in sd.DIGIT_WORDS for c in w})]


def min_ctc_steps(targets: list[int]) -> int:
    """The fewest frames CTC needs for a labelling: its length plus a blank between each repeat."""
    return len(targets) + sum(a == b for a, b in zip(targets, targets[1:]))


@dataclass
class SpeechData(TensorData):
    """Utterances as offsets into one frame store, padded into batches on ``take``.

    ``tensors``: ``offsets`` (N,), ``lengths`` (N,) frames, ``targets`` (N, L) label ids
    (0-padded), ``target_lengths`` (N,). ``frames``: (sum of lengths, F) float16.
    """

    frames: torch.Tensor | None = None

    def take(self, index: list[int]) -> dict[str, torch.Tensor]:
        idx = torch.as_tensor(index, dtype=torch.long)
        lengths, offsets = self.tensors["lengths"][idx], self.tensors["offsets"][idx]  # (B,), (B,)
        x = torch.zeros(len(idx), int(lengths.max()), self.frames.shape[1])  # (B, T, F)
        for b, (start, n) in enumerate(zip(offsets.tolist(), lengths.tolist())):
            x[b, :n] = self.frames[start : start + n].float()
        target_lengths = self.tensors["target_lengths"][idx]  # (B,)
        targets = self.tensors["targets"][idx, : int(target_lengths.max())]  # (B, L)
        return {"x": x, "lengths": lengths, "targets": targets, "target_lengths": target_lengths}


@register
class SpeechTask(Task):
    name = "speech"
    description = "speech recognition with CTC: a bi-LSTM over log-mel frames transcribes spoken digit strings"
    default_data = ("digit strings synthesised with espeak-ng (espeakng-loader) in 136 voices x speeds x pitches, "
                    "test voices held out; `rnnkit evaluate RUN --data table.csv` reads a path,text table of recordings")
    metric, mode = "wer", "min"
    Options = SpeechOptions
    export = ExportSpec(CTCGraph, lengths=True)  # utterances of different lengths, padded
    meta_schema = {"tokens": non_empty(str), "labels": one_of("words", "chars"), "n_mels": positive(int)}
    # Validation WER levels off after 3-5 epochs (docs/results-speech.md); 8 epochs take about
    # 5 minutes on one shared core.
    train_defaults = {"epochs": 8, "batch_size": 32, "lr": 2e-3, "schedule": "cosine", "clip_norm": 5.0}

    # -- data -------------------------------------------------------------------------------
    def prepare(self, seed: int) -> dict[str, SpeechData]:
        o = self.options
        config = o.data_config()
        splits = sd.load_spoken_digits(config, o.cache_dir or None, o.workers)
        self.meta = {"tokens": speech_tokens(o.labels), "labels": o.labels, "n_mels": o.n_mels,
                     "max_frequency": o.max_frequency,
                     "feature_rate": sd.FEATURE_RATE, "voices": {s: sd.split_voices(config, s) for s in splits},
                     "sizes": {name: len(part.lengths) for name, part in splits.items()}}
        data = {}
        for name, part in splits.items():
            data[name] = self._encode(part.features, part.lengths, [u.text for u in part.utterances], name)
        return data

    def load_data(self, path: str) -> SpeechData:
        """A CSV/TSV/JSONL table: ``path`` (audio file, relative to the table) and ``text`` columns."""
        from ..data.datasets.reviews import read_text_table

        paths, texts = read_text_table(path, "path", "text")
        folder = Path(path).parent
        frames, lengths = [], []
        for row, (audio_path, text) in enumerate(zip(paths, texts), start=1):
            self._targets(text, f"--data {path} row {row}")  # unknown characters or words: a clear error
            feats = self._features_of_file(folder / audio_path)  # (T, F)
            frames.append(feats.astype(np.float16))
            lengths.append(len(feats))
        return self._encode(np.concatenate(frames), np.asarray(lengths), texts, str(path))

    def _encode(self, features: np.ndarray, lengths: np.ndarray, texts: list[str], where: str) -> SpeechData:
        targets = [self._targets(t, where) for t in texts]
        steps = -(-np.asarray(lengths) // self.options.stack)  # (N,) CTC steps after frame stacking
        short = sum(min_ctc_steps(t) > s for t, s in zip(targets, steps))
        if short:  # their loss is infinite (zeroed by zero_infinity); say so rather than hide it
            log.warning("speech: %d of %d utterances of %s have fewer steps than their labels need "
                        "(lower --stack)", short, len(texts), where)
        width = max(len(t) for t in targets)
        padded = torch.zeros(len(targets), width, dtype=torch.long)  # (N, L)
        for i, t in enumerate(targets):
            padded[i, : len(t)] = torch.tensor(t)
        lengths_t = torch.as_tensor(np.asarray(lengths), dtype=torch.long)
        offsets = torch.cat([torch.zeros(1, dtype=torch.long), lengths_t.cumsum(0)[:-1]])
        return SpeechData({"offsets": offsets, "lengths": lengths_t, "targets": padded,
                           "target_lengths": torch.tensor([len(t) for t in targets])},
                          frames=torch.from_numpy(np.ascontiguousarray(features, dtype=np.float16)))

    def _targets(self, text: str, where: str) -> list[int]:
        index = {tok: k for k, tok in enumerate(self.meta["tokens"])}
        words = text.lower().split()
        units = words if self.meta["labels"] == "words" else list(" ".join(words))
        unknown = sorted({u for u in units if u not in index})
        if unknown or not units:
            raise ValueError(f"speech: {where}: text {text!r} must be digit words ({' '.join(sd.DIGIT_WORDS)}); "
                             f"got {'nothing' if not units else 'unknown ' + repr(unknown)}")
        return [index[u] for u in units]

    # -- model and loss ---------------------------------------------------------------------
    def build_model(self) -> CTCModel:
        o = self.options
        return CTCModel(CTCConfig(num_features=self.meta["n_mels"], num_classes=len(self.meta["tokens"]),
                                  stack=o.stack, cell=o.cell, hidden_size=o.hidden_size, num_layers=o.num_layers,
                                  bidirectional=o.bidirectional, dropout=o.dropout, normalize=o.normalize))

    def step(self, model, batch, state=None) -> StepOutput:
        x = batch["x"]  # (B, T, F)
        if model.training and self.options.spec_augment:
            from ..data.audio_augment import spec_augment

            x = spec_augment(x, batch["lengths"])  # torch's generator: seeded with the run
        out = model(x, batch["lengths"])  # log_probs (B, T', C), lengths (B,)
        loss_sum = F.ctc_loss(out.log_probs.transpose(0, 1), batch["targets"], out.lengths, batch["target_lengths"],
                              blank=0, reduction="sum", zero_infinity=True)  # log_probs as (T', B, C)
        stats = {}
        if not model.training:  # decoding costs time: only when evaluating
            hyps = self.decode(out.log_probs, out.lengths)
            refs = [self.to_text(t[:n].tolist()) for t, n in zip(batch["targets"], batch["target_lengths"])]
            stats = error_counts(refs, hyps)._asdict()
        return StepOutput(loss_sum, len(batch["lengths"]), stats)

    def metrics(self, totals: dict) -> dict[str, float]:
        """loss (CTC, nats per utterance); with decoded batches also cer and wer."""
        out = {"loss": totals["loss_sum"] / max(totals["count"], 1)}
        if "chars" in totals:
            out["cer"] = totals["char_edits"] / max(totals["chars"], 1)
            out["wer"] = totals["word_edits"] / max(totals["words"], 1)
        return out

    def baselines(self, splits) -> dict[str, dict[str, float]]:
        """majority: the most frequent training transcript for every test utterance (speech has
        no cheaper learned reference that reads no audio): test wer and cer."""
        from collections import Counter

        def texts(data) -> list[str]:
            t = data.tensors
            return [self.to_text(row[:n].tolist()) for row, n in zip(t["targets"], t["target_lengths"])]

        guess = Counter(texts(splits["train"])).most_common(1)[0][0]
        refs = texts(splits["test"])
        counts = error_counts(refs, [guess] * len(refs))
        return {"majority": {"wer": counts.word_edits / max(counts.words, 1),
                             "cer": counts.char_edits / max(counts.chars, 1)}}

    # -- decoding and prediction ------------------------------------------------------------
    def to_text(self, labels: list[int]) -> str:
        tokens = self.meta["tokens"]
        sep = " " if self.meta["labels"] == "words" else ""
        return " ".join(sep.join(tokens[k] for k in labels).split())

    def decode(self, log_probs: torch.Tensor, lengths: torch.Tensor) -> list[str]:
        """Texts of a batch of log-probabilities (B, T', C), with the options' decoder."""
        o, texts = self.options, []
        for lp, n in zip(log_probs.detach().cpu(), lengths.tolist()):
            if o.decoder == "beam":
                labels = list(ctc_prefix_beam_search(lp[:n], o.beam_size)[0].labels)
            else:
                labels = ctc_greedy_decode(lp[:n])
            texts.append(self.to_text(labels))
        return texts

    def _features_of_file(self, path) -> np.ndarray:
        audio, rate = sd.read_audio(path)
        # (runs from before max_frequency existed used the whole band up to 8 kHz)
        return sd.audio_features(audio, rate, self.meta["n_mels"], self.meta.get("max_frequency"))  # (T, F)

    @torch.no_grad()
    def predict(self, model, inputs: list[str], options: NoOptions) -> list[dict]:
        """Each input is an audio file (WAV/FLAC/OGG, any rate, mono or stereo); returns its transcript."""
        if not inputs:
            raise ValueError("speech: predict needs at least one INPUT audio file, e.g. rnnkit predict RUN digits.wav")
        rows = []
        for path in inputs:
            feats = torch.from_numpy(self._features_of_file(path))  # (T, F)
            out = model(feats[None].to(module_device(model)), torch.tensor([len(feats)]))  # log_probs (1, T', C)
            text = self.decode(out.log_probs, out.lengths)[0]
            rows.append({"input": path, "text": text, "frames": len(feats)})
        return rows
