"""Converting a model's recurrent layers into a form that exports to ONNX with dynamic T.

``export_copy(model)`` is a copy of the model in eval mode in which every rnnkit ``RNN``,
``LSTM`` and ``GRU`` is an ``OnnxLayer`` over the same (copied) parameters. For each layer
index ``k`` the ``OnnxLayer`` asks the backend registry for an "onnx" backend that supports
``layer.cell_config(k)`` (``rnnkit.layers.backends.select``): ONNX's own recurrent nodes
(``export.nodes``) where one declares the configuration and the export is to ONNX, otherwise
the reference loop, a ``scan`` over the cell's own step (``export.loop``; always for
``--format pt2``). No configuration is excluded by name: a flag no backend declares reaches the
loop, which runs the cell's equations as they are.

torch.nn layers (not rnnkit's) are left as they are, for torch.export (untested: no task model
has one). An
``rnnkit.Recurrent`` over arbitrary cells is refused: nothing says which equations its cells
compute, nor that their steps trace.
"""
from __future__ import annotations

import copy

import torch
from torch import Tensor, nn

from ..layers import RECURRENT_LAYERS, Recurrent
from ..layers.backends import select
from . import nodes  # noqa: F401  (registers the "onnx" backends)
from .loop import reference_loop

__all__ = ["export_copy", "OnnxLayer"]


def export_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode whose rnnkit recurrent layers are ``OnnxLayer``s.

    The model given is not changed. Raises ValueError for an ``rnnkit.Recurrent``.
    """
    model = copy.deepcopy(model).eval()
    if isinstance(model, RECURRENT_LAYERS):
        return OnnxLayer(model)
    for name, module in list(model.named_modules()):
        if isinstance(module, Recurrent):
            raise ValueError(f"export: {name or 'the model'} is an rnnkit.Recurrent over custom cells, which has "
                             "no ONNX export; use rnnkit.RNN / LSTM / GRU")
        if isinstance(module, RECURRENT_LAYERS):
            parent_name, _, child = name.rpartition(".")
            setattr(model.get_submodule(parent_name) if parent_name else model, child, OnnxLayer(module))
    return model


class OnnxLayer(nn.Module):
    """An rnnkit ``RNN``, ``LSTM`` or ``GRU`` in the form that exports to ONNX, layer by layer.

    ``forward(x, state=None, lengths=None) -> (output, state)`` as the layer's (batch-first or
    time-major as the layer is; eval mode, so no dropout), on the layer's own parameters.
    ``backends[k]`` is the "onnx" backend chosen for layer ``k`` (None: the reference loop);
    it runs only while ``torch.onnx.export`` exports. Otherwise (eager mode, ``torch.export``
    for a pt2 package) every layer runs the reference loop, so the converted model is checked
    against rnnkit as it is.
    """

    def __init__(self, layer: nn.Module) -> None:
        super().__init__()
        self.layer = layer
        self.backends = [select("onnx", layer.cell_config(k)) for k in range(layer.num_layers)]

    def forward(self, x: Tensor, state=None, lengths: Tensor | None = None):
        layer = self.layer
        D = 2 if layer.bidirectional else 1
        paired = layer.kind.state_names is not None  # the state is a tuple (h, c, ...)
        x = x.transpose(0, 1) if layer.batch_first else x  # (T, B, I)
        if state is None:
            state = self._zeros(x, paired)
        parts = state if paired else (state,)  # each (L*D, B, ·)
        exporting = torch.onnx.is_in_onnx_export()
        finals = []
        for k, backend in enumerate(self.backends):
            cells = [layer.cell(k, d) for d in range(D)]
            state_k = tuple(p[k * D:(k + 1) * D] for p in parts)  # each (D, B, ·)
            run = backend.run if backend is not None and exporting else reference_loop
            x, final = run(cells, x, lengths, state_k if paired else state_k[0])  # x: (T, B, D*H_out)
            finals.append(final if paired else (final,))
        out = x.transpose(0, 1) if layer.batch_first else x
        final = tuple(torch.cat(part) for part in zip(*finals))  # each (L*D, B, ·)
        return out, (final if paired else final[0])

    def _zeros(self, x: Tensor, paired: bool):
        """The zero state, batch sized from x (T, B, I) so that B stays dynamic in the graph."""
        layer = self.layer
        LD = layer.num_layers * (2 if layer.bidirectional else 1)
        shapes = layer.kind.state_shapes(layer.cell_config())  # each part's shape without (L*D, B)
        parts = tuple(x.new_zeros((1,) * (2 + len(s))).expand((LD, x.shape[1]) + tuple(s)) for s in shapes)
        return parts if paired else parts[0]

    def extra_repr(self) -> str:
        return "backends=[" + ", ".join(b.name if b else "reference-loop" for b in self.backends) + "]"
