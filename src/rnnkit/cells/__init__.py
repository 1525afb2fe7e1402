"""Recurrent cells: one time step each, run over time by ``rnnkit.Recurrent`` or the layers."""
from .base import Cell, State
from .gru import GRUCell
from .lstm import LSTMCell
from .rnn import RNNCell

__all__ = ["Cell", "State", "RNNCell", "LSTMCell", "GRUCell"]
