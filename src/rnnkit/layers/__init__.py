"""Recurrent layers: torch.nn-compatible RNN/LSTM/GRU, the generic engine for any cell, and the
registry of backends (``rnnkit.layers.backends``) that the engine chooses its fast paths from."""
from . import backends
from .backends import Backend
from .boundary import check_state, split_states, stack_states, unpack_input
from .cell_layer import CellLayer, KindLayer
from .modern import MLSTM, SLSTM, SRU, IndRNN, MinGRU, MinLSTM
from .native import GRU, LSTM, RNN
from .recurrent import Recurrent, run_direction, run_layers

__all__ = ["RNN", "LSTM", "GRU", "MinGRU", "MinLSTM", "IndRNN", "SRU", "SLSTM", "MLSTM", "CellLayer", "KindLayer", "RECURRENT_LAYERS", "Recurrent", "run_layers", "run_direction", "backends", "Backend",
           "check_state", "split_states", "stack_states", "unpack_input"]

RECURRENT_LAYERS = (RNN, LSTM, GRU, CellLayer)  # the layers of rnnkit's cell kinds (``KindLayer``s)
