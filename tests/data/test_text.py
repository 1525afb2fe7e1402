"""Tests for rnnkit.data.text: tokenisers and Vocab."""

import doctest
import json

import pytest
import torch

import rnnkit.data.text
from rnnkit.data import DEFAULT_SPECIALS, Vocab, char_tokenize, word_tokenize

CORPUS = [["b", "a", "c"], ["a", "d", "b"], ["a", "e"]]  # a:3, b:2, c:1, d:1, e:1


def test_doctests_pass():
    assert doctest.testmod(rnnkit.data.text).failed == 0


def test_char_tokenize_keeps_every_character():
    assert char_tokenize("a b\n!") == ["a", " ", "b", "\n", "!"]
    assert char_tokenize("") == []


def test_word_tokenize_splits_words_and_punctuation():
    assert word_tokenize("Hello, World! It's 3pm.") == ["hello", ",", "world", "!", "it's", "3pm", "."]
    assert word_tokenize("Hello  World", lower=False) == ["Hello", "World"]


def test_specials_take_the_first_ids():
    vocab = Vocab.build(CORPUS)
    assert vocab.itos[:4] == DEFAULT_SPECIALS
    assert (vocab.pad_index, vocab.unk_index, vocab.bos_index, vocab.eos_index) == (0, 1, 2, 3)
    assert len(vocab) == 4 + 5


def test_build_orders_by_frequency_then_first_occurrence():
    vocab = Vocab.build(CORPUS)
    assert vocab.tokens == ("a", "b", "c", "d", "e")
    assert vocab.encode(["a", "b", "c", "d", "e"]) == [4, 5, 6, 7, 8]
    # the same corpus, read again, gives the same ids
    assert Vocab.build(iter(CORPUS)) == vocab


def test_min_freq_drops_rare_tokens():
    assert Vocab.build(CORPUS, min_freq=2).tokens == ("a", "b")
    assert Vocab.build(CORPUS, min_freq=4).tokens == ()


def test_max_size_counts_specials():
    vocab = Vocab.build(CORPUS, max_size=6)
    assert len(vocab) == 6
    assert vocab.tokens == ("a", "b")
    assert Vocab.build(CORPUS, max_size=4).tokens == ()


def test_specials_in_the_data_are_not_counted_twice():
    vocab = Vocab.build([["<unk>", "x", "<pad>", "x"]])
    assert vocab.tokens == ("x",)
    assert vocab.encode(["<pad>", "<unk>"]) == [0, 1]


def test_custom_specials_without_bos_eos():
    vocab = Vocab.build(CORPUS, specials=("[PAD]", "[UNK]"))
    assert vocab.itos[:3] == ("[PAD]", "[UNK]", "a")
    assert vocab.encode(["zzz"]) == [vocab.unk_index] == [1]
    with pytest.raises(ValueError, match="bos_index"):
        vocab.bos_index
    with pytest.raises(ValueError, match="eos_index"):
        vocab.eos_index


def test_unknown_tokens_map_to_unk_and_contains():
    vocab = Vocab.build(CORPUS)
    assert vocab.encode(["a", "never-seen", "b"]) == [4, 1, 5]
    assert "a" in vocab and "<pad>" in vocab
    assert "never-seen" not in vocab and 4 not in vocab


def test_encode_adds_bos_and_eos():
    vocab = Vocab.build(CORPUS)
    assert vocab.encode(["a"], add_bos=True, add_eos=True) == [2, 4, 3]


def test_decode_skips_specials_but_keeps_unk():
    vocab = Vocab.build(CORPUS)
    ids = [2, 4, 1, 5, 3, 0, 0]
    assert vocab.decode(ids) == ["a", "<unk>", "b"]
    assert vocab.decode(ids, skip_specials=False) == ["<bos>", "a", "<unk>", "b", "<eos>", "<pad>", "<pad>"]
    assert vocab.decode(torch.tensor(ids)) == ["a", "<unk>", "b"]


def test_encode_decode_round_trip():
    vocab = Vocab.build(CORPUS)
    for seq in CORPUS:
        assert vocab.decode(vocab.encode(seq)) == seq


def test_json_round_trip_is_plain_json(tmp_path):
    vocab = Vocab.build([char_tokenize("héllo wörld ✓\n")], specials=("<pad>", "<unk>", "<bos>", "<eos>", "<mask>"))
    path = tmp_path / "vocab.json"
    vocab.to_json(path)
    raw = json.loads(path.read_text(encoding="utf-8"))
    assert raw["tokens"] == list(vocab.tokens) and raw["specials"] == list(vocab.specials)
    loaded = Vocab.from_json(path)
    assert loaded == vocab
    assert loaded.encode(char_tokenize("wörld")) == vocab.encode(char_tokenize("wörld"))
    assert Vocab.from_dict(vocab.to_dict()) == vocab


def test_to_json_replaces_an_existing_file(tmp_path):
    path = tmp_path / "vocab.json"
    Vocab.build([["old"]]).to_json(path)
    Vocab.build([["new"]]).to_json(path)
    assert Vocab.from_json(path).tokens == ("new",)
    assert [p.name for p in tmp_path.iterdir()] == ["vocab.json"]


def _vocab():
    return Vocab.build(CORPUS)


BAD_CALLS = {
    "min_freq_zero": (ValueError, "min_freq", lambda: Vocab.build(CORPUS, min_freq=0)),
    "min_freq_float": (TypeError, "min_freq", lambda: Vocab.build(CORPUS, min_freq=1.5)),
    "max_size_below_specials": (ValueError, "max_size", lambda: Vocab.build(CORPUS, max_size=3)),
    "specials_too_few": (ValueError, "specials", lambda: Vocab.build(CORPUS, specials=("<pad>",))),
    "specials_duplicate": (ValueError, "specials", lambda: Vocab.build(CORPUS, specials=("<p>", "<p>"))),
    "sequences_flat_words": (TypeError, r"sequences\[0\]", lambda: Vocab.build(["a", "b"])),
    "sequences_a_str": (TypeError, "sequences", lambda: Vocab.build("abc")),
    "token_not_str": (TypeError, "tokens", lambda: Vocab.build([["a", 3]])),
    "tokens_overlap_specials": (ValueError, r"tokens\[0\]", lambda: Vocab(tokens=("<pad>",))),
    "encode_str": (TypeError, "tokens", lambda: _vocab().encode("abc")),
    "encode_add_bos": (TypeError, "add_bos", lambda: _vocab().encode(["a"], add_bos=1)),
    "decode_out_of_range": (ValueError, r"ids\[1\]", lambda: _vocab().decode([4, 99])),
    "decode_negative": (ValueError, r"ids\[0\]", lambda: _vocab().decode([-1])),
    "decode_float": (TypeError, r"ids\[0\]", lambda: _vocab().decode([1.0])),
    "decode_2d_tensor": (ValueError, "ids", lambda: _vocab().decode(torch.zeros(2, 2, dtype=torch.long))),
    "decode_skip_specials": (TypeError, "skip_specials", lambda: _vocab().decode([4], skip_specials="no")),
    "from_dict_format": (ValueError, "format", lambda: Vocab.from_dict({"tokens": [], "specials": []})),
    "from_dict_not_dict": (TypeError, "state", lambda: Vocab.from_dict([1, 2])),
    "from_dict_tokens": (ValueError, r"state\['tokens'\]",
                         lambda: Vocab.from_dict({**_vocab().to_dict(), "tokens": "abc"})),
    "char_tokenize_text": (TypeError, "text", lambda: char_tokenize(5)),
    "word_tokenize_text": (TypeError, "text", lambda: word_tokenize(["a"])),
    "word_tokenize_lower": (TypeError, "lower", lambda: word_tokenize("a", lower="yes")),
}


@pytest.mark.parametrize("case", sorted(BAD_CALLS))
def test_bad_argument_raises_naming_it(case):
    error, name, call = BAD_CALLS[case]
    with pytest.raises(error, match=name):
        call()
