"""Reversible tokenizers for sequence to sequence: word, character and subword (BPE) tokens.

Each tokenizer maps a text to tokens and its ``detokenize`` gives the *normalised* text back
exactly: lower-cased when ``lower``, runs of whitespace as one space, no space at the ends
(:func:`normalize_text`). Its ``build_vocab`` makes the :class:`~rnnkit.data.Vocab` of its
tokens, and ``to_dict`` / :func:`tokenizer_from_dict` save and restore it as plain JSON.

- ``word`` (:class:`WordTokenizer`): words and punctuation marks. A mark that was glued to the
  piece before it carries ``@`` on its left, glued to the piece after it ``@`` on its right,
  so ``"vingt-et-un,"`` -> ``vingt @-@ et @-@ un @,`` and ``"(ok)"`` -> ``(@ ok @)``. One
  vocabulary entry per word form: a word never seen in training is ``<unk>``.
- ``char`` (:class:`CharTokenizer`): characters, the space included.
- ``subword`` (:class:`SubwordTokenizer`): byte-pair encoding (HuggingFace ``tokenizers``)
  of the ``word`` tokens, trained on the training texts; a word's last piece ends in ``</w>``
  (Sennrich et al.'s BPE), so ``"vingt-sept"`` -> ``vingt</w> @-@</w> sept</w>`` and "sept"
  is one token wherever it stands (a space-marking scheme such as SentencePiece's ``▁sept``
  would make the word after a hyphen another token). Its vocabulary holds every merge and
  every training character, at the end of a word and inside one, so an unseen word made of
  seen characters (a German compound of seen parts: ``donau dampf schiff</w>``) is spelled
  from pieces; only a character never seen in training is ``<unk>``.

>>> tok = WordTokenizer()
>>> tok.tokenize("Quatre-vingt-un mille, (ok)")
['quatre', '@-@', 'vingt', '@-@', 'un', 'mille', '@,', '(@', 'ok', '@)']
>>> tok.detokenize(tok.tokenize("Quatre-vingt-un mille, (ok)"))
'quatre-vingt-un mille, (ok)'
"""
from __future__ import annotations

import json
import re
from typing import Any, Iterable, Mapping, Protocol, Sequence

from ..checks import check_bool, check_choice, check_int
from .text import DEFAULT_SPECIALS, Vocab

__all__ = ["TOKENIZERS", "GLUE", "HYPHEN", "TextTokenizer", "WordTokenizer", "CharTokenizer", "SubwordTokenizer",
           "train_tokenizer", "tokenizer_from_dict", "normalize_text", "translation_tokenize",
           "translation_detokenize"]

TOKENIZERS = ("word", "char", "subword")
GLUE = "@"  # marks the side of a punctuation token that was glued to its neighbour
HYPHEN = "@-@"  # the token of a hyphen inside a word
# A piece is a run of word characters (and "@", which is never a mark: "@," stays unambiguous),
# or one other non-space character: a punctuation mark.
_PIECE_RE = re.compile(r"[\w@]+|[^\w\s@]")
_MARK_RE = re.compile(r"[^\w\s@]")


def normalize_text(text: str, lower: bool = True) -> str:
    """What every tokenizer here gives back: lower-cased (when ``lower``), whitespace runs as one space.

    >>> normalize_text("  Deux   Cent\\tCinq ")
    'deux cent cinq'
    """
    if not isinstance(text, str):
        raise TypeError(f"normalize_text: text must be a str, got {type(text).__name__}")
    return " ".join((text.lower() if lower else text).split())


def translation_tokenize(text: str, lower: bool = True, split_punctuation: bool = True) -> list[str]:
    """Words and punctuation marks, each glued mark marked with ``@`` on its glued side(s).

    ``split_punctuation=False`` is the tokenizer of runs made before punctuation was split:
    whitespace words, only an in-word hyphen a token ``@-@`` of its own.

    >>> translation_tokenize("Quatre-vingt-un mille")
    ['quatre', '@-@', 'vingt', '@-@', 'un', 'mille']
    >>> translation_tokenize("one thousand, l'an -x")
    ['one', 'thousand', '@,', 'l', "@'@", 'an', '-@', 'x']
    """
    if not isinstance(text, str):
        raise TypeError(f"translation_tokenize: text must be a str, got {type(text).__name__}")
    tokens = []
    for word in (text.lower() if lower else text).split():
        if not split_punctuation:
            parts = word.split("-")
            if word == "-" or not all(parts):  # "-", "-x", "x--y": hyphens at the edges stay inside the word
                tokens.append(word)
            else:
                for k, part in enumerate(parts):
                    tokens.extend([HYPHEN, part] if k else [part])
            continue
        pieces = _PIECE_RE.findall(word)
        for k, piece in enumerate(pieces):
            if _MARK_RE.fullmatch(piece):  # glued to the piece before (k > 0) and/or after
                piece = (GLUE if k > 0 else "") + piece + (GLUE if k < len(pieces) - 1 else "")
            tokens.append(piece)
    return tokens


def translation_detokenize(tokens: Sequence[str]) -> str:
    """The inverse of :func:`translation_tokenize` (on its normalised text).

    >>> translation_detokenize(['quatre', '@-@', 'vingt', '@-@', 'un', 'mille', '@,'])
    'quatre-vingt-un mille,'
    """
    out: list[str] = []
    glue_next = True  # no space before the first token
    for token in tokens:
        left, right, text = _glued(token)
        if not (glue_next or left):
            out.append(" ")
        out.append(text)
        glue_next = right
    return "".join(out)


def _glued(token: str) -> tuple[bool, bool, str]:
    """(glued on the left, glued on the right, the text) of a token of translation_tokenize."""
    if len(token) == 3 and token[0] == token[2] == GLUE and _MARK_RE.fullmatch(token[1]):
        return True, True, token[1]
    if len(token) == 2 and token[0] == GLUE and _MARK_RE.fullmatch(token[1]):
        return True, False, token[1]
    if len(token) == 2 and token[1] == GLUE and _MARK_RE.fullmatch(token[0]):
        return False, True, token[0]
    return False, False, token


class TextTokenizer(Protocol):
    """What a translation task needs of a tokenizer (the three below are ones)."""

    kind: str  # "word", "char" or "subword"
    lower: bool  # lower-case before tokenising

    def tokenize(self, text: str) -> list[str]:
        """The tokens of ``text``."""

    def detokenize(self, tokens: Sequence[str]) -> str:
        """The normalised text of ``tokens`` (``normalize_text`` of what was tokenised)."""

    def build_vocab(self, sequences: Iterable[Sequence[str]]) -> Vocab:
        """The vocabulary of the tokenised training texts ``sequences`` (``DEFAULT_SPECIALS`` first)."""

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able state; :func:`tokenizer_from_dict` restores it."""


class WordTokenizer:
    """Words and glued punctuation marks: :func:`translation_tokenize` and its inverse."""

    kind = "word"

    def __init__(self, lower: bool = True, split_punctuation: bool = True) -> None:
        self.lower = check_bool("WordTokenizer", "lower", lower)
        self.split_punctuation = check_bool("WordTokenizer", "split_punctuation", split_punctuation)

    def tokenize(self, text: str) -> list[str]:
        return translation_tokenize(text, self.lower, self.split_punctuation)

    def detokenize(self, tokens: Sequence[str]) -> str:
        if not self.split_punctuation:  # the old inverse: only "@-@" glues
            return " ".join(tokens).replace(f" {HYPHEN} ", "-")
        return translation_detokenize(tokens)

    def build_vocab(self, sequences: Iterable[Sequence[str]]) -> Vocab:
        return Vocab.build(sequences)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "lower": self.lower, "split_punctuation": self.split_punctuation}


class CharTokenizer:
    """Characters of the normalised text, the space included."""

    kind = "char"

    def __init__(self, lower: bool = True) -> None:
        self.lower = check_bool("CharTokenizer", "lower", lower)

    def tokenize(self, text: str) -> list[str]:
        return list(normalize_text(text, self.lower))

    def detokenize(self, tokens: Sequence[str]) -> str:
        return "".join(tokens)

    def build_vocab(self, sequences: Iterable[Sequence[str]]) -> Vocab:
        return Vocab.build(sequences)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "lower": self.lower}


class SubwordTokenizer:
    """Byte-pair encoding (HuggingFace ``tokenizers``) of each :class:`WordTokenizer` token.

    ``model`` is a trained ``tokenizers.Tokenizer`` (:meth:`train`) that splits on spaces and
    ends each word's last piece with ``</w>``; it is saved as its own JSON
    (``Tokenizer.to_str()``) and restored with ``Tokenizer.from_str``: no pickle.
    """

    kind = "subword"
    END = "</w>"  # the suffix of a word's last piece

    def __init__(self, model: Any, lower: bool = True) -> None:
        self.model, self.lower = model, check_bool("SubwordTokenizer", "lower", lower)
        self.words = WordTokenizer(lower)

    @classmethod
    def train(cls, texts: Iterable[str], vocab_size: int = 8000, lower: bool = True,
              min_frequency: int = 2) -> SubwordTokenizer:
        """BPE merges learned from the word tokens of ``texts`` until ``vocab_size`` pieces (or
        no pair is seen ``min_frequency`` times); every character of ``texts`` is a piece, both
        inside a word and ending one."""
        from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

        vocab_size = check_int("SubwordTokenizer", "vocab_size", vocab_size, minimum=1)
        model = Tokenizer(models.BPE(unk_token=DEFAULT_SPECIALS[1], end_of_word_suffix=cls.END))
        model.pre_tokenizer = pre_tokenizers.WhitespaceSplit()  # the word tokens, joined by spaces
        model.decoder = decoders.BPEDecoder(suffix=cls.END)
        trainer = trainers.BpeTrainer(vocab_size=vocab_size, min_frequency=min_frequency, show_progress=False,
                                      special_tokens=[DEFAULT_SPECIALS[1]], end_of_word_suffix=cls.END)
        words = WordTokenizer(lower)
        lines = [" ".join(words.tokenize(t)) for t in texts]
        # Each character once as a word of its own: "x</w>" gets an id even if no training word ends in x.
        lines.append(" ".join(sorted(set("".join(lines)) - {" "})))
        model.train_from_iterator(lines, trainer)
        return cls(model, lower)

    def tokenize(self, text: str) -> list[str]:
        return self.model.encode(" ".join(self.words.tokenize(text))).tokens

    def detokenize(self, tokens: Sequence[str]) -> str:
        return self.words.detokenize(self.model.decoder.decode(list(tokens)).split())

    def build_vocab(self, sequences: Iterable[Sequence[str]]) -> Vocab:
        """The pieces ``sequences`` use, by frequency (as ``Vocab.build``), then every other piece
        of the BPE model: an unseen word is spelled with pieces the training texts never needed
        on their own.

        The others are ordered characters first (sorted), then merges in the order they were
        learned: the model's own ids order characters as a hash map happens to, run to run.
        """
        used = Vocab.build(sequences)
        merges = json.loads(self.model.to_str())["model"]["merges"]
        rank = {"".join(m if isinstance(m, list) else m.split(" ")): k for k, m in enumerate(merges)}
        others = sorted((p for p in self.model.get_vocab() if p not in used and p not in DEFAULT_SPECIALS),
                        key=lambda p: (rank.get(p, -1), p))
        return Vocab(tokens=used.tokens + tuple(others), specials=DEFAULT_SPECIALS)

    def to_dict(self) -> dict[str, Any]:
        return {"kind": self.kind, "lower": self.lower, "model": self.model.to_str()}


def train_tokenizer(kind: str, texts: Sequence[str], lower: bool = True, vocab_size: int = 8000) -> TextTokenizer:
    """A ``kind`` tokenizer (one of ``TOKENIZERS``) for ``texts`` (the training split only)."""
    check_choice("train_tokenizer", "kind", kind, TOKENIZERS)
    if kind == "subword":
        return SubwordTokenizer.train(texts, vocab_size, lower)
    return WordTokenizer(lower) if kind == "word" else CharTokenizer(lower)


def tokenizer_from_dict(state: Mapping[str, Any]) -> TextTokenizer:
    """The tokenizer of a ``to_dict()``; a TypeError/ValueError names what is wrong."""
    if not isinstance(state, Mapping):
        raise TypeError(f"tokenizer_from_dict: state must be an object, got {type(state).__name__}")
    kind = check_choice("tokenizer_from_dict", "kind", state.get("kind"), TOKENIZERS)
    lower = state.get("lower")
    if kind == "word":
        return WordTokenizer(lower, state.get("split_punctuation", True))
    if kind == "char":
        return CharTokenizer(lower)
    from tokenizers import Tokenizer

    if not isinstance(state.get("model"), str):
        raise TypeError(f"tokenizer_from_dict: a subword state needs 'model', a tokenizers JSON string, "
                        f"got {type(state.get('model')).__name__}")
    try:
        model = Tokenizer.from_str(state["model"])
    except Exception as e:  # tokenizers raises its own Exception type on a malformed JSON
        raise ValueError(f"tokenizer_from_dict: 'model' is not a tokenizers JSON ({str(e)[:80]})") from None
    return SubwordTokenizer(model, lower)
