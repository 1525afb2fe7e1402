"""Data pipeline: tokenise, build a vocabulary, pad/truncate, bucket, stream-batch, split."""

from .batching import (
    BucketBatchSampler,
    PaddedBatch,
    StreamBatcher,
    StreamWindow,
    pad_sequences,
    split_indices,
    stream_batches,
)
from .text import DEFAULT_SPECIALS, Vocab, char_tokenize, word_tokenize

__all__ = [
    "DEFAULT_SPECIALS",
    "BucketBatchSampler",
    "PaddedBatch",
    "StreamBatcher",
    "StreamWindow",
    "Vocab",
    "char_tokenize",
    "pad_sequences",
    "split_indices",
    "stream_batches",
    "word_tokenize",
]
