"""genome: many-to-one classification of biological sequences, nucleotides (or amino acids) in, a label out.

Default data: the StatLog splice-junction windows (``rnnkit.data.datasets.splice``: 3,186
windows of 60 nucleotides of primate DNA from R's mlbench, fetched with ``apt-get download
r-cran-mlbench`` when missing), classes ``ei`` (exon/intron boundary), ``ie`` (intron/exon)
and ``n`` (neither). With ``--data`` any FASTA file whose headers carry a label
(``>id label=ei`` or ``>id|ei``), sequences of any length, any alphabet.

The pipeline::

    "CCAG...GTCT" --upper-case, central `window` symbols--> symbols --Vocab (train split only)--> ids
        --Embedding--> (B, T, E) --bi-GRU (or LSTM)--> (B, T, 2H) --pool (max|mean|last)--> (B, 2H)
        --Linear--> logits (B, C)

The alphabet is the training split's symbols; any other symbol reads as ``<unk>``. A splice
window's junction sits in its middle and the signals around it (the donor's ``GT``, the
acceptor's ``AG`` and the pyrimidine tract before it) are local, so by default the network
reads the central 20 nucleotides only (``window``; mlbench's documentation gives the same
hint: "much better performance is generally observed if attributes closest to the junction
are used"). In training, symbols are dropped to ``<unk>`` at random (``symbol_dropout``).

The split: stratified by label, seeded, ``test_fraction`` / ``val_fraction`` / the rest
(70/10/20 by default: StatLog's own 2,000/1,186 split cannot be recovered from mlbench's
file), with identical sequences kept in one split (the splice data repeat 185 windows), so
no test window was seen in training.

Baselines (summary.json, after every training), on the same test split: the majority class;
``kmer_lr``: counts of every k-mer of length 1..k + logistic regression (scikit-learn), k and
C picked on val; and, when every sequence has the same length (the splice windows),
``onehot_lr``: each position's one-hot symbol + logistic regression, the classical
position-aware linear model (StatLog's "LogDisc").
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data import Vocab, pad_sequences
from ..data.datasets.splice import LabelledSequences, load_splice, parse_fasta, read_fasta
from ..export import ClassifierGraph, ExportSpec
from ..models import CELLS, ClassifierConfig, SequenceClassifier
from ..training import StepOutput, module_device
from ..training.runfiles import non_empty, positive
from .base import NoOptions, Task, TensorData, register, vocab_field
from .baselines import classification_scores, evenly_spaced, majority_class
from .sentiment import classification_metrics, confusion_counts

__all__ = ["GenomeTask", "GenomeOptions", "stratified_split", "central", "kmer_logistic", "onehot_logistic",
           "KMER_MAX_ROWS"]

log = logging.getLogger(__name__)

KMER_MAX_ROWS = 20_000  # training sequences the k-mer and one-hot baselines fit on (evenly spaced)
_SPLICE_WINDOW = 20  # window=-1 on the splice data: the central 20 of 60 nucleotides


@dataclass
class GenomeOptions:
    # -- data
    data: str = ""  # "" = the StatLog splice junctions (mlbench's DNA.rda, fetched with apt-get when missing); else a FASTA file whose headers carry labels (>id label=ei or >id|ei)
    cache_dir: str = ""  # folder of DNA.rda for the default data; "" = $RNNKIT_CACHE/mlbench or ~/.cache/rnnkit/mlbench
    val_fraction: float = 0.1  # of the sequences, held out (stratified, seeded) to pick the best epoch
    test_fraction: float = 0.2  # of the sequences, held out (stratified, seeded) as the test split
    window: int = -1  # symbols kept from the middle of each sequence; 0 = all; -1 = 20 for the splice data, all for --data
    max_len: int = 2000  # cap on the symbols kept per sequence (the middle ones), after window
    # -- model
    embedding_dim: int = 16
    cell: str = "gru"  # a name from rnnkit.models.CELLS
    hidden_size: int = 64
    num_layers: int = 1
    bidirectional: bool = True  # read each sequence both ways
    pooling: str = "max"  # how the per-symbol states become one vector: max | mean | last (final states of both directions)
    dropout: float = 0.5  # before the head (and between layers)
    symbol_dropout: float = 0.1  # in training, each symbol becomes <unk> with this probability
    # -- baselines
    kmer_max: int = 4  # the k-mer baseline tries k = 1..kmer_max (counts of all k-mers up to k), k and C picked on val

    def __post_init__(self) -> None:
        owner = "GenomeOptions"
        for name in ("max_len", "embedding_dim", "hidden_size", "num_layers", "kmer_max"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{owner}: {name} must be an int >= 1, got {value!r}")
        if isinstance(self.window, bool) or not isinstance(self.window, int) or self.window < -1:
            raise ValueError(f"{owner}: window must be an int >= -1 (-1 = auto, 0 = all), got {self.window!r}")
        for name in ("val_fraction", "test_fraction"):
            if not 0.0 < getattr(self, name) < 0.5:  # (NaN too)
                raise ValueError(f"{owner}: {name} must be in (0, 0.5), got {getattr(self, name)}")
        for name in ("dropout", "symbol_dropout"):
            if not 0.0 <= getattr(self, name) < 1.0:  # (NaN too)
                raise ValueError(f"{owner}: {name} must be in [0, 1), got {getattr(self, name)}")
        for name, allowed in (("cell", tuple(CELLS)), ("pooling", ("max", "mean", "last"))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{owner}: {name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")


def central(sequence: str, size: int) -> str:
    """The middle ``size`` symbols of ``sequence`` (all of it when shorter; 0 = all); an odd
    surplus drops one more symbol at the end: ``central("ABCDEF", 3) == "BCD"``."""
    if size <= 0 or len(sequence) <= size:
        return sequence
    start = (len(sequence) - size) // 2
    return sequence[start:start + size]


def stratified_split(sequences: Sequence[str], labels: Sequence[str], fractions: tuple[float, float],
                     seed: int) -> tuple[list[int], list[int], list[int]]:
    """(train, val, test) indices: ``fractions`` = (val, test) of each label's items, seeded; identical
    sequences always land in the same split (a group goes with its most frequent label's stratum).

    Within each label the groups are shuffled, and whole groups fill test, then val, up to
    ``round(fraction * n_label)`` items; the rest is train. Each list is sorted.
    """
    groups: dict[str, list[int]] = {}
    for i, s in enumerate(sequences):
        groups.setdefault(s, []).append(i)
    strata: dict[str, list[list[int]]] = {}
    for members in groups.values():
        label = Counter(labels[i] for i in members).most_common(1)[0][0]
        strata.setdefault(label, []).append(members)
    rng = np.random.default_rng(seed)
    train_part, val_part, test_part = [], [], []
    for label in sorted(strata):
        members = strata[label]
        n = sum(len(m) for m in members)
        want_test, want_val = round(fractions[1] * n), round(fractions[0] * n)
        in_test = in_val = 0
        for k in rng.permutation(len(members)):
            group = members[k]
            if in_test < want_test:
                test_part += group
                in_test += len(group)
            elif in_val < want_val:
                val_part += group
                in_val += len(group)
            else:
                train_part += group
    return sorted(train_part), sorted(val_part), sorted(test_part)


@register
class GenomeTask(Task):
    name = "genome"
    description = "many-to-one sequence classification: a bidirectional LSTM/GRU reads DNA (or protein), predicts its class"
    default_data = ("StatLog splice junctions (R mlbench DNA: 3,186 windows of 60 nt, ei/ie/n; fetched with "
                    "apt-get download r-cran-mlbench); any labelled FASTA with --data")
    metric, mode = "accuracy", "max"
    Options = GenomeOptions
    export = ExportSpec(ClassifierGraph, lengths=True)  # sequences of different lengths, padded
    meta_schema = {"labels": non_empty(str), "vocab": vocab_field(), "window": int, "max_len": positive(int)}
    # 20 epochs of the central 20 nucleotides: about a minute on one core of a loaded machine;
    # the bi-GRU beat the bi-LSTM on seeds 0 and 1 (docs/results-genome.md).
    train_defaults = {"epochs": 20, "batch_size": 32, "lr": 3e-3, "schedule": "cosine"}

    def __init__(self, options: GenomeOptions) -> None:
        super().__init__(options)
        self._vocab: Vocab | None = None

    # -- data -------------------------------------------------------------------------------
    def _window(self) -> int:
        w = self.options.window
        return (_SPLICE_WINDOW if not self.options.data else 0) if w == -1 else w

    def _read(self) -> LabelledSequences:
        o = self.options
        return read_fasta(o.data) if o.data else load_splice(o.cache_dir or None)

    def prepare(self, seed: int) -> dict[str, TensorData]:
        o = self.options
        records = self._read()
        train, val, test = stratified_split(records.sequences, records.labels, (o.val_fraction, o.test_fraction), seed)
        if not (train and val and test):
            raise ValueError(f"genome: --data {o.data} has too few sequences ({len(records.sequences)}) for non-empty "
                             f"train/val/test splits with val_fraction={o.val_fraction}, test_fraction={o.test_fraction}")
        window = self._window()
        texts = [central(central(s, window), o.max_len) for s in records.sequences]
        pick = lambda index: ([texts[i] for i in index], [records.labels[i] for i in index])  # noqa: E731
        parts = {"train": pick(train), "val": pick(val), "test": pick(test)}
        vocab = Vocab.build([list(s) for s in parts["train"][0]], specials=("<pad>", "<unk>"))
        labels = sorted(set(records.labels))
        unseen = sorted(set(labels) - set(parts["train"][1]))
        if unseen:
            log.warning("genome: labels %s occur in val/test but not in the training split", unseen)
        counts = Counter(parts["train"][1])
        self.meta = {"labels": labels, "vocab": vocab.to_dict(), "window": window, "max_len": o.max_len,
                     "class_counts": {label: counts[label] for label in labels},
                     "sizes": {name: len(part[0]) for name, part in parts.items()},
                     "split": "stratified by label, identical sequences in one split"}
        self._vocab = vocab
        return {name: self._encode(*part) for name, part in parts.items()}

    def load_data(self, path: str) -> TensorData:
        """A labelled FASTA file, cut to the run's window and alphabet."""
        records = read_fasta(path)
        unknown = sorted(set(records.labels) - set(self.meta["labels"]))
        if unknown:
            raise ValueError(f"genome: --data {path} has labels {unknown} that the model does not know; "
                             f"it knows {self.meta['labels']}")
        return self._encode([self._cut(s) for s in records.sequences], records.labels)

    @property
    def vocab(self) -> Vocab:
        if self._vocab is None:  # a task restored from a run directory
            self._vocab = Vocab.from_dict(self.meta["vocab"])
        return self._vocab

    def _cut(self, sequence: str) -> str:
        return central(central(sequence, self.meta["window"]), self.meta["max_len"])

    def encode(self, sequences: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Cut sequences -> ids (N, T) zero-padded to the longest, and lengths (N,)."""
        batch = pad_sequences([self.vocab.encode(list(s)) for s in sequences])
        return batch.values, batch.lengths  # (N, T), (N,)

    def _encode(self, sequences: list[str], labels: list[str]) -> TensorData:
        x, lengths = self.encode(sequences)
        index = {label: k for k, label in enumerate(self.meta["labels"])}
        y = torch.tensor([index[label] for label in labels], dtype=torch.long)  # (N,)
        return TensorData({"x": x, "lengths": lengths, "y": y}, raw=(list(sequences), list(labels)))

    def baselines(self, splits) -> dict[str, dict[str, float]]:
        """majority; kmer_lr (k-mer counts, k <= kmer_max, + logistic regression, k and C by val accuracy);
        onehot_lr (per-position one-hot + logistic regression) when all sequences have one length."""
        train, val, test = (splits[name].raw for name in ("train", "val", "test"))
        out = {"majority": majority_class(train[1], test[1])}
        fitted = kmer_logistic(train, val, test, self.options.kmer_max)
        out["kmer_lr"] = {"accuracy": fitted["test_accuracy"], "f1": fitted["test_f1"]}
        if len({len(s) for part in (train, val, test) for s in part[0]}) == 1:
            fitted = onehot_logistic(train, val, test)
            out["onehot_lr"] = {"accuracy": fitted["test_accuracy"], "f1": fitted["test_f1"]}
        return out

    # -- model and loss ---------------------------------------------------------------------
    def build_model(self) -> SequenceClassifier:
        o = self.options
        return SequenceClassifier(ClassifierConfig(
            num_classes=len(self.meta["labels"]), vocab_size=len(self.vocab), embedding_dim=o.embedding_dim,
            cell=o.cell, hidden_size=o.hidden_size, num_layers=o.num_layers, bidirectional=o.bidirectional,
            dropout=o.dropout, pooling=o.pooling))

    def step(self, model, batch, state=None) -> StepOutput:
        lengths = batch["lengths"]  # (B,)
        x = batch["x"][:, : int(lengths.max())]  # (B, T): no more padding than the batch needs
        if model.training and self.options.symbol_dropout > 0:
            drop = (torch.rand(x.shape, device=x.device) < self.options.symbol_dropout) & (x != self.vocab.pad_index)
            x = x.masked_fill(drop, self.vocab.unk_index)  # (B, T)
        logits = model(x, lengths)  # (B, C)
        loss_sum = F.cross_entropy(logits, batch["y"], reduction="sum")
        stats = confusion_counts(logits.argmax(-1), batch["y"], logits.shape[1])
        return StepOutput(loss_sum, len(batch["y"]), stats)

    def metrics(self, totals: dict) -> dict[str, float]:
        """loss, accuracy and macro-F1 (f1)."""
        return classification_metrics(totals, len(self.meta["labels"]))

    # -- using a trained model --------------------------------------------------------------
    @torch.no_grad()
    def predict(self, model, inputs: list[str], options: NoOptions) -> list[dict]:
        """Each input is a sequence (``ACGT...``; spaces ignored, case too); returns its label and the
        probability of every label. The run's window applies, as in training."""
        if not inputs:
            raise ValueError("genome: predict needs at least one INPUT sequence, e.g. rnnkit predict RUN ACGTAGGT")
        texts = []
        for k, text in enumerate(inputs):
            body = "".join(text.split())
            if not body:
                raise ValueError(f"genome: input {k + 1} must be a sequence of letters, got an empty one")
            texts.append(self._cut(parse_fasta(f">input|?\n{body}\n", f"input {k + 1}").sequences[0]))
        labels = self.meta["labels"]
        rows = []
        for start in range(0, len(texts), 256):
            chunk = texts[start : start + 256]
            x, lengths = self.encode(chunk)  # (N, T), (N,)
            probs = torch.softmax(model(x.to(module_device(model)), lengths), -1)  # (N, C)
            for text, p in zip(inputs[start : start + 256], probs):
                rows.append({"input": text, "label": labels[int(p.argmax())],
                             "probabilities": {label: round(float(q), 4) for label, q in zip(labels, p)}})
        return rows


# -- baselines ------------------------------------------------------------------------------------

def _fit_best(features, train, val, test, settings) -> dict:
    """Logistic regression for each (setting, C); the best by val accuracy, scored on test.

    ``features(setting)`` returns (fit(texts) -> X_train, transform(texts) -> X).
    """
    from sklearn.linear_model import LogisticRegression

    keep = evenly_spaced(len(train[0]), KMER_MAX_ROWS)
    texts, labels = [train[0][i] for i in keep], [train[1][i] for i in keep]
    best = None
    for setting in settings:
        x_train, transform = features(setting, texts)
        x_val = transform(val[0])
        for c in (0.01, 0.1, 1.0, 10.0):
            model = LogisticRegression(C=c, max_iter=3000).fit(x_train, labels)
            scores = classification_scores(val[1], model.predict(x_val))
            if best is None or scores["accuracy"] > best[0]["accuracy"]:
                best = (scores, setting, c, model, transform)
    scores, setting, c, model, transform = best
    test_scores = classification_scores(test[1], model.predict(transform(test[0])))
    return {"setting": setting, "C": c, **{f"val_{k}": v for k, v in scores.items()},
            **{f"test_{k}": v for k, v in test_scores.items()}}


def kmer_logistic(train, val, test, kmer_max: int = 4) -> dict:
    """Counts of all k-mers of length 1..k (k in 1..kmer_max) + logistic regression; each split a
    (sequences, labels) pair. k and C (0.01..10) by val accuracy. Returns ``{"setting": k, "C",
    "val_accuracy", "val_f1", "test_accuracy", "test_f1"}``."""
    from sklearn.feature_extraction.text import CountVectorizer

    def features(k, texts):
        vectorizer = CountVectorizer(analyzer="char", ngram_range=(1, k), lowercase=False)
        return vectorizer.fit_transform(texts), vectorizer.transform  # (N, kmers) sparse

    return _fit_best(features, train, val, test, range(1, kmer_max + 1))


def onehot_logistic(train, val, test) -> dict:
    """Each position's symbol, one-hot (symbols unseen there in training: all zeros), + logistic
    regression, C by val accuracy; the sequences of all splits must have one length."""
    from sklearn.preprocessing import OneHotEncoder

    def features(_, texts):
        encoder = OneHotEncoder(handle_unknown="ignore").fit([list(s) for s in texts])
        return encoder.transform([list(s) for s in texts]), lambda more: encoder.transform([list(s) for s in more])

    return _fit_best(features, train, val, test, [None])
