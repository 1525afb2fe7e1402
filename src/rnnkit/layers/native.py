"""rnnkit.RNN, rnnkit.LSTM, rnnkit.GRU: torch.nn's layers, plus variants and ``lengths``.

Each class is a subclass of its torch.nn layer, so weights carry torch.nn's names and layout
(``weight_ih_l0``, ``bias_hh_l1_reverse``, ``weight_hr_l0``), ``load_state_dict`` takes a
torch.nn state dict, and the standard configurations run on torch's fused kernels (oneDNN or
the native kernel on CPU, cuDNN on GPU), with ``lengths`` handled by packing. The variants
(peephole, layer norm, GRU ``reset_after=False``) add their weights under the same scheme
(``weight_peephole_l0``, ``layer_norm_ih_l0``, ...), read from the cell's table of weights
(``LSTM_WEIGHTS``), and run on rnnkit's generic engine with the cells' own equations, so a layer
and a stack of cells compute exactly the same thing.

Which engine runs is the backend registry's choice (``rnnkit.layers.backends``): torch's
kernels are registered here as the "torch" backend of kind "layer", declaring the
configurations torch.nn has; everything else goes to ``run_layers`` and its "sequence" backends.
``layer.cell(k, direction)`` gives one layer and direction's weights as a cell of the reference
equations (``BoundCell``), for the inspector, streaming and export.
"""
from __future__ import annotations

import torch
from torch import Tensor, _VF, nn
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from ..cells.base import check_recurrent_init
from ..cells.gru import GRU_KIND, gru_init_
from ..cells.lstm import LSTM_KIND, lstm_init_
from ..cells.rnn import RNN_KIND, check_nonlinearity, rnn_init_
from .backends import ANY, Backend, register, registered
from .boundary import Batch, map_state
from .cell_layer import KindLayer, check_layer_args

__all__ = ["RNN", "LSTM", "GRU", "TORCH_FLAGS"]

_ENGINES = ("auto", "python")


class _Layer(KindLayer):
    """What RNN, LSTM and GRU share; mixed in before the torch.nn class."""

    kind = None  # the cell type (rnnkit.cells.LSTM_KIND, ...): equations, config, table of weights
    _vf = None  # torch's fused function for the standard configuration

    def _setup(self, engine: str, flags: dict) -> None:
        if engine not in _ENGINES:
            raise ValueError(f"{type(self).__name__}: engine must be 'auto' or 'python', got {engine!r}")
        self.engine = engine
        self._flags = flags  # the config fields besides sizes and bias (peephole=..., ...)
        device, dtype = self.weight_ih_l0.device, self.weight_ih_l0.dtype
        D = self._directions()
        for k, suffix in enumerate(self._suffixes()):
            config = self.cell_config(k // D)
            for row in self.kind.table:
                shape = row.shape(config)
                if not row.standard and shape is not None:
                    param = nn.Parameter(torch.empty(shape, device=device, dtype=dtype))
                    self.register_parameter(f"{row.name}{suffix}", param)
        self._ready = True
        self._init_extras()

    def reset_parameters(self) -> None:
        super().reset_parameters()  # torch.nn's init, drawing in torch.nn's RNG order
        if getattr(self, "_ready", False):
            self._init_extras()

    @property
    def is_standard(self) -> bool:
        """True when torch.nn has this configuration (and so a fused kernel for it)."""
        return any(b.supports(self.cell_config()) for b in registered("layer", self.kind.name) if b.name == "torch")

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
        engine: "auto" lets the "layer" backends (torch's fused kernels, for the configurations
            torch.nn has) run the whole stack, and otherwise rnnkit's engine; "python" always
            uses rnnkit's engine (a "sequence" backend where one supports the configuration;
            inside ``rnnkit.layers.backends.only()`` the reference step loop, which calls the
            cell's ``step`` at every time step, e.g. to look at gates).

    State: ``(h, c)``, h (num_layers * D, B, proj_size or H), c (num_layers * D, B, H).

    Example:
        >>> lstm = LSTM(4, 8, num_layers=2, bidirectional=True, peephole=True)
        >>> y, (h, c) = lstm(torch.randn(6, 3, 4), lengths=torch.tensor([6, 1, 3]))
        >>> tuple(y.shape), tuple(h.shape)
        ((6, 3, 16), (4, 3, 8))
    """

    _torch_cls = nn.LSTM
    _vf = staticmethod(_VF.lstm)
    kind = LSTM_KIND

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
        check_layer_args("LSTM", input_size, hidden_size, num_layers, dropout, proj_size, bias=bias,
                          batch_first=batch_first, bidirectional=bidirectional, peephole=peephole, layer_norm=layer_norm)
        check_recurrent_init("LSTM", recurrent_init)
        super().__init__(
            input_size, hidden_size, num_layers=num_layers, bias=bias, batch_first=batch_first,
            dropout=float(dropout), bidirectional=bidirectional, proj_size=proj_size, device=device, dtype=dtype,
        )
        self.peephole, self.layer_norm = peephole, layer_norm
        self.forget_bias, self.recurrent_init = forget_bias, recurrent_init
        self._setup(engine, {"proj_size": proj_size, "peephole": peephole, "layer_norm": layer_norm})

    def _init_extras(self) -> None:
        for cell in self.bound_cells():
            lstm_init_(cell.weights(), cell.config, self.forget_bias, self.recurrent_init, skip_standard=True)

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
    kind = GRU_KIND

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
        check_layer_args("GRU", input_size, hidden_size, num_layers, dropout, bias=bias, batch_first=batch_first,
                          bidirectional=bidirectional, reset_after=reset_after, layer_norm=layer_norm)
        check_recurrent_init("GRU", recurrent_init)
        super().__init__(
            input_size, hidden_size, num_layers=num_layers, bias=bias, batch_first=batch_first,
            dropout=float(dropout), bidirectional=bidirectional, device=device, dtype=dtype,
        )
        self.reset_after, self.layer_norm, self.recurrent_init = reset_after, layer_norm, recurrent_init
        self._setup(engine, {"reset_after": reset_after, "layer_norm": layer_norm})

    def _init_extras(self) -> None:
        for cell in self.bound_cells():
            gru_init_(cell.weights(), cell.config, self.recurrent_init, skip_standard=True)

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
    kind = RNN_KIND

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
        check_layer_args("RNN", input_size, hidden_size, num_layers, dropout, bias=bias, batch_first=batch_first,
                          bidirectional=bidirectional)
        check_nonlinearity("RNN", nonlinearity)
        check_recurrent_init("RNN", recurrent_init)
        super().__init__(
            input_size, hidden_size, num_layers=num_layers, nonlinearity=nonlinearity, bias=bias,
            batch_first=batch_first, dropout=float(dropout), bidirectional=bidirectional, device=device, dtype=dtype,
        )
        self.recurrent_init = recurrent_init
        self._vf = _VF.rnn_tanh if nonlinearity == "tanh" else _VF.rnn_relu
        self._setup(engine, {"nonlinearity": nonlinearity})

    def _init_extras(self) -> None:
        for cell in self.bound_cells():
            rnn_init_(cell.weights(), cell.config, self.recurrent_init, skip_standard=True)


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


# -- torch's fused kernels, registered as the "layer" backend "torch" ---------------------------

TORCH_FLAGS = {  # the configurations torch.nn's own layers compute
    "lstm": {"bias": ANY, "proj_size": ANY, "peephole": (False,), "layer_norm": (False,)},
    "gru": {"bias": ANY, "reset_after": (True,), "layer_norm": (False,)},
    "rnn": {"bias": ANY, "nonlinearity": ("tanh", "relu")},
}


def _onednn_lacks_bf16(x: Tensor) -> bool:
    """Whether torch's CPU kernel would fail here: under CPU autocast to bfloat16, oneDNN's RNN
    primitives need a CPU with bfloat16 support (AVX-512); on others (AVX2 only) torch raises
    "could not create a primitive descriptor for the LSTM forward propagation primitive"."""
    return (x.device.type == "cpu" and torch.is_autocast_enabled("cpu")
            and torch.get_autocast_dtype("cpu") == torch.bfloat16 and not torch.ops.mkldnn._is_mkldnn_bf16_supported())


def _torch_run(layer, batch, state):
    """torch's fused kernel; with lengths through a PackedSequence, as torch.nn wants it. Under
    CPU autocast to bfloat16 on a CPU without bfloat16 RNN kernels: computed in float32, its
    output and state handed back in bfloat16, as autocast would have them."""
    if _onednn_lacks_bf16(batch.x):
        with torch.autocast("cpu", enabled=False):
            floats = Batch(batch.x.float(), batch.lengths, _cast(batch.packed, torch.float32), batch.unbatched)
            out, final = _fused_run(layer, floats, _cast(state, torch.float32))
        return _cast(out, torch.bfloat16), _cast(final, torch.bfloat16)
    return _fused_run(layer, batch, state)


def _cast(value, dtype: torch.dtype):
    """A state (a tensor or a tuple of them), a PackedSequence or None, in ``dtype``."""
    if isinstance(value, PackedSequence):
        return value._replace(data=value.data.to(dtype))
    return None if value is None else map_state(lambda t: t.to(dtype), value)


def _fused_run(layer, batch, state):
    if hasattr(layer, "_update_flat_weights"):
        layer._update_flat_weights()
    args = (layer._flat_weights, layer.bias, layer.num_layers, layer.dropout, layer.training, layer.bidirectional)
    if batch.lengths is None:
        result = layer._vf(batch.x, state, *args, False)
        return result[0], _unpack_result(result)
    packed = batch.packed or pack_padded_sequence(batch.x, batch.lengths.cpu(), enforce_sorted=False)
    state = _permute(state, packed.sorted_indices)
    result = layer._vf(packed.data, packed.batch_sizes, state, *args)
    final = _permute(_unpack_result(result), packed.unsorted_indices)
    out = PackedSequence(result[0], packed.batch_sizes, packed.sorted_indices, packed.unsorted_indices)
    if batch.packed is not None:
        return out, final
    return pad_packed_sequence(out, total_length=batch.x.shape[0])[0], final


for _cell, _flags in TORCH_FLAGS.items():
    register(Backend("torch", "layer", _cell, _flags, _torch_run, doc="torch's fused RNN kernels (oneDNN, cuDNN)"))
