"""rnnkit: recurrent neural networks on PyTorch.

The flat public API: layers that are drop-in replacements for torch.nn's (with lengths,
peepholes, layer norm and Cho et al.'s GRU), the cells, and the generic engine that runs any
cell over time.

The names are imported on first use (PEP 562), so ``import rnnkit`` and ``rnnkit --help``
do not import torch; ``rnnkit.LSTM``, ``from rnnkit import LSTM`` work as usual.
"""
from __future__ import annotations

import importlib

from .version import __version__

# public name -> the module that defines it (a module itself where the name is the module's)
_LAZY = {
    "cells": "rnnkit.cells", "viz": "rnnkit.viz",
    "RNNCell": "rnnkit.cells", "LSTMCell": "rnnkit.cells", "GRUCell": "rnnkit.cells",
    "RNN": "rnnkit.layers", "LSTM": "rnnkit.layers", "GRU": "rnnkit.layers", "Recurrent": "rnnkit.layers",
    "MinGRU": "rnnkit.layers", "MinLSTM": "rnnkit.layers", "IndRNN": "rnnkit.layers", "SRU": "rnnkit.layers",
    "SLSTM": "rnnkit.layers", "MLSTM": "rnnkit.layers", "CellLayer": "rnnkit.layers",
    "MinGRUCell": "rnnkit.cells", "MinLSTMCell": "rnnkit.cells", "IndRNNCell": "rnnkit.cells",
    "SRUCell": "rnnkit.cells", "SLSTMCell": "rnnkit.cells", "MLSTMCell": "rnnkit.cells",
    "Stream": "rnnkit.streaming", "CTCStreamDecoder": "rnnkit.streaming",
    "load": "rnnkit.runs",
}

__all__ = ["cells", "viz", "RNN", "LSTM", "GRU", "Recurrent", "RNNCell", "LSTMCell", "GRUCell",
           "MinGRU", "MinLSTM", "IndRNN", "SRU", "SLSTM", "MLSTM", "CellLayer",
           "MinGRUCell", "MinLSTMCell", "IndRNNCell", "SRUCell", "SLSTMCell", "MLSTMCell",
           "Stream", "CTCStreamDecoder", "load", "__version__"]


def __getattr__(name: str):
    if name not in _LAZY:
        raise AttributeError(f"module 'rnnkit' has no attribute {name!r}")
    module = importlib.import_module(_LAZY[name])
    value = module if module.__name__ == f"rnnkit.{name}" else getattr(module, name)
    globals()[name] = value  # the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
