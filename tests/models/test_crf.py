"""CRF: the forward algorithm (log Z), the gold-path score and Viterbi against brute-force enumeration
of every tag path on tiny inputs, masks for variable lengths, gradients, and bad input."""
import itertools

import pytest
import torch

from rnnkit.models.crf import CRF


def _crf(num_tags: int, seed: int) -> CRF:
    torch.manual_seed(seed)
    crf = CRF(num_tags).double()
    with torch.no_grad():  # larger than the default init, so that paths differ clearly
        for p in crf.parameters():
            p.normal_(0, 1.5)
    return crf


def _path_score(crf: CRF, emissions: torch.Tensor, path) -> torch.Tensor:
    """score(y) of one sentence, straight from the definition: emissions (L, K), path of L tags."""
    s = crf.start_transitions[path[0]] + crf.end_transitions[path[-1]]
    for t, y in enumerate(path):
        s = s + emissions[t, y]
        if t > 0:
            s = s + crf.transitions[path[t - 1], y]
    return s


def _brute_force(crf: CRF, emissions: torch.Tensor):
    """(log Z, best path, best score) of one sentence by enumerating all K^L paths."""
    L, K = emissions.shape
    paths = list(itertools.product(range(K), repeat=L))
    scores = torch.stack([_path_score(crf, emissions, p) for p in paths])
    best = int(scores.argmax())
    return torch.logsumexp(scores, 0), list(paths[best]), scores[best]


CASES = [(T, K) for T in (1, 2, 3, 4) for K in (1, 2, 3)]


@pytest.mark.parametrize("T, K", CASES)
def test_log_partition_viterbi_and_score_match_brute_force(T, K):
    crf = _crf(K, seed=10 * T + K)
    emissions = torch.randn(3, T, K, dtype=torch.double, generator=torch.Generator().manual_seed(T * K))
    log_z = crf.log_partition(emissions)
    best = crf.decode(emissions)
    assert log_z.shape == (3,) and best.tags.shape == (3, T) and best.score.shape == (3,)
    tags = torch.randint(0, K, (3, T), generator=torch.Generator().manual_seed(1))
    for b in range(3):
        ref_z, ref_path, ref_score = _brute_force(crf, emissions[b])
        torch.testing.assert_close(log_z[b], ref_z)
        assert best.tags[b].tolist() == ref_path
        torch.testing.assert_close(best.score[b], ref_score)
        torch.testing.assert_close(crf.score(emissions[b : b + 1], tags[b : b + 1])[0],
                                   _path_score(crf, emissions[b], tags[b].tolist()))
    # The negative log-likelihood is log Z - score(gold), and the probabilities of all paths sum to 1.
    torch.testing.assert_close(crf(emissions, tags), log_z - crf.score(emissions, tags))
    assert bool((crf(emissions, tags) >= -1e-12).all())  # p(gold) <= 1


def test_masks_give_each_sentence_its_own_length():
    K, lengths = 3, [4, 1, 3, 2]
    crf = _crf(K, seed=0)
    g = torch.Generator().manual_seed(0)
    emissions = torch.randn(len(lengths), 4, K, dtype=torch.double, generator=g)
    tags = torch.randint(0, K, (len(lengths), 4), generator=g)
    mask = torch.arange(4) < torch.tensor(lengths).unsqueeze(1)  # (B, T)
    # Padded steps hold junk: huge emissions and out-of-range tags must change nothing.
    emissions = emissions.masked_fill(~mask.unsqueeze(2), 1e4)
    tags = tags.masked_fill(~mask, -100)
    log_z, nll = crf.log_partition(emissions, mask), crf(emissions, tags, mask)
    best = crf.decode(emissions, mask)
    for b, n in enumerate(lengths):
        ref_z, ref_path, ref_score = _brute_force(crf, emissions[b, :n])
        torch.testing.assert_close(log_z[b], ref_z)
        assert best.tags[b, :n].tolist() == ref_path and best.tags[b, n:].eq(0).all()
        torch.testing.assert_close(best.score[b], ref_score)
        torch.testing.assert_close(nll[b], ref_z - _path_score(crf, emissions[b, :n], tags[b, :n].tolist()))


def test_gradient_of_log_partition_is_the_tag_marginals():
    """d log Z / d e_t[k] = p(y_t = k): check against marginals from the enumerated paths."""
    T, K = 3, 3
    crf = _crf(K, seed=3)
    emissions = torch.randn(1, T, K, dtype=torch.double, generator=torch.Generator().manual_seed(3), requires_grad=True)
    crf.log_partition(emissions).sum().backward()
    with torch.no_grad():
        paths = list(itertools.product(range(K), repeat=T))
        probs = torch.softmax(torch.stack([_path_score(crf, emissions[0], p) for p in paths]), 0)
        marginals = torch.zeros(T, K, dtype=torch.double)
        for p, q in zip(paths, probs):
            for t, y in enumerate(p):
                marginals[t, y] += q
    torch.testing.assert_close(emissions.grad[0], marginals)
    assert torch.allclose(marginals.sum(1), torch.ones(T, dtype=torch.double))


def test_training_the_crf_alone_learns_a_transition_rule():
    """With uninformative emissions the only way to fit "tag 1 always follows tag 0" is the transitions."""
    torch.manual_seed(0)
    crf = CRF(3)
    tags = torch.tensor([[0, 1, 2, 0, 1], [2, 0, 1, 2, 2]])
    emissions = torch.zeros(2, 5, 3)
    opt = torch.optim.Adam(crf.parameters(), lr=0.1)
    first = float(crf(emissions, tags).sum().detach())
    for _ in range(100):
        opt.zero_grad()
        crf(emissions, tags).sum().backward()
        opt.step()
    assert float(crf(emissions, tags).sum().detach()) < 0.5 * first
    A = crf.transitions.detach()
    assert float(A[0, 1]) > float(A[0, 0]) and float(A[0, 1]) > float(A[0, 2])


@pytest.mark.parametrize("call, words", [
    (lambda crf: crf.log_partition(torch.zeros(2, 3, 4)), r"emissions must have shape \(B, T >= 1, 3\), got \(2, 3, 4\)"),
    (lambda crf: crf.log_partition(torch.zeros(2, 0, 3)), r"emissions must have shape .* got \(2, 0, 3\)"),
    (lambda crf: crf.score(torch.zeros(2, 3, 3), torch.zeros(2, 4, dtype=torch.long)), r"tags must have shape \(2, 3\)"),
    (lambda crf: crf.decode(torch.zeros(2, 3, 3), torch.ones(3, 2, dtype=torch.bool)), r"mask must have shape \(2, 3\)"),
    (lambda crf: crf.decode(torch.zeros(1, 3, 3), torch.tensor([[False, True, True]])), r"mask\[:, 0\] must be all True"),
    (lambda crf: crf.decode(torch.zeros(1, 3, 3), torch.tensor([[True, False, True]])), "mask must be a prefix"),
    (lambda crf: CRF(0), "CRF: num_tags must be an int >= 1, got 0"),
])
def test_bad_input_is_named(call, words):
    with pytest.raises(ValueError, match=f"CRF: {words}" if not words.startswith("CRF") else words):
        call(CRF(3))
