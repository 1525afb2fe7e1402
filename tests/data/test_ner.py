"""NER data: the CoNLL reader on the real format (CoNLL-2003 columns, -DOCSTART-, BIOES) and on
malformed files, the writer, and the Faker generator (determinism, the template split, the
ambiguous sentences and their rule)."""
import hashlib
import json
from collections import Counter, defaultdict

import pytest

from rnnkit.data.datasets.ner import (AMBIGUOUS_READINGS, AMBIGUOUS_WORDS, FAKER_VERSION, TEMPLATES, NerSentence,
                                      generate_ner, mark_ambiguous, read_conll, split_templates, tokenize, write_conll)
from rnnkit.data.tags import convert_scheme, entities

CONLL_2003 = """-DOCSTART- -X- -X- O

EU NNP B-NP B-ORG
rejects VBZ B-VP O
German JJ B-NP B-MISC
call NN I-NP O
. . O O

Peter NNP B-NP B-PER
Blackburn NNP I-NP I-PER


BRUSSELS NNP B-NP B-LOC
1996-08-22 CD I-NP O
"""


def test_reads_conll_2003_columns_docstart_and_blank_lines(tmp_path):
    path = tmp_path / "train.txt"
    path.write_text(CONLL_2003, encoding="utf-8")
    sentences = read_conll(path)
    assert [s.tokens for s in sentences] == [["EU", "rejects", "German", "call", "."], ["Peter", "Blackburn"],
                                             ["BRUSSELS", "1996-08-22"]]  # no blank line at the end: still a sentence
    assert sentences[0].tags == ["B-ORG", "O", "B-MISC", "O", "O"]  # the last column
    assert sentences[1].tags == ["B-PER", "I-PER"] and sentences[2].tags == ["B-LOC", "O"]
    assert all(s.template == -1 and s.ambiguous == -1 for s in sentences)


def test_reads_tab_separated_bioes_and_marks_ambiguous_words(tmp_path):
    path = tmp_path / "d.conll"
    path.write_text("Teddy\tS-PER\nsmiled\tO\n\nThe\tO\nParis\tB-LOC\nOffice\tE-LOC\n", encoding="utf-8")
    first, second = read_conll(path)
    assert first == NerSentence(["Teddy", "smiled"], ["S-PER", "O"], -1, 0)
    assert second.tags == ["O", "B-LOC", "E-LOC"] and second.ambiguous == 1
    assert [s.ambiguous for s in read_conll(path, ambiguous_words=["Office"])] == [-1, 2]


@pytest.mark.parametrize("content, line, words", [
    ("Teddy B-PER\nRoosevelt\n", 2, r"expected a token and its tag .* got 1 column 'Roosevelt': the tag is missing"),
    ("EU NNP B-ORG\nrejects VBZ O\n\nBRUSSELS B-LOC\n", 4, "expected 3 columns like line 1, got 2"),
    ("Teddy B-PER\nsmiled X\n", 2, r"the last column must be a BIO/BIOES tag .*got 'X'"),
    ("Teddy PER\n", 1, "got 'PER'"),
    ("a O\n\n\n-DOCSTART- O\n\nb\n", 6, "the tag is missing"),  # line numbers count blank lines
])
def test_malformed_lines_name_file_and_line(tmp_path, content, line, words):
    path = tmp_path / "bad.conll"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ValueError, match=f"read_conll: .*bad.conll line {line}: (.* )?{words}"):
        read_conll(path)


def test_missing_empty_and_binary_files(tmp_path):
    with pytest.raises(ValueError, match="missing.conll does not exist"):
        read_conll(tmp_path / "missing.conll")
    (tmp_path / "empty.conll").write_text("\n\n-DOCSTART- O\n", encoding="utf-8")
    with pytest.raises(ValueError, match="empty.conll holds no sentences"):
        read_conll(tmp_path / "empty.conll")
    (tmp_path / "latin1.conll").write_bytes("Z\xfcrich B-LOC\n".encode("latin-1"))
    with pytest.raises(ValueError, match="latin1.conll is not UTF-8"):
        read_conll(tmp_path / "latin1.conll")


def test_write_then_read_round_trips(tmp_path):
    sentences = [(["Teddy", "Roosevelt", "visited", "Paris", "."], ["B-PER", "I-PER", "O", "B-LOC", "O"]),
                 (["Hi"], ["O"])]
    write_conll(tmp_path / "out.conll", sentences)
    back = read_conll(tmp_path / "out.conll")
    assert [(s.tokens, s.tags) for s in back] == sentences
    with pytest.raises(ValueError, match="sentence 0 must have as many tags as tokens"):
        write_conll(tmp_path / "x.conll", [(["a", "b"], ["O"])])
    with pytest.raises(ValueError, match="sentence 0 has token 'a b'"):
        write_conll(tmp_path / "x.conll", [(["a b"], ["O"])])


def test_tokenize_keeps_case_and_inner_apostrophes():
    assert tokenize("Georgia O'Keeffe met Smith-Jones, Inc.") == ["Georgia", "O'Keeffe", "met", "Smith", "-", "Jones",
                                                                  ",", "Inc", "."]
    assert tokenize("   ") == []


# -- the generator ---------------------------------------------------------------------------

def test_template_split_is_disjoint_complete_and_covers_every_group():
    parts = split_templates((0.7, 0.15, 0.15), seed=0)
    assert sorted(i for p in parts for i in p) == [t.id for t in TEMPLATES]  # each template in exactly one split
    groups = {t.id: t.group for t in TEMPLATES}
    for part in parts:
        assert {groups[i] for i in part} == {"PER", "LOC", "ORG", "THING", "ANY", "OTHER"}
    assert split_templates((0.7, 0.15, 0.15), seed=0) == parts and split_templates((0.7, 0.15, 0.15), seed=1) != parts
    with pytest.raises(ValueError, match="fractions must be positive and sum to 1"):
        split_templates((0.7, 0.2))


@pytest.fixture(scope="module")
def generated():
    pytest.importorskip("faker", reason=f"the generated NER data needs faker (pip install faker=={FAKER_VERSION})")
    return generate_ner(600, seed=0)


def test_faker_is_the_pinned_version():
    faker = pytest.importorskip("faker")
    assert faker.VERSION == FAKER_VERSION  # pyproject pins it: the bundled data depends on it


def test_generated_data_is_pinned(generated):
    """The same seed and Faker version give the same sentences in any process, at any time
    (a provider that reads the clock, such as Faker's day_of_week, would break this)."""
    faker = pytest.importorskip("faker")
    if faker.VERSION != FAKER_VERSION:
        pytest.skip(f"the golden sentences are those of faker {FAKER_VERSION}, not {faker.VERSION}")
    assert [" ".join(s.tokens) for s in generated[:3]] == [
        "The new director of Chang - Fisher is Jorge Sullivan .",
        "Reportedly , Bowers University released a statement on Friday",  # 20% end without "."
        "Apple pies cost more than 749 dollars",
    ]
    digest = hashlib.sha256(json.dumps(generate_ner(300, seed=0)).encode()).hexdigest()
    assert digest.startswith("03494e46fcd78ac8")


def test_generation_is_deterministic_and_well_formed(generated):
    assert generate_ner(600, seed=0) == generated
    assert generate_ner(600, seed=1) != generated
    for s in generated:
        assert len(s.tokens) == len(s.tags) >= 3 and all(tokenize(t) == [t] for t in s.tokens)
        assert convert_scheme(s.tags, "bio") == s.tags  # well-formed BIO
        assert s.tokens[0][0].isupper()  # a sentence starts with a capital letter
    assert 0.1 < sum(s.tokens[-1] != "." for s in generated) / len(generated) < 0.3  # 20% without a final "."
    kinds = Counter(e.type for s in generated for e in entities(s.tags))
    assert set(kinds) == {"PER", "LOC", "ORG"} and min(kinds.values()) > 100


def test_ambiguous_sentences_follow_one_rule_decided_by_the_words_after(generated):
    ambiguous = [s for s in generated if s.ambiguous >= 0]
    assert 0.2 < len(ambiguous) / len(generated) < 0.4  # ambiguous_fraction=0.3
    assert {s.tokens[s.ambiguous] for s in ambiguous} == AMBIGUOUS_WORDS  # every word occurs
    readings = defaultdict(set)
    for s in generated:
        assert mark_ambiguous(s.tokens) == s.ambiguous  # a sentence holds such a word iff it is ambiguous
        for t, token in enumerate(s.tokens):
            if token not in AMBIGUOUS_WORDS:
                continue
            before = s.tokens[:t]
            # Only the words before the first one: nothing there tells its reading apart.
            if t == s.ambiguous:
                assert all(w not in AMBIGUOUS_WORDS for w in before) and len(before) <= 3
            after = s.tokens[t + 1] if t + 1 < len(s.tokens) else ""
            # The rule: the next word decides (a capitalised name, or a fixed word, or none).
            key = after if after in {"Roosevelt", "Hilton", "Peterson", "Irving", "O'Keeffe", "Woolf", "FC", "Post",
                                     "River", "bears", "bear", "pies", "trees", "cubs"} else (
                "Name" if after[:1].isupper() else "other")
            readings[token, key].add(s.tags[t])
    assert all(len(tags) == 1 for tags in readings.values()), {k: v for k, v in readings.items() if len(v) > 1}
    # Each word is seen with at least two different tags, e.g. Teddy as B-PER and O.
    for word in AMBIGUOUS_WORDS:
        assert len({tag for (w, _), tags in readings.items() if w == word for tag in tags}) >= 2, word
    assert {"B-PER", "O"} <= {tag for (w, _), tags in readings.items() if w == "Teddy" for tag in tags}
    assert set(AMBIGUOUS_READINGS["Teddy"]) == {"PER", "THING"}


def test_sentences_come_only_from_the_given_templates(generated):
    parts = split_templates((0.7, 0.15, 0.15), seed=0)
    test = generate_ner(200, parts[2], ambiguous_fraction=0.5, seed=2)
    assert {s.template for s in test} <= set(parts[2])
    assert sum(s.ambiguous >= 0 for s in test) > 60
    used = {s.template for s in generated}  # default: any template
    assert used <= {t.id for t in TEMPLATES} and len(used) >= 55
    with pytest.raises(ValueError, match="template_ids must be a non-empty list of ids in 0..59, got \\[99\\]"):
        generate_ner(5, [99])
    other = [t.id for t in TEMPLATES if t.group == "OTHER"]
    with pytest.raises(ValueError, match="ambiguous_fraction > 0 needs subject templates"):
        generate_ner(5, other)
    assert all(s.ambiguous == -1 for s in generate_ner(20, other, ambiguous_fraction=0.0))
    with pytest.raises(ValueError, match="n must be an int >= 1, got 0"):
        generate_ner(0)
