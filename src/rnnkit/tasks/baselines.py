"""Practitioners' baselines, measured on the model's own split, and the model compared with them.

A task's ``baselines(splits)`` hook (``rnnkit.tasks.Task.baselines``) fits its baselines on
the training split (and the validation split where one picks a setting) and measures them on
``splits["test"]``, the split the model's ``test_*`` metrics come from. It returns
``{name: {metric: value}}``, each with at least the task's own ``metric``;
``rnnkit.training.fit_run`` writes them into summary.json as ``baseline_<name>_test_<metric>``
(``baseline_tfidf_lr_test_accuracy``, ``baseline_trigram_test_loss``) and ``rnnkit evaluate``
returns them the same way. :func:`compare` then sets the model beside its best baseline on the
task's ``metric``, whose direction is the task's ``mode`` (max: larger is better, min: smaller).

The fits here, shared by the tasks:

- :func:`majority_class`: the most frequent training label for everything;
- :func:`tfidf_logistic`: TF-IDF of word 1-2 grams + logistic regression (scikit-learn), C
  picked on the validation split; at most ``max_rows`` training texts (evenly spaced);
- :func:`pixel_logistic`: logistic regression on the raw pixels; at most ``max_rows`` images;
- :func:`char_ngram_loss`: a Witten-Bell interpolated character n-gram (nats per character,
  the unit of a language model's loss); at most ``max_chars`` training characters;
- :func:`tag_by_word`: each word's most frequent training tag.

Costs are bounded by those caps, so a baseline takes seconds beside a training of minutes.
"""
from __future__ import annotations

import math
from typing import Mapping, NamedTuple, Sequence

import numpy as np
import torch

__all__ = ["Comparison", "compare", "comparison_lines", "classification_scores", "majority_class",
           "tfidf_logistic", "pixel_logistic", "char_ngram_loss", "tag_by_word", "evenly_spaced"]

TFIDF_MAX_ROWS = 20_000  # training texts the TF-IDF + logistic regression baseline fits on
PIXEL_MAX_ROWS = 5_000  # training images the pixel logistic regression fits on
NGRAM_MAX_CHARS = 20_000_000  # training characters the n-gram counts (the last ones are kept)


# -- the comparison -----------------------------------------------------------------------------

class Comparison(NamedTuple):
    """The model's value of the task's metric beside its baselines' on the same split."""

    metric: str  # e.g. "test_rmse"
    model: float
    baselines: dict[str, float]  # name -> value, best first
    mode: str  # "max" or "min": the direction of `metric`

    @property
    def best(self) -> tuple[str, float] | None:
        """(name, value) of the best baseline, or None without baselines."""
        return next(iter(self.baselines.items()), None)

    @property
    def model_loses(self) -> bool:
        """True when the best baseline is strictly better than the model (a NaN model loses)."""
        if self.best is None:
            return False
        value = self.best[1]
        if not math.isfinite(self.model):
            return True
        return value > self.model if self.mode == "max" else value < self.model


def compare(metrics: Mapping[str, float], metric: str, mode: str, split: str = "test") -> Comparison | None:
    """The model's ``<split>_<metric>`` beside every ``baseline_<name>_<split>_<metric>`` in ``metrics``.

    ``mode`` is the metric's direction ("max" or "min"). None when the model's value is missing.
    """
    if mode not in ("max", "min"):
        raise ValueError(f"compare: mode must be max or min, got {mode!r}")
    key = f"{split}_{metric}"
    if key not in metrics:
        return None
    suffix = f"_{key}"
    found = {k[len("baseline_"):-len(suffix)]: float(v) for k, v in metrics.items()
             if k.startswith("baseline_") and k.endswith(suffix) and v is not None and math.isfinite(v)}
    ordered = dict(sorted(found.items(), key=lambda kv: -kv[1] if mode == "max" else kv[1]))
    return Comparison(key, float(metrics[key]), ordered, mode)


def comparison_lines(c: Comparison | None) -> tuple[str, str | None]:
    """(the line that shows the model beside its baselines, the warning when the model loses or None)."""
    if c is None or c.best is None:
        return (f"model {c.metric} {c.model:.4g}; no baselines" if c else "no baselines"), None
    direction = "higher" if c.mode == "max" else "lower"
    others = ", ".join(f"{name} {value:.4g}" for name, value in c.baselines.items())
    line = f"model {c.metric} {c.model:.4g} | baselines ({direction} is better): {others}"
    warning = None
    if c.model_loses:
        name, value = c.best
        warning = f"the model ({c.metric} {c.model:.4g}) is worse than the {name} baseline ({value:.4g})"
    return line, warning


# -- classification -----------------------------------------------------------------------------

def classification_scores(true: Sequence, pred: Sequence) -> dict[str, float]:
    """accuracy and macro-F1 (over the classes in ``true`` or ``pred``, as scikit-learn's)."""
    from sklearn.metrics import accuracy_score, f1_score

    return {"accuracy": float(accuracy_score(true, pred)), "f1": float(f1_score(true, pred, average="macro"))}


def majority_class(train_labels: Sequence, test_labels: Sequence) -> dict[str, float]:
    """The most frequent training label (ties: the smallest) for every test item: accuracy, f1."""
    values, counts = np.unique(np.asarray(list(train_labels)), return_counts=True)
    guess = values[int(np.argmax(counts))]
    return classification_scores(list(test_labels), [guess] * len(test_labels))


def evenly_spaced(n: int, cap: int) -> np.ndarray:
    """Indices of at most ``cap`` of ``n`` rows, evenly spaced (all of them when n <= cap)."""
    return np.arange(n) if n <= cap else np.linspace(0, n - 1, cap).round().astype(np.int64)


def tfidf_logistic(train: tuple[Sequence[str], Sequence[str]], val: tuple[Sequence[str], Sequence[str]],
                   test: tuple[Sequence[str], Sequence[str]], balanced: bool = False,
                   c_grid: Sequence[float] = (0.3, 1.0, 3.0, 10.0, 30.0, 100.0),
                   max_rows: int = TFIDF_MAX_ROWS) -> dict[str, float]:
    """TF-IDF (word 1-2 grams, sublinear tf) + logistic regression, each split a (texts, labels) pair.

    Fitted on at most ``max_rows`` training texts (evenly spaced); the inverse regularisation
    ``C`` is picked from ``c_grid`` by macro-F1 on ``val``; ``class_weight="balanced"`` with
    ``balanced``. Returns ``{"C", "features", "train_size", "val_accuracy", "val_f1",
    "test_accuracy", "test_f1"}``.
    """
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression

    keep = evenly_spaced(len(train[0]), max_rows)
    texts, labels = [train[0][i] for i in keep], [train[1][i] for i in keep]
    vectorizer = TfidfVectorizer(ngram_range=(1, 2), sublinear_tf=True)
    x_train = vectorizer.fit_transform(texts)  # (N, V) sparse
    x_val, x_test = vectorizer.transform(val[0]), vectorizer.transform(test[0])
    best = None
    for c in c_grid:
        model = LogisticRegression(C=c, max_iter=5000, class_weight="balanced" if balanced else None)
        model.fit(x_train, labels)
        scores = classification_scores(val[1], model.predict(x_val))
        if best is None or scores["f1"] > best[0]["f1"]:
            best = (scores, c, model)
    scores, c, model = best
    test_scores = classification_scores(test[1], model.predict(x_test))
    return {"C": c, "features": x_train.shape[1], "train_size": len(texts),
            **{f"val_{k}": v for k, v in scores.items()}, **{f"test_{k}": v for k, v in test_scores.items()}}


def pixel_logistic(train_x: torch.Tensor, train_y: torch.Tensor, test_x: torch.Tensor, test_y: torch.Tensor,
                   max_rows: int = PIXEL_MAX_ROWS) -> dict[str, float]:
    """Logistic regression on the flattened pixels (N, ...) of at most ``max_rows`` training images:
    accuracy and f1 on the test images."""
    from sklearn.linear_model import LogisticRegression

    keep = evenly_spaced(len(train_y), max_rows)
    x = train_x.reshape(len(train_x), -1)[torch.as_tensor(keep)].double().numpy()  # (N, pixels)
    model = LogisticRegression(max_iter=300, C=1.0)
    model.fit(x, train_y.numpy()[keep])
    pred = model.predict(test_x.reshape(len(test_x), -1).double().numpy())
    return classification_scores(test_y.numpy(), pred)


# -- language models ----------------------------------------------------------------------------

def char_ngram_loss(train_ids: torch.Tensor, test_ids: torch.Tensor, vocab_size: int, order: int = 3,
                    max_chars: int = NGRAM_MAX_CHARS) -> float:
    """Nats per character of a Witten-Bell interpolated ``order``-gram on ``test_ids`` (N,).

    Counted on the last ``max_chars`` of ``train_ids``; each test character is predicted from
    the ``order - 1`` characters before it (the test part continues the training text)::

        P(c | h) = (C(h, c) + T(h) P(c | h')) / (C(h) + T(h))

    where h' is h without its oldest character, T(h) the number of distinct characters seen
    after h, and the recursion starts from the uniform 1 / vocab_size; a context never seen
    in training passes the shorter context's probability on (as benchmarks/charlm_ngram.py).
    """
    if order < 1:
        raise ValueError(f"char_ngram_loss: order must be >= 1, got {order}")
    train = train_ids[-max_chars:].long().numpy()
    test = test_ids.long().numpy()
    full = np.concatenate([train, test])  # (N_train + N_test,)
    n_train, V = len(train), int(max(vocab_size, full.max() + 1))
    pos = np.arange(n_train, len(full))  # the test characters
    p = np.full(len(pos), 1.0 / V)
    ctx = np.zeros(len(full), dtype=np.int64)  # id of the n characters before each position (n = 0: one id)
    for n in range(order):
        if n > 0:  # extend every context by the character n places back; ids stay < len(full)
            prev = np.full(len(full), -1, dtype=np.int64)
            prev[n:] = full[: len(full) - n]
            _, ctx = np.unique(ctx * (V + 1) + (prev + 1), return_inverse=True)
            ctx = ctx.reshape(-1)
        train_at = np.arange(n, n_train)  # training positions with a full context of n characters
        pair = ctx[train_at] * V + full[train_at]
        pairs, pair_counts = np.unique(pair, return_counts=True)
        contexts, context_counts = np.unique(ctx[train_at], return_counts=True)
        distinct = np.bincount(np.searchsorted(contexts, pairs // V), minlength=len(contexts))  # T(h)
        if len(contexts) == 0:  # a training text shorter than the context
            continue
        ok = pos >= n
        h, c = ctx[pos[ok]], full[pos[ok]]  # the test characters' contexts and characters
        at = np.minimum(np.searchsorted(contexts, h), len(contexts) - 1)
        seen = contexts[at] == h
        k = np.minimum(np.searchsorted(pairs, h * V + c), len(pairs) - 1)
        c_hc = np.where(pairs[k] == h * V + c, pair_counts[k], 0)  # C(h, c)
        c_h, t_h = context_counts[at], distinct[at]  # C(h), T(h)
        p[ok] = np.where(seen, (c_hc + t_h * p[ok]) / np.maximum(c_h + t_h, 1), p[ok])
    return float(-np.log(p).mean()) if len(p) else float("nan")


# -- tagging ------------------------------------------------------------------------------------

def tag_by_word(train_x: torch.Tensor, train_y: torch.Tensor, train_lengths: torch.Tensor,
                test_x: torch.Tensor, default_tag: int = 0) -> torch.Tensor:
    """Each test word's most frequent training tag; words never seen get ``default_tag``.

    ``*_x`` (N, T) word ids, ``train_y`` (N, T) tag ids, ``train_lengths`` (N,); padded steps
    are ignored. Returns (M, T) tag ids for ``test_x``. A word id that stands for all rare
    words (``<unk>``) gets the tag those words had most often in training.
    """
    valid = torch.arange(train_x.shape[1]) < train_lengths[:, None]  # (N, T)
    words, tags = train_x[valid], train_y[valid]  # (K,) each
    num_words = int(max(int(train_x.max()), int(test_x.max()))) + 1
    num_tags = int(train_y.max()) + 1
    counts = torch.zeros(num_words, num_tags, dtype=torch.long)
    counts.index_put_((words, tags), torch.ones_like(words), accumulate=True)
    best = counts.argmax(1)  # (num_words,); ties: the smallest tag id
    best[counts.sum(1) == 0] = default_tag
    return best[test_x]  # (M, T)
