"""ONNX export: a model as ONNX graphs with dynamic batch and time axes, checked in onnxruntime.

This package takes a model and an ``ExportSpec`` (which graphs the model is, whether they take
lengths); it knows no task and no run directory. Each task declares its own spec as its
``export`` class attribute, and exporting by task name or run directory lives in the
application layer (``rnnkit.exporting.export_onnx``, the ``rnnkit export`` command)::

    >>> from rnnkit.export import ClassifierGraph, ExportSpec, export_model
    >>> [info] = export_model(model, "model.onnx", ExportSpec(ClassifierGraph, lengths=True))  # doctest: +SKIP
    >>> info.inputs, info.outputs  # doctest: +SKIP
    (('x', 'lengths'), ('logits',))

One module per concern:

- ``api``: ``ExportSpec``, ``export_model``, ``write_onnx`` (``torch.export`` through
  ``torch.onnx.export(dynamo=True)``, batch and time axes ``Dim.DYNAMIC``);
- ``graphs``, ``seq2seq``: the ``ExportGraph`` of each kind of model (inputs, outputs,
  dynamic axes, example inputs, the reference outputs);
- ``convert``: the model's recurrent layers as ``OnnxLayer``s, layer by layer either an
  "onnx" backend of ``rnnkit.layers.backends`` or the reference loop;
- ``nodes``: the "onnx" backends, ONNX's ``RNN`` / ``LSTM`` / ``GRU`` nodes, each declaring
  the configurations it computes;
- ``loop``: the reference loop, torch's ``scan`` over the cells' own reference steps (an
  ONNX ``Scan``), for every configuration no node declares;
- ``step``: ``StepGraph``, the model's recurrent stack as one time step, state in and out
  (``--step``), each layer's reference step and no loop;
- ``package``: ``--format pt2``, an AOTInductor package from ``torch.export``;
- ``verify``: onnxruntime (or the package) against rnnkit.

Every graph is in eval mode (no dropout). The model given is not changed. docs/export.md
lists every task's inputs and outputs.
"""
from .api import FORMATS, MIN_OPSET, OPSET, TRACE_SIZE, ExportSpec, OnnxExport, export_model, write_onnx, write_package
from .convert import OnnxLayer, export_copy
from .graphs import CTCGraph, ClassifierGraph, ExportGraph, ForecasterGraph, LanguageModelGraph, TaggerGraph
from .loop import reference_loop
from .package import Pt2Error, run_pt2
from .seq2seq import DecoderStepGraph, EncoderGraph
from .step import StepGraph, recurrent_stack
from .verify import TOLERANCE, max_abs_diff, run_onnx, verify

__all__ = ["ExportSpec", "OnnxExport", "export_model", "write_onnx", "write_package", "OPSET", "MIN_OPSET",
           "TRACE_SIZE", "FORMATS", "ExportGraph", "ClassifierGraph", "LanguageModelGraph", "ForecasterGraph",
           "TaggerGraph", "CTCGraph", "EncoderGraph", "DecoderStepGraph", "StepGraph", "recurrent_stack", "OnnxLayer",
           "export_copy", "reference_loop", "Pt2Error", "run_pt2", "TOLERANCE", "verify", "run_onnx", "max_abs_diff"]
