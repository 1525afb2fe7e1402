"""The incremental CTC decoder: text as soon as it is decided, equal to offline greedy decoding."""
import pytest
import torch

from rnnkit.streaming import CTCStreamDecoder


def _frames(ids, C=4):
    """One-hot log-probability frames for a list of class ids: (T, C)."""
    return torch.nn.functional.one_hot(torch.tensor(ids), C).double().clamp_min(1e-6).log()


def _offline_greedy(log_probs, labels, blank=0):
    best = log_probs.argmax(-1).tolist()
    return "".join(labels[k] for j, k in enumerate(best) if k != blank and (j == 0 or k != best[j - 1]))


def test_ctc_stream_decoder_emits_as_soon_as_decided():
    dec = CTCStreamDecoder(["_", "a", "b", "c"])
    assert dec.feed(_frames([0, 0])) == ""
    assert dec.feed(_frames([1])) == "a"  # decided at its first frame
    assert dec.feed(_frames([1, 1])) == ""  # the same run, across calls: collapsed
    assert dec.feed(_frames([0, 1])) == "a"  # a blank separates two a's
    assert dec.feed(_frames([1, 2, 2, 3])) == "bc"
    assert dec.feed(_frames([3])[0]) == ""  # a single (C,) frame, still the same run of c
    assert dec.text == "aabc" and dec.ids == [1, 1, 2, 3]
    dec.reset()
    assert dec.text == "" and dec.feed(_frames([3])) == "c"  # a new utterance: nothing carried over


def test_ctc_stream_decoder_equals_offline_greedy_for_any_chunking():
    gen = torch.Generator().manual_seed(6)
    labels = ["<b>", "x", "y", "z"]
    for trial in range(20):
        T = 30
        ids = torch.randint(0, 4, (T,), generator=gen)
        ids[torch.rand(T, generator=gen) < 0.4] = 0  # plenty of blanks
        log_probs = torch.log_softmax(4.0 * torch.nn.functional.one_hot(ids, 4).float()
                                      + 0.1 * torch.randn(T, 4, generator=gen), -1)
        dec = CTCStreamDecoder(labels, blank=0)
        cuts = sorted(torch.randint(0, T + 1, (trial % 6,), generator=gen).tolist())
        pieces = [dec.feed(log_probs[a:b]) for a, b in zip([0] + cuts, cuts + [T])]
        assert "".join(pieces) == dec.text == _offline_greedy(log_probs, labels)


def test_ctc_stream_decoder_other_blank_and_errors():
    dec = CTCStreamDecoder(["a", "b", "-"], blank=2)
    assert dec.feed(_frames([0, 2, 0, 1, 1, 2], C=3)) == "aab"
    with pytest.raises(ValueError, match=r"log_probs must be \(T, 3\) or \(3,\).*got shape \(2, 4\)"):
        dec.feed(torch.zeros(2, 4))
    with pytest.raises(TypeError, match="labels must be a sequence of strings"):
        CTCStreamDecoder("abc")
    with pytest.raises(ValueError, match=r"blank must be an int in \[0, 3\), got 3"):
        CTCStreamDecoder(["a", "b", "c"], blank=3)
