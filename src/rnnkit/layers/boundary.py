"""What every recurrent layer does at its public boundary: check the arguments, bring the
input to one padded, time-major, batched form, and give the output back in the caller's form.

Public: the streaming and inspection code outside ``layers`` use the same checks and state
helpers, so that a state or input is accepted (or refused) alike everywhere.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor
from torch.nn.utils.rnn import PackedSequence, pack_padded_sequence, pad_packed_sequence

from ..checks import check_dropout

__all__ = ["Batch", "unpack_input", "pack_output", "check_lengths", "check_dropout", "check_state", "autocast_state",
           "split_states", "stack_states", "where_state", "map_state"]


@dataclass
class Batch:
    """The input as the engines see it."""

    x: Tensor  # (T, B, I), time-major, padded
    lengths: Tensor | None  # (B,) int64 on x's device, or None when every sequence has T steps
    packed: PackedSequence | None  # the caller's input, when it was packed
    unbatched: bool  # the caller gave (T, I)

    def state_in(self, cls: str, state):
        """The caller's state in batched form (unbatched input takes 2-D (L*D, H) states)."""
        if not self.unbatched or state is None:
            return state
        for part in _flatten(state):
            if isinstance(part, Tensor) and part.dim() != 2:
                raise ValueError(f"{cls}: state must be 2-D (num_layers * num_directions, H) for unbatched 2-D x, "
                                 f"got shape {tuple(part.shape)}")
        return map_state(lambda s: s.unsqueeze(1) if isinstance(s, Tensor) else s, state)

    def state_out(self, state):
        return map_state(lambda s: s.squeeze(1), state) if self.unbatched else state


def unpack_input(cls: str, x, lengths, batch_first: bool, input_size: int, like: Tensor | None = None) -> Batch:
    """Check ``x`` and ``lengths`` and return them as a Batch (see ``rnnkit.LSTM.forward``).

    ``like``: a weight of the layer; x must then have its dtype (unless autocast is on, which
    casts inside) and device, or the error names both.
    """
    if isinstance(x, PackedSequence):
        if lengths is not None:
            raise ValueError(f"{cls}: lengths must be None when x is a PackedSequence (it carries them), got a tensor")
        _check_features(cls, x.data, input_size)
        _check_like(cls, x.data, like)
        padded, lens = pad_packed_sequence(x)  # (T, B, I), lengths in the caller's order
        return Batch(padded, lens.to(padded.device), x, unbatched=False)
    if not isinstance(x, Tensor):
        raise TypeError(f"{cls}: x must be a Tensor or PackedSequence, got {type(x).__name__}")
    if x.dim() not in (2, 3):
        raise ValueError(
            f"{cls}: x must be 3-D ({'B, T' if batch_first else 'T, B'}, I) or 2-D (T, I), "
            f"got {x.dim()}-D with shape {tuple(x.shape)}"
        )
    _check_features(cls, x, input_size)
    _check_like(cls, x, like)
    unbatched = x.dim() == 2
    if unbatched:
        if lengths is not None:
            raise ValueError(f"{cls}: lengths needs batched 3-D x, got 2-D x of shape {tuple(x.shape)}")
        x = x.unsqueeze(1)  # (T, 1, I)
    elif batch_first:
        x = x.transpose(0, 1)  # (T, B, I)
    T, B = x.shape[:2]
    if T == 0:
        raise ValueError(f"{cls}: x must have at least one time step, got T=0 (shape {tuple(x.shape)})")
    if lengths is not None:
        lengths = check_lengths(cls, lengths, B, T).to(x.device)
        if B == 0:
            lengths = None  # an empty batch: nothing to mask
    return Batch(x, lengths, None, unbatched)


def pack_output(batch: Batch, out: Tensor, batch_first: bool):
    """out (T, B, F) time-major -> the caller's form (packed like the input, unbatched, batch-first)."""
    if batch.packed is not None:
        order = batch.packed.sorted_indices
        if order is not None:
            out = out.index_select(1, order)
        lengths = batch.lengths.cpu() if order is None else batch.lengths.cpu()[order.cpu()]
        data = pack_padded_sequence(out, lengths, enforce_sorted=True).data
        return PackedSequence(data, batch.packed.batch_sizes, order, batch.packed.unsorted_indices)
    if batch.unbatched:
        return out.squeeze(1)
    return out.transpose(0, 1) if batch_first else out


def check_lengths(cls: str, lengths, batch_size: int, max_steps: int) -> Tensor:
    """lengths: 1-D integers, one per sequence, each in [1, T]. Returns an int64 tensor."""
    if isinstance(lengths, (list, tuple)):
        if not all(isinstance(n, int) and not isinstance(n, bool) for n in lengths):
            raise TypeError(f"{cls}: lengths must be integers, got {lengths!r}")
        lengths = torch.tensor(lengths, dtype=torch.int64)
    if not isinstance(lengths, Tensor):
        raise TypeError(f"{cls}: lengths must be a 1-D integer tensor, got {type(lengths).__name__}")
    if lengths.dtype == torch.bool or lengths.is_floating_point() or lengths.is_complex():
        raise TypeError(f"{cls}: lengths must have an integer dtype, got {lengths.dtype}")
    if lengths.dim() != 1:
        raise ValueError(f"{cls}: lengths must be 1-D (B,), got shape {tuple(lengths.shape)}")
    if lengths.numel() != batch_size:
        raise ValueError(f"{cls}: lengths must have one entry per sequence (B={batch_size}), got {lengths.numel()}")
    if batch_size == 0:
        return lengths.long()
    lo, hi = int(lengths.min()), int(lengths.max())
    if lo < 1 or hi > max_steps:
        raise ValueError(f"{cls}: lengths must lie in [1, T={max_steps}], got values from {lo} to {hi}")
    return lengths.long()


def check_state(cls: str, state, template, names: tuple[str, ...] | None = None) -> None:
    """state must have template's structure, and each part its shape, dtype and device."""
    parts, expected = _flatten(state), _flatten(template)
    if isinstance(template, tuple) and (not isinstance(state, (tuple, list)) or len(parts) != len(expected)):
        what = "(" + ", ".join(names) + ")" if names else f"a tuple of {len(expected)} tensors"
        raise TypeError(f"{cls}: state must be {what}, got {_describe(state)}")
    if isinstance(template, Tensor) and not isinstance(state, Tensor):
        raise TypeError(f"{cls}: state must be a Tensor, got {_describe(state)}")
    for k, (s, e) in enumerate(zip(parts, expected)):
        name = f"state {names[k]}" if names else ("state" if len(parts) == 1 else f"state[{k}]")
        if not isinstance(s, Tensor):
            raise TypeError(f"{cls}: {name} must be a Tensor, got {type(s).__name__}")
        if s.shape != e.shape:
            raise ValueError(f"{cls}: {name} must have shape {tuple(e.shape)}, got {tuple(s.shape)}")
        if s.dtype != e.dtype:
            raise TypeError(f"{cls}: {name} must have dtype {e.dtype} (the input's), got {s.dtype}")
        if s.device != e.device:
            raise ValueError(f"{cls}: {name} must be on {e.device} (the input's device), got {s.device}")


def autocast_state(state, template):
    """Under autocast, a state in another float dtype (a lower-precision state returned by the
    previous call) is cast to the template's; otherwise the state is returned as it is."""
    if not isinstance(template, (Tensor, tuple)) or not torch.is_autocast_enabled(_flatten(template)[0].device.type):
        return state
    if isinstance(state, Tensor) and isinstance(template, Tensor):
        return state.to(template.dtype) if state.is_floating_point() else state
    if isinstance(state, (tuple, list)) and isinstance(template, tuple) and len(state) == len(template):
        return tuple(autocast_state(s, t) for s, t in zip(state, template))
    return state


def where_state(keep: Tensor, new, old):
    """Per-sequence choice between two states (tensors or tuples of tensors of any rank, batch
    first): ``new`` where keep (B, 1) is True, else ``old``; how a sequence past its length keeps
    its state."""
    if isinstance(new, Tensor):
        return torch.where(keep.view(-1, *[1] * (new.dim() - 1)), new, old)
    return tuple(where_state(keep, n, o) for n, o in zip(new, old))


def split_states(state, count: int) -> list:
    """(L*D, B, ...) parts -> one (B, ...) state per cell."""
    if isinstance(state, Tensor):
        return list(state.unbind(0))
    return [tuple(s[k] for s in state) for k in range(count)]


def stack_states(states: list):
    """One state per cell -> (L*D, B, ...) parts, the layer's state."""
    if isinstance(states[0], Tensor):
        return torch.stack(states)
    return tuple(torch.stack(parts) for parts in zip(*states))


def _check_features(cls: str, x: Tensor, input_size: int) -> None:
    if not x.is_floating_point():
        raise TypeError(f"{cls}: x must be a floating-point tensor, got dtype {x.dtype}")
    if x.shape[-1] != input_size:
        raise ValueError(f"{cls}: x must have input_size={input_size} features in its last dim, got {x.shape[-1]}")


def _check_like(cls: str, x: Tensor, like: Tensor | None) -> None:
    """x on the weights' device, in their dtype (autocast casts inside, so it may differ then)."""
    if like is None:
        return
    if x.device != like.device:
        raise ValueError(f"{cls}: x must be on {like.device} (the layer's weights' device), got {x.device}")
    if x.dtype != like.dtype and not torch.is_autocast_enabled(x.device.type):
        raise TypeError(f"{cls}: x must have dtype {like.dtype} (the layer's weights'), got {x.dtype}; "
                        f"convert x with x.to({like.dtype}) or the layer with layer.to({x.dtype})")


def _flatten(state) -> list:
    return list(state) if isinstance(state, (tuple, list)) else [state]


def map_state(fn, state):
    """``fn`` on a state's tensor or on each part of a tuple state."""
    return tuple(fn(s) for s in state) if isinstance(state, (tuple, list)) else fn(state)


def _describe(obj) -> str:
    if isinstance(obj, Tensor):
        return f"a Tensor of shape {tuple(obj.shape)}"
    if isinstance(obj, (tuple, list)):
        return f"a {type(obj).__name__} of {len(obj)}"
    return type(obj).__name__
