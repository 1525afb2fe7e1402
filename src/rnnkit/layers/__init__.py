"""Recurrent layers: torch.nn-compatible RNN/LSTM/GRU and the generic engine for any cell."""
from .native import GRU, LSTM, RNN
from .recurrent import Recurrent, run_layers

__all__ = ["RNN", "LSTM", "GRU", "Recurrent", "run_layers"]
