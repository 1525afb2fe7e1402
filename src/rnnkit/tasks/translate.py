"""translate: sequence to sequence, a sentence in, its translation out (seed 001/002).

Default data: English number words -> French number words, made by num2words for the
numbers 0..99,999 ("two hundred and five" -> "deux cent cinq"), split by *held-out
patterns*, not at random (``rnnkit.data.datasets.numbers``)::

    test  = the thousands blocks 23 and 58 (23,000..23,999, 58,000..58,999: a value range
            never seen) + every number whose digits end in "77" (a pattern never seen)
    val   = block 41 + every number ending in "38" (a different range and pattern, so model
            selection measures the same kind of generalisation without touching test)
    train = the rest (95,060 numbers; ``train_size`` can sample fewer)

Training sees "twenty-three" only at the end of numbers and "seventy-seven" only as a
thousands prefix (77,xxx); the test asks for them in the other position. With ``--data``,
any tab-separated ``source<TAB>target`` file (a line without a tab is an error naming file
and line), split at random (seeded) into train/val/test, or with ``--test-data``.

Tokens (``rnnkit.data.subwords``), chosen per side with ``source_tokenizer`` and
``target_tokenizer`` (``--source-tokenizer``, ``--target-tokenizer``), each fitted on the
training split only and saved in the run's preprocess.json (no pickle):

- ``subword`` (the default on both sides): BPE with at most ``subword_vocab_size`` pieces
  (HuggingFace ``tokenizers``; merges never cross a space or a punctuation mark), so a word
  never seen in training (a compound of seen parts: "donaudampfschiff") is still spelled;
- ``word``: words and punctuation marks, a glued mark marked on its glued side
  ("vingt-et-un," -> ``vingt @-@ et @-@ un @,``); an unseen word is ``<unk>``;
- ``char``: characters, the space included.

Text is lower-cased (``lower``) and whitespace-normalised; detokenising gives that text back
exactly. Exact match compares these strings; BLEU is sacreBLEU's corpus BLEU (default 13a
tokenisation, 0-100) of the same strings. A reference piece missing from the training
vocabulary is ``<unk>``, which decoding never produces, so such a sentence counts as wrong, as
it is. Baseline (``baselines``): ``copy_source``, the source sentence as its own translation
(exact match and BLEU on the test split), the floor a model must beat on text where much is
left untranslated (names, placeholders, numbers). A model without attention is the same task
with ``--attention none``: a training of its own, too costly to run after every training.

Model (``rnnkit.models.seq2seq``): bidirectional LSTM/GRU encoder, attention (Luong or
Bahdanau, or none), LSTM/GRU decoder trained with teacher forcing (cross-entropy per
target token, <eos> included). Evaluation decodes each sentence twice, greedily and with
beam search (``beam_size``, length-normalised by ``length ** length_alpha``), and reports
``exact_match`` / ``bleu`` (beam) and ``greedy_exact_match`` / ``greedy_bleu``; on the
number data also ``exact_match_range`` and ``exact_match_pattern`` (beam), the held-out
value range and pattern apart.
"""
from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import torch
import torch.nn.functional as F

from ..data import Vocab, pad_sequences, split_indices
from ..data.subwords import (HYPHEN, TOKENIZERS, TextTokenizer, normalize_text, tokenizer_from_dict,
                             train_tokenizer, translation_detokenize, translation_tokenize)
from ..data.datasets.numbers import (ParallelText, number_pairs, parse_int_list, read_parallel_tsv,
                                     split_numbers)
from ..export import DecoderStepGraph, EncoderGraph, ExportSpec
from ..models.seq2seq import ATTENTIONS, Seq2Seq, Seq2SeqConfig, beam_search, greedy_decode
from ..training import StepOutput, module_device
from ..viz.plots import save_figure
from ..training.runfiles import CheckpointError, positive
from .base import NoOptions, Task, TensorData, register, vocab_field

__all__ = ["TranslateTask", "TranslateOptions", "translation_tokenize", "translation_detokenize",
           "bleu_stats", "bleu_from_stats", "plot_attention", "HYPHEN"]

log = logging.getLogger(__name__)

_NGRAMS = 4  # BLEU's n-gram orders


def bleu_stats(hypotheses: Sequence[str], references: Sequence[str]) -> dict[str, float]:
    """sacreBLEU's sufficient statistics of a batch; sums of them over batches give corpus BLEU.

    Keys: ``bleu_sys_len``, ``bleu_ref_len``, ``bleu_correct_n`` and ``bleu_total_n`` (n = 1..4).
    """
    from sacrebleu.metrics import BLEU

    score = BLEU().corpus_score(list(hypotheses), [list(references)])
    stats = {"bleu_sys_len": float(score.sys_len), "bleu_ref_len": float(score.ref_len)}
    for n in range(_NGRAMS):
        stats[f"bleu_correct_{n + 1}"] = float(score.counts[n])
        stats[f"bleu_total_{n + 1}"] = float(score.totals[n])
    return stats


def bleu_from_stats(stats: dict, prefix: str = "") -> float:
    """Corpus BLEU (0-100) from summed :func:`bleu_stats` (keys optionally prefixed)."""
    from sacrebleu.metrics import BLEU

    correct = [int(stats[f"{prefix}bleu_correct_{n + 1}"]) for n in range(_NGRAMS)]
    total = [int(stats[f"{prefix}bleu_total_{n + 1}"]) for n in range(_NGRAMS)]
    # smooth_method="exp" is BLEU()'s default, so this is what corpus_score says of the whole corpus.
    return float(BLEU.compute_bleu(correct, total, int(stats[f"{prefix}bleu_sys_len"]),
                                   int(stats[f"{prefix}bleu_ref_len"]), smooth_method="exp").score)


@dataclass
class TranslateOptions:
    # -- data
    data: str = ""  # "" = number words from num2words; else a tab-separated source<TAB>target file
    test_data: str = ""  # with --data: a separate test file; "" = carve test_fraction off --data
    val_fraction: float = 0.1  # of --data (after test), for model selection (seeded)
    test_fraction: float = 0.1  # of --data, when there is no --test-data
    source_lang: str = "en"  # num2words language of the source
    target_lang: str = "fr"  # num2words language of the target
    max_number: int = 99999  # the numbers 0..max_number
    test_blocks: str = "23,58"  # thousands blocks held out for test (23 -> 23,000..23,999)
    test_endings: str = "77"  # numbers ending in these digits are held out for test
    val_blocks: str = "41"  # the same, for val
    val_endings: str = "38"
    train_size: int = 0  # training pairs, sampled (seeded) from the training numbers; 0 = all
    val_size: int = 1000  # val pairs, sampled (seeded) from the val numbers; 0 = all
    lower: bool = True  # lower-case source and target
    source_tokenizer: str = "subword"  # word | char | subword (BPE fitted on the training sources)
    target_tokenizer: str = "subword"  # word | char | subword: subword and char can spell unseen words
    subword_vocab_size: int = 8000  # BPE pieces at most per side (specials and characters included)
    # -- model
    embedding_dim: int = 64
    cell: str = "gru"  # lstm | gru (or any models.CELLS name)
    hidden_size: int = 128  # per encoder direction; the decoder has twice this
    num_layers: int = 1
    attention: str = "luong"  # luong | bahdanau | none
    dropout: float = 0.1
    # -- decoding
    beam_size: int = 5  # for exact_match / bleu and predict; greedy_* metrics are reported too
    length_alpha: float = 0.6  # beam score = log-prob / length ** length_alpha (0 = none)
    max_decode_len: int = 0  # target tokens at most, <eos> included; 0 = longest training target + 10

    def __post_init__(self) -> None:
        owner = "TranslateOptions"
        for name in ("embedding_dim", "hidden_size", "num_layers", "beam_size", "max_number", "subword_vocab_size"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 1):
                raise ValueError(f"{owner}: {name} must be an int >= 1, got {getattr(self, name)!r}")
        for name in ("train_size", "val_size", "max_decode_len"):
            if not (isinstance(getattr(self, name), int) and getattr(self, name) >= 0):
                raise ValueError(f"{owner}: {name} must be an int >= 0, got {getattr(self, name)!r}")
        for name in ("val_fraction", "test_fraction"):
            if not 0.0 < getattr(self, name) < 0.5:  # (NaN too)
                raise ValueError(f"{owner}: {name} must be in (0, 0.5), got {getattr(self, name)}")
        if not 0.0 <= self.dropout <= 1.0:
            raise ValueError(f"{owner}: dropout must be in [0, 1], got {self.dropout}")
        if not self.length_alpha >= 0.0:
            raise ValueError(f"{owner}: length_alpha must be >= 0, got {self.length_alpha}")
        for name in ("source_tokenizer", "target_tokenizer"):
            if getattr(self, name) not in TOKENIZERS:
                raise ValueError(f"{owner}: {name} must be one of {', '.join(TOKENIZERS)}, got {getattr(self, name)!r}")
        if self.attention not in ATTENTIONS:
            raise ValueError(f"{owner}: attention must be one of {', '.join(ATTENTIONS)}, got {self.attention!r}")
        from ..models import CELLS

        if self.cell not in CELLS:
            raise ValueError(f"{owner}: cell must be one of {', '.join(CELLS)}, got {self.cell!r}")
        for name in ("test_blocks", "val_blocks"):
            parse_int_list(owner, name, getattr(self, name))
        for name in ("test_endings", "val_endings"):
            parse_int_list(owner, name, getattr(self, name))
        if self.test_data and not self.data:
            raise ValueError(f"{owner}: test_data needs data (a training file), got test_data={self.test_data!r} "
                             "with the default number data, which has its own held-out test set")

    def endings(self, name: str) -> list[str]:
        return [e.strip() for e in getattr(self, name).split(",") if e.strip()]


def _sample(items: list, size: int, seed: int) -> list:
    """``size`` items drawn without replacement (seeded), in their original order; 0 = all."""
    if not size or size >= len(items):
        return items
    keep = sorted(random.Random(seed).sample(range(len(items)), size))
    return [items[k] for k in keep]


def _tokenizer_field(value, where) -> None:
    """A ``meta_schema`` spec: a tokenizer's ``to_dict()`` (``rnnkit.data.subwords``)."""
    try:
        tokenizer_from_dict(value)
    except (TypeError, ValueError) as e:
        raise CheckpointError(f"{where[0]}: field {where[1]!r} is not a tokenizer ({e})") from None


_tokenizer_field.describe = "a tokenizer"


@register
class TranslateTask(Task):
    name = "translate"
    description = "sequence to sequence: a bidirectional encoder, attention and a decoder translate a sentence"
    default_data = ("English -> French number words (num2words, 0..99,999; test = held-out thousands blocks "
                    "and endings); any tab-separated source<TAB>target file with --data")
    metric, mode = "exact_match", "max"
    Options = TranslateOptions
    export = ExportSpec({"encoder": EncoderGraph, "decoder": DecoderStepGraph}, lengths=True)  # decoding stays outside
    # The tokenizers are missing from runs made before they could be chosen: those used words.
    meta_schema = {"source_vocab": vocab_field(4), "target_vocab": vocab_field(4), "lower": bool,
                   "max_decode_len": positive(int), "source_tokenizer?": _tokenizer_field,
                   "target_tokenizer?": _tokenizer_field}
    # docs/results-translate.md: validation exact match reaches 1.0 after one epoch of the 95,060
    # training numbers; 3 epochs take about 10 minutes on one shared CPU core (the guard: 14).
    train_defaults = {"epochs": 3, "batch_size": 128, "lr": 3e-3, "schedule": "cosine", "max_minutes": 14.0,
                      "log_every": 50}

    def __init__(self, options: TranslateOptions) -> None:
        super().__init__(options)
        self._vocabs: tuple[Vocab, Vocab] | None = None
        self._tokenizers: tuple[TextTokenizer, TextTokenizer] | None = None

    # -- data -------------------------------------------------------------------------------
    def _splits(self, seed: int) -> dict[str, tuple[ParallelText, list[int]]]:
        """Raw pairs of each split, with each pair's held-out group (0 for user files)."""
        o = self.options
        if not o.data:
            split = split_numbers(o.max_number, parse_int_list("translate", "test_blocks", o.test_blocks),
                                  o.endings("test_endings"), parse_int_list("translate", "val_blocks", o.val_blocks),
                                  o.endings("val_endings"))
            train = _sample(split.train, o.train_size, seed)
            val = _sample(list(zip(split.val, split.val_groups)), o.val_size, seed + 1)
            parts = {"train": (train, [0] * len(train)), "val": tuple(map(list, zip(*val))),
                     "test": (split.test, split.test_groups)}
            return {name: (number_pairs(nums, o.source_lang, o.target_lang), groups)
                    for name, (nums, groups) in parts.items()}
        pairs = read_parallel_tsv(o.data)
        n = len(pairs.sources)
        if o.test_data:
            test = read_parallel_tsv(o.test_data)
            val_part, train_part = split_indices(n, (o.val_fraction, 1.0 - o.val_fraction), seed=seed)
        else:
            test_part, val_part, train_part = split_indices(
                n, (o.test_fraction, o.val_fraction, 1.0 - o.test_fraction - o.val_fraction), seed=seed)
            test = _pick(pairs, test_part)
        out = {"train": _pick(pairs, train_part), "val": _pick(pairs, val_part), "test": test}
        if min(len(p.sources) for p in out.values()) == 0:
            raise ValueError(f"translate: --data {o.data} has too few pairs ({n}) for non-empty train/val/test "
                             f"splits with val_fraction={o.val_fraction}, test_fraction={o.test_fraction}")
        return {name: (p, [0] * len(p.sources)) for name, p in out.items()}

    def prepare(self, seed: int) -> dict[str, TensorData]:
        o = self.options
        splits = self._splits(seed)
        train = splits["train"][0]
        # Both tokenizers and vocabularies are fitted on the training split only.
        source_tok = train_tokenizer(o.source_tokenizer, train.sources, o.lower, o.subword_vocab_size)
        target_tok = train_tokenizer(o.target_tokenizer, train.targets, o.lower, o.subword_vocab_size)
        src_tokens = [source_tok.tokenize(s) for s in train.sources]
        tgt_tokens = [target_tok.tokenize(t) for t in train.targets]
        source_vocab, target_vocab = source_tok.build_vocab(src_tokens), target_tok.build_vocab(tgt_tokens)
        self._vocabs, self._tokenizers = (source_vocab, target_vocab), (source_tok, target_tok)
        longest = max(len(t) for t in tgt_tokens) + 1  # <eos> included
        self.meta = {
            "source_vocab": source_vocab.to_dict(), "target_vocab": target_vocab.to_dict(), "lower": o.lower,
            "source_tokenizer": source_tok.to_dict(), "target_tokenizer": target_tok.to_dict(),
            "max_decode_len": o.max_decode_len or longest + 10,
            "sizes": {name: len(pairs.sources) for name, (pairs, _) in splits.items()},
            "examples": {name: [pairs.sources[0], pairs.targets[0]] for name, (pairs, _) in splits.items()},
        }
        log.info("translate: %s pairs, vocabularies %d (source, %s) and %d (target, %s)", self.meta["sizes"],
                 len(source_vocab), source_tok.kind, len(target_vocab), target_tok.kind)
        return {name: self._encode(pairs, groups) for name, (pairs, groups) in splits.items()}

    def load_data(self, path: str) -> TensorData:
        """A tab-separated source<TAB>target file, encoded with the run's vocabularies."""
        pairs = read_parallel_tsv(path)
        return self._encode(pairs, [0] * len(pairs.sources))

    @property
    def vocabs(self) -> tuple[Vocab, Vocab]:
        """(source vocabulary, target vocabulary)."""
        if self._vocabs is None:  # a task restored from a run directory
            self._vocabs = (Vocab.from_dict(self.meta["source_vocab"]), Vocab.from_dict(self.meta["target_vocab"]))
        return self._vocabs

    @property
    def tokenizers(self) -> tuple[TextTokenizer, TextTokenizer]:
        """(source tokenizer, target tokenizer); a run without them in its meta used words."""
        if self._tokenizers is None:  # a task restored from a run directory
            legacy = {"kind": "word", "lower": self.meta["lower"], "split_punctuation": False}
            self._tokenizers = (tokenizer_from_dict(self.meta.get("source_tokenizer", legacy)),
                                tokenizer_from_dict(self.meta.get("target_tokenizer", legacy)))
        return self._tokenizers

    def detokenize(self, ids) -> str:
        """Target ids (specials skipped) -> the normalised text they spell."""
        return self.tokenizers[1].detokenize(self.vocabs[1].decode(ids))

    def encode_sources(self, sources: Sequence[str]) -> tuple[torch.Tensor, torch.Tensor]:
        """Sentences -> ids (N, S) zero-padded, lengths (N,); an empty sentence becomes one <unk>."""
        vocab, tokenizer = self.vocabs[0], self.tokenizers[0]
        ids = [vocab.encode(tokenizer.tokenize(s)) or [vocab.unk_index] for s in sources]
        batch = pad_sequences(ids)
        return batch.values, batch.lengths

    def _encode(self, pairs: ParallelText, groups: list[int]) -> TensorData:
        source, lengths = self.encode_sources(pairs.sources)  # (N, S), (N,)
        target_vocab, tokenizer = self.vocabs[1], self.tokenizers[1]
        # <bos> y_1 .. y_n <eos>: the decoder reads [:-1] and predicts [1:].
        ids = [target_vocab.encode(tokenizer.tokenize(t), add_bos=True, add_eos=True) for t in pairs.targets]
        target = pad_sequences(ids)
        return TensorData({"source": source, "lengths": lengths, "target": target.values,
                           "target_lengths": target.lengths, "group": torch.tensor(groups, dtype=torch.long)},
                          raw=pairs)

    def baselines(self, splits) -> dict[str, dict[str, float]]:
        """copy_source: each test source sentence (normalised) as its own translation, scored
        against the normalised references: exact_match and bleu, in the units of ``metrics``."""
        test, lower = splits["test"].raw, self.meta["lower"]
        copies = [normalize_text(s, lower) for s in test.sources]
        references = [normalize_text(t, lower) for t in test.targets]
        stats = bleu_stats(copies, references)
        exact = sum(c == r for c, r in zip(copies, references)) / max(len(references), 1)
        return {"copy_source": {"exact_match": exact, "bleu": bleu_from_stats(stats)}}

    # -- model and loss ---------------------------------------------------------------------
    def build_model(self) -> Seq2Seq:
        o = self.options
        source_vocab, target_vocab = self.vocabs
        return Seq2Seq(Seq2SeqConfig(
            source_vocab_size=len(source_vocab), target_vocab_size=len(target_vocab), embedding_dim=o.embedding_dim,
            cell=o.cell, hidden_size=o.hidden_size, num_layers=o.num_layers, attention=o.attention,
            dropout=o.dropout, pad_index=target_vocab.pad_index, unk_index=target_vocab.unk_index,
            bos_index=target_vocab.bos_index, eos_index=target_vocab.eos_index,
        ))

    def step(self, model, batch, state=None) -> StepOutput:
        lengths = batch["lengths"]  # (B,)
        source = batch["source"][:, : int(lengths.max())]  # (B, S): no more padding than the batch needs
        target = batch["target"][:, : int(batch["target_lengths"].max())]  # (B, T + 1)
        target_in, target_out = target[:, :-1], target[:, 1:]  # (B, T) each: teacher forcing
        logits = model(source, lengths, target_in).logits  # (B, T, V)
        pad = self.vocabs[1].pad_index
        loss_sum = F.cross_entropy(logits.reshape(-1, logits.shape[-1]), target_out.reshape(-1),
                                   ignore_index=pad, reduction="sum")
        real = target_out != pad  # (B, T)
        stats = {"correct_tokens": int(((logits.argmax(-1) == target_out) & real).sum())}
        if not model.training:
            stats.update(self._decode_stats(model, source, lengths, target_out, batch["group"]))
        return StepOutput(loss_sum, int(real.sum()), stats)

    def _decode_stats(self, model, source, lengths, target_out, groups) -> dict[str, float]:
        """Exact-match counts and BLEU statistics of greedy and beam decoding of a batch."""
        references = [self.detokenize(row) for row in target_out]
        # A reference <unk> decodes to "<unk>", which no hypothesis contains: never an exact match.
        max_len, o = self.meta["max_decode_len"], self.options
        stats: dict[str, float] = {"sentences": len(references)}
        greedy = greedy_decode(model, source, lengths, max_len, o.length_alpha)
        beam = greedy if o.beam_size == 1 else beam_search(model, source, lengths, o.beam_size, max_len, o.length_alpha)
        for prefix, hyps in (("greedy_", greedy), ("", beam)):
            texts = [self.detokenize(h.tokens) for h in hyps]
            hits = [t == r for t, r in zip(texts, references)]
            stats[f"{prefix}exact"] = sum(hits)
            stats.update({f"{prefix}{k}": v for k, v in bleu_stats(texts, references).items()})
            if not prefix:
                for name, bit in (("range", 1), ("pattern", 2)):
                    member = [(int(g) & bit) > 0 for g in groups]
                    stats[f"{name}_sentences"] = sum(member)
                    stats[f"{name}_exact"] = sum(h for h, m in zip(hits, member) if m)
        return stats

    def metrics(self, totals: dict) -> dict[str, float]:
        """loss (per target token), token_accuracy (teacher-forced) and, when decoded,
        exact_match / bleu (beam), greedy_exact_match / greedy_bleu, exact_match_range / _pattern."""
        count = max(totals["count"], 1)
        out = {"loss": totals["loss_sum"] / count}
        if "correct_tokens" in totals:
            out["token_accuracy"] = totals["correct_tokens"] / count
        if totals.get("sentences"):
            n = totals["sentences"]
            out["exact_match"] = totals["exact"] / n
            out["bleu"] = bleu_from_stats(totals)
            out["greedy_exact_match"] = totals["greedy_exact"] / n
            out["greedy_bleu"] = bleu_from_stats(totals, "greedy_")
            for name in ("range", "pattern"):
                if totals.get(f"{name}_sentences"):
                    out[f"exact_match_{name}"] = totals[f"{name}_exact"] / totals[f"{name}_sentences"]
        return out

    # -- using a trained model --------------------------------------------------------------
    @torch.no_grad()
    def translate(self, model, sources: Sequence[str], beam_size: int | None = None) -> list[dict]:
        """Beam-search translations: ``{"input", "translation", "log_prob", "score"}`` per sentence."""
        o = self.options
        beam_size = o.beam_size if beam_size is None else beam_size
        rows = []
        for start in range(0, len(sources), 256):
            chunk = list(sources[start : start + 256])
            source, lengths = self.encode_sources(chunk)
            source = source.to(module_device(model))
            hyps = beam_search(model, source, lengths, beam_size, self.meta["max_decode_len"], o.length_alpha)
            for text, h in zip(chunk, hyps):
                rows.append({"input": text, "translation": self.detokenize(h.tokens),
                             "log_prob": round(h.log_prob, 4), "score": round(h.score, 4)})
        return rows

    def predict(self, model, inputs: list[str], options: NoOptions) -> list[dict]:
        """Each input is a source sentence; returns its translation (beam search) and its scores."""
        if not inputs:
            raise ValueError('translate: predict needs at least one INPUT sentence, '
                             'e.g. rnnkit predict RUN "two hundred and five"')
        bad = [type(s).__name__ for s in inputs if not isinstance(s, str)]
        if bad:
            raise TypeError(f"translate: predict inputs must be str, got {bad[0]}")
        return self.translate(model, inputs)


def _pick(pairs: ParallelText, index: list[int]) -> ParallelText:
    return ParallelText([pairs.sources[i] for i in index], [pairs.targets[i] for i in index])


@torch.no_grad()
def plot_attention(run, source: str, path: str | Path) -> Path:
    """An attention heatmap (target tokens x source tokens) of ``run``'s translation of ``source``.

    ``run`` is a loaded run (``rnnkit.load``) of a model with attention. The weights are those
    of teacher-forcing the beam-search translation, which are the weights decoding saw.
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    task, model = run.task, run.model
    if model.config.attention == "none":
        raise ValueError("plot_attention: the run's model has no attention (attention='none')")
    source_vocab, target_vocab = task.vocabs
    ids, lengths = task.encode_sources([source])  # (1, S), (1,)
    ids = ids.to(module_device(model))
    hyp = beam_search(model, ids, lengths, task.options.beam_size, task.meta["max_decode_len"],
                      task.options.length_alpha)[0]
    target_in = torch.tensor([[target_vocab.bos_index, *hyp.tokens]], device=ids.device)  # (1, T): <bos> y_1 .. y_n
    weights = model(ids, lengths, target_in).attention[0].float().cpu()  # (T, S)
    rows = target_vocab.decode(hyp.tokens, skip_specials=False) + ["<eos>"]
    cols = source_vocab.decode(ids[0], skip_specials=False)
    fig, ax = plt.subplots(figsize=(max(5.0, 1 + 0.5 * len(cols)), 1.5 + 0.4 * len(rows)))
    ax.imshow(weights.numpy(), cmap="viridis", vmin=0.0, vmax=1.0, aspect="auto")
    ax.set_xticks(range(len(cols)), cols, rotation=60, ha="right")
    ax.set_yticks(range(len(rows)), rows)
    ax.set_xlabel("source token")
    ax.set_ylabel("target token")
    ax.set_title(f"{source}\n-> {task.detokenize(hyp.tokens)}", fontsize=9)
    return save_figure(fig, path)
