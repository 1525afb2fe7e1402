"""The exported graphs: a model seen as the function an ONNX file computes, one class per kind.

An ``ExportGraph`` names the graph's inputs (in order), outputs and dynamic axes, makes random
inputs of any size (``example``) and computes the outputs twice: on the converted copy of the
model (``forward``, what the tracer sees; ``export.convert``) and on the original model
(``reference``, rnnkit's own layers), so that onnxruntime can be compared with rnnkit.

=============== ============================================ ======================================
class           inputs                                       outputs
=============== ============================================ ======================================
ClassifierGraph x (B, T) ids or (B, T, I) float [, lengths]  logits (B, C)
LanguageModel-  x (B, T) ids, h0 [, c0, ...] [, lengths]      logits (B, T, V), h_n [, c_n, ...]
Graph
ForecasterGraph x (B, T, I) float [, lengths]                forecast (B, horizon), scaled units
TaggerGraph     words (B, T) [, chars, cases] [, lengths]    emissions (B, T, K)
CTCGraph        x (B, T, F) float [, lengths]                log_probs (B, T', C), out_lengths (B,)
=============== ============================================ ======================================

A seq2seq model is two graphs (``export.seq2seq``). A model of another kind gets its own
subclass (see ``ExportGraph``); a task names its graphs in its ``ExportSpec``.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

from .convert import export_copy

__all__ = ["state_names", "ExportGraph", "ClassifierGraph", "LanguageModelGraph", "ForecasterGraph", "TaggerGraph", "CTCGraph"]


def state_names(layer: nn.Module) -> tuple[str, ...]:
    """The names of a recurrent layer's state parts, ``h`` first: ("h",), ("h", "c") for an LSTM,
    ("h", "C", "n", "m") for an mLSTM (its cell kind's ``state_names``)."""
    return tuple(layer.kind.state_names or ("h",))


class ExportGraph(nn.Module):
    """A model seen as the exported graph's function: ``forward(*inputs) -> outputs``.

    Args:
        model: the model to export; it is not changed (the graph holds a converted copy).
        lengths: whether the graph takes a ``lengths`` input (B,) int64, each in [1, T].

    A subclass (one per kind of model) fills in:

    - ``kind``: a short name for messages ("classifier");
    - ``output_names() -> list[str]``: the outputs, in ``run``'s order;
    - ``dynamic_axes(name) -> {axis: label}`` for every input and output, e.g.
      ``{0: "batch", 1: "time"}``: the axes whose size the ONNX file leaves open;
    - ``sample_inputs(batch, time, g) -> {name: tensor}``: random inputs, in the graph's input
      order, drawn from the generator ``g`` (``random_lengths`` for a lengths input);
    - ``run(model, *inputs)``: the outputs (a tensor or a tuple), computed with ``model``:
      ``forward`` passes the converted copy (what the tracer records), ``reference`` the
      original model.
    """

    kind = ""

    def __init__(self, model: nn.Module, lengths: bool) -> None:
        super().__init__()
        self.lengths = lengths
        self.model = export_copy(model)
        object.__setattr__(self, "original", model)  # not a submodule: its parameters stay out of the graph

    def output_names(self) -> list[str]:
        raise NotImplementedError(f"{type(self).__name__}: an ExportGraph names its outputs")

    def dynamic_axes(self, name: str) -> dict[int, str]:
        raise NotImplementedError(f"{type(self).__name__}: an ExportGraph names its dynamic axes")

    def sample_inputs(self, batch: int, time: int, g: torch.Generator) -> dict[str, Tensor]:
        raise NotImplementedError(f"{type(self).__name__}: an ExportGraph makes its example inputs")

    def run(self, model: nn.Module, *inputs):
        raise NotImplementedError(f"{type(self).__name__}: an ExportGraph computes its outputs")

    def example(self, batch: int, time: int, seed: int = 0) -> dict[str, Tensor]:
        """Random inputs by name, in the graph's order, for ``batch`` sequences of ``time`` steps.

        Token ids are drawn past the padding id, features from N(0, 1) (U(0, 1) for
        images), states from N(0, 0.5^2); lengths (when the graph takes them) lie in
        [1, time], the first at full length, so padding and a full sequence both occur.
        """
        if not (isinstance(batch, int) and batch >= 1 and isinstance(time, int) and time >= 1):
            raise ValueError(f"{type(self).__name__}.example: batch and time must be ints >= 1, "
                             f"got batch={batch!r}, time={time!r}")
        return self.sample_inputs(batch, time, torch.Generator().manual_seed(seed))

    def reference(self, inputs: dict[str, Tensor]) -> list[Tensor]:
        """rnnkit's outputs (the original model, eval mode) for the graph's named inputs."""
        was_training = self.original.training
        self.original.eval()
        try:
            with torch.no_grad():
                out = self.run(self.original, *inputs.values())
        finally:
            self.original.train(was_training)
        return list(out) if isinstance(out, tuple) else [out]

    def forward(self, *inputs):
        return self.run(self.model, *inputs)

    @staticmethod
    def random_lengths(batch: int, time: int, g: torch.Generator, low: int = 1) -> Tensor:
        """Lengths (B,) in [low, time], the first at full length."""
        lengths = torch.randint(low, time + 1, (batch,), generator=g)
        lengths[0] = time
        return lengths  # (B,)


class ClassifierGraph(ExportGraph):
    """SequenceClassifier: x [, lengths] -> logits (B, C)."""

    kind = "classifier"

    def output_names(self):
        return ["logits"]

    def dynamic_axes(self, name):
        return {"x": {0: "batch", 1: "time"}, "lengths": {0: "batch"}, "logits": {0: "batch"}}[name]

    def sample_inputs(self, batch, time, g):
        m = self.original
        if m.embedding is not None:  # token ids, past the padding id 0
            x = torch.randint(1, m.config.vocab_size, (batch, time), generator=g)
        else:
            x = torch.rand(batch, time, m.config.input_size, generator=g)
        inputs = {"x": x}
        if self.lengths:
            inputs["lengths"] = self.random_lengths(batch, time, g)
        return inputs

    def run(self, model, x, lengths=None):
        return model(x, lengths)


class LanguageModelGraph(ExportGraph):
    """LanguageModel: x, h0 [, c0, ...] [, lengths] -> logits (B, T, V), h_n [, c_n, ...].

    One input and one output per part of the layer's state (``state_names``: h and c for an
    LSTM, h, C, n and m for an mLSTM, h alone for a GRU), each (L, B, ...).

    The state goes in and comes out, so generation runs one step at a time (T = 1) and a
    prompt primes in one call. With lengths each sequence's state out is its state after
    its last valid step (prompts of different lengths prime together); logits at
    t >= length are the head's bias and mean nothing.
    """

    kind = "lm"

    def __init__(self, model, lengths):
        super().__init__(model, lengths)
        self.names = state_names(model.rnn)
        self.tuple_state = len(self.names) > 1

    def output_names(self):
        return ["logits"] + [f"{n}_n" for n in self.names]

    def dynamic_axes(self, name):
        if name in ("x", "logits"):
            return {0: "batch", 1: "time"}
        if name == "lengths":
            return {0: "batch"}
        return {1: "batch"}  # states (L, B, H)

    def sample_inputs(self, batch, time, g):
        m = self.original
        inputs = {"x": torch.randint(1, m.config.vocab_size, (batch, time), generator=g)}
        state = m.rnn.initial_state(batch)  # h, or (h, c, ...): zeros (L, B, ·) of the state's shapes
        for name, part in zip(self.names, state if self.tuple_state else (state,)):
            inputs[f"{name}0"] = 0.5 * torch.randn(part.shape, generator=g)
        if self.lengths:
            inputs["lengths"] = self.random_lengths(batch, time, g)
        return inputs

    def run(self, model, x, *rest):
        n = len(self.names)
        state = tuple(rest[:n]) if self.tuple_state else rest[0]
        lengths = rest[n] if self.lengths else None
        if lengths is None:
            logits, state = model(x, state)
        else:  # LanguageModel.forward takes no lengths: its steps, with them
            out, state = model.rnn(model.embedding(x), state, lengths=lengths)  # (B, T, H)
            logits = model.head(model.dropout(out))  # (B, T, V)
        return (logits, *state) if self.tuple_state else (logits, state)


class ForecasterGraph(ExportGraph):
    """Forecaster: x [, lengths] -> forecast (B, horizon), in the model's scaled units.

    With lengths, a window of length L is its first L steps (padding after them): the
    final state is the one after step L and the highway term reads steps L - k .. L - 1,
    as Forecaster does on x[:, :L]. Lengths must then be >= highway.
    """

    kind = "forecaster"

    def output_names(self):
        return ["forecast"]

    def dynamic_axes(self, name):
        return {"x": {0: "batch", 1: "time"}, "lengths": {0: "batch"}, "forecast": {0: "batch"}}[name]

    def sample_inputs(self, batch, time, g):
        m = self.original
        time = max(time, m.config.highway)
        inputs = {"x": torch.randn(batch, time, m.config.input_size, generator=g)}
        if self.lengths:
            inputs["lengths"] = self.random_lengths(batch, time, g, low=max(m.config.highway, 1))
        return inputs

    def run(self, model, x, lengths=None):
        if lengths is None:
            return model(x)
        from ..models.recurrent import final_hidden

        _, state = model.rnn(x, lengths=lengths)  # h or (h, c), each (L, B, H)
        y_hat = model.head(model.dropout(final_hidden(state, 1)))  # (B, horizon)
        if model.highway is not None:
            k = model.config.highway
            steps = lengths.unsqueeze(1) - k + torch.arange(k, device=x.device)  # (B, k): the last k valid steps
            last = x.gather(1, steps.unsqueeze(-1).expand(-1, -1, x.shape[-1]))  # (B, k, I)
            y_hat = y_hat + model.highway(last.flatten(1))  # (B, k*I) -> (B, horizon)
        return y_hat


class TaggerGraph(ExportGraph):
    """SequenceTagger: words [, chars] [, cases] [, lengths] -> emissions (B, T, K).

    ``chars`` (B, T, W) character ids is an input when the model has character features,
    ``cases`` (B, T) case ids (``rnnkit.models.tagger.word_case``) when it has case features.
    Without a lengths input every sentence has all T words. Decoding (argmax, or Viterbi
    over the CRF's ``crf.transitions`` when the model has one) stays outside the graph.
    """

    kind = "tagger"

    def output_names(self):
        return ["emissions"]

    def dynamic_axes(self, name):
        return {"words": {0: "batch", 1: "time"}, "chars": {0: "batch", 1: "time", 2: "word_len"},
                "cases": {0: "batch", 1: "time"}, "lengths": {0: "batch"}, "emissions": {0: "batch", 1: "time"}}[name]

    def sample_inputs(self, batch, time, g):
        c = self.original.config
        inputs = {"words": torch.randint(1, c.vocab_size, (batch, time), generator=g)}
        if self.original.chars is not None:  # 0 pads characters: some words end early
            inputs["chars"] = torch.randint(0, c.char_vocab_size, (batch, time, 5), generator=g)
        cases = getattr(self.original, "cases", None)
        if cases is not None:
            inputs["cases"] = torch.randint(1, cases.num_embeddings, (batch, time), generator=g)
        if self.lengths:
            inputs["lengths"] = self.random_lengths(batch, time, g)
        return inputs

    def run(self, model, words, *rest):
        rest = list(rest)
        chars = rest.pop(0) if model.chars is not None else None
        extra = {"cases": rest.pop(0)} if getattr(model, "cases", None) is not None else {}
        lengths = rest.pop(0) if self.lengths else torch.ones_like(words).sum(1)  # (B,): all T words
        return model(words, lengths, chars, **extra)


class CTCGraph(ExportGraph):
    """CTCModel: x (B, T, F) log-mel frames [, lengths] -> log_probs (B, T', C), out_lengths (B,).

    T' = ceil(T / stack); out_lengths are each utterance's valid output steps. Without a
    lengths input every utterance has all T frames. Decoding (greedy or beam search) stays
    outside the graph.
    """

    kind = "ctc"

    def output_names(self):
        return ["log_probs", "out_lengths"]

    def dynamic_axes(self, name):
        return {"x": {0: "batch", 1: "time"}, "lengths": {0: "batch"}, "log_probs": {0: "batch", 1: "steps"},
                "out_lengths": {0: "batch"}}[name]

    def sample_inputs(self, batch, time, g):
        inputs = {"x": torch.randn(batch, time, self.original.config.num_features, generator=g)}
        if self.lengths:
            inputs["lengths"] = self.random_lengths(batch, time, g)
        return inputs

    def run(self, model, x, lengths=None):
        if lengths is None:
            lengths = torch.ones_like(x[:, :, 0], dtype=torch.int64).sum(1)  # (B,): all T frames
        out = model(x, lengths)
        return out.log_probs, out.lengths

    def forward(self, x, *rest):
        """CTCModel.forward on the converted copy, its frame stacking written for the exporter.

        ``stack_frames`` computes T' = ceil(T / k) as ``-(-T // k)``: a floor division of a
        negative size, which ``torch.onnx`` writes as ONNX's truncating ``Div`` (one step short
        whenever k does not divide T). Here T' = (T + k - 1) // k, every operand >= 0.
        """
        from ..models.ctc import normalize_frames

        model, k = self.model, self.model.config.stack
        lengths = rest[0] if rest else torch.ones_like(x[:, :, 0], dtype=torch.int64).sum(1)  # (B,)
        if model.config.normalize:
            x = normalize_frames(x, lengths)
        B, T, F = x.shape  # batch, frames, features
        steps = (T + k - 1) // k  # T' = ceil(T / k)
        x = nn.functional.pad(x, (0, 0, 0, steps * k - T))  # (B, T' k, F): zero frames after the last
        x = x.reshape(B, steps, k * F)  # (B, T', k F): frame s*k + j at [s, j*F:(j+1)*F]
        out_lengths = torch.div(lengths + (k - 1), k, rounding_mode="floor")  # (B,)
        out, _ = model.rnn(x, lengths=out_lengths.clamp(min=1))  # (B, T', D*H)
        logits = model.head(model.dropout(out))  # (B, T', C)
        return logits.log_softmax(-1), out_lengths
