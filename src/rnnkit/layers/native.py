"""rnnkit.RNN, rnnkit.LSTM, rnnkit.GRU: torch.nn's layers, plus variants and ``lengths``.

Each class is a subclass of its torch.nn layer, so weights carry torch.nn's names and layout
(``weight_ih_l0``, ``bias_hh_l1_reverse``, ``weight_hr_l0``), ``load_state_dict`` takes a
torch.nn state dict, and the standard configurations run on torch's fused kernels (oneDNN or
the native kernel on CPU, cuDNN on GPU), with ``lengths`` handled by packing. The variants
(peephole, layer norm, GRU ``reset_after=False``) add their weights under the same scheme
(``weight_peephole_l0``, ``layer_norm_ih_l0``, ...) and run on rnnkit's generic engine with
the cells' own math, so a layer and a stack of cells compute exactly the same thing.
"""
from __future__ import annotations

import torch
from torch import Tensor, _VF, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from ..cells.base import _check_int, _check_sizes
from ..cells.gru import _gru_param_shapes, _init_gru, gru_project, gru_run_sequence, gru_step
from ..cells.lstm import _init_lstm, _lstm_param_shapes, lstm_project, lstm_run_sequence, lstm_step
from ..cells.rnn import _check_nonlinearity, rnn_project, rnn_step
from ._boundary import check_dropout, check_state, pack_output, split_states, stack_states, unpack_input
from .recurrent import run_layers

__all__ = ["RNN", "LSTM", "GRU"]

_STANDARD = ("weight_ih", "weight_hh", "bias_ih", "bias_hh", "weight_hr")
_ENGINES = ("auto", "python")


class _CellView:
    """One layer and direction of a layer's weights, seen as a cell (project_input / step,
    and run_sequence when the layer's cell type has a fused whole-sequence function)."""

    def __init__(self, project, step, run_sequence=None, **attrs) -> None:
        self.__dict__.update(attrs)
        self._project, self._step, self._run_sequence = project, step, run_sequence

    def project_input(self, x: Tensor) -> Tensor:
        return self._project(self, x)

    def step(self, xp_t: Tensor, state):
        return self._step(self, xp_t, state)

    def run_sequence(self, xp: Tensor, state, mask: Tensor | None = None):
        """(output, state) for all steps of xp (T, B, G), or None: the engine loops ``step``."""
        return None if self._run_sequence is None else self._run_sequence(self, xp, state, mask)


class _Layer:
    """What RNN, LSTM and GRU share; mixed in before the torch.nn class."""

    _vf = None  # torch's fused function for the standard configuration
    _run_sequence = None  # the cell type's whole-sequence function (rnnkit.layers.fused), if any
    _state_names: tuple[str, ...] | None = None

    def _setup(self, engine: str, extra_shapes, cell_flags: dict) -> None:
        if engine not in _ENGINES:
            raise ValueError(f"{type(self).__name__}: engine must be 'auto' or 'python', got {engine!r}")
        self.engine = engine
        self._cell_flags = cell_flags
        device, dtype = self.weight_ih_l0.device, self.weight_ih_l0.dtype
        for suffix in self._suffixes():
            for name, shape in extra_shapes:
                if shape is not None:
                    param = nn.Parameter(torch.empty(shape, device=device, dtype=dtype))
                    self.register_parameter(f"{name}{suffix}", param)
        self._ready = True
        self._init_extras()

    def reset_parameters(self) -> None:
        super().reset_parameters()  # torch.nn's init, drawing in torch.nn's RNG order
        if getattr(self, "_ready", False):
            self._init_extras()

    def _suffixes(self) -> list[str]:
        D = 2 if self.bidirectional else 1
        return [f"_l{layer}{'_reverse' * d}" for layer in range(self.num_layers) for d in range(D)]

    def _views(self) -> list[_CellView]:
        """One cell view per layer and direction, index layer * D + direction."""
        views = []
        for suffix in self._suffixes():
            attrs = {name: getattr(self, f"{name}{suffix}", None) for name in self._cell_attrs}
            views.append(_CellView(self._project, self._step, self._run_sequence, **attrs, **self._cell_flags))
        return views

    @property
    def is_standard(self) -> bool:
        """True when torch.nn has this configuration (and so a fused kernel for it)."""
        return True

    def _state_template(self, batch_size: int, device, dtype):
        D = 2 if self.bidirectional else 1
        shape = (self.num_layers * D, batch_size, self.proj_size or self.hidden_size)
        return torch.zeros(shape, device=device, dtype=dtype)

    def forward(self, x: Tensor | PackedSequence, state=None, lengths: Tensor | None = None):
        """Run the layer.

        Args:
            x: (T, B, I), or (B, T, I) with batch_first, or (T, I) unbatched, or a
                PackedSequence (then the output is packed too).
            state: initial state, each part (num_layers * num_directions, B, H_part);
                zeros when None. ``h`` for RNN/GRU, ``(h, c)`` for LSTM.
            lengths: (B,) integers in [1, T], any order, any device. Outputs at t >= length
                are zero; the final state is each sequence's state at its last valid step.

        Returns:
            (output, state): output (T, B, D * H_out) in x's layout; state as above.
        """
        cls = type(self).__name__
        batch = unpack_input(cls, x, lengths, self.batch_first, self.input_size)
        B = batch.x.shape[1]
        template = self._state_template(B, batch.x.device, batch.x.dtype)
        if state is None:
            state = template
        else:
            state = batch.state_in(cls, state)
            check_state(cls, state, template, self._state_names)
        if self.engine == "auto" and self.is_standard:
            out, final = self._fused(batch, state)
            if isinstance(out, PackedSequence):
                return out, final
        else:
            D = 2 if self.bidirectional else 1
            views = self._views()
            out, finals = run_layers(
                batch.x, batch.lengths, views, split_states(state, len(views)), D, self.dropout, self.training
            )
            final = stack_states(finals)
        return pack_output(batch, out, self.batch_first), batch.state_out(final)

    def _fused(self, batch, state):
        """torch's fused kernel; with lengths through a PackedSequence, as torch.nn wants it."""
        if hasattr(self, "_update_flat_weights"):
            self._update_flat_weights()
        args = (self._flat_weights, self.bias, self.num_layers, self.dropout, self.training, self.bidirectional)
        if batch.lengths is None:
            result = self._vf(batch.x, state, *args, False)
            return result[0], _unpack_result(result)
        packed = batch.packed or pack_padded_sequence(batch.x, batch.lengths.cpu(), enforce_sorted=False)
        state = _permute(state, packed.sorted_indices)
        result = self._vf(packed.data, packed.batch_sizes, state, *args)
        final = _permute(_unpack_result(result), packed.unsorted_indices)
        out = PackedSequence(result[0], packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices)
        if batch.packed is not None:
            return out, final
        return pad_packed_sequence(out, total_length=batch.x.shape[0])[0], final

    @classmethod
    def from_torch(cls, module: nn.RNNBase, **variant):
        """Build from a torch.nn layer, copying its weights.

        ``variant`` may ask for a variant (``peephole=True``, ``layer_norm=True``, ...): the
        shared weights are copied and the variant's own start from their initialisation.
        """
        torch_cls = cls._torch_cls
        if type(module) is not torch_cls:
            raise TypeError(f"{cls.__name__}.from_torch: module must be a torch.nn.{torch_cls.__name__}, got {type(module).__name__}")
        w = module.weight_ih_l0
        layer = cls(**_torch_kwargs(module), **variant, device=w.device, dtype=w.dtype)
        layer.load_state_dict(module.state_dict(), strict=layer.is_standard)
        return layer

    def to_torch(self) -> nn.RNNBase:
        """The equivalent torch.nn layer with these weights (standard configurations only)."""
        cls = type(self).__name__
        if not self.is_standard:
            raise ValueError(f"{cls}.to_torch: torch.nn has no {self.extra_repr()} layer; only standard configurations convert")
        w = self.weight_ih_l0
        module = self._torch_cls(**_torch_kwargs(self), device=w.device, dtype=w.dtype)
        module.load_state_dict(self.state_dict())
        return module


class LSTM(_Layer, nn.LSTM):
    """A deep, optionally bidirectional LSTM layer; see ``rnnkit.cells.LSTMCell`` for the equations.

    Args: torch.nn.LSTM's (input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
    dropout=0.0, bidirectional=False, proj_size=0, device, dtype), then
        peephole: peephole connections, weights ``weight_peephole_l{k}`` (3H: i, f, o). Default False.
        layer_norm: per-gate layer norm, weights ``layer_norm_{ih,hh}_l{k}`` (4H) and
            ``layer_norm_c_{weight,bias}_l{k}`` (H). Default False.
        forget_bias: the forget-gate slice of ``bias_ih`` starts at this value and that of
            ``bias_hh`` at 0; None keeps torch.nn's init exactly (same seed, same weights as
            torch.nn.LSTM). Default 1.0.
        recurrent_init: "uniform" (torch.nn's) or "orthogonal" per gate block. Default "uniform".
        engine: "auto" runs standard configurations on torch's fused kernels and variants on
            rnnkit's engine; "python" always uses rnnkit's engine (its fused whole-sequence
            path where one exists; inside ``rnnkit.layers.fused.disabled()`` the plain step loop,
            which calls ``step`` at every time step, e.g. to look at gates).

    State: ``(h, c)``, h (num_layers * D, B, proj_size or H), c (num_layers * D, B, H).

    Example:
        >>> lstm = LSTM(4, 8, num_layers=2, bidirectional=True, peephole=True)
        >>> y, (h, c) = lstm(torch.randn(6, 3, 4), lengths=torch.tensor([6, 1, 3]))
        >>> tuple(y.shape), tuple(h.shape)
        ((6, 3, 16), (4, 3, 8))
    """

    _torch_cls = nn.LSTM
    _vf = staticmethod(_VF.lstm)
    _state_names = ("h", "c")
    _cell_attrs = [name for name, _ in _lstm_param_shapes(1, 2, True, True, True, 1)]
    _project, _step = staticmethod(lstm_project), staticmethod(lstm_step)
    _run_sequence = staticmethod(lstm_run_sequence)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        proj_size: int = 0,
        peephole: bool = False,
        layer_norm: bool = False,
        forget_bias: float | None = 1.0,
        recurrent_init: str = "uniform",
        engine: str = "auto",
        device=None,
        dtype=None,
    ) -> None:
        _check_layer_args("LSTM", input_size, hidden_size, num_layers, dropout, proj_size)
        super().__init__(
            input_size, hidden_size, num_layers=num_layers, bias=bias, batch_first=batch_first,
            dropout=float(dropout), bidirectional=bidirectional, proj_size=proj_size, device=device, dtype=dtype,
        )
        self.peephole, self.layer_norm = peephole, layer_norm
        self.forget_bias, self.recurrent_init = forget_bias, recurrent_init
        extras = [(n, s) for n, s in _lstm_param_shapes(1, hidden_size, bias, peephole, layer_norm, proj_size) if n not in _STANDARD]
        self._setup(engine, extras, {"hidden_size": hidden_size})

    def _init_extras(self) -> None:
        for view in self._views():
            _init_lstm(view, self.hidden_size, self.forget_bias, self.recurrent_init, standard_done=True)

    @property
    def is_standard(self) -> bool:
        return not (self.peephole or self.layer_norm)

    def _state_template(self, batch_size: int, device, dtype):
        h0 = super()._state_template(batch_size, device, dtype)
        return h0, h0.new_zeros(h0.shape[:2] + (self.hidden_size,))

    def extra_repr(self) -> str:
        return super().extra_repr() + ", peephole=True" * self.peephole + ", layer_norm=True" * self.layer_norm


class GRU(_Layer, nn.GRU):
    """A deep, optionally bidirectional GRU layer; see ``rnnkit.cells.GRUCell`` for the equations.

    Args: torch.nn.GRU's (input_size, hidden_size, num_layers=1, bias=True, batch_first=False,
    dropout=0.0, bidirectional=False, device, dtype), then
        reset_after: True is torch.nn's (and cuDNN's) GRU; False is Cho et al.'s, with the
            reset gate applied before the recurrent product. Same weights either way. Default True.
        layer_norm: per-gate layer norm, gains ``layer_norm_{ih,hh}_l{k}`` (3H). Default False.
        recurrent_init, engine: as ``rnnkit.LSTM``'s.

    State: ``h`` (num_layers * D, B, H).
    """

    _torch_cls = nn.GRU
    _vf = staticmethod(_VF.gru)
    _cell_attrs = [name for name, _ in _gru_param_shapes(1, 1, True, True)]
    _project, _step = staticmethod(gru_project), staticmethod(gru_step)
    _run_sequence = staticmethod(gru_run_sequence)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        reset_after: bool = True,
        layer_norm: bool = False,
        recurrent_init: str = "uniform",
        engine: str = "auto",
        device=None,
        dtype=None,
    ) -> None:
        _check_layer_args("GRU", input_size, hidden_size, num_layers, dropout)
        super().__init__(
            input_size, hidden_size, num_layers=num_layers, bias=bias, batch_first=batch_first,
            dropout=float(dropout), bidirectional=bidirectional, device=device, dtype=dtype,
        )
        self.reset_after, self.layer_norm, self.recurrent_init = reset_after, layer_norm, recurrent_init
        extras = [(n, s) for n, s in _gru_param_shapes(1, hidden_size, bias, layer_norm) if n not in _STANDARD]
        self._setup(engine, extras, {"reset_after": reset_after})

    def _init_extras(self) -> None:
        for view in self._views():
            _init_gru(view, self.hidden_size, self.recurrent_init, standard_done=True)

    @property
    def is_standard(self) -> bool:
        return self.reset_after and not self.layer_norm

    def extra_repr(self) -> str:
        return super().extra_repr() + ", reset_after=False" * (not self.reset_after) + ", layer_norm=True" * self.layer_norm


class RNN(_Layer, nn.RNN):
    """A deep, optionally bidirectional Elman RNN layer; see ``rnnkit.cells.RNNCell``.

    Args: torch.nn.RNN's (input_size, hidden_size, num_layers=1, nonlinearity="tanh",
    bias=True, batch_first=False, dropout=0.0, bidirectional=False, device, dtype), then
    recurrent_init and engine as ``rnnkit.LSTM``'s.

    State: ``h`` (num_layers * D, B, H).
    """

    _torch_cls = nn.RNN
    _cell_attrs = ["weight_ih", "weight_hh", "bias_ih", "bias_hh"]
    _project, _step = staticmethod(rnn_project), staticmethod(rnn_step)

    def __init__(
        self,
        input_size: int,
        hidden_size: int,
        num_layers: int = 1,
        nonlinearity: str = "tanh",
        bias: bool = True,
        batch_first: bool = False,
        dropout: float = 0.0,
        bidirectional: bool = False,
        recurrent_init: str = "uniform",
        engine: str = "auto",
        device=None,
        dtype=None,
    ) -> None:
        _check_layer_args("RNN", input_size, hidden_size, num_layers, dropout)
        _check_nonlinearity("RNN", nonlinearity)
        super().__init__(
            input_size, hidden_size, num_layers=num_layers, nonlinearity=nonlinearity, bias=bias,
            batch_first=batch_first, dropout=float(dropout), bidirectional=bidirectional, device=device, dtype=dtype,
        )
        self.recurrent_init = recurrent_init
        self._vf = _VF.rnn_tanh if nonlinearity == "tanh" else _VF.rnn_relu
        self._setup(engine, [], {"nonlinearity": nonlinearity})

    def _init_extras(self) -> None:
        if self.recurrent_init == "orthogonal":
            for view in self._views():
                torch.nn.init.orthogonal_(view.weight_hh.data)
        elif self.recurrent_init != "uniform":
            raise ValueError(f"RNN: recurrent_init must be 'uniform' or 'orthogonal', got {self.recurrent_init!r}")


def _check_layer_args(cls: str, input_size, hidden_size, num_layers, dropout, proj_size=0) -> None:
    _check_sizes(cls, input_size, hidden_size, proj_size)
    _check_int(cls, "num_layers", num_layers)
    check_dropout(cls, dropout)


def _torch_kwargs(module) -> dict:
    """torch.nn constructor arguments of a torch.nn or rnnkit layer."""
    kwargs = dict(
        input_size=module.input_size, hidden_size=module.hidden_size, num_layers=module.num_layers,
        bias=module.bias, batch_first=module.batch_first, dropout=module.dropout, bidirectional=module.bidirectional,
    )
    if module.mode == "LSTM":
        kwargs["proj_size"] = module.proj_size
    if module.mode.startswith("RNN_"):
        kwargs["nonlinearity"] = module.nonlinearity
    return kwargs


def _unpack_result(result):
    """_VF returns (output, h) or (output, h, c): the state part."""
    return result[1] if len(result) == 2 else tuple(result[1:])


def _permute(state, index: Tensor | None):
    if index is None:
        return state
    if isinstance(state, Tensor):
        return state.index_select(1, index)
    return tuple(s.index_select(1, index) for s in state)
