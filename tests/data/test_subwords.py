"""rnnkit.data.subwords: word, character and BPE tokens, each inverted exactly; an unseen compound
spelled by the subword tokenizer; the JSON state that restores each."""
import json

import pytest

from rnnkit.data.subwords import (CharTokenizer, SubwordTokenizer, WordTokenizer, normalize_text, tokenizer_from_dict,
                                  train_tokenizer, translation_tokenize)

pytest.importorskip("tokenizers", reason="subword tokens need HuggingFace tokenizers (pip install tokenizers)")

# German: compounds are one word. "donaudampfschiff" and "kapitänsmütze" never occur, their parts do.
GERMAN = ["das dampfschiff fährt auf der donau", "die donau ist ein langer fluss", "der kapitän trägt eine mütze",
          "ein schiff, ein boot und ein dampfer", "die schifffahrt auf dem fluss", "der kapitän des schiffs",
          "die mütze des kapitäns", "das boot fährt", "das dampfboot ist alt", "die donauwelle ist hoch"] * 4


def test_subword_spells_a_compound_never_seen_in_training():
    tok = train_tokenizer("subword", GERMAN, vocab_size=120)
    vocab = tok.build_vocab([tok.tokenize(t) for t in GERMAN])
    for compound in ("donaudampfschiff", "kapitänsmütze"):
        assert compound not in " ".join(GERMAN)
        pieces = tok.tokenize(compound)
        assert len(pieces) > 1 and "<unk>" not in pieces  # spelled from seen pieces
        assert vocab.unk_index not in vocab.encode(pieces)  # every piece has an id the decoder can produce
        assert tok.detokenize(vocab.decode(vocab.encode(pieces))) == compound
    # A word tokenizer has one entry per word form: the compound is <unk>, it can never be produced.
    words = WordTokenizer()
    word_vocab = words.build_vocab([words.tokenize(t) for t in GERMAN])
    assert word_vocab.encode(words.tokenize("donaudampfschiff")) == [word_vocab.unk_index]
    # Only a character never seen in training is <unk>.
    assert "<unk>" in tok.tokenize("quiz")


@pytest.mark.parametrize("kind", ["word", "char", "subword"])
def test_each_tokenizer_gives_the_normalised_text_back_and_survives_json(kind):
    texts = GERMAN + ["Save as... (Ctrl+S)", "l'an deux-mille, vingt-et-un!", "  spaced\tout  text ", "x--y - z"]
    tok = train_tokenizer(kind, texts, lower=True, vocab_size=200)
    restored = tokenizer_from_dict(json.loads(json.dumps(tok.to_dict())))  # plain JSON, no pickle
    assert restored.kind == kind
    for text in texts:
        tokens = tok.tokenize(text)
        assert restored.tokenize(text) == tokens
        assert tok.detokenize(tokens) == restored.detokenize(tokens) == normalize_text(text)


def test_char_tokens_are_the_characters_of_the_normalised_text():
    tok = CharTokenizer(lower=False)
    assert tok.tokenize(" Äb  c!") == ["Ä", "b", " ", "c", "!"]
    assert tok.detokenize(tok.tokenize("Grüße,\n Welt")) == "Grüße, Welt"


def test_word_tokens_split_punctuation_off_words():
    assert translation_tokenize("Open file… (read-only), then: quit!") == [
        "open", "file", "@…", "(@", "read", "@-@", "only", "@)@", "@,", "then", "@:", "quit", "@!"]
    tok = WordTokenizer()
    for text in ("Open file… (read-only), then: quit!", "e-mail: a@b.com", "\"quoted\" 'single'", "50% / 3.5 €"):
        assert tok.detokenize(tok.tokenize(text)) == normalize_text(text)


def test_subword_training_is_deterministic_and_capped():
    a = SubwordTokenizer.train(GERMAN, vocab_size=60)
    b = SubwordTokenizer.train(GERMAN, vocab_size=60)
    # The same pieces and the same ids (the BPE model's own ids of the characters vary run to run).
    seqs = [a.tokenize(t) for t in GERMAN]
    assert a.build_vocab(seqs).to_dict() == b.build_vocab(seqs).to_dict() and a.build_vocab([]) == b.build_vocab([])
    assert [a.tokenize(t) for t in GERMAN] == [b.tokenize(t) for t in GERMAN]
    assert len(a.build_vocab([])) <= 60 + 3  # the BPE pieces (its own <unk> among them) + <pad> <bos> <eos>


def test_bad_states_and_kinds_are_named():
    with pytest.raises(ValueError, match="train_tokenizer: kind must be one of 'word', 'char', 'subword', got 'bpe'"):
        train_tokenizer("bpe", ["a"])
    with pytest.raises(ValueError, match="tokenizer_from_dict: kind must be one of"):
        tokenizer_from_dict({"kind": "sentencepiece", "lower": True})
    with pytest.raises(TypeError, match="tokenizer_from_dict: a subword state needs 'model'"):
        tokenizer_from_dict({"kind": "subword", "lower": True})
    with pytest.raises(ValueError, match="tokenizer_from_dict: 'model' is not a tokenizers JSON"):
        tokenizer_from_dict({"kind": "subword", "lower": True, "model": "{not json"})
    with pytest.raises(TypeError, match="WordTokenizer: lower must be a bool"):
        tokenizer_from_dict({"kind": "word"})
