"""SequenceTagger: padding changes nothing (emissions, loss, decoding), a unidirectional tagger
cannot see the words after, the character CNN, and the config checks."""
import pytest
import torch

from rnnkit.models.tagger import NUM_CASES, CharCNN, SequenceTagger, TaggerConfig, word_case


def _tagger(**kw) -> SequenceTagger:
    torch.manual_seed(0)
    config = dict(vocab_size=20, num_tags=5, embedding_dim=6, char_vocab_size=12, char_embedding_dim=4,
                  char_channels=5, case_dim=3, hidden_size=7, bidirectional=True)
    return SequenceTagger(TaggerConfig(**{**config, **kw})).eval()


def _batch(lengths, T=None, W=4, seed=0):
    g = torch.Generator().manual_seed(seed)
    T = T or max(lengths)
    mask = torch.arange(T) < torch.tensor(lengths).unsqueeze(1)  # (B, T)
    words = torch.randint(1, 20, (len(lengths), T), generator=g) * mask
    word_len = torch.randint(1, W + 1, (len(lengths), T), generator=g)
    chars = torch.randint(1, 12, (len(lengths), T, W), generator=g) * (torch.arange(W) < word_len.unsqueeze(2))
    chars = chars * mask.unsqueeze(2)
    tags = torch.randint(0, 5, (len(lengths), T), generator=g) * mask
    cases = torch.randint(1, NUM_CASES, (len(lengths), T), generator=g) * mask
    return words, (chars, cases), tags, torch.tensor(lengths)


@pytest.mark.parametrize("crf", [False, True])
@pytest.mark.parametrize("bidirectional", [False, True])
def test_padding_changes_nothing(crf, bidirectional):
    model = _tagger(crf=crf, bidirectional=bidirectional)
    words, features, tags, lengths = _batch([5, 2, 4])
    with torch.no_grad():
        emissions = model(words, lengths, *features)  # (B, T, K); features = (chars, cases)
        assert emissions.shape == (3, 5, 5)
        loss = model.loss(emissions, tags, lengths)
        pred = model.decode(emissions, lengths)
        total = 0.0
        for b, n in enumerate(lengths.tolist()):
            alone = model(words[b : b + 1, :n], lengths[b : b + 1], *(c[b : b + 1, :n] for c in features))  # no padding
            torch.testing.assert_close(emissions[b : b + 1, :n], alone)
            total += float(model.loss(alone, tags[b : b + 1, :n], lengths[b : b + 1]))
            assert pred[b, :n].tolist() == model.decode(alone, lengths[b : b + 1])[0].tolist()
            assert pred[b, n:].eq(0).all()
        assert float(loss) == pytest.approx(total, rel=1e-5)


def test_softmax_loss_is_token_cross_entropy_and_decode_is_argmax():
    model = _tagger()
    words, features, tags, lengths = _batch([3, 1])
    emissions = model(words, lengths, *features)
    expected = sum(torch.nn.functional.cross_entropy(emissions[b, :n], tags[b, :n], reduction="sum")
                   for b, n in enumerate(lengths.tolist()))
    torch.testing.assert_close(model.loss(emissions, tags, lengths), expected)
    assert model.decode(emissions, lengths)[0].tolist() == emissions[0].argmax(-1).tolist()


def test_crf_decode_is_viterbi_of_the_emissions():
    model = _tagger(crf=True)
    words, features, tags, lengths = _batch([4, 2])
    emissions = model(words, lengths, *features)
    mask = torch.arange(4) < lengths.unsqueeze(1)
    assert torch.equal(model.decode(emissions, lengths), model.crf.decode(emissions, mask).tags)
    torch.testing.assert_close(model.loss(emissions, tags, lengths), model.crf(emissions, tags, mask).sum())


@pytest.mark.parametrize("bidirectional", [False, True])
def test_only_a_bidirectional_tagger_sees_the_words_after(bidirectional):
    model = _tagger(bidirectional=bidirectional, char_vocab_size=0, case_dim=0)
    words, _, _, lengths = _batch([6])
    changed = words.clone()
    changed[0, 4:] = torch.tensor([3, 7]) if words[0, 4] != 3 else torch.tensor([5, 9])  # change the last two words
    with torch.no_grad():
        before, after = model(words, lengths), model(changed, lengths)
    same_prefix = torch.allclose(before[0, :4], after[0, :4])
    assert same_prefix == (not bidirectional)


def test_char_cnn_ignores_padding_and_zeroes_padded_words():
    torch.manual_seed(0)
    cnn = CharCNN(num_chars=10, embedding_dim=3, channels=4, kernel=3)
    chars = torch.tensor([[[2, 3, 4, 0], [0, 0, 0, 0]]])  # (B=1, T=2, W=4): a word, then a padded word
    wider = torch.cat([chars, torch.zeros(1, 2, 3, dtype=torch.long)], dim=2)  # W = 7
    out = cnn(chars)
    assert out.shape == (1, 2, 4)
    torch.testing.assert_close(out, cnn(wider))
    assert bool((out[0, 1] == 0).all())
    even = CharCNN(num_chars=10, embedding_dim=3, channels=4, kernel=2)  # an even kernel keeps W steps too
    assert even(chars).shape == (1, 2, 4) and torch.isfinite(even(chars)).all()


def test_gradients_flow_to_every_parameter():
    model = _tagger(crf=True).train()
    words, features, tags, lengths = _batch([5, 3])
    model.loss(model(words, lengths, *features), tags, lengths).backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and torch.isfinite(p.grad).all(), name


@pytest.mark.parametrize("field, value, words", [
    ("vocab_size", 0, "vocab_size must be an int >= 1, got 0"),
    ("dropout", 1.5, r"dropout must be in \[0, 1\], got 1.5"),
    ("cell", "transformer", "cell must be one of .*got 'transformer'"),
    ("char_channels", 0, "char_channels must be an int >= 1, got 0"),
])
def test_config_rejects_bad_values(field, value, words):
    with pytest.raises(ValueError, match=f"TaggerConfig: {words}"):
        _tagger(**{field: value})


def test_chars_and_cases_are_required_when_configured():
    model = _tagger()
    words, (chars, cases), _, lengths = _batch([3])
    with pytest.raises(ValueError, match=r"SequenceTagger: chars \(B, T, W\) are required"):
        model(words, lengths, None, cases)
    with pytest.raises(ValueError, match=r"SequenceTagger: cases \(B, T\) are required"):
        model(words, lengths, chars)


@pytest.mark.parametrize("token, case", [
    ("visited", 1), ("Teddy", 2), ("O'Keeffe", 2), ("A", 2), ("FC", 3), ("LLC", 3), ("1905", 4), ("3.5", 4),
    (",", 5), ("-", 5), ("iPhone", 6), ("3rd", 6), ("McDonald", 2),
])
def test_word_case(token, case):
    assert word_case(token) == case and 1 <= case < NUM_CASES
