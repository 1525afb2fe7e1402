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

- ``api``: ``ExportSpec``, ``export_model``, ``write_onnx`` (tracing with torch's TorchScript
  exporter, ``dynamo=False``: ``dynamo=True`` stops in ``torch.export`` at the layers'
  data-dependent checks of ``lengths``, and has no loop over a dynamic number of steps that
  becomes an ONNX ``Loop``);
- ``graphs``, ``seq2seq``: the ``ExportGraph`` of each kind of model (inputs, outputs,
  dynamic axes, example inputs, the reference outputs);
- ``convert``: the model's recurrent layers as ``OnnxLayer``s, layer by layer either an
  "onnx" backend of ``rnnkit.layers.backends`` or the reference loop;
- ``nodes``: the "onnx" backends, ONNX's ``RNN`` / ``LSTM`` / ``GRU`` nodes, each declaring
  the configurations it computes;
- ``loop``: the reference loop, a TorchScript loop over the cells' own reference steps (an
  ONNX ``Loop``), for every configuration no node declares;
- ``verify``: onnxruntime against rnnkit.

Every graph is in eval mode (no dropout). The model given is not changed. docs/export.md
lists every task's inputs and outputs.
"""
from .api import MIN_OPSET, OPSET, TRACE_SIZE, ExportSpec, OnnxExport, export_model, write_onnx
from .convert import OnnxLayer, export_copy
from .graphs import CTCGraph, ClassifierGraph, ExportGraph, ForecasterGraph, LanguageModelGraph, TaggerGraph
from .loop import reference_loop
from .seq2seq import DecoderStepGraph, EncoderGraph
from .verify import TOLERANCE, max_abs_diff, run_onnx, verify

__all__ = ["ExportSpec", "OnnxExport", "export_model", "write_onnx", "OPSET", "MIN_OPSET", "TRACE_SIZE",
           "ExportGraph", "ClassifierGraph", "LanguageModelGraph", "ForecasterGraph", "TaggerGraph", "CTCGraph",
           "EncoderGraph", "DecoderStepGraph", "OnnxLayer", "export_copy", "reference_loop",
           "TOLERANCE", "verify", "run_onnx", "max_abs_diff"]
