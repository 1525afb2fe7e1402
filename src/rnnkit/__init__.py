"""rnnkit: recurrent neural networks on PyTorch.

The flat public API: layers that are drop-in replacements for torch.nn's (with lengths,
peepholes, layer norm and Cho et al.'s GRU), the cells, and the generic engine that runs any
cell over time.
"""
from . import cells, viz
from .cells import GRUCell, LSTMCell, RNNCell
from .layers import GRU, LSTM, RNN, Recurrent
from .streaming import CTCStreamDecoder, Stream
from .runs import load

__version__ = "0.1.0"

__all__ = ["cells", "viz", "RNN", "LSTM", "GRU", "Recurrent", "RNNCell", "LSTMCell", "GRUCell",
           "Stream", "CTCStreamDecoder", "load", "__version__"]
