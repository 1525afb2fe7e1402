"""Tokenisers and the vocabulary that maps tokens to integer ids.

One :class:`Vocab` class serves character- and word-level models alike: build it from
token sequences made by :func:`char_tokenize` or :func:`word_tokenize`.

>>> vocab = Vocab.build([word_tokenize("The cat sat."), word_tokenize("The dog!")])
>>> vocab.encode(["the", "cat", "purred"])
[4, 5, 1]
>>> vocab.decode([2, 4, 6, 0, 0])
['the', 'sat']
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from ..checks import check_bool, check_int

__all__ = ["DEFAULT_SPECIALS", "Vocab", "char_tokenize", "word_tokenize"]

DEFAULT_SPECIALS: tuple[str, ...] = ("<pad>", "<unk>", "<bos>", "<eos>")
_FORMAT = "rnnkit.Vocab"  # tag written into the JSON so a wrong file fails loudly
_VERSION = 1
# A word is a run of letters/digits/underscores, optionally joined by apostrophes
# ("don't", "o'clock"); every other non-space character is a token of its own.
_WORD_RE = re.compile(r"\w+(?:['\u2019]\w+)*|[^\w\s]")


def char_tokenize(text: str) -> list[str]:
    """Split ``text`` into characters; spaces and newlines are kept as tokens.

    >>> char_tokenize("hi !")
    ['h', 'i', ' ', '!']
    """
    if not isinstance(text, str):
        raise TypeError(f"char_tokenize: text must be a str, got {type(text).__name__}")
    return list(text)


def word_tokenize(text: str, lower: bool = True) -> list[str]:
    """Split ``text`` into words and single punctuation marks; whitespace is dropped.

    >>> word_tokenize("Don't panic, Arthur!")
    ["don't", 'panic', ',', 'arthur', '!']
    """
    if not isinstance(text, str):
        raise TypeError(f"word_tokenize: text must be a str, got {type(text).__name__}")
    check_bool("word_tokenize", "lower", lower)
    return _WORD_RE.findall(text.lower() if lower else text)


def _check_token_sequence(owner: str, name: str, tokens: object) -> None:
    # A bare str is iterable too, and iterating it silently gives characters: the
    # classic bug is passing one word list where a list of sequences was meant.
    if isinstance(tokens, str):
        raise TypeError(
            f"{owner}: {name} must be a sequence of tokens, got the str {tokens[:20]!r}; "
            "split it first with char_tokenize or word_tokenize"
        )


@dataclass(frozen=True)
class Vocab:
    """A bijection between tokens and ids ``0 .. len(vocab) - 1``.

    Ids ``0 .. len(specials) - 1`` are the special tokens, in the order given; the roles
    go by position: ``specials[0]`` pads (``pad_index == 0``), ``specials[1]`` stands for
    unknown tokens (``unk_index == 1``), and, when present, ``specials[2]`` and
    ``specials[3]`` begin and end a sequence (``bos_index == 2``, ``eos_index == 3``).
    Regular ``tokens`` follow, in id order.

    Args:
        tokens: regular tokens, in id order (id of ``tokens[k]`` is ``len(specials) + k``);
            unique, and none of them a special.
        specials: special tokens, at least pad and unk; default
            ``("<pad>", "<unk>", "<bos>", "<eos>")``.

    Use :meth:`build` to count tokens in a corpus; the constructor takes a finished list.
    """

    tokens: tuple[str, ...]
    specials: tuple[str, ...] = DEFAULT_SPECIALS
    _stoi: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        # Lists are accepted and frozen to tuples, so equality and hashing behave.
        object.__setattr__(self, "tokens", tuple(self.tokens))
        object.__setattr__(self, "specials", tuple(self.specials))
        if len(self.specials) < 2:
            raise ValueError(
                f"Vocab: specials must hold at least pad and unk, got {self.specials!r}"
            )
        stoi: dict[str, int] = {}
        for name, group in (("specials", self.specials), ("tokens", self.tokens)):
            for k, token in enumerate(group):
                if not isinstance(token, str):
                    raise TypeError(
                        f"Vocab: {name}[{k}] must be a str, got {type(token).__name__} {token!r}"
                    )
                if token in stoi:
                    raise ValueError(f"Vocab: {name}[{k}] = {token!r} appears more than once")
                stoi[token] = len(stoi)
        object.__setattr__(self, "_stoi", stoi)

    @classmethod
    def build(
        cls,
        sequences: Iterable[Sequence[str]],
        min_freq: int = 1,
        max_size: int | None = None,
        specials: Sequence[str] = DEFAULT_SPECIALS,
    ) -> Vocab:
        """Count tokens in ``sequences`` and keep the frequent ones.

        Args:
            sequences: an iterable of token sequences, e.g. ``[["a", "b"], ["b"]]``.
                Tokens equal to a special are not counted (they already have an id).
            min_freq: keep tokens seen at least this often; default 1.
            max_size: cap on ``len(vocab)``, specials included; ``None`` (default) keeps
                every token with ``min_freq``. Must be ``>= len(specials)``.
            specials: as in the class docstring.

        Regular tokens are ordered by descending count, ties broken by first occurrence,
        so the same corpus always gives the same ids.
        """
        min_freq = check_int("Vocab.build", "min_freq", min_freq, minimum=1)
        specials = tuple(specials)
        if max_size is not None:
            max_size = check_int("Vocab.build", "max_size", max_size, minimum=len(specials))
        _check_token_sequence("Vocab.build", "specials", specials)
        _check_token_sequence("Vocab.build", "sequences", sequences)

        # Counter keeps insertion order, i.e. first occurrence, and sorted() is stable:
        # sorting by count alone therefore breaks ties by first occurrence.
        counts: Counter[str] = Counter()
        for k, seq in enumerate(sequences):
            _check_token_sequence("Vocab.build", f"sequences[{k}]", seq)
            for token in seq:
                if not isinstance(token, str):
                    raise TypeError(
                        f"Vocab.build: tokens must be str, got {type(token).__name__} "
                        f"{token!r} in sequences[{k}]"
                    )
                counts[token] += 1
        special_set = set(specials)
        ranked = [t for t, c in sorted(counts.items(), key=lambda tc: -tc[1])
                  if c >= min_freq and t not in special_set]
        if max_size is not None:
            ranked = ranked[: max_size - len(specials)]
        return cls(tokens=tuple(ranked), specials=specials)

    def __repr__(self) -> str:  # the default would list every token
        return f"Vocab(size={len(self)}, specials={self.specials!r})"

    # -- ids of the special tokens ------------------------------------------------
    @property
    def pad_index(self) -> int:
        """Id of the padding token: always 0."""
        return 0

    @property
    def unk_index(self) -> int:
        """Id that unknown tokens map to: always 1."""
        return 1

    @property
    def bos_index(self) -> int:
        """Id of the begin-of-sequence token (``specials[2]``): 2."""
        return self._special_index(2, "bos_index")

    @property
    def eos_index(self) -> int:
        """Id of the end-of-sequence token (``specials[3]``): 3."""
        return self._special_index(3, "eos_index")

    def _special_index(self, index: int, name: str) -> int:
        if len(self.specials) <= index:
            raise ValueError(
                f"Vocab: {name} needs at least {index + 1} specials, got {self.specials!r}"
            )
        return index

    # -- lookup -------------------------------------------------------------------
    @property
    def itos(self) -> tuple[str, ...]:
        """Every token in id order: specials, then regular tokens."""
        return self.specials + self.tokens

    def __len__(self) -> int:
        return len(self._stoi)

    def __contains__(self, token: object) -> bool:
        return token in self._stoi

    def encode(self, tokens: Iterable[str], add_bos: bool = False,
               add_eos: bool = False) -> list[int]:
        """Map tokens to ids; tokens not in the vocabulary map to ``unk_index``.

        ``add_bos`` / ``add_eos`` wrap the result in ``bos_index`` / ``eos_index``.
        """
        _check_token_sequence("Vocab.encode", "tokens", tokens)
        check_bool("Vocab.encode", "add_bos", add_bos)
        check_bool("Vocab.encode", "add_eos", add_eos)
        ids = [self._stoi.get(token, 1) for token in tokens]
        if add_bos:
            ids.insert(0, self.bos_index)
        if add_eos:
            ids.append(self.eos_index)
        return ids

    def decode(self, ids: Iterable[int] | torch.Tensor, skip_specials: bool = True) -> list[str]:
        """Map ids (a list or a 1-D tensor, shape ``(T,)``) back to tokens.

        With ``skip_specials`` (default) pad, bos, eos and any further specials are
        dropped; ``<unk>`` is kept, since it stands for a real token of the input.
        """
        check_bool("Vocab.decode", "skip_specials", skip_specials)
        if isinstance(ids, torch.Tensor):
            if ids.dim() != 1 or ids.is_floating_point():
                raise ValueError(f"Vocab.decode: ids must be a 1-D integer tensor, got "
                                 f"{ids.dtype} of shape {tuple(ids.shape)}")
            ids = ids.tolist()
        itos = self.itos
        out = []
        for k, i in enumerate(ids):
            i = check_int("Vocab.decode", f"ids[{k}]", i)
            if not 0 <= i < len(itos):
                raise ValueError(f"Vocab.decode: ids[{k}] must be in [0, {len(itos)}), got {i}")
            if skip_specials and i < len(self.specials) and i != self.unk_index:
                continue
            out.append(itos[i])
        return out

    # -- saving (plain JSON, never pickle) ------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict: ``{"format", "version", "specials", "tokens"}``."""
        return {"format": _FORMAT, "version": _VERSION,
                "specials": list(self.specials), "tokens": list(self.tokens)}

    @classmethod
    def from_dict(cls, state: Mapping[str, Any]) -> Vocab:
        """Inverse of :meth:`to_dict`."""
        if not isinstance(state, Mapping):
            raise TypeError(f"Vocab.from_dict: state must be a dict, got {type(state).__name__}")
        if state.get("format") != _FORMAT or state.get("version") != _VERSION:
            raise ValueError(
                f"Vocab.from_dict: state must have format {_FORMAT!r} version {_VERSION}, "
                f"got format {state.get('format')!r} version {state.get('version')!r}"
            )
        for key in ("specials", "tokens"):
            if not isinstance(state.get(key), list):
                raise ValueError(f"Vocab.from_dict: state[{key!r}] must be a list, "
                                 f"got {type(state.get(key)).__name__}")
        try:
            return cls(tokens=tuple(state["tokens"]), specials=tuple(state["specials"]))
        except (TypeError, ValueError) as e:  # "Vocab: tokens[3] = 'a' appears more than once"
            raise type(e)(f"Vocab.from_dict: {str(e).removeprefix('Vocab: ')}") from None

    def to_json(self, path: str | os.PathLike[str]) -> None:
        """Write :meth:`to_dict` as UTF-8 JSON; an existing file is replaced atomically."""
        path = Path(path)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=1), encoding="utf-8")
        os.replace(tmp, path)  # a crash mid-write leaves the old file intact

    @classmethod
    def from_json(cls, path: str | os.PathLike[str]) -> Vocab:
        """Read a file written by :meth:`to_json`."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
