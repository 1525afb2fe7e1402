"""Tests for rnnkit.data.batching: padding, length bucketing, index splits."""

import json

import pytest
import torch
from torch.utils.data import DataLoader, TensorDataset

from rnnkit.data import BucketBatchSampler, pad_sequences, split_indices

# -- pad_sequences ----------------------------------------------------------------------


def test_pad_post_truncation_keeps_the_first_steps_and_true_lengths():
    values, lengths = pad_sequences([[1, 2, 3, 4, 5], [6, 7], [8]], max_len=3)
    assert values.tolist() == [[1, 2, 3], [6, 7, 0], [8, 0, 0]]
    assert lengths.tolist() == [3, 2, 1]
    assert values.dtype == torch.long and lengths.dtype == torch.long


def test_pad_pre_truncation_keeps_the_last_steps():
    values, lengths = pad_sequences([[1, 2, 3, 4, 5], [6, 7]], max_len=3, truncate="pre")
    assert values.tolist() == [[3, 4, 5], [6, 7, 0]]
    assert lengths.tolist() == [3, 2]


def test_pad_default_length_is_the_longest():
    batch = pad_sequences([[1], [2, 3, 4], [5, 6]], pad_value=-1)
    assert batch.values.tolist() == [[1, -1, -1], [2, 3, 4], [5, 6, -1]]
    assert batch.lengths.tolist() == [1, 3, 2]


def test_pad_max_len_bigger_than_all_pads_to_max_len():
    values, lengths = pad_sequences([[1, 2], [3]], max_len=5)
    assert values.shape == (2, 5)
    assert values.tolist() == [[1, 2, 0, 0, 0], [3, 0, 0, 0, 0]]
    assert lengths.tolist() == [2, 1]


def test_pad_pre_padding_right_aligns():
    values, lengths = pad_sequences([[1, 2, 3], [4]], padding="pre")
    assert values.tolist() == [[1, 2, 3], [0, 0, 4]]
    assert lengths.tolist() == [3, 1]


@pytest.mark.parametrize("truncate", ["post", "pre"])
def test_pad_feature_sequences(truncate):
    g = torch.Generator().manual_seed(0)
    seqs = [torch.randn(L, 3, generator=g) for L in (4, 1, 6)]
    values, lengths = pad_sequences(seqs, max_len=5, pad_value=0.5, truncate=truncate)
    assert values.shape == (3, 5, 3) and values.dtype == torch.float32
    assert lengths.tolist() == [4, 1, 5]
    for b, seq in enumerate(seqs):
        n = int(lengths[b])
        kept = seq[:n] if truncate == "post" else seq[len(seq) - n:]
        assert torch.equal(values[b, :n], kept)
        assert torch.all(values[b, n:] == 0.5)


def test_pad_float_lists_give_float_tensor():
    values, _ = pad_sequences([[0.5, 1.5], [2.0]])
    assert values.dtype == torch.float32
    assert values.tolist() == [[0.5, 1.5], [2.0, 0.0]]


# -- BucketBatchSampler -------------------------------------------------------------------


def _lengths(n=1000, seed=0):
    return torch.randint(1, 200, (n,), generator=torch.Generator().manual_seed(seed))


def _spread(batches, lengths):
    return sum(int(lengths[b].max() - lengths[b].min()) for b in batches) / len(batches)


@pytest.mark.parametrize("n, shuffle", [(1000, True), (1003, True), (1003, False), (5, True)])
def test_bucket_covers_every_index_once(n, shuffle):
    sampler = BucketBatchSampler(_lengths(n), batch_size=32, shuffle=shuffle, bucket_size_multiplier=4)
    batches = list(sampler)
    assert len(batches) == len(sampler) == -(-n // 32)
    assert sorted(i for b in batches for i in b) == list(range(n))
    assert all(len(b) <= 32 for b in batches)


def test_bucket_drop_last_keeps_full_batches_only():
    sampler = BucketBatchSampler(_lengths(1003), batch_size=32, drop_last=True)
    batches = list(sampler)
    assert len(batches) == len(sampler) == 1003 // 32
    assert all(len(b) == 32 for b in batches)
    flat = [i for b in batches for i in b]
    assert len(set(flat)) == len(flat) == 1003 - 1003 % 32


def test_bucket_batches_are_length_homogeneous():
    lengths = _lengths(2000)
    bucketed = list(BucketBatchSampler(lengths, batch_size=32, bucket_size_multiplier=20))
    perm = torch.randperm(2000, generator=torch.Generator().manual_seed(1)).tolist()
    random_batches = [perm[i:i + 32] for i in range(0, 2000, 32)]
    assert _spread(bucketed, lengths) < 0.1 * _spread(random_batches, lengths)


def test_bucket_is_deterministic_given_seed():
    a = list(BucketBatchSampler(_lengths(), batch_size=16, seed=3))
    b = list(BucketBatchSampler(_lengths(), batch_size=16, seed=3))
    c = list(BucketBatchSampler(_lengths(), batch_size=16, seed=4))
    assert a == b
    assert a != c


def test_bucket_order_differs_across_epochs_and_set_epoch_replays_them():
    sampler = BucketBatchSampler(_lengths(), batch_size=16)
    epoch0, epoch1 = list(sampler), list(sampler)  # finishing an epoch moves to the next
    assert epoch0 != epoch1
    assert sorted(map(sorted, epoch0)) != sorted(map(sorted, epoch1))  # other batch contents too
    assert sampler.epoch == 2
    sampler.set_epoch(1)
    assert list(sampler) == epoch1
    other = BucketBatchSampler(_lengths(), batch_size=16)
    other.set_epoch(1)
    assert list(other) == epoch1


def test_bucket_without_shuffle_is_the_same_every_epoch():
    sampler = BucketBatchSampler(_lengths(), batch_size=16, shuffle=False)
    assert list(sampler) == list(sampler)


def test_bucket_resume_yields_exactly_the_remaining_batches():
    full = BucketBatchSampler(_lengths(), batch_size=16)
    list(full)  # epoch 0
    expected_epoch1, expected_epoch2 = list(full), list(full)

    sampler = BucketBatchSampler(_lengths(), batch_size=16)
    list(sampler)
    seen = []
    for batch in sampler:  # epoch 1, interrupted after 7 batches
        seen.append(batch)
        if len(seen) == 7:
            break
    state = json.loads(json.dumps(sampler.state_dict()))  # survives a JSON checkpoint
    assert (state["epoch"], state["position"]) == (1, 7)

    resumed = BucketBatchSampler(_lengths(), batch_size=16)
    resumed.load_state_dict(state)
    resumed.set_epoch(1)  # a training loop re-entering the same epoch still resumes
    rest = list(resumed)
    assert seen + rest == expected_epoch1
    assert len(rest) == len(expected_epoch1) - 7
    assert list(resumed) == expected_epoch2


def test_bucket_works_as_a_dataloader_batch_sampler():
    lengths = _lengths(100)
    dataset = TensorDataset(torch.arange(100))
    loader = DataLoader(dataset, batch_sampler=BucketBatchSampler(lengths, batch_size=8))
    seen = torch.cat([x for (x,) in loader])
    assert len(loader) == 13
    assert sorted(seen.tolist()) == list(range(100))


# -- split_indices ------------------------------------------------------------------------


@pytest.mark.parametrize("n, fractions, sizes", [
    (100, (0.8, 0.1, 0.1), [80, 10, 10]),
    (7, (0.5, 0.5), [4, 3]),
    (10, (1.0,), [10]),
    (3, (0.8, 0.1, 0.1), [2, 1, 0]),
])
def test_split_indices_partitions_range(n, fractions, sizes):
    parts = split_indices(n, fractions, seed=0)
    assert [len(p) for p in parts] == sizes
    assert all(p.dtype == torch.long for p in parts)
    assert sorted(torch.cat(parts).tolist()) == list(range(n))


def test_split_indices_is_reproducible_and_shuffled():
    a, b = split_indices(1000, seed=5), split_indices(1000, seed=5)
    assert all(torch.equal(x, y) for x, y in zip(a, b))
    c = split_indices(1000, seed=6)
    assert not torch.equal(a[0], c[0])
    assert not torch.equal(a[0], torch.arange(800))


# -- bad arguments ------------------------------------------------------------------------

def _sampler(**kwargs):
    return BucketBatchSampler(_lengths(100), batch_size=kwargs.pop("batch_size", 8), **kwargs)


def _load(**changes):
    state = _sampler().state_dict()
    state.update(changes)
    _sampler().load_state_dict(state)


BAD_CALLS = {
    "pad_empty_sequence": (ValueError, r"seqs\[1\]", lambda: pad_sequences([[1], []])),
    "pad_no_sequences": (ValueError, "seqs", lambda: pad_sequences([])),
    "pad_seqs_tensor": (TypeError, "seqs", lambda: pad_sequences(torch.ones(2, 3))),
    "pad_feature_mismatch": (ValueError, r"seqs\[1\]", lambda: pad_sequences([torch.ones(2, 3), torch.ones(2, 4)])),
    "pad_max_len": (ValueError, "max_len", lambda: pad_sequences([[1]], max_len=0)),
    "pad_truncate": (ValueError, "truncate", lambda: pad_sequences([[1]], truncate="middle")),
    "pad_padding": (ValueError, "padding", lambda: pad_sequences([[1]], padding="both")),
    "pad_value_fraction": (ValueError, "pad_value", lambda: pad_sequences([[1]], pad_value=0.5)),
    "pad_value_str": (TypeError, "pad_value", lambda: pad_sequences([[1]], pad_value="x")),
    "bucket_lengths_empty": (ValueError, "lengths", lambda: BucketBatchSampler([], batch_size=2)),
    "bucket_lengths_2d": (ValueError, "lengths", lambda: BucketBatchSampler([[1, 2]], batch_size=2)),
    "bucket_lengths_float": (ValueError, "lengths", lambda: BucketBatchSampler([1.5], batch_size=2)),
    "bucket_lengths_negative": (ValueError, "lengths", lambda: BucketBatchSampler([3, -1], batch_size=2)),
    "bucket_batch_size": (ValueError, "batch_size", lambda: _sampler(batch_size=0)),
    "bucket_batch_size_float": (TypeError, "batch_size", lambda: _sampler(batch_size=2.0)),
    "bucket_shuffle": (TypeError, "shuffle", lambda: _sampler(shuffle=1)),
    "bucket_seed": (ValueError, "seed", lambda: _sampler(seed=-1)),
    "bucket_multiplier": (ValueError, "bucket_size_multiplier", lambda: _sampler(bucket_size_multiplier=0)),
    "bucket_drop_last": (TypeError, "drop_last", lambda: _sampler(drop_last=None)),
    "bucket_set_epoch": (ValueError, "epoch", lambda: _sampler().set_epoch(-1)),
    "bucket_state_settings": (ValueError, r"state\['batch_size'\]", lambda: _load(batch_size=4)),
    "bucket_state_position": (ValueError, r"state\['position'\]", lambda: _load(position=99)),
    "bucket_state_missing": (ValueError, "epoch", lambda: _sampler().load_state_dict({"position": 0})),
    "split_n": (ValueError, "n must be", lambda: split_indices(-1)),
    "split_n_float": (TypeError, "n must be", lambda: split_indices(10.0)),
    "split_seed": (ValueError, "seed", lambda: split_indices(10, seed=-2)),
    "split_sum": (ValueError, "fractions", lambda: split_indices(10, (0.8, 0.1))),
    "split_zero": (ValueError, r"fractions\[1\]", lambda: split_indices(10, (1.0, 0.0))),
    "split_negative": (ValueError, r"fractions\[1\]", lambda: split_indices(10, (0.5, -0.2, 0.7))),
    "split_empty": (ValueError, "fractions", lambda: split_indices(10, ())),
}


@pytest.mark.parametrize("case", sorted(BAD_CALLS))
def test_bad_argument_raises_naming_it(case):
    error, name, call = BAD_CALLS[case]
    with pytest.raises(error, match=name):
        call()
