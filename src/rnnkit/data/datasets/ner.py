"""Named-entity data: a CoNLL reader / writer, and sentences generated with Faker from templates.

**CoNLL files** (``read_conll``, ``write_conll``): one token per line, columns separated by
whitespace, the token in the first column and its tag in the last (CoNLL-2003 has four
columns: word, part of speech, chunk, entity tag); a blank line between sentences;
``-DOCSTART-`` lines are skipped. Tags are BIO or BIOES (``O``, ``B-PER``, ``I-PER``,
``E-PER``, ``S-PER``). A malformed line (a token without a tag, a different number of
columns than the file's first line, a tag that is not BIO/BIOES) raises ``ValueError``
naming the file and the line, rather than being skipped.

**Generated sentences** (``generate_ner``): templates of person (PER), location (LOC) and
organisation (ORG) mentions, filled with Faker (``FAKER_VERSION``, seeded: the same seed and
version give the same sentences). Every template has an id, and the data splits by template
(``split_templates``), so the test sentences come from templates never seen in training.
For that to be learnable, the fillers' *form* tells their type (``_Filler``: a person is a
first and a last name, a place a town, state or country, an organisation a company) and a
quarter of the entity slots hold an entity of another type (``swap_fraction``), so that a
model learns names rather than which template words go with which type.

Some sentences are *ambiguous*: they begin (after an optional neutral opener such as
"Yesterday ,") with a word of ``AMBIGUOUS_WORDS`` whose tag only the words after it decide:
"Teddy bears are sold ..." (``O O``) vs "Teddy Roosevelt was born ..." (``B-PER I-PER``),
"Paris is famous ..." (``B-LOC``) vs "Paris Hilton works ..." (``B-PER I-PER``). The readings
are in ``AMBIGUOUS_READINGS``; the rule each follows is always the same (a bare word is one
reading, the word plus its next word the others), so a model that reads the sentence
backwards too can learn it, and one that reads left to right cannot. The word's position is
recorded in ``NerSentence.ambiguous`` (-1 in other sentences). Further entity slots of an
ambiguous sentence may hold such words too ("Teddy Roosevelt visited Paris"), by the same
rule; Faker's own fillers never contain them, so a sentence holds one iff it is ambiguous,
and ``NerSentence.ambiguous`` is the position of its first one (as ``mark_ambiguous`` finds).
"""
from __future__ import annotations

import logging
import os
import random
import re
from pathlib import Path
from typing import NamedTuple, Sequence

from ..tags import split_tag
from ._files import read_text, text_lines

__all__ = ["NerSentence", "read_conll", "write_conll", "mark_ambiguous", "generate_ner", "split_templates",
           "TEMPLATES", "AMBIGUOUS_READINGS", "AMBIGUOUS_WORDS", "OPENERS", "FAKER_VERSION", "tokenize"]

log = logging.getLogger(__name__)

FAKER_VERSION = "40.54.0"  # the version the bundled data was generated and measured with

# A token: a word (letters/digits, inner apostrophes as in O'Keeffe) or one punctuation mark.
_TOKEN_RE = re.compile(r"\w+(?:['\u2019]\w+)*|[^\w\s]")


def tokenize(text: str) -> list[str]:
    """Words and single punctuation marks, case kept: ``"Teddy's bears."`` -> ``["Teddy's", "bears", "."]``."""
    if not isinstance(text, str):
        raise TypeError(f"tokenize: text must be a str, got {type(text).__name__}")
    return _TOKEN_RE.findall(text)


class NerSentence(NamedTuple):
    tokens: list[str]
    tags: list[str]
    template: int = -1  # id of the template it was generated from; -1 for a file's sentences
    ambiguous: int = -1  # position of its ambiguous word (AMBIGUOUS_WORDS); -1 if none


# -- CoNLL files ----------------------------------------------------------------------------------

def read_conll(path: str | os.PathLike, ambiguous_words: Sequence[str] | None = None) -> list[NerSentence]:
    """The sentences of a CoNLL file (see the module docstring for the format).

    Args:
        path: the file (UTF-8).
        ambiguous_words: mark each sentence's first token that is one of these words
            (``NerSentence.ambiguous``); default ``AMBIGUOUS_WORDS``.

    Raises ValueError naming the file and the line for a malformed line, and for a missing,
    non-UTF-8, empty or over-512-MiB file.
    """
    path = Path(path)
    text = read_text("read_conll", path)
    words = AMBIGUOUS_WORDS if ambiguous_words is None else frozenset(ambiguous_words)
    sentences: list[NerSentence] = []
    tokens: list[str] = []
    tags: list[str] = []
    columns = 0  # of the first token line; every token line must have as many
    first_line = 0

    def close() -> None:
        if tokens:
            sentences.append(NerSentence(list(tokens), list(tags), -1, mark_ambiguous(tokens, words)))
            tokens.clear()
            tags.clear()

    for line_no, line in enumerate(text_lines(text), start=1):
        fields = line.split()
        if not fields:
            close()
            continue
        if fields[0] == "-DOCSTART-":
            close()
            continue
        if len(fields) < 2:
            raise ValueError(f"read_conll: {path} line {line_no}: expected a token and its tag "
                             f"(2 or more whitespace-separated columns), got 1 column {_clip(fields[0])!r}: "
                             "the tag is missing")
        if not columns:
            columns, first_line = len(fields), line_no
        elif len(fields) != columns:
            raise ValueError(f"read_conll: {path} line {line_no}: expected {columns} columns like line "
                             f"{first_line}, got {len(fields)}: {_clip(line.strip())!r}")
        try:
            split_tag(fields[-1])
        except ValueError:
            raise ValueError(f"read_conll: {path} line {line_no}: the last column must be a BIO/BIOES tag "
                             f"(O, B-TYPE, I-TYPE, E-TYPE, S-TYPE), got {_clip(fields[-1])!r}") from None
        tokens.append(fields[0])
        tags.append(fields[-1])
    close()
    if not sentences:
        raise ValueError(f"read_conll: {path} holds no sentences")
    return sentences


def _clip(text: str, limit: int = 60) -> str:
    """A piece of a line as an error message quotes it: at most ``limit`` characters."""
    return text if len(text) <= limit else text[: limit - 3] + "..."


def write_conll(path: str | os.PathLike, sentences: Sequence[NerSentence | tuple[Sequence[str], Sequence[str]]]) -> None:
    """Write ``token tag`` lines, a blank line after each sentence (``read_conll`` reads it back)."""
    lines = []
    for k, sentence in enumerate(sentences):
        tokens, tags = sentence[0], sentence[1]
        if len(tokens) != len(tags) or not tokens:
            raise ValueError(f"write_conll: sentence {k} must have as many tags as tokens (>= 1), "
                             f"got {len(tokens)} tokens and {len(tags)} tags")
        for token, tag in zip(tokens, tags):
            if not token or any(c.isspace() for c in token):
                raise ValueError(f"write_conll: sentence {k} has token {token!r}; tokens must be non-empty, without whitespace")
            lines.append(f"{token} {tag}\n")
        lines.append("\n")
    Path(path).write_text("".join(lines), encoding="utf-8")


def mark_ambiguous(tokens: Sequence[str], words=None) -> int:
    """Position of the first token in ``words`` (default ``AMBIGUOUS_WORDS``), -1 if none."""
    words = AMBIGUOUS_WORDS if words is None else words
    return next((t for t, token in enumerate(tokens) if token in words), -1)


# -- the templates -----------------------------------------------------------------------------------
# Slots: {PER} {LOC} {ORG} are entities (Faker), {ANY} one of the three; {THING} a plural noun
# phrase (tag O); {YEAR} {DAY} {NUM} are O too. Templates of the first five groups begin with
# their subject slot, so an opener may precede it and an ambiguous word may fill it.

_SUBJECT_TEMPLATES: dict[str, list[str]] = {
    "PER": [
        "{PER} was born in {LOC} in {YEAR} .",
        "{PER} works for {ORG} .",
        "{PER} met {PER} at the {ORG} headquarters .",
        "{PER} moved to {LOC} last year .",
        "{PER} has been appointed chief executive of {ORG} .",
        "{PER} told reporters that {ORG} would expand .",
        "{PER} and {PER} visited {LOC} .",
        "{PER} , who grew up in {LOC} , joined {ORG} in {YEAR} .",
        "{PER} wrote a long letter to {PER} .",
        "{PER} is married to {PER} .",
        "{PER} spoke at a conference in {LOC} on {DAY} .",
        "{PER} resigned from {ORG} after {NUM} years .",
    ],
    "LOC": [
        "{LOC} has a population of about {NUM} thousand .",
        "{LOC} lies on the border with {LOC} .",
        "{LOC} hosted the annual meeting of {ORG} .",
        "{LOC} is famous for its museums .",
        "{LOC} welcomed {PER} on {DAY} .",
        "{LOC} will elect a new governor in {YEAR} .",
        "{LOC} is about {NUM} miles from {LOC} .",
        "{LOC} suffered heavy floods this spring .",
        "{LOC} attracts many tourists every summer .",
        "{LOC} , the largest region of {LOC} , is growing fast .",
    ],
    "ORG": [
        "{ORG} hired {PER} as its new director .",
        "{ORG} opened an office in {LOC} .",
        "{ORG} reported record profits in {YEAR} .",
        "{ORG} announced a merger with {ORG} .",
        "{ORG} shares fell {NUM} percent on {DAY} .",
        "{ORG} was founded by {PER} in {LOC} .",
        "{ORG} sued {ORG} over a patent .",
        "{ORG} employs {NUM} people in {LOC} .",
        "{ORG} released a statement on {DAY} .",
        "{ORG} is headquartered in {LOC} .",
    ],
    "THING": [
        "{THING} are sold in every shop in {LOC} .",
        "{THING} were on sale at {ORG} .",
        "{THING} make a nice gift for {PER} .",
        "{THING} became popular in {LOC} in {YEAR} .",
        "{THING} cost more than {NUM} dollars .",
        "{THING} filled the shelves of the store .",
        "{THING} were given to the children .",
        "{THING} are made in a factory near {LOC} .",
    ],
    # {ANY}: a person, a location or an organisation, drawn anew each time. Here only the
    # mention itself tells its type, so a model must learn names, not just their contexts.
    "ANY": [
        "{ANY} was mentioned in the report .",
        "{ANY} appeared in the headlines again on {DAY} .",
        "{ANY} is often in the news these days .",
        "{ANY} came up twice during the interview with {PER} .",
        "{ANY} featured in a documentary about {LOC} .",
    ],
}
_OTHER_TEMPLATES: list[str] = [
    "In {YEAR} , {PER} founded {ORG} .",
    "According to {ORG} , {LOC} is safe .",
    "Last week {PER} flew from {LOC} to {LOC} .",
    "The new director of {ORG} is {PER} .",
    "Many people in {LOC} work for {ORG} .",
    "On {DAY} , {ORG} and {ORG} signed a deal in {LOC} .",
    "A spokesman for {PER} denied the report .",
    "Thousands of fans greeted {PER} in {LOC} .",
    "It was {PER} who led {ORG} through the crisis .",
    "The office of {ORG} in {LOC} will close .",
    "Nobody talks about {ANY} anymore .",
    "We read a long article about {ANY} .",
    "The report mentioned {ANY} and {ANY} .",
    "Everyone in {LOC} has heard of {ANY} .",
    "There was a heated debate about {ANY} on {DAY} .",
]


class _Template(NamedTuple):
    id: int
    group: str  # PER / LOC / ORG / THING / ANY: the subject slot's type; OTHER: no subject slot first
    text: str


TEMPLATES: list[_Template] = [
    _Template(k, group, text)
    for k, (group, text) in enumerate(
        [(g, t) for g, texts in _SUBJECT_TEMPLATES.items() for t in texts] + [("OTHER", t) for t in _OTHER_TEMPLATES]
    )
]

# Neutral openers before a subject slot: they say nothing about the subject's type.
OPENERS: list[str] = ["", "", "", "Yesterday ,", "Last year ,", "Reportedly ,", "On {DAY} ,", "In {YEAR} ,",
                      "Surprisingly ,", "As expected ,"]

# Each ambiguous word's readings, by the subject slot they fill. "{last}" is a Faker surname.
# Rule: the bare word is one reading; a word after it decides the others.
AMBIGUOUS_READINGS: dict[str, dict[str, list[tuple[str, list[str]]]]] = {
    "Teddy": {"PER": [("Teddy Roosevelt", ["B-PER", "I-PER"]), ("Teddy {last}", ["B-PER", "I-PER"])],
              "THING": [("Teddy bears", ["O", "O"]), ("Teddy bear toys", ["O", "O", "O"])]},
    "Paris": {"PER": [("Paris Hilton", ["B-PER", "I-PER"]), ("Paris {last}", ["B-PER", "I-PER"])],
              "LOC": [("Paris", ["B-LOC"])]},
    "Jordan": {"PER": [("Jordan Peterson", ["B-PER", "I-PER"]), ("Jordan {last}", ["B-PER", "I-PER"])],
               "LOC": [("Jordan", ["B-LOC"])]},
    "Washington": {"PER": [("Washington Irving", ["B-PER", "I-PER"])], "LOC": [("Washington", ["B-LOC"])],
                   "ORG": [("Washington Post", ["B-ORG", "I-ORG"])]},
    "Georgia": {"PER": [("Georgia O'Keeffe", ["B-PER", "I-PER"]), ("Georgia {last}", ["B-PER", "I-PER"])],
                "LOC": [("Georgia", ["B-LOC"])]},
    "Virginia": {"PER": [("Virginia Woolf", ["B-PER", "I-PER"]), ("Virginia {last}", ["B-PER", "I-PER"])],
                 "LOC": [("Virginia", ["B-LOC"])]},
    "Chelsea": {"PER": [("Chelsea {last}", ["B-PER", "I-PER"])], "LOC": [("Chelsea", ["B-LOC"])],
                "ORG": [("Chelsea FC", ["B-ORG", "I-ORG"])]},
    "Apple": {"ORG": [("Apple", ["B-ORG"])], "THING": [("Apple pies", ["O", "O"]), ("Apple trees", ["O", "O"])]},
    "Amazon": {"ORG": [("Amazon", ["B-ORG"])], "LOC": [("Amazon River", ["B-LOC", "I-LOC"])]},
    "Jaguar": {"ORG": [("Jaguar", ["B-ORG"])], "THING": [("Jaguar cubs", ["O", "O"])]},
}
AMBIGUOUS_WORDS: frozenset[str] = frozenset(AMBIGUOUS_READINGS)
# The subject templates a reading of each type can fill.
_TAKES = {"PER": ("PER", "ANY"), "LOC": ("LOC", "ANY"), "ORG": ("ORG", "ANY"), "THING": ("THING",)}

# Plural noun phrases for {THING} (tag O), lower-case; the sentence's first letter is capitalised.
_THINGS = ["cheap toys", "wooden chairs", "fresh flowers", "old books", "paper lanterns", "woollen scarves",
           "chocolate cookies", "glass bottles", "plastic cups", "silver rings", "leather shoes", "small radios",
           "cotton shirts", "board games", "garden tools", "music boxes", "toy trains", "scented candles"]


# -- generation ------------------------------------------------------------------------------------

def split_templates(fractions: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0) -> list[list[int]]:
    """Template ids for each split (e.g. train, val, test), disjoint; seeded.

    Each group of templates (PER / LOC / ORG / THING / ANY subjects, OTHER) is shuffled and cut
    on its own, with at least one template in every split, so every split has sentences of
    every kind (ambiguous ones included) while no template is shared.
    """
    if not fractions or any(not f > 0 for f in fractions) or abs(sum(fractions) - 1.0) > 1e-6:
        raise ValueError(f"split_templates: fractions must be positive and sum to 1, got {list(fractions)}")
    rng = random.Random(seed)
    parts: list[list[int]] = [[] for _ in fractions]
    for group in ("PER", "LOC", "ORG", "THING", "ANY", "OTHER"):
        ids = [t.id for t in TEMPLATES if t.group == group]
        if len(ids) < len(fractions):
            raise ValueError(f"split_templates: {len(fractions)} splits need at least as many {group} templates, "
                             f"there are {len(ids)}")
        rng.shuffle(ids)
        # Splits after the first get round(f * n) templates, at least one; the first gets the rest.
        sizes = [max(1, round(f * len(ids))) for f in fractions[1:]]
        sizes = [len(ids) - sum(sizes)] + sizes
        if sizes[0] < 1:
            raise ValueError(f"split_templates: fractions {list(fractions)} leave no {group} template for the first split")
        start = 0
        for part, size in zip(parts, sizes):
            part.extend(sorted(ids[start : start + size]))
            start += size
    return [sorted(p) for p in parts]


def generate_ner(n: int, template_ids: Sequence[int] | None = None, ambiguous_fraction: float = 0.3,
                 seed: int = 0, swap_fraction: float = 0.25) -> list[NerSentence]:
    """``n`` sentences from the templates ``template_ids`` (default: all), BIO-tagged.

    A fraction ``ambiguous_fraction`` of them (on average) is ambiguous: an ambiguous word
    and one of its readings are drawn, then a template among ``template_ids`` whose subject
    slot takes that reading (so the ids must include some subject templates). Each entity
    slot holds, with probability ``swap_fraction``, an entity of one of the two other types
    ("Smith LLC was born in ..."): the context then says nothing about the type, and a model
    must learn what names of each type look like rather than only which verbs go with them
    (without it, a model that meets new templates mostly guesses types from words it has
    never seen). Ambiguous readings are never swapped: their rule stays exact. Deterministic
    for a given seed and Faker version (``FAKER_VERSION``; another version logs a warning).
    """
    try:
        import faker
    except ModuleNotFoundError:
        raise ValueError("generate_ner: the generated NER data needs the faker package "
                         f"(pip install faker=={FAKER_VERSION}), or give a CoNLL file with --data") from None
    if not (isinstance(n, int) and n >= 1):
        raise ValueError(f"generate_ner: n must be an int >= 1, got {n!r}")
    for name, value in (("ambiguous_fraction", ambiguous_fraction), ("swap_fraction", swap_fraction)):
        if not 0.0 <= value <= 1.0:
            raise ValueError(f"generate_ner: {name} must be in [0, 1], got {value}")
    if faker.VERSION != FAKER_VERSION:
        log.warning("generate_ner: faker %s is installed; the data is pinned to faker %s and may differ",
                    faker.VERSION, FAKER_VERSION)
    by_id = {t.id: t for t in TEMPLATES}
    ids = sorted(by_id) if template_ids is None else list(template_ids)
    unknown = [i for i in ids if i not in by_id]
    if not ids or unknown:
        raise ValueError(f"generate_ner: template_ids must be a non-empty list of ids in 0..{len(TEMPLATES) - 1}, "
                         f"got {list(ids)!r}")
    templates = [by_id[i] for i in ids]
    # Readings that some subject template here can take: (word, group, reading).
    readings = [(word, group, r) for word, groups in AMBIGUOUS_READINGS.items() for group, rs in groups.items()
                for r in rs if any(t.group in _TAKES[group] for t in templates)]
    if ambiguous_fraction > 0 and not readings:
        raise ValueError("generate_ner: ambiguous_fraction > 0 needs subject templates (PER/LOC/ORG/THING/ANY) among "
                         f"template_ids, got only {sorted({t.group for t in templates})}")
    rng = random.Random(seed)
    fake = faker.Faker("en_US")
    fake.seed_instance(seed)
    fill = _Filler(fake, rng, swap_fraction)
    out = []
    for _ in range(n):
        if readings and rng.random() < ambiguous_fraction:
            # Pick the word first, then its reading, then a template: every word equally often.
            word = rng.choice(sorted({w for w, _, _ in readings}))
            group = rng.choice(sorted({g for w, g, _ in readings if w == word}))
            reading = rng.choice([r for w, g, r in readings if w == word and g == group])
            template = rng.choice([t for t in templates if t.group in _TAKES[group]])
            out.append(_render(template, fill, rng, subject=reading))
        else:
            out.append(_render(rng.choice(templates), fill, rng))
    return out


class _Filler:
    """Slot fillers from Faker, each of a form that tells its type without the context.

    PER: a first and a last name (Faker's ``name()`` adds titles and suffixes such as "MD"
    at times); never a surname alone, which no context-free reader could tell from a town.
    LOC: a town (Faker's made-up ones: "Lake Debra", "Mathewtown"), a US state or a country.
    ORG: a company ("Smith LLC", "Chen-Davis", "Adams and Sons") or "<surname> University".
    Left out (drawn again): fillers holding an ambiguous word, punctuation other than "-"
    and "&", commas (so "X , Y" is never one organisation), and lower-case words in a person
    or a place ("Bosnia and Herzegovina": "and" inside a place reads like two places).
    """

    def __init__(self, fake, rng: random.Random, swap_fraction: float = 0.0) -> None:
        self.fake, self.rng, self.swap_fraction = fake, rng, swap_fraction

    def _clean(self, make, capitalised: bool = False) -> list[str]:
        for _ in range(100):
            tokens = tokenize(make())
            if (tokens and not any(t in AMBIGUOUS_WORDS for t in tokens)
                    and all(t[0].isalnum() or t in "-&" for t in tokens)
                    and not (capitalised and any(t[0].islower() for t in tokens))):
                return tokens
        raise RuntimeError("generate_ner: Faker gave no usable filler in 100 draws")  # (never seen)

    def entity(self, kind: str) -> list[str]:
        f, r = self.fake, self.rng.random()
        if kind == "PER":
            return self._clean(f.name if r < 0.5 else lambda: f"{f.first_name()} {f.last_name()}", capitalised=True)
        if kind == "LOC":
            return self._clean(f.city if r < 0.4 else f.state if r < 0.7 else f.country, capitalised=True)
        return self._clean(f.company if r < 0.8 else lambda: f"{f.last_name()} University")

    def other(self, slot: str) -> list[str]:
        if slot == "THING":
            return self.rng.choice(_THINGS).split()
        if slot == "YEAR":
            return [str(self.rng.randint(1900, 2025))]
        if slot == "DAY":
            # (Not Faker's day_of_week: it draws a date up to *now*, so its days change with the clock.)
            return [self.rng.choice(_DAYS)]
        if slot == "NUM":
            return [str(self.rng.randint(2, 999))]
        if slot == "last":
            return self._clean(self.fake.last_name)
        raise AssertionError(f"unknown slot {slot}")


_SLOT_RE = re.compile(r"\{(\w+)\}")
_DAYS = ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"]


def _render(template: _Template, fill: _Filler, rng: random.Random,
            subject: tuple[str, list[str]] | None = None) -> NerSentence:
    """Fill a template; its subject slot (first) with ``subject``, an ambiguous reading, when given.

    In an ambiguous sentence each further entity slot takes an ambiguous reading of its type
    too, with probability ``_FURTHER_AMBIGUOUS`` ("Teddy Roosevelt visited Paris"), so that
    the words are seen in other places as well; other sentences never hold them.
    """
    tokens: list[str] = []
    tags: list[str] = []
    if template.group != "OTHER":  # a subject template: a neutral opener may come first
        _fill_text(rng.choice(OPENERS), fill, rng, tokens, tags)
    ambiguous = -1
    text = template.text
    if subject is not None:
        assert template.group != "OTHER" and text.startswith("{" + template.group + "}")
        text = text[len(template.group) + 2 :]
        ambiguous = len(tokens)
        _add_reading(subject, fill, tokens, tags)
    _fill_text(text, fill, rng, tokens, tags, _FURTHER_AMBIGUOUS if subject is not None else 0.0)
    tokens[0] = tokens[0][:1].upper() + tokens[0][1:]  # a sentence starts with a capital letter
    if tokens[-1] == "." and rng.random() < _NO_FULL_STOP:  # as people type them: "Teddy Roosevelt visited Paris"
        tokens.pop()
        tags.pop()
    return NerSentence(tokens, tags, template.id, ambiguous)


_FURTHER_AMBIGUOUS = 0.3
_NO_FULL_STOP = 0.2  # share of sentences without their final "."; else a word that ends a sentence is never seen last


def _add_reading(reading: tuple[str, list[str]], fill: _Filler, tokens: list[str], tags: list[str]) -> None:
    for word in reading[0].split():
        tokens += fill.other("last") if word == "{last}" else [word]
    tags += reading[1]


def _fill_text(text: str, fill: _Filler, rng: random.Random, tokens: list[str], tags: list[str],
               ambiguous_rate: float = 0.0) -> None:
    """Append the tokens and BIO tags of ``text`` with its slots filled; each entity slot takes
    an ambiguous reading of its type with probability ``ambiguous_rate``."""
    for piece in text.split():
        slot = _SLOT_RE.fullmatch(piece)
        name = slot.group(1) if slot else ""
        if name == "ANY":
            name = rng.choice(("PER", "LOC", "ORG"))
        if name in ("PER", "LOC", "ORG") and ambiguous_rate > 0 and rng.random() < ambiguous_rate:
            word = rng.choice(sorted(w for w, groups in AMBIGUOUS_READINGS.items() if name in groups))
            _add_reading(rng.choice(AMBIGUOUS_READINGS[word][name]), fill, tokens, tags)
            continue
        if name in ("PER", "LOC", "ORG"):
            if fill.swap_fraction and rng.random() < fill.swap_fraction:
                name = rng.choice([kind for kind in ("PER", "LOC", "ORG") if kind != name])
            words = fill.entity(name)
            tags += [f"B-{name}"] + [f"I-{name}"] * (len(words) - 1)
        else:
            words = fill.other(name) if slot else [piece]
            tags += ["O"] * len(words)
        tokens += words
