"""Seq2Seq: teacher forcing against the step loop, attention masking, greedy and beam search
against slow references (exhaustive search, per-sentence search, summed log-probabilities)."""
import itertools
import math

import pytest
import torch

from rnnkit.models.seq2seq import Seq2Seq, Seq2SeqConfig, beam_search, greedy_decode

SPECIALS = 4  # <pad> <unk> <bos> <eos>
EOS = 3


def _model(attention="luong", cell="gru", target_vocab_size=12, num_layers=1, seed=0, sharpen=1.0) -> Seq2Seq:
    torch.manual_seed(seed)
    model = Seq2Seq(Seq2SeqConfig(source_vocab_size=15, target_vocab_size=target_vocab_size, embedding_dim=8,
                                  cell=cell, hidden_size=6, num_layers=num_layers, attention=attention, dropout=0.2))
    with torch.no_grad():  # larger logits: untrained models then prefer some tokens clearly
        model.out.weight.mul_(sharpen)
    return model.eval()


def _batch(seed=0, B=4, S=7):
    g = torch.Generator().manual_seed(seed)
    lengths = torch.tensor([S, 3, 5, 1][:B])
    source = torch.randint(SPECIALS, 15, (B, S), generator=g)
    source[torch.arange(S)[None, :] >= lengths[:, None]] = 0  # padding
    return source, lengths


def _sequence_log_prob(model, source, lengths, tokens) -> float:
    """Slow reference: teacher-force <bos> tokens and sum log p(tokens <eos>)."""
    target_in = torch.tensor([[2, *tokens]])  # (1, T)
    target_out = torch.tensor([[*tokens, EOS]])
    with torch.no_grad():
        logp = torch.log_softmax(model(source, lengths, target_in).logits, -1)  # (1, T, V)
    return float(logp.gather(2, target_out[:, :, None]).sum())


@pytest.mark.parametrize("attention", ["luong", "bahdanau", "none"])
@pytest.mark.parametrize("cell, num_layers", [("gru", 1), ("lstm", 2)])
def test_teacher_forcing_equals_the_step_loop(attention, cell, num_layers):
    model = _model(attention, cell, num_layers=num_layers)
    source, lengths = _batch()
    target_in = torch.randint(SPECIALS, 12, (4, 6))
    target_in[:, 0] = 2
    out = model(source, lengths, target_in)
    memory, state = model.encode(source, lengths)
    logits, weights = [], []
    for t in range(target_in.shape[1]):
        step = model.step(target_in[:, t], state, memory)
        state = step.state
        logits.append(step.logits)
        weights.append(step.attention)
    torch.testing.assert_close(out.logits, torch.stack(logits, 1), rtol=1e-5, atol=1e-5)
    if attention == "none":
        assert out.attention is None and weights[0] is None
    else:
        torch.testing.assert_close(out.attention, torch.stack(weights, 1), rtol=1e-5, atol=1e-5)
        # Each step's weights sum to 1 over the real source positions and are 0 on padding.
        torch.testing.assert_close(out.attention.sum(-1), torch.ones(4, 6))
        pad = torch.arange(7)[None, :] >= lengths[:, None]  # (B, S)
        assert bool((out.attention.masked_select(pad[:, None, :].expand_as(out.attention)) == 0).all())


@pytest.mark.parametrize("attention", ["luong", "bahdanau", "none"])
def test_padding_does_not_change_a_sentence(attention):
    model = _model(attention, "lstm")
    source, lengths = _batch()
    target_in = torch.tensor([[2, 5, 6, 7]]).expand(4, 4)
    batched = model(source, lengths, target_in).logits  # (4, T, V)
    for b in range(4):
        alone = model(source[b : b + 1, : int(lengths[b])], lengths[b : b + 1], target_in[:1]).logits
        torch.testing.assert_close(batched[b : b + 1], alone, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("attention, cell, seed", [("luong", "gru", 0), ("bahdanau", "lstm", 1), ("none", "gru", 2),
                                                   ("luong", "lstm", 3)])
@pytest.mark.parametrize("alpha", [0.0, 0.7])
def test_beam_size_one_is_greedy(attention, cell, seed, alpha):
    lengths_seen = set()
    for eos_bias in (0.0, 1.0):  # untrained models run to the limit, or stop at once with a push to <eos>
        model = _model(attention, cell, seed=seed, sharpen=3.0)
        with torch.no_grad():
            model.out.bias[EOS] += eos_bias
        source, lengths = _batch(seed)
        greedy = greedy_decode(model, source, lengths, max_len=9, alpha=alpha)
        beam = beam_search(model, source, lengths, beam_size=1, max_len=9, alpha=alpha)
        assert [h.tokens for h in greedy] == [h.tokens for h in beam]
        for g, b in zip(greedy, beam):
            assert g.log_prob == pytest.approx(b.log_prob, abs=1e-5) and g.score == pytest.approx(b.score, abs=1e-5)
        lengths_seen |= {len(h.tokens) for h in greedy}
    assert len(lengths_seen) > 1


@pytest.mark.parametrize("attention", ["luong", "bahdanau"])
@pytest.mark.parametrize("alpha", [0.0, 1.0])
def test_beam_scores_are_the_summed_log_probs_of_the_returned_sequences(attention, alpha):
    model = _model(attention, seed=4, sharpen=2.0)
    source, lengths = _batch(4)
    for b, hyp in enumerate(beam_search(model, source, lengths, beam_size=4, max_len=8, alpha=alpha)):
        reference = _sequence_log_prob(model, source[b : b + 1], lengths[b : b + 1], hyp.tokens)
        assert hyp.log_prob == pytest.approx(reference, abs=1e-4)
        assert hyp.score == pytest.approx(reference / (len(hyp.tokens) + 1) ** alpha, abs=1e-4)
        assert all(t >= SPECIALS for t in hyp.tokens)  # no <pad>, <unk>, <bos> or <eos> inside


@pytest.mark.parametrize("alpha", [0.0])  # (alpha > 0 stops by a heuristic: no guarantee to test)
def test_a_wide_beam_finds_the_exhaustive_optimum(alpha):
    # 3 real target tokens and max_len 4: 1 + 3 + 9 + 27 = 40 possible outputs, all scored by hand.
    model = _model("bahdanau", "lstm", target_vocab_size=SPECIALS + 3, seed=5, sharpen=0.5)
    source, lengths = _batch(5, B=2)
    found = beam_search(model, source, lengths, beam_size=40, max_len=4, alpha=alpha)
    for b in range(2):
        src, length = source[b : b + 1], lengths[b : b + 1]
        best = max((seq for n in range(4) for seq in itertools.product(range(SPECIALS, SPECIALS + 3), repeat=n)),
                   key=lambda seq: _sequence_log_prob(model, src, length, list(seq)) / (len(seq) + 1) ** alpha)
        assert found[b].tokens == list(best)
    narrow = beam_search(model, source, lengths, beam_size=2, max_len=4, alpha=alpha)
    assert all(n.score <= f.score + 1e-6 for n, f in zip(narrow, found))  # a narrower beam never beats the optimum


def test_batched_beam_search_equals_one_sentence_at_a_time():
    model = _model("luong", "lstm", seed=6, sharpen=2.0)
    source, lengths = _batch(6)
    batched = beam_search(model, source, lengths, beam_size=3, max_len=8, alpha=0.6)
    for b in range(4):
        alone = beam_search(model, source[b : b + 1, : int(lengths[b])], lengths[b : b + 1], 3, 8, 0.6)[0]
        assert alone.tokens == batched[b].tokens and alone.score == pytest.approx(batched[b].score, abs=1e-5)


def test_the_length_limit_forces_the_end():
    model = _model(seed=7)
    with torch.no_grad():
        model.out.bias[EOS] = -100.0  # the model never wants to stop
    source, lengths = _batch(7)
    for hyps in (greedy_decode(model, source, lengths, max_len=5),
                 beam_search(model, source, lengths, beam_size=3, max_len=5)):
        assert all(len(h.tokens) == 4 and math.isfinite(h.log_prob) for h in hyps)


@pytest.mark.parametrize("kwargs, words", [
    (dict(attention="dot"), "attention must be one of luong, bahdanau, none, got 'dot'"),
    (dict(cell="transformer"), "cell must be one of .*got 'transformer'"),
    (dict(hidden_size=0), "hidden_size must be an int >= 1, got 0"),
    (dict(dropout=1.5), r"dropout must be in \[0, 1\], got 1.5"),
    (dict(target_vocab_size=3), "target_vocab_size must exceed the special ids, got 3"),
])
def test_config_rejects_bad_values(kwargs, words):
    args = dict(source_vocab_size=10, target_vocab_size=10)
    args.update(kwargs)
    with pytest.raises(ValueError, match=f"Seq2SeqConfig: {words}"):
        Seq2SeqConfig(**args)


def test_decoders_reject_bad_arguments():
    model = _model()
    source, lengths = _batch()
    with pytest.raises(ValueError, match="beam_search: beam_size must be an int >= 1, got 0"):
        beam_search(model, source, lengths, beam_size=0, max_len=5)
    with pytest.raises(ValueError, match="greedy_decode: max_len must be an int >= 1, got 0"):
        greedy_decode(model, source, lengths, max_len=0)
    with pytest.raises(ValueError, match=r"beam_search: source must be \(B, S\) and lengths \(B,\), got \(4, 7\) and \(3,\)"):
        beam_search(model, source, lengths[:3], beam_size=2, max_len=5)
    with pytest.raises(ValueError, match="greedy_decode: alpha must be >= 0, got -1"):
        greedy_decode(model, source, lengths, max_len=5, alpha=-1)
