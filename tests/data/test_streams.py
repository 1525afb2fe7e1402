"""Tests for rnnkit.data.streams: seed 004's sequence batching for language models."""

import doctest
import json

import pytest
import torch

import rnnkit.data.streams
from rnnkit.data import StreamBatcher, stream_batches
from rnnkit.data.batching import stream_batches as stream_batches_from_batching


def test_doctests_pass():
    assert doctest.testmod(rnnkit.data.streams).failed == 0
    assert stream_batches_from_batching is stream_batches


def test_notes_example_by_hand():
    # data 1..12, B=2: streams [1..6] and [7..12]; 5 (input, target) pairs per stream.
    windows = list(stream_batches(list(range(1, 13)), batch_size=2, seq_len=3))
    assert len(windows) == 2
    (x0, y0), (x1, y1) = windows
    assert x0.tolist() == [[1, 2, 3], [7, 8, 9]]
    assert y0.tolist() == [[2, 3, 4], [8, 9, 10]]
    assert x1.tolist() == [[4, 5], [10, 11]]  # the last window is shorter
    assert y1.tolist() == [[5, 6], [11, 12]]
    assert x0.dtype == torch.long


def test_tail_that_does_not_fit_is_dropped():
    batcher = StreamBatcher(torch.arange(1, 14), batch_size=2, seq_len=3)  # 13 is dropped
    assert batcher.streams.tolist() == [[1, 2, 3, 4, 5, 6], [7, 8, 9, 10, 11, 12]]
    assert all(13 not in y for _, y in batcher)


@pytest.mark.parametrize("N, B, L", [(1000, 4, 35), (1001, 7, 10), (50, 5, 100), (20, 10, 1)])
def test_windows_concatenated_reproduce_each_stream(N, B, L):
    data = torch.randint(0, 50, (N,), generator=torch.Generator().manual_seed(N))
    batcher = StreamBatcher(data, batch_size=B, seq_len=L)
    windows = list(batcher)
    n = N // B
    assert len(windows) == len(batcher) == -(-(n - 1) // L)
    assert all(x.shape == y.shape and x.shape[0] == B and 1 <= x.shape[1] <= L for x, y in windows)
    xs = torch.cat([x for x, _ in windows], dim=1)  # (B, n - 1)
    ys = torch.cat([y for _, y in windows], dim=1)  # (B, n - 1)
    for b in range(B):
        stream = data[b * n:(b + 1) * n]  # the b-th contiguous chunk
        assert torch.equal(xs[b], stream[:-1])
        assert torch.equal(ys[b], stream[1:])


def test_feature_streams_and_contiguous_windows():
    data = torch.randn(100, 3)
    x, y = next(stream_batches(data, batch_size=4, seq_len=6))
    assert x.shape == y.shape == (4, 6, 3)
    assert torch.equal(x[1, 0], data[25]) and torch.equal(y[1, 0], data[26])
    assert x.is_contiguous() and y.view(-1).shape == (72,)


def test_carrying_rnn_state_across_windows_equals_one_full_run():
    torch.manual_seed(0)
    B, N, F, H = 3, 301, 5, 8
    data = torch.randn(N, F)
    rnn = torch.nn.RNN(F, H, batch_first=True)
    batcher = StreamBatcher(data, batch_size=B, seq_len=7)

    h = None  # (num_layers, B, H)
    outputs = []
    for x, _ in batcher:
        out, h = rnn(x, h)  # (B, l, H)
        outputs.append(out)
        h = h.detach()  # truncated BPTT cuts the graph, not the state
    windowed = torch.cat(outputs, dim=1)  # (B, n - 1, H)

    full, _ = rnn(batcher.streams[:, :-1])  # the whole of every stream in one go
    torch.testing.assert_close(windowed, full, rtol=0, atol=1e-6)


def test_resume_from_state_dict_and_start_the_next_pass():
    data = torch.arange(500)
    expected = [x for x, _ in StreamBatcher(data, batch_size=4, seq_len=10)]
    batcher = StreamBatcher(data, batch_size=4, seq_len=10)
    seen = []
    for x, _ in batcher:
        seen.append(x)
        if len(seen) == 5:
            break
    state = json.loads(json.dumps(batcher.state_dict()))
    assert state["position"] == 5

    resumed = StreamBatcher(data, batch_size=4, seq_len=10)
    resumed.load_state_dict(state)
    rest = [x for x, _ in resumed]
    assert len(rest) == len(expected) - 5
    assert all(torch.equal(a, b) for a, b in zip(seen + rest, expected, strict=True))
    # a finished pass starts over from the first window
    assert torch.equal(next(iter(resumed)).inputs, expected[0])


BAD_CALLS = {
    "batch_size": (ValueError, "batch_size", lambda: StreamBatcher(torch.arange(10), batch_size=0, seq_len=2)),
    "batch_size_float": (TypeError, "batch_size", lambda: StreamBatcher(torch.arange(10), batch_size=1.0, seq_len=2)),
    "seq_len": (ValueError, "seq_len", lambda: stream_batches(torch.arange(10), batch_size=2, seq_len=0)),
    "data_too_short": (ValueError, "data", lambda: stream_batches(torch.arange(5), batch_size=3, seq_len=2)),
    "data_scalar": (ValueError, "data", lambda: stream_batches(torch.tensor(5), batch_size=1, seq_len=2)),
    "state_settings": (ValueError, r"state\['seq_len'\]", lambda: StreamBatcher(torch.arange(40), 2, 3)
                       .load_state_dict(StreamBatcher(torch.arange(40), 2, 4).state_dict())),
    "state_position": (ValueError, r"state\['position'\]", lambda: StreamBatcher(torch.arange(40), 2, 3)
                       .load_state_dict({**StreamBatcher(torch.arange(40), 2, 3).state_dict(), "position": 99})),
    "state_not_dict": (TypeError, "state", lambda: StreamBatcher(torch.arange(40), 2, 3).load_state_dict(5)),
}


@pytest.mark.parametrize("case", sorted(BAD_CALLS))
def test_bad_argument_raises_naming_it(case):
    error, name, call = BAD_CALLS[case]
    with pytest.raises(error, match=name):
        call()
