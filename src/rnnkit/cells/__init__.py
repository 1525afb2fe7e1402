"""Recurrent cells: one time step each, run over time by ``rnnkit.Recurrent`` or the layers.

Each cell type's file holds its equations once (the reference step), its config dataclass and
its table of weights; ``KINDS`` maps a config's ``cell`` name to that cell type's description.
"""
from .base import BoundCell, Cell, CellKind, State, Weight
from .gru import GRU_KIND, GRU_WEIGHTS, GRUCell, GRUConfig, GRUWeights
from .indrnn import INDRNN_KIND, IndRNNCell, IndRNNConfig
from .slstm import SLSTM_KIND, SLSTMCell, SLSTMConfig
from .sru import SRU_KIND, SRUCell, SRUConfig
from .mlstm import MLSTM_KIND, MLSTMCell, MLSTMConfig
from .minrnn import MINGRU_KIND, MINLSTM_KIND, MinGRUCell, MinGRUConfig, MinLSTMCell, MinLSTMConfig
from .lstm import LSTM_KIND, LSTM_WEIGHTS, LSTMCell, LSTMConfig, LSTMWeights
from .rnn import RNN_KIND, RNN_WEIGHTS, RNNCell, RNNConfig, RNNWeights

KINDS = {kind.name: kind for kind in (RNN_KIND, LSTM_KIND, GRU_KIND, MINGRU_KIND, MINLSTM_KIND, INDRNN_KIND,
                                      SRU_KIND, SLSTM_KIND, MLSTM_KIND)}

__all__ = ["Cell", "State", "Weight", "CellKind", "BoundCell", "KINDS",
           "RNNCell", "RNNConfig", "RNNWeights", "RNN_WEIGHTS", "RNN_KIND",
           "LSTMCell", "LSTMConfig", "LSTMWeights", "LSTM_WEIGHTS", "LSTM_KIND",
           "GRUCell", "GRUConfig", "GRUWeights", "GRU_WEIGHTS", "GRU_KIND",
           "MinGRUCell", "MinGRUConfig", "MINGRU_KIND", "MinLSTMCell", "MinLSTMConfig", "MINLSTM_KIND",
           "IndRNNCell", "IndRNNConfig", "INDRNN_KIND", "SRUCell", "SRUConfig", "SRU_KIND",
           "SLSTMCell", "SLSTMConfig", "SLSTM_KIND", "MLSTMCell", "MLSTMConfig", "MLSTM_KIND"]
