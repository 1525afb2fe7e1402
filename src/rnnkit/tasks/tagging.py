"""tagging: named-entity recognition, many-to-many aligned: one tag per token.

Default data: sentences generated with Faker from templates of person, location and
organisation mentions (``data/datasets/ner.py``), split *by template*: the test sentences
come from templates never seen in training. About ``ambiguous_fraction`` of them begin with
a word such as "Teddy", "Paris" or "Washington" whose tag only the words after it decide
("Teddy bears ..." vs "Teddy Roosevelt ..."); the metrics report those sentences apart
(``ambiguous_f1``, ``ambiguous_word_accuracy``), which is where a bidirectional model beats a
left-to-right one. With ``--data``, any CoNLL file (token first, tag last, blank line
between sentences; BIO or BIOES).

The pipeline (seed 002's tagging example)::

    sentence --tokenize (case kept)--> tokens --Vocab (train split only)--> ids (B, T)
                                           \\--characters--> ids (B, T, W)
    (words: digits -> 0)
    --SequenceTagger: embedding + char CNN -> (bi-)LSTM/GRU -> Linear--> emissions (B, T, K)
    --per-token softmax (argmax) or CRF (Viterbi)--> tags

Tags are rewritten in ``scheme`` (BIO or BIOES) before training. The loss is per token: the
cross-entropy of each valid token, or the CRF's sentence negative log-likelihoods summed and
divided by the number of tokens; padded steps count for nothing. Metrics: entity-level
precision / recall / F1 (``training/metrics.py``; tags read as ``data/tags.py`` says, by
conlleval's rules), token accuracy, and on the ambiguous sentences their entity F1 and the
accuracy of the ambiguous word's own tag. Baselines (``baselines``): "O" for every token, and
each word's most frequent training tag, scored by the same entity rules.
"""
from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from typing import Sequence

import torch

from ..data import Vocab, split_indices
from ..data.datasets.ner import (AMBIGUOUS_WORDS, FAKER_VERSION, NerSentence, generate_ner, read_conll,
                                 split_templates, tokenize)
from ..data.tags import SCHEMES, convert_scheme, entities
from ..export import ExportSpec, TaggerGraph
from ..models.recurrent import CELLS
from ..models.tagger import SequenceTagger, TaggerConfig, word_case
from ..training import StepOutput, module_device, move_to_device
from ..training.metrics import EntityCounts, entity_counts, precision_recall_f1
from ..training.runfiles import non_empty, one_of, positive
from .base import NoOptions, Task, TensorData, register, vocab_field
from .baselines import tag_by_word

__all__ = ["TaggingTask", "TaggingOptions", "load_sentences"]

log = logging.getLogger(__name__)

_CHAR_SPECIALS = ("<pad>", "<unk>")
_DIGIT = re.compile(r"\d")


@dataclass
class TaggingOptions:
    # -- data
    data: str = ""  # "" = generated sentences (Faker, split by template); else a CoNLL file
    test_data: str = ""  # with --data: a separate CoNLL test file; "" = carve test_fraction off --data
    val_fraction: float = 0.1  # of --data's sentences, held out for model selection (seeded)
    test_fraction: float = 0.1  # of --data, held out as test when there is no --test-data
    train_sentences: int = 4000  # generated data: sentences from the training templates
    val_sentences: int = 500  # ... from the validation templates
    test_sentences: int = 1000  # ... from the test templates
    ambiguous_fraction: float = 0.3  # generated data: share of sentences that begin with an ambiguous word
    data_seed: int = 0  # generated data: seed of Faker and of the template split (independent of --seed)
    ambiguous_words: str = ""  # --data files: comma-separated words that mark a sentence ambiguous; "" = Teddy, Paris, ...
    scheme: str = "bio"  # tags are rewritten in this scheme: bio | bioes
    # -- preprocessing (fitted on the training split only)
    lower: bool = False  # lower-case words for the word vocabulary (characters keep their case)
    min_freq: int = 1  # words seen fewer times in the training split map to <unk>
    max_len: int = 100  # tokens kept per training sentence (longer ones are cut); prediction reads all
    max_word_len: int = 20  # characters per word the character features read
    # -- model
    embedding_dim: int = 64
    char_features: bool = True  # a character CNN beside the word embedding
    char_embedding_dim: int = 16
    char_channels: int = 32
    case_features: bool = True  # an embedding of each word's case (lower, Capitalised, UPPER, digits, ...)
    cell: str = "lstm"  # a name from rnnkit.models.CELLS
    hidden_size: int = 64  # per direction
    num_layers: int = 1
    bidirectional: bool = True  # read the sentence both ways
    crf: bool = False  # CRF output layer with Viterbi decoding (else a per-token softmax)
    dropout: float = 0.3
    word_dropout: float = 0.3  # in training, each word becomes <unk> with this probability (its characters stay)

    def __post_init__(self) -> None:
        owner = "TaggingOptions"
        for name in ("train_sentences", "val_sentences", "test_sentences", "min_freq", "max_len", "max_word_len",
                     "embedding_dim", "char_embedding_dim", "char_channels", "hidden_size", "num_layers"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise ValueError(f"{owner}: {name} must be an int >= 1, got {getattr(self, name)!r}")
        for name in ("val_fraction", "test_fraction"):
            if not 0.0 < getattr(self, name) < 0.5:  # (NaN too)
                raise ValueError(f"{owner}: {name} must be in (0, 0.5), got {getattr(self, name)}")
        for name in ("ambiguous_fraction", "dropout", "word_dropout"):
            if not 0.0 <= getattr(self, name) <= 1.0:
                raise ValueError(f"{owner}: {name} must be in [0, 1], got {getattr(self, name)}")
        for name, allowed in (("scheme", SCHEMES), ("cell", tuple(CELLS))):
            if getattr(self, name) not in allowed:
                raise ValueError(f"{owner}: {name} must be one of {', '.join(allowed)}, got {getattr(self, name)!r}")
        if self.test_data and not self.data:
            raise ValueError(f"{owner}: test_data needs data (a training file), got test_data={self.test_data!r} "
                             "with the generated data, which has its own test templates")

    def ambiguous_set(self) -> frozenset[str]:
        if not self.ambiguous_words:
            return AMBIGUOUS_WORDS
        return frozenset(w.strip() for w in self.ambiguous_words.split(",") if w.strip())


def load_sentences(options: TaggingOptions, seed: int) -> dict[str, list[NerSentence]]:
    """The raw train/val/test sentences, tags as given (BIO for the generated data).

    Generated data: ``split_templates`` (seeded by ``data_seed``) assigns each template to
    one split, and each split's sentences come from its own templates only. A CoNLL file:
    the test file, or a seeded ``test_fraction`` of the sentences; val is a seeded
    ``val_fraction`` of the rest.
    """
    o = options
    if not o.data:
        ids = split_templates((0.7, 0.15, 0.15), seed=o.data_seed)
        sizes = (o.train_sentences, o.val_sentences, o.test_sentences)
        return {name: generate_ner(n, part, o.ambiguous_fraction, seed=o.data_seed * 3 + k)
                for k, (name, n, part) in enumerate(zip(("train", "val", "test"), sizes, ids))}
    words = o.ambiguous_set()
    sentences = read_conll(o.data, words)
    if o.test_data:
        test = read_conll(o.test_data, words)
        val_part, train_part = _split(len(sentences), [o.val_fraction], seed)
    else:
        test_part, val_part, train_part = _split(len(sentences), [o.test_fraction, o.val_fraction], seed)
        test = [sentences[i] for i in test_part]
    if not train_part or not val_part or not test:
        raise ValueError(f"tagging: --data {o.data} has too few sentences ({len(sentences)}) for non-empty "
                         f"train/val/test splits with val_fraction={o.val_fraction}, test_fraction={o.test_fraction}")
    return {"train": [sentences[i] for i in train_part], "val": [sentences[i] for i in val_part], "test": test}


def _split(n: int, held_out: list[float], seed: int) -> list[list[int]]:
    """Held-out parts first (each a fraction of n), the remainder last; seeded."""
    parts = split_indices(n, (*held_out, 1.0 - sum(held_out)), seed=seed)
    return [p.tolist() for p in parts]


@register
class TaggingTask(Task):
    name = "tagging"
    description = "many-to-many tagging (NER): a (bi-)LSTM/GRU tags every token, per-token softmax or CRF"
    default_data = ("generated NER sentences (Faker, split by template, with ambiguous words: Teddy bears vs "
                    "Teddy Roosevelt); any CoNLL file (token ... tag, BIO/BIOES) with --data")
    metric, mode = "f1", "max"  # entity-level F1
    Options = TaggingOptions
    export = ExportSpec(TaggerGraph, lengths=True)  # sentences of different lengths, padded
    meta_schema = {"tags": non_empty(str), "vocab": vocab_field(), "chars": vocab_field(), "scheme?": one_of(*SCHEMES),
                   "lower?": bool, "max_len": positive(int), "max_word_len": positive(int)}
    # Validation F1 levels off after 7-8 epochs (docs/results-tagging.md); 10 epochs of the
    # 4,000 sentences take about a minute on one core.
    train_defaults = {"epochs": 10, "batch_size": 32, "lr": 5e-3, "schedule": "cosine"}

    def __init__(self, options: TaggingOptions) -> None:
        super().__init__(options)
        self._vocab: Vocab | None = None
        self._chars: Vocab | None = None

    # -- data -------------------------------------------------------------------------------
    def prepare(self, seed: int) -> dict[str, TensorData]:
        o = self.options
        raw = load_sentences(o, seed)
        splits = {name: [self._normalise(s) for s in part] for name, part in raw.items()}
        train = splits["train"]
        # Vocabularies from the training split only; characters keep their case.
        vocab = Vocab.build([self._words(s.tokens) for s in train], min_freq=o.min_freq)
        chars = Vocab.build([list(token) for s in train for token in s.tokens], specials=_CHAR_SPECIALS)
        train_tags = {tag for s in train for tag in s.tags}
        all_tags = {tag for part in splits.values() for s in part for tag in s.tags}
        unseen = sorted(all_tags - train_tags)
        if unseen:
            log.warning("tagging: tags %s occur in val/test but not in the training split", unseen)
        too_long = sum(len(s.tokens) > o.max_len for s in train)
        if too_long:
            log.warning("tagging: %d training sentences are longer than max_len=%d and are cut", too_long, o.max_len)
        self.meta = {
            "tags": ["O"] + sorted(all_tags - {"O"}), "vocab": vocab.to_dict(), "chars": chars.to_dict(),
            "scheme": o.scheme, "lower": o.lower, "max_len": o.max_len, "max_word_len": o.max_word_len,
            "sizes": {name: len(part) for name, part in splits.items()},
            "ambiguous_sentences": {name: sum(s.ambiguous >= 0 for s in part) for name, part in splits.items()},
        }
        if not o.data:
            self.meta["templates"] = dict(zip(("train", "val", "test"), split_templates((0.7, 0.15, 0.15), o.data_seed)))
            self.meta["faker_version"] = FAKER_VERSION
        self._vocab, self._chars = vocab, chars
        return {name: self._encode(part) for name, part in splits.items()}

    def load_data(self, path: str) -> TensorData:
        """A CoNLL file, tagged with tags the model knows (in either scheme)."""
        sentences = [self._normalise(s) for s in read_conll(path, self.options.ambiguous_set())]
        unknown = sorted({tag for s in sentences for tag in s.tags} - set(self.meta["tags"]))
        if unknown:
            raise ValueError(f"tagging: --data {path} has tags {unknown} (in the run's scheme, "
                             f"{self.meta['scheme']}) that the model does not know; it knows {self.meta['tags']}")
        return self._encode(sentences)

    def _normalise(self, sentence: NerSentence) -> NerSentence:
        return sentence._replace(tags=convert_scheme(sentence.tags, self.meta.get("scheme", self.options.scheme)))

    def _words(self, tokens: Sequence[str]) -> list[str]:
        """The vocabulary's form of each token: every digit 0 ("1905" -> "0000": years and counts
        share a few ids), lower-cased with ``lower``. The characters keep the original."""
        lower = self.meta.get("lower", self.options.lower)
        words = [_DIGIT.sub("0", t) for t in tokens]
        return [w.lower() for w in words] if lower else words

    @property
    def vocab(self) -> Vocab:
        if self._vocab is None:  # a task restored from a run directory
            self._vocab = Vocab.from_dict(self.meta["vocab"])
        return self._vocab

    @property
    def chars(self) -> Vocab:
        if self._chars is None:
            self._chars = Vocab.from_dict(self.meta["chars"])
        return self._chars

    def encode_tokens(self, sentences: Sequence[Sequence[str]], max_len: int | None = None) -> dict[str, torch.Tensor]:
        """Token lists -> ``{"x": (N, T), "chars": (N, T, W), "cases": (N, T), "lengths": (N,)}``, zero-padded.

        ``T`` is the longest sentence (cut to ``max_len`` when given), ``W`` the longest word
        (cut to the run's ``max_word_len``). Every sentence must have at least one token.
        """
        lengths = [min(len(s), max_len) if max_len else len(s) for s in sentences]
        if not sentences or min(lengths) < 1:
            raise ValueError("tagging: every sentence must have at least one token")
        W = max(1, min(self.meta["max_word_len"], max(len(t) for s in sentences for t in s)))
        T = max(lengths)
        x = torch.zeros(len(sentences), T, dtype=torch.long)
        chars = torch.zeros(len(sentences), T, W, dtype=torch.long)
        cases = torch.zeros(len(sentences), T, dtype=torch.long)
        for b, (tokens, n) in enumerate(zip(sentences, lengths)):
            x[b, :n] = torch.tensor(self.vocab.encode(self._words(tokens[:n])))
            cases[b, :n] = torch.tensor([word_case(t) for t in tokens[:n]])
            for t, token in enumerate(tokens[:n]):
                ids = self.chars.encode(list(token[:W]))
                chars[b, t, : len(ids)] = torch.tensor(ids)
        return {"x": x, "chars": chars, "cases": cases, "lengths": torch.tensor(lengths)}

    def _encode(self, sentences: list[NerSentence]) -> TensorData:
        tensors = self.encode_tokens([s.tokens for s in sentences], self.meta["max_len"])
        index = {tag: k for k, tag in enumerate(self.meta["tags"])}
        y = torch.zeros_like(tensors["x"])  # (N, T); 0 (= "O") at padded steps, which the loss masks
        for b, s in enumerate(sentences):
            n = int(tensors["lengths"][b])
            y[b, :n] = torch.tensor([index[tag] for tag in s.tags[:n]])
        ambiguous = torch.tensor([s.ambiguous if s.ambiguous < int(n) else -1
                                  for s, n in zip(sentences, tensors["lengths"])])  # (N,); -1: none
        if not self.options.char_features:
            del tensors["chars"]
        if not self.options.case_features:
            del tensors["cases"]
        return TensorData({**tensors, "y": y, "ambiguous": ambiguous})

    def baselines(self, splits) -> dict[str, dict[str, float]]:
        """majority ("O", the most frequent tag, everywhere) and word_tag (each word's most
        frequent training tag; rare and unseen words: ``<unk>``'s): entity f1 and token
        accuracy on the test split, with the metrics' own rules."""
        train, test = splits["train"].tensors, splits["test"].tensors
        y, lengths = test["y"], test["lengths"]
        guesses = {"majority": torch.zeros_like(y),
                   "word_tag": tag_by_word(train["x"], train["y"], train["lengths"], test["x"])}
        out = {}
        for name, pred in guesses.items():
            totals = {"loss_sum": 0.0, "count": int(lengths.sum()), **self._stats(pred, y, lengths, test["ambiguous"])}
            scores = self.metrics(totals)
            out[name] = {k: scores[k] for k in ("f1", "accuracy", "precision", "recall")}
        return out

    # -- model and loss ---------------------------------------------------------------------
    def build_model(self) -> SequenceTagger:
        o = self.options
        return SequenceTagger(TaggerConfig(
            vocab_size=len(self.vocab), num_tags=len(self.meta["tags"]), embedding_dim=o.embedding_dim,
            char_vocab_size=len(self.chars) if o.char_features else 0, char_embedding_dim=o.char_embedding_dim,
            char_channels=o.char_channels, case_dim=4 if o.case_features else 0, cell=o.cell, hidden_size=o.hidden_size, num_layers=o.num_layers,
            bidirectional=o.bidirectional, dropout=o.dropout, crf=o.crf,
        ))

    def step(self, model, batch, state=None) -> StepOutput:
        lengths = batch["lengths"]  # (B,)
        T = int(lengths.max())
        x, y = batch["x"][:, :T], batch["y"][:, :T]  # (B, T): the bucket's longest sentence, no more padding
        chars = batch["chars"][:, :T] if "chars" in batch else None  # (B, T, W)
        cases = batch["cases"][:, :T] if "cases" in batch else None  # (B, T)
        if model.training and self.options.word_dropout > 0:
            drop = (torch.rand(x.shape, device=x.device) < self.options.word_dropout) & (x != self.vocab.pad_index)
            x = x.masked_fill(drop, self.vocab.unk_index)
        emissions = model(x, lengths, chars, cases)  # (B, T, K)
        tagger = getattr(model, "module", model)  # (under DDP, the wrapped model's loss and decoding)
        loss_sum = tagger.loss(emissions, y, lengths)
        count = int(lengths.sum())
        if model.training:  # decoding and entity counts only when evaluating
            return StepOutput(loss_sum, count, {})
        pred = tagger.decode(emissions, lengths)  # (B, T)
        return StepOutput(loss_sum, count, self._stats(pred, y, lengths, batch["ambiguous"]))

    def _stats(self, pred: torch.Tensor, y: torch.Tensor, lengths: torch.Tensor, ambiguous: torch.Tensor) -> dict:
        tags = self.meta["tags"]
        valid = torch.arange(y.shape[1], device=y.device) < lengths.unsqueeze(1)  # (B, T)
        stats = {"correct": int(((pred == y) & valid).sum())}
        gold_seqs = [[tags[i] for i in row[:n]] for row, n in zip(y.tolist(), lengths.tolist())]
        pred_seqs = [[tags[i] for i in row[:n]] for row, n in zip(pred.tolist(), lengths.tolist())]
        overall = entity_counts(gold_seqs, pred_seqs)
        amb = [b for b, a in enumerate(ambiguous.tolist()) if a >= 0]
        sub = entity_counts([gold_seqs[b] for b in amb], [pred_seqs[b] for b in amb])
        stats.update(tp=overall.tp, predicted=overall.predicted, gold=overall.gold,
                     amb_sentences=len(amb), amb_tp=sub.tp, amb_predicted=sub.predicted, amb_gold=sub.gold,
                     amb_word_correct=sum(int(pred[b, ambiguous[b]] == y[b, ambiguous[b]]) for b in amb))
        return stats

    def metrics(self, totals: dict) -> dict[str, float]:
        """loss (per token); from evaluation: token accuracy, entity precision / recall / f1, and
        on the ambiguous sentences (when there are any) ambiguous_f1 and ambiguous_word_accuracy."""
        count = max(totals["count"], 1)
        out = {"loss": totals["loss_sum"] / count}
        if "tp" not in totals:  # a training step
            return out
        scores = precision_recall_f1(EntityCounts(totals["tp"], totals["predicted"], totals["gold"]))
        out.update(accuracy=totals["correct"] / count, precision=scores.precision, recall=scores.recall, f1=scores.f1)
        if totals.get("amb_sentences", 0) > 0:
            amb = precision_recall_f1(EntityCounts(totals["amb_tp"], totals["amb_predicted"], totals["amb_gold"]))
            out.update(ambiguous_f1=amb.f1, ambiguous_word_accuracy=totals["amb_word_correct"] / totals["amb_sentences"])
        return out

    # -- using a trained model --------------------------------------------------------------
    @torch.no_grad()
    def predict(self, model, inputs: list[str], options: NoOptions) -> list[dict]:
        """Each input is a sentence; returns its tokens, their tags, and the entities found.

        ``{"input", "tagged": "Teddy/B-PER Roosevelt/I-PER ...", "tokens", "tags",
        "entities": [{"text", "type", "start", "end"}]}`` (``end`` exclusive, in tokens).
        """
        if not inputs:
            raise ValueError('tagging: predict needs at least one INPUT sentence, e.g. rnnkit predict RUN "Teddy Roosevelt visited Paris"')
        tags = self.meta["tags"]
        token_lists = [tokenize(text) for text in inputs]
        predicted: list[list[str]] = [[] for _ in inputs]
        present = [k for k, tokens in enumerate(token_lists) if tokens]  # a text without tokens gets no tags
        for start in range(0, len(present), 256):
            chunk = present[start : start + 256]
            batch = move_to_device(self.encode_tokens([token_lists[k] for k in chunk]), module_device(model))
            lengths = batch["lengths"]
            o = self.options
            emissions = model(batch["x"], lengths, batch["chars"] if o.char_features else None,
                              batch["cases"] if o.case_features else None)
            pred = model.decode(emissions, lengths)  # (N, T)
            for k, row, n in zip(chunk, pred.tolist(), lengths.tolist()):
                predicted[k] = [tags[i] for i in row[:n]]
        rows = []
        for text, tokens, tag_seq in zip(inputs, token_lists, predicted):
            found = [{"text": " ".join(tokens[s.start : s.end]), "type": s.type, "start": s.start, "end": s.end}
                     for s in entities(tag_seq)]
            rows.append({"input": text, "tagged": " ".join(f"{w}/{t}" for w, t in zip(tokens, tag_seq)),
                         "tokens": tokens, "tags": tag_seq, "entities": found})
        return rows

