"""CTC: decoders against hand-computed answers and a brute-force oracle, frame stacking and
normalisation against plain loops, the acoustic model's lengths, edit distance, CER and WER."""
import itertools
import math
import random

import pytest
import torch

from rnnkit.models.ctc import (CTCConfig, CTCModel, ctc_greedy_decode, ctc_prefix_beam_search, edit_distance,
                               error_counts, normalize_frames, stack_frames)

B_, A, Bc = 0, 1, 2  # blank, "a", "b"


def _log(rows):
    """Frames of probabilities (T, C) -> log-probabilities."""
    return torch.tensor(rows, dtype=torch.float64).log()


def _peaked(labels, num_classes=3, top=0.9):
    """One frame per label with that label at probability `top`, the rest spread evenly."""
    rest = (1 - top) / (num_classes - 1)
    return _log([[top if c == k else rest for c in range(num_classes)] for k in labels])


def _brute_force(probs: torch.Tensor, blank: int = 0) -> dict[tuple, float]:
    """p(labelling) for every labelling: sum over all C^T paths of those that collapse to it."""
    T, C = probs.shape
    out: dict[tuple, float] = {}
    for path in itertools.product(range(C), repeat=T):
        labels = tuple(k for i, k in enumerate(path) if k != blank and (i == 0 or k != path[i - 1]))
        out[labels] = out.get(labels, 0.0) + math.prod(float(probs[t, k]) for t, k in enumerate(path))
    return out


# -- greedy -----------------------------------------------------------------------------------

@pytest.mark.parametrize("path, expected", [
    ([A, A, B_, A], [A, A]),  # a blank separates two a's
    ([A, A, A], [A]),  # repeats merge
    ([B_, A, Bc, Bc, B_, B_, Bc, A], [A, Bc, Bc, A]),
    ([B_, B_, B_], []),  # only blanks
    ([Bc], [Bc]),
    ([], []),
])
def test_greedy_collapses_repeats_and_drops_blanks(path, expected):
    assert ctc_greedy_decode(_peaked(path).reshape(len(path), 3)) == expected


def test_greedy_takes_the_best_path_not_the_best_labelling():
    # Two frames of (blank .6, a .4): the path "--" (.36) is the best path, but the labelling
    # "a" gathers "-a", "a-" and "aa": .24 + .24 + .16 = .64.
    lp = _log([[0.6, 0.4], [0.6, 0.4]])
    assert ctc_greedy_decode(lp) == []
    best = ctc_prefix_beam_search(lp, beam_size=2)
    assert best[0].labels == (A,) and math.exp(best[0].log_prob) == pytest.approx(0.64)
    assert best[1].labels == () and math.exp(best[1].log_prob) == pytest.approx(0.36)
    # A beam of one drops "a" (.4) after the first frame, as greedy does.
    assert ctc_prefix_beam_search(lp, beam_size=1)[0].labels == ()


# -- prefix beam search -----------------------------------------------------------------------

def test_beam_search_separates_repeats_by_blanks_and_merges_the_rest():
    # a .9 | blank .9 | a .9: "a a" needs the blank between; p("aa") = .9*.9*.9 + small paths.
    lp = _peaked([A, B_, A], num_classes=2, top=0.9)
    exact = _brute_force(lp.exp())
    hyps = ctc_prefix_beam_search(lp, beam_size=10)
    assert hyps[0].labels == (A, A)
    for h in hyps:
        assert math.exp(h.log_prob) == pytest.approx(exact[h.labels])


def test_beam_of_one_can_beat_greedy_with_the_more_probable_labelling():
    # Frame 1 is surely "a"; frame 2: b .4, blank .35, a .25. Greedy reads "ab" (p = .4);
    # "a" gathers "a-" and "aa": .35 + .25 = .6, and a beam of one keeps it.
    lp = _log([[0.0, 1.0, 0.0], [0.35, 0.25, 0.4]])
    assert ctc_greedy_decode(lp) == [A, Bc]
    best = ctc_prefix_beam_search(lp, beam_size=1)[0]
    assert best.labels == (A,) and math.exp(best.log_prob) == pytest.approx(0.6)
    exact = _brute_force(lp.exp())
    assert exact[(A,)] == pytest.approx(0.6) and exact[(A, Bc)] == pytest.approx(0.4)


@pytest.mark.parametrize("seed", range(6))
def test_wide_beam_is_exact_against_brute_force_and_ctc_loss(seed):
    g = torch.Generator().manual_seed(seed)
    T, C = 5, 3
    probs = torch.softmax(torch.randn(T, C, generator=g, dtype=torch.float64) * 2, -1)  # (T, C)
    exact = _brute_force(probs)
    hyps = ctc_prefix_beam_search(probs.log(), beam_size=1000)  # wider than the number of prefixes
    assert {h.labels for h in hyps} == set(exact)
    for h in hyps:
        assert math.exp(h.log_prob) == pytest.approx(exact[h.labels], rel=1e-9)
    assert hyps[0].labels == max(exact, key=exact.get)
    assert [h.log_prob for h in hyps] == sorted((h.log_prob for h in hyps), reverse=True)
    # torch's CTC loss is -log p(labelling), the same sum over paths.
    for labels in [lab for lab in exact if lab][:5]:
        loss = torch.nn.functional.ctc_loss(probs.log()[:, None], torch.tensor([labels]), torch.tensor([T]),
                                            torch.tensor([len(labels)]), blank=0, reduction="sum")
        assert float(loss) == pytest.approx(-math.log(exact[labels]), rel=1e-6)


def test_beam_size_one_equals_greedy_on_peaky_frames():
    """Where each frame's top label has probability >= 0.75, a beam of one is the best path."""
    g, rng = torch.Generator().manual_seed(0), random.Random(0)
    for _ in range(300):
        T, C = rng.randint(1, 12), rng.randint(2, 6)
        top = torch.randint(0, C, (T,), generator=g)  # (T,)
        probs = torch.rand(T, C, generator=g, dtype=torch.float64)
        probs[torch.arange(T), top] = 0
        share = 0.75 + 0.25 * torch.rand(T, 1, generator=g, dtype=torch.float64)  # top probability per frame
        probs = probs / probs.sum(1, keepdim=True) * (1 - share)
        probs[torch.arange(T), top] = share[:, 0]
        assert list(ctc_prefix_beam_search(probs.log(), beam_size=1)[0].labels) == ctc_greedy_decode(probs.log())


def test_beam_below_that_bound_differs_from_greedy():
    # a .7 | blank .7 | a .7: greedy reads "aa" (the path a-a); the beam of one keeps "a",
    # whose paths (aaa, aa-, a--, -aa, ... ) outweigh it: .357 against .343 at the last frame.
    lp = _peaked([A, B_, A], num_classes=2, top=0.7)
    assert ctc_greedy_decode(lp) == [A, A]
    assert ctc_prefix_beam_search(lp, beam_size=1)[0].labels == (A,)


def test_beam_search_rejects_bad_arguments():
    with pytest.raises(ValueError, match="beam_size must be an int >= 1, got 0"):
        ctc_prefix_beam_search(torch.zeros(3, 2), beam_size=0)
    with pytest.raises(ValueError, match=r"log_probs must be \(T, C\), got \(2, 3, 2\)"):
        ctc_prefix_beam_search(torch.zeros(2, 3, 2))


# -- frames and the model ---------------------------------------------------------------------

@pytest.mark.parametrize("k", [1, 2, 3, 4])
def test_stack_frames_matches_a_loop(k):
    g = torch.Generator().manual_seed(k)
    x = torch.randn(3, 10, 4, generator=g)  # (B, T, F)
    lengths = torch.tensor([10, 7, 1])
    out, steps = stack_frames(x, lengths, k)
    T_out = math.ceil(10 / k)
    assert out.shape == (3, T_out, k * 4)
    assert steps.tolist() == [math.ceil(n / k) for n in lengths.tolist()]
    for b in range(3):
        for s in range(T_out):
            for j in range(k):
                t = s * k + j
                expected = x[b, t] if t < 10 else torch.zeros(4)
                assert torch.equal(out[b, s, j * 4:(j + 1) * 4], expected)


def test_normalize_frames_per_utterance_over_valid_frames_only():
    g = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, 3, generator=g) * 5 + 3  # (B, T, F)
    lengths = torch.tensor([6, 4])
    x[1, 4:] = 0
    out = normalize_frames(x, lengths)
    for b, n in enumerate(lengths.tolist()):
        ref = x[b, :n]
        expected = (ref - ref.mean(0)) / torch.sqrt(ref.var(0, correction=0) + 1e-5)
        torch.testing.assert_close(out[b, :n], expected)
    assert bool((out[1, 4:] == 0).all())


def test_model_shapes_and_padding_do_not_change_an_utterance():
    torch.manual_seed(0)
    model = CTCModel(CTCConfig(num_features=5, num_classes=4, stack=2, hidden_size=6, num_layers=2)).eval()
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, 9, 5, generator=g)  # (B, T, F)
    lengths = torch.tensor([9, 5, 2])
    for b, n in enumerate(lengths.tolist()):
        x[b, n:] = 0
    out = model(x, lengths)
    assert out.log_probs.shape == (3, 5, 4) and out.lengths.tolist() == [5, 3, 1]
    torch.testing.assert_close(out.log_probs.exp().sum(-1), torch.ones(3, 5))
    for b, n in enumerate(lengths.tolist()):  # alone, unpadded: the same log-probs
        alone = model(x[b : b + 1, :n], lengths[b : b + 1])
        torch.testing.assert_close(alone.log_probs[0], out.log_probs[b, : out.lengths[b]], atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match=r"CTCModel: x must be \(B, T, 5\), got \(3, 9\)"):
        model(x[..., 0], lengths)


@pytest.mark.parametrize("field, value, words", [
    ("num_classes", 1, "num_classes must be an int >= 2"),
    ("stack", 0, "stack must be an int >= 1, got 0"),
    ("dropout", 1.5, r"dropout must be in \[0, 1\], got 1.5"),
    ("cell", "transformer", "cell must be one of .* got 'transformer'"),
])
def test_config_rejects_bad_values(field, value, words):
    with pytest.raises(ValueError, match=f"CTCConfig: {words}"):
        CTCConfig(**{field: value})


# -- error rates ------------------------------------------------------------------------------

@pytest.mark.parametrize("ref, hyp, d", [
    ("kitten", "sitting", 3), ("", "abc", 3), ("abc", "", 3), ("abc", "abc", 0), ("flaw", "lawn", 2),
    (["one", "two", "three"], ["one", "three"], 1), (["one"], ["two", "one", "two"], 2),
])
def test_edit_distance_hand_cases(ref, hyp, d):
    assert edit_distance(ref, hyp) == d == edit_distance(hyp, ref)


def test_edit_distance_against_exhaustive_search_on_short_strings():
    """Edit distance = the fewest single edits: check by breadth-first search over edits."""
    rng = random.Random(0)
    for _ in range(30):
        a = "".join(rng.choice("ab") for _ in range(rng.randint(0, 4)))
        b = "".join(rng.choice("ab") for _ in range(rng.randint(0, 4)))
        frontier, seen, steps = {a}, {a}, 0
        while b not in frontier:
            nxt = set()
            for s in frontier:
                for i in range(len(s) + 1):
                    for c in "ab":
                        nxt.add(s[:i] + c + s[i:])  # insert
                    if i < len(s):
                        nxt.add(s[:i] + s[i + 1:])  # delete
                        nxt.update(s[:i] + c + s[i + 1:] for c in "ab")  # substitute
            frontier, steps = nxt - seen, steps + 1
            seen |= nxt
        assert edit_distance(a, b) == steps


def test_cer_and_wer_sum_edits_over_utterances():
    refs = ["three one four", "one five"]
    hyps = ["three one for", "one  five nine"]  # a dropped "u"; an extra word (doubled spaces don't count)
    counts = error_counts(refs, hyps)
    assert counts.chars == len("three one four") + len("one five") == 22
    assert counts.char_edits == 1 + len(" nine")
    assert counts.words == 5 and counts.word_edits == 2
    assert counts.cer == pytest.approx(6 / 22) and counts.wer == pytest.approx(2 / 5)
    with pytest.raises(ValueError, match="refs and hyps must be as many, got 2 and 1"):
        error_counts(refs, hyps[:1])
