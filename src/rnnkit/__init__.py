"""rnnkit: recurrent neural networks on PyTorch.

The flat public API: layers that are drop-in replacements for torch.nn's (with lengths,
peepholes, layer norm and Cho et al.'s GRU), the cells, and the generic engine that runs any
cell over time.
"""
from . import cells
from .cells import GRUCell, LSTMCell, RNNCell
from .layers import GRU, LSTM, RNN, Recurrent
from .training.run import load

__version__ = "0.1.0"

__all__ = ["cells", "RNN", "LSTM", "GRU", "Recurrent", "RNNCell", "LSTMCell", "GRUCell", "load", "__version__"]
