"""Parallel text for translation: number words made by num2words, and tab-separated files.

The default data of the ``translate`` task is the numbers ``0 .. max_number`` written out in
two languages by num2words (e.g. 205: "two hundred and five" -> "deux cent cinq"). The split
is not random: whole kinds of numbers are held out, so the test measures whether the model
composes what it learned rather than whether it remembers neighbours.

The held-out scheme (:func:`split_numbers`)::

    test  = numbers in the test thousands blocks (e.g. 23 -> 23,000..23,999)
            + numbers whose digits end in a test ending (e.g. "77" -> 77, 177, ..., 99,977)
    val   = the same with the val blocks / endings (minus anything already in test)
    train = everything else

With the defaults (test blocks 23 and 58, ending "77"; val block 41, ending "38"), training
never sees the prefix "twenty-three thousand" nor a number ending in "seventy-seven", but it
does see "twenty-three" at the end of numbers (123, 4,023, ...) and "seventy-seven" as a
thousands prefix (77,000..77,999): the test asks for the known pieces in new positions.

:func:`read_parallel_tsv` reads any ``source<TAB>target`` file, one pair per line; a malformed
line raises ``ValueError`` naming the file and the line.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import NamedTuple, Sequence

from ._files import read_text, text_lines

__all__ = ["NumberSplit", "split_numbers", "number_pairs", "parse_int_list", "read_parallel_tsv", "ParallelText"]


class NumberSplit(NamedTuple):
    """The numbers of each split, ascending, and why each test/val number is held out.

    ``*_groups[k]`` says why ``*_numbers[k]`` is held out: 1 = in a held-out thousands block
    (the value range), 2 = ends in a held-out ending (the pattern), 3 = both.
    """

    train: list[int]
    val: list[int]
    test: list[int]
    val_groups: list[int]
    test_groups: list[int]


class ParallelText(NamedTuple):
    """Aligned source and target sentences."""

    sources: list[str]
    targets: list[str]


def parse_int_list(owner: str, name: str, text: str) -> list[int]:
    """ "23, 58" -> [23, 58]; "" -> []. Anything else raises naming ``owner`` and ``name``."""
    items = [item.strip() for item in text.split(",") if item.strip()]
    if not all(item.isdigit() for item in items):
        raise ValueError(f"{owner}: {name} must be comma-separated non-negative integers, got {text!r}")
    return [int(item) for item in items]


def _group(n: int, blocks: set[int], endings: Sequence[str]) -> int:
    in_block = n // 1000 in blocks
    in_ending = any(str(n).endswith(e) for e in endings)
    return int(in_block) + 2 * int(in_ending)


def split_numbers(max_number: int, test_blocks: Sequence[int], test_endings: Sequence[str],
                  val_blocks: Sequence[int], val_endings: Sequence[str]) -> NumberSplit:
    """Split ``0 .. max_number`` by the held-out scheme of the module docstring.

    Args:
        max_number: the largest number, >= 999.
        test_blocks / val_blocks: thousands blocks k (the numbers k*1000 .. k*1000+999), each
            block within ``0 .. max_number``.
        test_endings / val_endings: digit strings; a number is held out when its decimal
            digits end with one of them ("77" holds out 77, 177, 1,077, ...; "05" holds out
            105, 205, ... but not 5).

    A number held out for test is never in val; every split must be non-empty.
    """
    owner = "split_numbers"
    if not (isinstance(max_number, int) and max_number >= 999):
        raise ValueError(f"{owner}: max_number must be an int >= 999, got {max_number!r}")
    for name, blocks in (("test_blocks", test_blocks), ("val_blocks", val_blocks)):
        bad = [b for b in blocks if not 0 <= b <= max_number // 1000]
        if bad:
            raise ValueError(f"{owner}: {name} must lie in 0..{max_number // 1000} (max_number {max_number}), got {bad}")
    for name, endings in (("test_endings", test_endings), ("val_endings", val_endings)):
        bad = [e for e in endings if not (isinstance(e, str) and e.isdigit())]
        if bad:
            raise ValueError(f"{owner}: {name} must be strings of digits, got {bad}")
    overlap = set(test_blocks) & set(val_blocks)
    if overlap:
        raise ValueError(f"{owner}: a block cannot be held out for both test and val, got {sorted(overlap)} in both")
    train, val, test, val_groups, test_groups = [], [], [], [], []
    for n in range(max_number + 1):
        g = _group(n, set(test_blocks), test_endings)
        if g:
            test.append(n)
            test_groups.append(g)
            continue
        g = _group(n, set(val_blocks), val_endings)
        if g:
            val.append(n)
            val_groups.append(g)
        else:
            train.append(n)
    for name, part in (("train", train), ("val", val), ("test", test)):
        if not part:
            raise ValueError(f"{owner}: the {name} split is empty with max_number={max_number}, "
                             f"test blocks {list(test_blocks)} / endings {list(test_endings)}, "
                             f"val blocks {list(val_blocks)} / endings {list(val_endings)}")
    return NumberSplit(train, val, test, val_groups, test_groups)


def number_pairs(numbers: Sequence[int], source_lang: str = "en", target_lang: str = "fr") -> ParallelText:
    """Each number written out by num2words in both languages.

    >>> number_pairs([205, 71])
    ParallelText(sources=['two hundred and five', 'seventy-one'], targets=['deux cent cinq', 'soixante et onze'])
    """
    try:
        from num2words import num2words
    except ModuleNotFoundError:
        raise ValueError("number_pairs: the default translate data needs the num2words package "
                         "(pip install num2words==0.5.14)") from None
    for name, lang in (("source_lang", source_lang), ("target_lang", target_lang)):
        try:
            num2words(1, lang=lang)
        except NotImplementedError:
            raise ValueError(f"number_pairs: {name} must be a language num2words knows (e.g. en, fr, de, es), "
                             f"got {lang!r}") from None
    return ParallelText([num2words(n, lang=source_lang) for n in numbers],
                        [num2words(n, lang=target_lang) for n in numbers])


def read_parallel_tsv(path: str | os.PathLike) -> ParallelText:
    """A ``source<TAB>target`` file, one pair per line (UTF-8); blank lines are skipped.

    A line without a tab, with more than one tab, or with an empty side raises
    ``ValueError("read_parallel_tsv: FILE line N: ...")``; so does a file over 512 MiB or not UTF-8.
    """
    path = Path(path)
    text = read_text("read_parallel_tsv", path)
    sources, targets = [], []
    for line_no, line in enumerate(text_lines(text), start=1):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        fields = line.split("\t")
        if len(fields) != 2:
            got = "no tab" if len(fields) == 1 else f"{len(fields) - 1} tabs"
            raise ValueError(f"read_parallel_tsv: {path} line {line_no}: expected a source and a target "
                             f"separated by one tab, got {got}: {line[:60]!r}")
        source, target = (f.strip() for f in fields)
        for side, value in (("source", source), ("target", target)):
            if not value:
                raise ValueError(f"read_parallel_tsv: {path} line {line_no}: the {side} is empty")
        sources.append(source)
        targets.append(target)
    if not sources:
        raise ValueError(f"read_parallel_tsv: {path} holds no pairs")
    return ParallelText(sources, targets)
