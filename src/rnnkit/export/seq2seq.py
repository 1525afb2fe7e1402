"""A seq2seq model as two graphs: the encoder, and one decoder step.

Decoding (greedy or beam search) runs outside, feeding the decoder step its own state and
the chosen token (``rnnkit.models.seq2seq.greedy_decode`` is the reference); a task exports
both with ``ExportSpec({"encoder": EncoderGraph, "decoder": DecoderStepGraph})``, written as
``<stem>.encoder.onnx`` and ``<stem>.decoder.onnx``.
"""
from __future__ import annotations

import torch

from .graphs import ExportGraph

__all__ = ["EncoderGraph", "DecoderStepGraph"]


class EncoderGraph(ExportGraph):
    """Seq2Seq, first graph: source [, lengths] -> memory, mask, keys, h0 [, c0] with
    attention ("luong", "bahdanau"), summary, h0 [, c0] without ("none").

    ``memory`` (B, S, 2H) encoder outputs, ``mask`` (B, S) bool real source positions,
    ``keys`` (B, S, D), ``summary`` (B, 2H) both final encoder states, and the decoder's
    initial state ``h0`` [``c0``] (L, B, D). Without a lengths input every sentence has
    all S tokens. These feed ``DecoderStepGraph`` step after step: each graph has only
    the inputs and outputs its attention uses (ONNX drops unused inputs).
    """

    kind = "seq2seq-encoder"

    def __init__(self, model, lengths):
        super().__init__(model, lengths)
        self.is_lstm, self.attention = model.is_lstm, model.config.attention

    def output_names(self):
        names = ["memory", "mask", "keys"] if self.attention != "none" else ["summary"]
        return names + ["h0"] + (["c0"] if self.is_lstm else [])

    def dynamic_axes(self, name):
        if name in ("source", "memory", "mask", "keys"):
            return {0: "batch", 1: "source_len"}
        return {0: "batch"} if name in ("lengths", "summary") else {1: "batch"}  # states (L, B, D)

    def sample_inputs(self, batch, time, g):
        c = self.original.config
        specials = max(c.pad_index, c.unk_index, c.bos_index, c.eos_index) + 1
        inputs = {"source": torch.randint(specials, c.source_vocab_size, (batch, time), generator=g)}
        if self.lengths:
            inputs["lengths"] = self.random_lengths(batch, time, g)
        return inputs

    def run(self, model, source, lengths=None):
        if lengths is None:
            lengths = torch.ones_like(source).sum(1)  # (B,): all S tokens
        memory, state = model.encode(source, lengths)
        reads = (memory.outputs, memory.mask, memory.keys) if self.attention != "none" else (memory.summary,)
        return (*reads, *(state if self.is_lstm else (state,)))


class DecoderStepGraph(ExportGraph):
    """Seq2Seq, second graph, one decoder step: y_prev, h [, c], then memory, mask, keys
    (attention) or summary (none) -> logits (B, V), h_n [, c_n] [, attention (B, S)].

    ``y_prev`` (B,) is the previous token (``<bos>`` first); the state comes from the
    encoder graph first and from the previous step after; memory, mask, keys and summary
    are the encoder graph's outputs, unchanged. Greedy or beam search runs outside, feeding
    the step its own outputs (``rnnkit.models.seq2seq.greedy_decode`` is the reference).
    """

    kind = "seq2seq-decoder"

    def __init__(self, model, lengths):
        super().__init__(model, lengths)
        self.is_lstm, self.attention = model.is_lstm, model.config.attention

    def _inputs(self):
        return (["y_prev", "h"] + (["c"] if self.is_lstm else [])
                + (["memory", "mask", "keys"] if self.attention != "none" else ["summary"]))

    def output_names(self):
        return (["logits", "h_n"] + (["c_n"] if self.is_lstm else [])
                + (["attention"] if self.attention != "none" else []))

    def dynamic_axes(self, name):
        if name in ("memory", "mask", "keys", "attention"):
            return {0: "batch", 1: "source_len"}
        return {1: "batch"} if name in ("h", "c", "h_n", "c_n") else {0: "batch"}

    def sample_inputs(self, batch, time, g):
        """A random decoder input: any previous token, state and memory (a step is a function of them)."""
        m = self.original
        c, L, D = m.config, m.config.num_layers, 2 * m.config.hidden_size
        lengths = self.random_lengths(batch, time, g)
        inputs = {"y_prev": torch.randint(0, c.target_vocab_size, (batch,), generator=g),
                  "h": 0.5 * torch.randn(L, batch, D, generator=g)}
        if self.is_lstm:
            inputs["c"] = 0.5 * torch.randn(L, batch, D, generator=g)
        if self.attention == "none":
            inputs["summary"] = torch.randn(batch, D, generator=g)
            return inputs
        mask = torch.arange(time)[None, :] < lengths[:, None]  # (B, S)
        inputs["memory"] = torch.randn(batch, time, D, generator=g) * mask[..., None]  # zero at padding
        inputs["mask"] = mask
        inputs["keys"] = torch.randn(batch, time, D, generator=g)
        return inputs

    def run(self, model, y_prev, *rest):
        from ..models.seq2seq import Memory

        values = dict(zip(self._inputs()[1:], rest))
        state = (values["h"], values["c"]) if self.is_lstm else values["h"]
        memory = Memory(values.get("memory"), values.get("mask"), values.get("keys"), values.get("summary"))
        step = model.step(y_prev, state, memory)  # (what the attention does not read is None)
        states = step.state if self.is_lstm else (step.state,)
        return (step.logits, *states, *((step.attention,) if self.attention != "none" else ()))

