"""The layers of the recurrent cells after 2017, each a ``CellLayer`` over its cell kind.

``MinGRU`` and ``MinLSTM`` (Feng et al. 2024), whose gates read only the input, ``SRU`` without
peepholes (Lei et al. 2018) and ``MLSTM`` (Beck et al. 2024) run on the parallel-over-time
backends of ``layers.parallel``; ``IndRNN`` (Li et al. 2018, an element-wise but nonlinear
recurrence) and ``SLSTM`` (Beck et al. 2024, exponential gating with recurrent weights) on the
reference step loop. Every class takes torch.nn.LSTM's arguments (input_size,
hidden_size, num_layers, bias, batch_first, dropout, bidirectional, device, dtype) and
``forward(x, state=None, lengths=None) -> (output, state)`` as ``rnnkit.LSTM``; see each cell's
class in ``rnnkit.cells`` for the equations.
"""
from __future__ import annotations

from ..cells.indrnn import INDRNN_KIND, INDRNN_NONLINEARITIES
from ..cells.minrnn import MINGRU_KIND, MINLSTM_KIND
from ..cells.mlstm import MLSTM_KIND, check_heads
from ..cells.slstm import SLSTM_KIND
from ..cells.sru import SRU_KIND
from ..checks import check_bool, check_choice
from .cell_layer import CellLayer

__all__ = ["MinGRU", "MinLSTM", "IndRNN", "SRU", "SLSTM", "MLSTM"]


class MinGRU(CellLayer):
    """A deep, optionally bidirectional minGRU layer (``rnnkit.cells.MinGRUCell``).

    State: ``h`` (num_layers * D, B, H).

    Example:
        >>> layer = MinGRU(4, 8, num_layers=2, bidirectional=True)
        >>> y, h = layer(torch.randn(6, 3, 4), lengths=torch.tensor([6, 1, 3]))
        >>> tuple(y.shape), tuple(h.shape)
        ((6, 3, 16), (4, 3, 8))
    """

    kind = MINGRU_KIND


class MinLSTM(CellLayer):
    """A deep, optionally bidirectional minLSTM layer (``rnnkit.cells.MinLSTMCell``).

    State: ``h`` (num_layers * D, B, H).
    """

    kind = MINLSTM_KIND


class MLSTM(CellLayer):
    """A deep, optionally bidirectional mLSTM layer (``rnnkit.cells.MLSTMCell``): the xLSTM's
    matrix memory, run by its chunkwise parallel form (``kernels.mlstm_chunkwise``).

    Args: as ``rnnkit.LSTM``'s, then num_heads: heads, each with a (d, d) memory, d = H /
    num_heads (must divide hidden_size). Default 1.

    State: ``(h, C, n, m)``: h (L*D, B, H), C (L*D, B, NH, d, d), n (L*D, B, NH, d), m (L*D, B, NH).
    """

    kind = MLSTM_KIND

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False, num_heads: int = 1,
                 engine: str = "auto", device=None, dtype=None) -> None:
        check_heads("MLSTM", hidden_size, num_heads)
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, engine,
                         device, dtype, num_heads=num_heads)


class IndRNN(CellLayer):
    """A deep, optionally bidirectional IndRNN layer (``rnnkit.cells.IndRNNCell``).

    Args: as ``rnnkit.LSTM``'s, then nonlinearity: "relu" (default) or "tanh".

    State: ``h`` (num_layers * D, B, H).
    """

    kind = INDRNN_KIND

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 nonlinearity: str = "relu", engine: str = "auto", device=None, dtype=None) -> None:
        check_choice("IndRNN", "nonlinearity", nonlinearity, INDRNN_NONLINEARITIES)
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, engine,
                         device, dtype, nonlinearity=nonlinearity)


class SRU(CellLayer):
    """A deep, optionally bidirectional SRU layer (``rnnkit.cells.SRUCell``).

    Args: as ``rnnkit.LSTM``'s, then peephole: the 2018 form, whose gates also read c_tm1
    (v_f, v_r; the reference step loop runs it); False (default) keeps c linear in c_tm1, and the
    "scan" backend solves it over time in parallel.

    State: ``(h, c)``, each (num_layers * D, B, H).
    """

    kind = SRU_KIND

    def __init__(self, input_size: int, hidden_size: int, num_layers: int = 1, bias: bool = True,
                 batch_first: bool = False, dropout: float = 0.0, bidirectional: bool = False,
                 peephole: bool = False, engine: str = "auto", device=None, dtype=None) -> None:
        check_bool("SRU", "peephole", peephole)
        super().__init__(input_size, hidden_size, num_layers, bias, batch_first, dropout, bidirectional, engine,
                         device, dtype, peephole=peephole)


class SLSTM(CellLayer):
    """A deep, optionally bidirectional sLSTM layer (``rnnkit.cells.SLSTMCell``): exponential
    input gate, normaliser and stabiliser states, recurrent weights (one head).

    State: ``(h, c, n, m)``, each (num_layers * D, B, H).
    """

    kind = SLSTM_KIND
