"""Build a recurrent layer from a short name, so every model and the CLI say the same thing."""
from __future__ import annotations

from torch import nn

from ..layers import GRU, LSTM, MLSTM, RNN, SLSTM, SRU, IndRNN, MinGRU, MinLSTM

__all__ = ["CELLS", "make_recurrent", "final_hidden"]

# name -> (layer class, variant keyword arguments)
CELLS: dict[str, tuple[type, dict]] = {
    "rnn": (RNN, {"nonlinearity": "tanh"}),
    "rnn_relu": (RNN, {"nonlinearity": "relu"}),
    "lstm": (LSTM, {}),
    "peephole_lstm": (LSTM, {"peephole": True}),
    "ln_lstm": (LSTM, {"layer_norm": True}),
    "gru": (GRU, {}),
    "cho_gru": (GRU, {"reset_after": False}),
    "ln_gru": (GRU, {"layer_norm": True}),
    # the cells after 2017 (rnnkit.layers.modern)
    "mingru": (MinGRU, {}),
    "minlstm": (MinLSTM, {}),
    "indrnn": (IndRNN, {}),
    "sru": (SRU, {}),
    "slstm": (SLSTM, {}),
    "mlstm": (MLSTM, {"num_heads": 4}),
}


def make_recurrent(
    cell: str, input_size: int, hidden_size: int, num_layers: int = 1,
    bidirectional: bool = False, dropout: float = 0.0, batch_first: bool = True,
) -> nn.Module:
    """A batch-first rnnkit layer for a cell name (one of ``CELLS``)."""
    if cell not in CELLS:
        raise ValueError(f"make_recurrent: cell must be one of {sorted(CELLS)}, got {cell!r}")
    cls, variant = CELLS[cell]
    return cls(
        input_size, hidden_size, num_layers=num_layers, bidirectional=bidirectional,
        dropout=dropout if num_layers > 1 else 0.0, batch_first=batch_first, **variant,
    )


def final_hidden(state, num_directions: int):
    """The last layer's final h, both directions side by side: state -> (B, D*H)."""
    h = state[0] if isinstance(state, tuple) else state  # (L*D, B, H)
    last = h[-num_directions:]  # (D, B, H)
    return last.transpose(0, 1).reshape(h.shape[1], -1)  # (B, D*H)
