"""ONNX export: a trained model as ONNX graphs with dynamic batch and time axes.

``export_onnx(run_or_model, path)`` writes the model of a run directory (or a ``RunModel``
from ``rnnkit.load``, or a bare model with ``task=``) and checks each file with onnxruntime
against rnnkit on inputs of two other batch sizes and lengths than the traced ones.

What is exported per task is declared here, in one table, ``EXPORTS`` (task name -> kind
of model, lengths input by default or not); each kind's ``ExportGraph`` names its inputs,
outputs and dynamic axes (docs/export.md lists them all):

=========== ============================================ ====================================
kind        inputs                                       outputs
=========== ============================================ ====================================
classifier  x (B, T) ids or (B, T, I) float [, lengths]  logits (B, C)
lm          x (B, T) ids, h0 [, c0] (L, B, H) [, lengths] logits (B, T, V), h_n [, c_n]
forecaster  x (B, T, I) float [, lengths]                forecast (B, horizon), scaled units
tagger      words (B, T) [, chars, cases] [, lengths]    emissions (B, T, K)
ctc         x (B, T, F) float [, lengths]                log_probs (B, T', C), out_lengths (B,)
seq2seq     two graphs: the encoder and one decoder step (see _EncoderGraph, _DecoderStepGraph)
=========== ============================================ ====================================

How the recurrent layers become ONNX. The exporter is torch's TorchScript one
(``dynamo=False``): ``dynamo=True`` stops in ``torch.export`` at the layers' data-dependent
checks of ``lengths`` (``GuardOnDataDependentSymNode``), and a loop over a dynamic number of
steps, which layer-norm cells need, has no ``torch.export`` form the ONNX exporter turns into
an ONNX ``Loop``.

- Standard layers (RNN tanh/relu, LSTM, GRU reset_after=True) go through torch's own
  symbolic functions to ONNX ``RNN`` / ``LSTM`` / ``GRU`` nodes; with ``lengths`` the packing
  becomes ``sequence_lens`` (onnxruntime runs the reverse direction from each sequence's own
  last step, as rnnkit does).
- Variants become ``_VariantLayer`` in a copy of the model: a peephole LSTM is an ONNX
  ``LSTM`` node with its ``P`` input, a GRU with reset_after=False an ONNX ``GRU`` node with
  ``linear_before_reset=0``; layer-norm variants, which ONNX has no node for, are the cells'
  equations as a TorchScript loop, an ONNX ``Loop`` whose trip count is the input's length.
  Lengths are masks there: outputs at t >= length are zero, states stop at each sequence's
  last valid step, the reverse direction reads each sequence reversed within its length.

Every graph is in eval mode (no dropout). The model given is not changed.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import sys
import tempfile
import warnings
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor, nn

__all__ = ["export_onnx", "export_graphs", "run_onnx", "max_abs_diff", "ExportGraph", "OnnxExport", "EXPORTS",
           "KINDS", "TOLERANCE"]

log = logging.getLogger(__name__)

TOLERANCE = 1e-4  # largest |onnxruntime - rnnkit| that export_onnx accepts when it verifies
OPSET = 17
_TRACE_SIZE = (3, 6)  # (batch, time) of the traced example; verification uses other sizes
_CHECK_SIZES = ((2, 9), (5, 4))


class OnnxExport(NamedTuple):
    """One file ``export_onnx`` wrote: its path, the graph's part ("" for a whole model,
    "encoder" / "decoder" for a seq2seq model), input and output names, and the largest
    difference onnxruntime showed against rnnkit (None when not verified)."""

    path: Path
    part: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    max_abs_diff: float | None


# -- public functions -------------------------------------------------------------------------

def export_onnx(run_or_model, path: str | os.PathLike, *, task: str | None = None, lengths: bool | None = None,
                opset: int = OPSET, verify: bool = True) -> list[OnnxExport]:
    """Write a model as ONNX, with dynamic batch and time axes: one file per graph.

    Args:
        run_or_model: a run directory (str or Path), a ``RunModel`` (``rnnkit.load``), or a
            bare ``nn.Module`` together with ``task``.
        path: the ``.onnx`` file to write (its folder is created). A seq2seq model is two
            graphs, written beside it as ``<stem>.encoder.onnx`` and ``<stem>.decoder.onnx``.
        task: the task name, for a bare module (ignored otherwise).
        lengths: whether the graph takes a ``lengths`` input (B,) int64; None = the task's
            default (``EXPORTS``).
        opset: the ONNX opset (default 17).
        verify: run each file in onnxruntime on inputs of two other batch sizes and lengths
            than the traced ones and compare with rnnkit's own layers; a difference above
            ``TOLERANCE`` (1e-4) raises RuntimeError. Needs onnxruntime.

    Returns:
        One OnnxExport(path, part, inputs, outputs, max_abs_diff) per file written.

    Example (a run directory from ``rnnkit train sentiment``)::

        >>> [info] = export_onnx("runs/sentiment", "sentiment.onnx")  # doctest: +SKIP
        >>> info.inputs, info.outputs  # doctest: +SKIP
        (('x', 'lengths'), ('logits',))
    """
    path = Path(path)
    if path.suffix != ".onnx":
        raise ValueError(f"export_onnx: path must end in .onnx, got {str(path)!r}")
    graphs = export_graphs(run_or_model, task=task, lengths=lengths)
    path.parent.mkdir(parents=True, exist_ok=True)
    written = []
    for part, graph in graphs.items():
        file = path if not part else path.with_name(f"{path.stem}.{part}.onnx")
        names, outputs = _write(graph, file, opset)
        diff = _verify(graph, file) if verify else None
        written.append(OnnxExport(file, part, tuple(names), tuple(outputs), diff))
    return written


def export_graphs(run_or_model, *, task: str | None = None, lengths: bool | None = None) -> dict[str, "ExportGraph"]:
    """The functions ``export_onnx`` traces, by part ("" for a whole model; "encoder" and
    "decoder" for seq2seq): ``ExportGraph`` modules over a converted copy of the model.

    Arguments as ``export_onnx``'s. A graph's ``example(batch, time)`` makes inputs and
    ``reference(inputs)`` computes the outputs with the unconverted model, so a test or a
    server can compare onnxruntime with rnnkit at any size.
    """
    from .training.run import RunModel, load

    if isinstance(run_or_model, (str, os.PathLike)):
        run_or_model = load(run_or_model)
    if isinstance(run_or_model, RunModel):
        model, task = run_or_model.model, run_or_model.task.name
    elif isinstance(run_or_model, nn.Module):
        if task is None:
            raise ValueError("export_onnx: a bare model needs task=<task name>, got task=None")
        model = run_or_model
    else:
        raise TypeError("export_onnx: run_or_model must be a run directory, a RunModel or an nn.Module, "
                        f"got {type(run_or_model).__name__}")
    if task not in EXPORTS:
        raise ValueError(f"export_onnx: task {task!r} has no ONNX export; exportable: {', '.join(sorted(EXPORTS))}")
    kind, default = EXPORTS[task]
    if lengths is None:
        lengths = default
    if not isinstance(lengths, bool):
        raise TypeError(f"export_onnx: lengths must be a bool or None, got {type(lengths).__name__} {lengths!r}")
    return {part: cls(model, lengths) for part, cls in KINDS[kind].items()}


def _write(graph: "ExportGraph", path: Path, opset: int) -> tuple[list[str], list[str]]:
    """Trace ``graph`` at the trace size and write it with dynamic axes -> (input names, output names)."""
    inputs = graph.example(*_TRACE_SIZE)
    names, outputs = list(inputs), graph.output_names()
    dynamic_axes = {name: graph.dynamic_axes(name) for name in names + outputs}
    with warnings.catch_warnings(), torch.no_grad():
        # The tracer warns about each Python-level check it turns into a constant (the shape
        # and lengths checks at the layers' boundary, which are for eager callers), and the
        # TorchScript exporter about itself.
        warnings.simplefilter("ignore", torch.jit.TracerWarning)
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.onnx.*")
        warnings.filterwarnings("ignore", category=UserWarning, module=r"torch\.nn\.modules\.rnn")
        with _cpp_warnings_to_log():
            torch.onnx.export(graph, tuple(inputs.values()), str(path), dynamo=False, input_names=names,
                              output_names=outputs, dynamic_axes=dynamic_axes, opset_version=opset)
    log.info("export_onnx: wrote %s (%s: inputs %s, outputs %s)", path, graph.kind, names, outputs)
    return names, outputs


@contextlib.contextmanager
def _cpp_warnings_to_log():
    """Send what torch's C++ exporter writes to file descriptor 2 to the log (debug level).

    With lengths it warns that ``prim::PackPadded`` has no shape inference; the graph is
    right all the same (checked against rnnkit), and a command's output stays one line.
    """
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as caught:
        os.dup2(caught.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            caught.seek(0)
            for line in caught.read().decode(errors="replace").splitlines():
                log.debug("torch.onnx: %s", line)


def _verify(graph: "ExportGraph", path: Path) -> float:
    """Largest |onnxruntime - rnnkit| over the check sizes; RuntimeError above TOLERANCE."""
    diff = 0.0
    for seed, (batch, time) in enumerate(_CHECK_SIZES):
        check = graph.example(batch, time, seed=seed + 1)
        diff = max(diff, max_abs_diff(run_onnx(path, check), graph.reference(check)))
    if not diff <= TOLERANCE:  # (NaN too)
        raise RuntimeError(f"export_onnx: onnxruntime's outputs differ from rnnkit's by {diff:.3g} > {TOLERANCE} "
                           f"in {path}")
    log.info("export_onnx: onnxruntime agrees with rnnkit on %s within %.3g", path, diff)
    return diff


def max_abs_diff(got: list, want: list[Tensor]) -> float:
    """Largest |got - want| over outputs (numpy arrays from onnxruntime against tensors);
    inf when the number of outputs or a shape differs."""
    if len(got) != len(want):
        return math.inf
    diff = 0.0
    for g, w in zip(got, want):
        g, w = np.asarray(g, dtype=np.float64), w.detach().double().numpy()
        if g.shape != w.shape:
            return math.inf
        if g.size:
            diff = max(diff, float(np.abs(g - w).max()))
    return diff


def run_onnx(path: str | os.PathLike, inputs: dict[str, Tensor]) -> list:
    """Run an exported file in onnxruntime (CPU, one thread) on named inputs -> numpy arrays."""
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {name: value.numpy() for name, value in inputs.items()})


# -- the graphs: one forward per kind of model, with the graph's inputs in order -------------

class ExportGraph(nn.Module):
    """A model seen as the exported graph's function: ``forward(*inputs) -> outputs``.

    ``forward`` runs the converted copy (what the tracer sees); ``reference`` the original
    model, on rnnkit's own layers. Subclasses give the inputs, outputs and dynamic axes.
    """

    kind = ""

    def __init__(self, model: nn.Module, lengths: bool) -> None:
        super().__init__()
        self.lengths = lengths
        self.model = _export_copy(model)
        object.__setattr__(self, "original", model)  # not a submodule: its parameters stay out of the graph

    def output_names(self) -> list[str]:
        raise NotImplementedError

    def dynamic_axes(self, name: str) -> dict[int, str]:
        raise NotImplementedError

    def example(self, batch: int, time: int, seed: int = 0) -> dict[str, Tensor]:
        """Random inputs by name, in the graph's order, for ``batch`` sequences of ``time`` steps.

        Token ids are drawn past the padding id, features from N(0, 1) (U(0, 1) for
        images), states from N(0, 0.5^2); lengths (when the graph takes them) lie in
        [1, time], the first at full length, so padding and a full sequence both occur.
        """
        if not (isinstance(batch, int) and batch >= 1 and isinstance(time, int) and time >= 1):
            raise ValueError(f"{type(self).__name__}.example: batch and time must be ints >= 1, "
                             f"got batch={batch!r}, time={time!r}")
        return self._example(batch, time, torch.Generator().manual_seed(seed))

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

    def run(self, model: nn.Module, *inputs):
        raise NotImplementedError

    def _example(self, batch: int, time: int, g: torch.Generator) -> dict[str, Tensor]:
        raise NotImplementedError

    @staticmethod
    def _random_lengths(batch: int, time: int, g: torch.Generator, low: int = 1) -> Tensor:
        lengths = torch.randint(low, time + 1, (batch,), generator=g)
        lengths[0] = time
        return lengths  # (B,)


class _ClassifierGraph(ExportGraph):
    """SequenceClassifier: x [, lengths] -> logits (B, C)."""

    kind = "classifier"

    def output_names(self):
        return ["logits"]

    def dynamic_axes(self, name):
        return {"x": {0: "batch", 1: "time"}, "lengths": {0: "batch"}, "logits": {0: "batch"}}[name]

    def _example(self, batch, time, g):
        m = self.original
        if m.embedding is not None:  # token ids, past the padding id 0
            x = torch.randint(1, m.config.vocab_size, (batch, time), generator=g)
        else:
            x = torch.rand(batch, time, m.config.input_size, generator=g)
        inputs = {"x": x}
        if self.lengths:
            inputs["lengths"] = self._random_lengths(batch, time, g)
        return inputs

    def run(self, model, x, lengths=None):
        return model(x, lengths)


class _LanguageModelGraph(ExportGraph):
    """LanguageModel: x, h0 [, c0] [, lengths] -> logits (B, T, V), h_n [, c_n].

    The state goes in and comes out, so generation runs one step at a time (T = 1) and a
    prompt primes in one call. With lengths each sequence's state out is its state after
    its last valid step (prompts of different lengths prime together); logits at
    t >= length are the head's bias and mean nothing.
    """

    kind = "lm"

    def __init__(self, model, lengths):
        super().__init__(model, lengths)
        self.is_lstm = isinstance(model.rnn, nn.LSTM)

    def output_names(self):
        return ["logits", "h_n", "c_n"] if self.is_lstm else ["logits", "h_n"]

    def dynamic_axes(self, name):
        if name in ("x", "logits"):
            return {0: "batch", 1: "time"}
        if name == "lengths":
            return {0: "batch"}
        return {1: "batch"}  # states (L, B, H)

    def _example(self, batch, time, g):
        m = self.original
        inputs = {"x": torch.randint(1, m.config.vocab_size, (batch, time), generator=g)}
        for name in (["h0", "c0"] if self.is_lstm else ["h0"]):
            inputs[name] = 0.5 * torch.randn(m.rnn.num_layers, batch, m.rnn.hidden_size, generator=g)
        if self.lengths:
            inputs["lengths"] = self._random_lengths(batch, time, g)
        return inputs

    def run(self, model, x, *rest):
        n = 2 if self.is_lstm else 1
        state = tuple(rest[:n]) if self.is_lstm else rest[0]
        lengths = rest[n] if self.lengths else None
        if lengths is None:
            logits, state = model(x, state)
        else:  # LanguageModel.forward takes no lengths: its steps, with them
            out, state = model.rnn(model.embedding(x), state, lengths=lengths)  # (B, T, H)
            logits = model.head(model.dropout(out))  # (B, T, V)
        return (logits, *state) if self.is_lstm else (logits, state)


class _ForecasterGraph(ExportGraph):
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

    def _example(self, batch, time, g):
        m = self.original
        time = max(time, m.config.highway)
        inputs = {"x": torch.randn(batch, time, m.config.input_size, generator=g)}
        if self.lengths:
            inputs["lengths"] = self._random_lengths(batch, time, g, low=max(m.config.highway, 1))
        return inputs

    def run(self, model, x, lengths=None):
        if lengths is None:
            return model(x)
        from .models.recurrent import final_hidden

        _, state = model.rnn(x, lengths=lengths)  # h or (h, c), each (L, B, H)
        y_hat = model.head(model.dropout(final_hidden(state, 1)))  # (B, horizon)
        if model.highway is not None:
            k = model.config.highway
            steps = lengths.unsqueeze(1) - k + torch.arange(k, device=x.device)  # (B, k): the last k valid steps
            last = x.gather(1, steps.unsqueeze(-1).expand(-1, -1, x.shape[-1]))  # (B, k, I)
            y_hat = y_hat + model.highway(last.flatten(1))  # (B, k*I) -> (B, horizon)
        return y_hat


class _TaggerGraph(ExportGraph):
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

    def _example(self, batch, time, g):
        c = self.original.config
        inputs = {"words": torch.randint(1, c.vocab_size, (batch, time), generator=g)}
        if self.original.chars is not None:  # 0 pads characters: some words end early
            inputs["chars"] = torch.randint(0, c.char_vocab_size, (batch, time, 5), generator=g)
        cases = getattr(self.original, "cases", None)
        if cases is not None:
            inputs["cases"] = torch.randint(1, cases.num_embeddings, (batch, time), generator=g)
        if self.lengths:
            inputs["lengths"] = self._random_lengths(batch, time, g)
        return inputs

    def run(self, model, words, *rest):
        rest = list(rest)
        chars = rest.pop(0) if model.chars is not None else None
        extra = {"cases": rest.pop(0)} if getattr(model, "cases", None) is not None else {}
        lengths = rest.pop(0) if self.lengths else torch.ones_like(words).sum(1)  # (B,): all T words
        return model(words, lengths, chars, **extra)


class _CTCGraph(ExportGraph):
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

    def _example(self, batch, time, g):
        inputs = {"x": torch.randn(batch, time, self.original.config.num_features, generator=g)}
        if self.lengths:
            inputs["lengths"] = self._random_lengths(batch, time, g)
        return inputs

    def run(self, model, x, lengths=None):
        if lengths is None:
            lengths = torch.ones_like(x[:, :, 0], dtype=torch.int64).sum(1)  # (B,): all T frames
        out = model(x, lengths)
        return out.log_probs, out.lengths

    def forward(self, x, lengths=None):
        """CTCModel.forward with the frame stacking's sizes kept in the graph.

        ``stack_frames`` computes ceil(T / k) in Python, which the tracer would fix at the
        traced T; here the number of steps is a graph value and the frames are gathered.
        """
        from .models.ctc import normalize_frames

        model, k = self.model, self.model.config.stack
        if lengths is None:
            lengths = torch.ones_like(x[:, :, 0], dtype=torch.int64).sum(1)  # (B,): all T frames
        if model.config.normalize:
            x = normalize_frames(x, lengths)
        frames = torch._shape_as_tensor(x)[1]  # T as a graph value
        steps = torch.div(frames + (k - 1), k, rounding_mode="floor")  # T' = ceil(T / k)
        x = nn.functional.pad(x, (0, 0, 0, k - 1))  # (B, T + k - 1, F): enough zero frames for the last step
        x = x.index_select(1, torch.arange(steps * k))  # (B, T' k, F)
        x = x.reshape(x.shape[0], -1, k * x.shape[2])  # (B, T', k F): frame s*k + j at [s, j*F:(j+1)*F]
        out_lengths = torch.div(lengths + (k - 1), k, rounding_mode="floor")  # (B,)
        out, _ = model.rnn(x, lengths=out_lengths.clamp(min=1))  # (B, T', D*H)
        logits = model.head(model.dropout(out))  # (B, T', C)
        return logits.log_softmax(-1), out_lengths


class _EncoderGraph(ExportGraph):
    """Seq2Seq, first graph: source [, lengths] -> memory, mask, keys, h0 [, c0] with
    attention ("luong", "bahdanau"), summary, h0 [, c0] without ("none").

    ``memory`` (B, S, 2H) encoder outputs, ``mask`` (B, S) bool real source positions,
    ``keys`` (B, S, D), ``summary`` (B, 2H) both final encoder states, and the decoder's
    initial state ``h0`` [``c0``] (L, B, D). Without a lengths input every sentence has
    all S tokens. These feed ``_DecoderStepGraph`` step after step: each graph has only
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

    def _example(self, batch, time, g):
        c = self.original.config
        specials = max(c.pad_index, c.unk_index, c.bos_index, c.eos_index) + 1
        inputs = {"source": torch.randint(specials, c.source_vocab_size, (batch, time), generator=g)}
        if self.lengths:
            inputs["lengths"] = self._random_lengths(batch, time, g)
        return inputs

    def run(self, model, source, lengths=None):
        if lengths is None:
            lengths = torch.ones_like(source).sum(1)  # (B,): all S tokens
        memory, state = model.encode(source, lengths)
        reads = (memory.outputs, memory.mask, memory.keys) if self.attention != "none" else (memory.summary,)
        return (*reads, *(state if self.is_lstm else (state,)))


class _DecoderStepGraph(ExportGraph):
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

    def _example(self, batch, time, g):
        """A random decoder input: any previous token, state and memory (a step is a function of them)."""
        m = self.original
        c, L, D = m.config, m.config.num_layers, 2 * m.config.hidden_size
        lengths = self._random_lengths(batch, time, g)
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
        from .models.seq2seq import Memory

        values = dict(zip(self._inputs()[1:], rest))
        state = (values["h"], values["c"]) if self.is_lstm else values["h"]
        memory = Memory(values.get("memory"), values.get("mask"), values.get("keys"), values.get("summary"))
        step = model.step(y_prev, state, memory)  # (what the attention does not read is None)
        states = step.state if self.is_lstm else (step.state,)
        return (step.logits, *states, *((step.attention,) if self.attention != "none" else ()))


# kind -> its graphs by part ("" = the whole model in one graph)
KINDS: dict[str, dict[str, type[ExportGraph]]] = {
    "classifier": {"": _ClassifierGraph},
    "lm": {"": _LanguageModelGraph},
    "forecaster": {"": _ForecasterGraph},
    "tagger": {"": _TaggerGraph},
    "ctc": {"": _CTCGraph},
    "seq2seq": {"encoder": _EncoderGraph, "decoder": _DecoderStepGraph},
}

# task name -> (kind, lengths by default). A new task adds one line here (and a kind above
# when its model reads or writes something else).
EXPORTS: dict[str, tuple[str, bool]] = {
    "digits": ("classifier", False),  # images: every sequence has all its rows
    "mnist": ("classifier", False),
    "sentiment": ("classifier", True),  # texts of different lengths, padded
    "charlm": ("lm", False),
    "forecast": ("forecaster", False),
    "adding": ("forecaster", False),  # a Forecaster with 2 input features and horizon 1
    "copy": ("lm", False),  # the copying memory benchmark
    "tagging": ("tagger", True),
    "speech": ("ctc", True),
    "translate": ("seq2seq", True),
}


# -- converting the recurrent layers ---------------------------------------------------------

def _export_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode whose recurrent layers all export to ONNX.

    Standard rnnkit layers keep their class (torch's symbolic functions see the fused
    kernel calls); variants become ``_VariantLayer``s over the same parameters.
    """
    from .layers import GRU, LSTM, RNN, Recurrent

    model = copy.deepcopy(model).eval()
    for name, module in list(model.named_modules()):
        if isinstance(module, Recurrent):
            raise ValueError(f"export_onnx: {name or 'the model'} is an rnnkit.Recurrent over custom cells, which has "
                             "no ONNX export; use rnnkit.RNN / LSTM / GRU")
        if not isinstance(module, (RNN, LSTM, GRU)):
            continue
        if module.is_standard:
            module.engine = "auto"  # the same function on torch's kernel, which exports
            if getattr(module, "proj_size", 0):
                raise ValueError(f"export_onnx: {name}: LSTM with proj_size has no ONNX export "
                                 "(ONNX LSTM has no projection)")
            continue
        _set_submodule(model, name, _VariantLayer(module))
    return model


def _set_submodule(root: nn.Module, name: str, module: nn.Module) -> None:
    parent_name, _, child = name.rpartition(".")
    setattr(root.get_submodule(parent_name) if parent_name else root, child, module)


class _VariantLayer(nn.Module):
    """An rnnkit LSTM or GRU variant in a form that exports to ONNX with dynamic T.

    ``forward(x, state=None, lengths=None) -> (output, state)`` as the layer's (batch-first
    or time-major as the layer is), with the layer's own parameters (shared, not copied).
    While exporting, a peephole LSTM becomes ONNX ``LSTM`` nodes with the ``P`` input and a
    GRU with reset_after=False ONNX ``GRU`` nodes with linear_before_reset=0, one per layer;
    layer-norm variants, which ONNX has no node for, run each direction as a TorchScript
    loop over time (``_lstm_loop`` / ``_gru_loop``, rnnkit.cells' equations), an ONNX
    ``Loop``. In eager mode every variant runs the loops, so the module is its own slow
    reference.
    """

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        from .layers import LSTM

        if getattr(layer, "proj_size", 0):
            raise ValueError("export_onnx: LSTM variants with proj_size have no ONNX export")
        self.layer = layer
        self.is_lstm = isinstance(layer, LSTM)
        self.num_directions = 2 if layer.bidirectional else 1
        self.hidden_size, self.num_layers, self.batch_first = layer.hidden_size, layer.num_layers, layer.batch_first
        # ONNX's own LSTM (with peepholes) and GRU (linear_before_reset=0) cover the variants
        # without layer norm; layer norm needs the loop.
        self._native = not layer.layer_norm

    def forward(self, x: Tensor, state=None, lengths: Tensor | None = None):
        L, D, H = self.num_layers, self.num_directions, self.hidden_size
        x = x.transpose(0, 1) if self.batch_first else x  # (T, B, I)
        if lengths is None:
            keep = torch.ones_like(x[:, :, :1], dtype=torch.bool)  # (T, B, 1)
            rev_index = None
        else:
            steps = torch.arange(x.shape[0], device=x.device).unsqueeze(1)  # (T, 1)
            mask = steps < lengths.unsqueeze(0)  # (T, B)
            keep = mask.unsqueeze(-1)  # (T, B, 1)
            rev_index = torch.where(mask, lengths.unsqueeze(0) - 1 - steps, steps)  # (T, B)
        zeros = x.new_zeros(1, 1, 1).expand(L * D, x.shape[1], H)  # (L*D, B, H)
        if state is None:
            h0, c0 = zeros, zeros
        else:
            h0, c0 = state if self.is_lstm else (state, zeros)
        h_n, c_n = [], []
        for layer in range(L):
            ks = slice(layer * D, layer * D + D)
            if self._native and torch.onnx.is_in_onnx_export():
                x, h, c = self._onnx_op(layer, x, lengths, h0[ks], c0[ks])
            else:
                x, h, c = self._loops(layer, x, keep, rev_index, h0[ks], c0[ks])
            h_n.append(h)
            c_n.append(c)
        out = x.transpose(0, 1) if self.batch_first else x
        h_n = torch.cat(h_n)  # (L*D, B, H)
        return out, ((h_n, torch.cat(c_n)) if self.is_lstm else h_n)

    def _loops(self, layer: int, x: Tensor, keep: Tensor, rev_index: Tensor | None, h0: Tensor, c0: Tensor):
        """One layer, each direction a TorchScript loop: x (T, B, I) -> (T, B, D*H), h (D, B, H), c."""
        outs, hs, cs = [], [], []
        for direction in range(self.num_directions):
            suffix = f"_l{layer}{'_reverse' * direction}"
            x_d = x if direction == 0 else _reverse(x, rev_index)
            if self.is_lstm:
                out, h, c = self._lstm(x_d, keep, h0[direction], c0[direction], suffix)
            else:
                out, h = self._gru(x_d, keep, h0[direction], suffix)
                c = h
            outs.append(out if direction == 0 else _reverse(out, rev_index))
            hs.append(h)
            cs.append(c)
        # (T, B, D*H): eval mode, so no dropout between layers
        return (outs[0] if len(outs) == 1 else torch.cat(outs, -1)), torch.stack(hs), torch.stack(cs)

    def _onnx_op(self, layer: int, x: Tensor, lengths: Tensor | None, h0: Tensor, c0: Tensor):
        """One layer as one ONNX LSTM (with peepholes P) or GRU (linear_before_reset=0) node.

        ONNX's layouts: gates i, o, f, c for LSTM and z, r, h for GRU (torch's are i, f, g, o
        and r, z, n), peepholes i, o, f (rnnkit's i, f, o), both directions stacked on a
        leading axis, sequence_lens int32. Only traced while exporting: its eager forward
        gives zeros of the right shapes.
        """
        D, H = self.num_directions, self.hidden_size
        gates = [0, 3, 1, 2] if self.is_lstm else [1, 0, 2]
        W, R, Bias, P = [], [], [], []
        for direction in range(D):
            suffix = f"_l{layer}{'_reverse' * direction}"
            w_ih, w_hh = self._param("weight_ih", suffix), self._param("weight_hh", suffix)
            b_ih, b_hh = self._param("bias_ih", suffix), self._param("bias_hh", suffix)
            W.append(_reorder(w_ih, gates))  # (G*H, I)
            R.append(_reorder(w_hh, gates))  # (G*H, H)
            if b_ih is None:
                Bias.append(w_ih.new_zeros(2 * len(gates) * H))
            else:
                Bias.append(torch.cat([_reorder(b_ih, gates), _reorder(b_hh, gates)]))  # (2*G*H,)
            if self.is_lstm:
                p_i, p_f, p_o = self._param("weight_peephole", suffix).chunk(3)
                P.append(torch.cat([p_i, p_o, p_f]))  # (3H,)
        if lengths is None:  # every sequence at full length
            lengths = torch.ones_like(x[:, :, 0], dtype=torch.int64).sum(0)  # (B,)
        args = (x, torch.stack(W), torch.stack(R), torch.stack(Bias), lengths.to(torch.int32), h0.contiguous())
        direction = "bidirectional" if D == 2 else "forward"
        if self.is_lstm:
            y, h, c = _OnnxLSTM.apply(*args, c0.contiguous(), torch.stack(P), H, direction)
        else:
            y, h = _OnnxGRU.apply(*args, H, direction)
            c = h
        y = y.permute(0, 2, 1, 3)  # (T, D, B, H) -> (T, B, D, H)
        return y.reshape(y.shape[0], y.shape[1], D * H), h, c

    def _param(self, name: str, suffix: str) -> Tensor | None:
        return getattr(self.layer, f"{name}{suffix}", None)

    def _lstm(self, x, keep, h0, c0, suffix):
        p = lambda name: self._param(name, suffix)  # noqa: E731
        H = self.hidden_size
        bias = None if p("bias_ih") is None else p("bias_ih") + p("bias_hh")  # (4H,)
        gx = x @ p("weight_ih").t()  # (T, B, 4H)
        layer_norm = p("layer_norm_ih") is not None
        if layer_norm:
            gx = _gate_norm(gx, p("layer_norm_ih"), 4)
        if bias is not None:
            gx = gx + bias
        peephole = p("weight_peephole")
        peephole = x.new_zeros(3 * H) if peephole is None else peephole  # p = 0: the same equations without
        ones, zeros = x.new_ones(4 * H), x.new_zeros(H)
        return _lstm_loop(_steps(gx), gx, keep, h0, c0, p("weight_hh"), peephole, layer_norm,
                          p("layer_norm_hh") if layer_norm else ones,
                          p("layer_norm_c_weight") if layer_norm else ones[:H],
                          p("layer_norm_c_bias") if layer_norm else zeros)

    def _gru(self, x, keep, h0, suffix):
        p = lambda name: self._param(name, suffix)  # noqa: E731
        H = self.hidden_size
        reset_after, layer_norm = self.layer.reset_after, p("layer_norm_ih") is not None
        bias_ih = p("bias_ih") if p("bias_ih") is not None else x.new_zeros(3 * H)
        bias_hh = p("bias_hh") if p("bias_hh") is not None else x.new_zeros(3 * H)
        gx = x @ p("weight_ih").t()  # (T, B, 3H)
        if layer_norm:
            gx = _gate_norm(gx, p("layer_norm_ih"), 3)
        gx = gx + (bias_ih if reset_after else bias_ih + bias_hh)  # reset_after=False folds b_hh in here
        gain = p("layer_norm_hh") if layer_norm else x.new_ones(3 * H)
        out, h = _gru_loop(_steps(gx), gx, keep, h0, p("weight_hh"), bias_hh, gain, reset_after, layer_norm)
        return out, h


def _reorder(w: Tensor, gates: list[int]) -> Tensor:
    """Gate blocks of w (G*H, ...) or (G*H,) in another order."""
    blocks = w.chunk(len(gates), 0)
    return torch.cat([blocks[k] for k in gates], 0)


class _OnnxLSTM(torch.autograd.Function):
    """One ONNX ``LSTM`` node (all directions of a layer) in the exported graph; only traced,
    its eager forward gives zeros of the output shapes."""

    @staticmethod
    def forward(ctx, x, w, r, b, lengths, h0, c0, p, hidden_size: int, direction: str):
        T, B, D = x.shape[0], x.shape[1], w.shape[0]
        return x.new_zeros(T, D, B, hidden_size), x.new_zeros(D, B, hidden_size), x.new_zeros(D, B, hidden_size)

    @staticmethod
    def symbolic(g, x, w, r, b, lengths, h0, c0, p, hidden_size, direction):
        return g.op("LSTM", x, w, r, b, lengths, h0, c0, p, hidden_size_i=hidden_size, direction_s=direction,
                    outputs=3)


class _OnnxGRU(torch.autograd.Function):
    """One ONNX ``GRU`` node with linear_before_reset=0 (Cho et al.'s GRU); only traced, as
    ``_OnnxLSTM``."""

    @staticmethod
    def forward(ctx, x, w, r, b, lengths, h0, hidden_size: int, direction: str):
        T, B, D = x.shape[0], x.shape[1], w.shape[0]
        return x.new_zeros(T, D, B, hidden_size), x.new_zeros(D, B, hidden_size)

    @staticmethod
    def symbolic(g, x, w, r, b, lengths, h0, hidden_size, direction):
        return g.op("GRU", x, w, r, b, lengths, h0, hidden_size_i=hidden_size, direction_s=direction,
                    linear_before_reset_i=0, outputs=2)


def _steps(x: Tensor) -> Tensor:
    """x.shape[0] as a 0-d tensor that stays a graph value (the loops' trip count); a plain
    size would be specialised to the traced length inside the scripted loops."""
    return torch._shape_as_tensor(x)[0]


def _reverse(x: Tensor, rev_index: Tensor | None) -> Tensor:
    """Reverse time within each sequence's length: (T, B, F) -> (T, B, F)."""
    if rev_index is None:
        return x.flip(0)
    return x.gather(0, rev_index.unsqueeze(-1).expand(-1, -1, x.shape[-1]))


def _script(fn):
    """torch.jit.script, without its deprecation warning: scripting is how a Python loop
    over time becomes an ONNX Loop for the TorchScript exporter (torch.export has no
    dynamic-length loop that the ONNX exporter turns into one)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        return torch.jit.script(fn)


def _gate_norm(z: Tensor, gain: Tensor, num_gates: int) -> Tensor:
    """rnnkit.cells' per-gate layer norm of z (..., G*H), times the gain (G*H,)."""
    return _norm_rows(z, num_gates, gain.shape[0] // num_gates) * gain


@_script
def _norm_rows(z: Tensor, num_gates: int, hidden_size: int, eps: float = 1e-5) -> Tensor:
    """Layer norm (no gain) of each gate's block of z (..., G*H), eps 1e-5 as F.layer_norm.

    Only G and H are fixed in the reshape (-1 takes the rest), so batch and time stay
    dynamic in the graph.
    """
    zg = z.reshape(-1, num_gates, hidden_size)  # (N, G, H)
    mean = zg.mean(-1, keepdim=True)
    var = (zg - mean).pow(2).mean(-1, keepdim=True)
    return ((zg - mean) / torch.sqrt(var + eps)).reshape_as(z)


@_script
def _lstm_loop(steps: Tensor, gx: Tensor, keep: Tensor, h0: Tensor, c0: Tensor, w_hh: Tensor, peephole: Tensor,
               layer_norm: bool, gain_hh: Tensor, gain_c: Tensor, shift_c: Tensor):
    """LSTM steps over gx (T, B, 4H), gates i, f, g, o (rnnkit.cells.LSTMCell's equations).

    steps: T as a 0-d tensor (``_steps``); keep (T, B, 1) bool: where False the state stays
    and the output is 0; peephole (3H: i, f, o), zeros without peepholes.
    Returns output (T, B, H), h (B, H), c (B, H).
    """
    H = h0.shape[-1]
    h, c = h0, c0
    outs: list[Tensor] = []
    for t in range(int(steps)):
        gh = torch.matmul(h, w_hh.t())  # (B, 4H)
        if layer_norm:
            gh = _norm_rows(gh, 4, H) * gain_hh
        i, f, g, o = (gx[t] + gh).chunk(4, -1)  # each (B, H)
        p_i, p_f, p_o = peephole.chunk(3)
        i = i + p_i * c
        f = f + p_f * c
        c_new = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)  # forget, learn, remember
        o = o + p_o * c_new
        c_out = _norm_rows(c_new, 1, H) * gain_c + shift_c if layer_norm else c_new
        h_new = torch.sigmoid(o) * torch.tanh(c_out)  # use
        k = keep[t]  # (B, 1)
        h = torch.where(k, h_new, h)
        c = torch.where(k, c_new, c)
        outs.append(torch.where(k, h_new, torch.zeros_like(h_new)))
    return torch.stack(outs), h, c


@_script
def _gru_loop(steps: Tensor, gx: Tensor, keep: Tensor, h0: Tensor, w_hh: Tensor, b_hh: Tensor, gain_hh: Tensor,
              reset_after: bool, layer_norm: bool):
    """GRU steps over gx (T, B, 3H), gates r, z, n (rnnkit.cells.GRUCell's equations).

    reset_after=True: n = tanh(x_n + r * (W_hn h + b_hn)); False (Cho et al.): n = tanh(x_n + W_hn (r * h)),
    with b_hh already in gx. keep as ``_lstm_loop``'s. Returns output (T, B, H), h (B, H).
    """
    H = h0.shape[-1]
    h = h0
    outs: list[Tensor] = []
    for t in range(int(steps)):
        x_r, x_z, x_n = gx[t].chunk(3, -1)  # each (B, H)
        if reset_after:
            gh = torch.matmul(h, w_hh.t())  # (B, 3H)
            if layer_norm:
                gh = _norm_rows(gh, 3, H) * gain_hh
            h_r, h_z, h_n = (gh + b_hh).chunk(3, -1)
            r = torch.sigmoid(x_r + h_r)
            z = torch.sigmoid(x_z + h_z)
            n = torch.tanh(x_n + r * h_n)
        else:
            gh_rz = torch.matmul(h, w_hh[: 2 * H].t())  # (B, 2H)
            if layer_norm:
                gh_rz = _norm_rows(gh_rz, 2, H) * gain_hh[: 2 * H]
            h_r, h_z = gh_rz.chunk(2, -1)
            r = torch.sigmoid(x_r + h_r)
            z = torch.sigmoid(x_z + h_z)
            gh_n = torch.matmul(r * h, w_hh[2 * H:].t())  # (B, H): reset before the product
            if layer_norm:
                gh_n = _norm_rows(gh_n, 1, H) * gain_hh[2 * H:]
            n = torch.tanh(x_n + gh_n)
        h_new = n + z * (h - n)  # = (1 - z) * n + z * h
        k = keep[t]  # (B, 1)
        h = torch.where(k, h_new, h)
        outs.append(torch.where(k, h_new, torch.zeros_like(h_new)))
    return torch.stack(outs), h

