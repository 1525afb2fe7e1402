"""The mLSTM over a whole sequence in its chunkwise parallel form, in plain torch operations.

The mLSTM's gates read only ``x_t`` (``rnnkit.cells.mlstm``), so its matrix memory is a linear
recurrence once the projection is known. Time is cut into chunks of L steps; within a chunk,
with ``F_t`` the cumulative sum of ``log f`` since the chunk began and ``(C0, n0, m0)`` the
state carried in (stored scaled by ``exp(-m0)`` as the step stores it)::

    m_t   = F_t + max(m0, max_{s<=t} (i~_s - F_s))          # = the step's max(m_tm1 + log f_t, i~_t), unrolled
    D_ts  = exp(F_t - F_s + i~_s - m_t)   (s <= t, else 0)  # decay from step s to step t, <= 1
    b_t   = exp(F_t + m0 - m_t)                              # decay of the carried state, <= 1
    C_t q_t   = sum_s D_ts (k_s . q_t) v_s + b_t C0 q_t      # intra-chunk + inter-chunk
    n_t . q_t = sum_s D_ts (k_s . q_t)     + b_t n0 . q_t
    h_t = o_t * C_t q_t / max(|n_t . q_t|, exp(-m_t))

and the state leaving the chunk is ``C_L = b_L C0 + sum_s D_Ls v_s k_s^T`` (likewise ``n_L``).
All chunks' products run at once (batched over batch, heads and chunks); the only loops are
over chunks, on the small carried state. Autograd gives the backward.

Masked steps (past a sequence's length) become ``log f = 0, i~ = -inf``: they leave
``C, n, m`` as they are, their output is 0 and the final ``h`` is the one of the last valid
step, as the engine's loop over ``mlstm_step`` does.
"""
from __future__ import annotations

from typing import Optional, Tuple

import torch
import torch.nn.functional as F
from torch import Tensor

from ..cells.mlstm import MLSTMConfig, MLSTMWeights, check_heads, mlstm_project, mlstm_split
from ..checks import check_size

__all__ = ["mlstm_sequence"]

MLSTMState = Tuple[Tensor, Tensor, Tensor, Tensor]  # (h, C, n, m)


def mlstm_sequence(config: MLSTMConfig, w: MLSTMWeights, x: Tensor, state0: MLSTMState,
                   mask: Optional[Tensor] = None, chunk_size: int = 64) -> Tuple[Tensor, MLSTMState]:
    """Run the mLSTM over time, chunkwise: the same result as looping ``mlstm_step``.

    Args:
        config: the cell's ``MLSTMConfig`` (its ``num_heads`` is used).
        w: the cell's ``MLSTMWeights``.
        x: (T, B, I) time-major input.
        state0: ``(h, C, n, m)``: (B, H), (B, NH, d, d), (B, NH, d), (B, NH).
        mask: (T, B) bool, False at the steps a sequence does not have (past its length);
            None: every step counts.
        chunk_size: steps per chunk (L). Default 64.

    Returns:
        output (T, B, H) (0 at masked steps) and the final state ``(h, C, n, m)``.
    """
    _check(config, x, state0, mask, chunk_size)
    T, B, _ = x.shape
    H, NH = config.hidden_size, config.num_heads
    d = H // NH
    if T == 0:
        return x.new_zeros(0, B, H), tuple(state0)
    h0, C_in, n_in, m_in = state0
    L = min(chunk_size, T)  # steps per chunk
    NC = -(-T // L)  # chunks
    pad = NC * L - T
    if mask is None:
        mask = torch.ones(T, B, dtype=torch.bool, device=x.device)
    valid = F.pad(mask, (0, 0, 0, pad))  # (NC*L, B): padded steps are masked steps

    xp = mlstm_project(w, x)  # (T, B, G): the one matrix product
    xp = F.pad(xp, (0, 0, 0, 0, 0, pad))  # (NC*L, B, G)
    q, k, v, i_tilde, f_tilde, o_tilde = mlstm_split(xp, NH)  # (NC*L, B, NH, d) x3, (NC*L, B, NH) x2, (NC*L, B, H)
    # (NC*L, B, NH, ...) -> (B, NH, NC, L, ...): batch and heads lead, chunks next, steps last
    q, k, v = (_chunks(t.permute(1, 2, 0, 3), NC, L) for t in (q, k, v))  # (B, NH, NC, L, d)
    keep = valid.t().unsqueeze(1)  # (B, 1, NC*L)
    log_f = torch.where(keep, F.logsigmoid(f_tilde).permute(1, 2, 0), 0.0)  # (B, NH, NC*L): log 1 = 0 at masked steps
    i_tilde = torch.where(keep, i_tilde.permute(1, 2, 0), float("-inf"))  # exp(-inf) = 0: nothing learnt
    log_f, i_tilde = _chunks(log_f, NC, L), _chunks(i_tilde, NC, L)  # (B, NH, NC, L)

    # 1. the stabiliser: F_t + max(m0, cummax(i~ - F)); m0 carried over the chunks (scalars)
    F_cum = log_f.cumsum(-1)  # (B, NH, NC, L)
    best = (i_tilde - F_cum).cummax(-1).values  # (B, NH, NC, L)
    m0_list, m_c = [], m_in  # m_c (B, NH): the stabiliser entering chunk c
    for c in range(NC):
        m0_list.append(m_c)
        m_c = F_cum[:, :, c, -1] + torch.maximum(m_c, best[:, :, c, -1])
    m0 = torch.stack(m0_list, -1)  # (B, NH, NC)
    m = F_cum + torch.maximum(m0.unsqueeze(-1), best)  # (B, NH, NC, L)

    # 2. within each chunk: the decay matrix D (t, s) and the attention-like products
    log_D = F_cum.unsqueeze(-1) - F_cum.unsqueeze(-2) + i_tilde.unsqueeze(-2) - m.unsqueeze(-1)  # (B, NH, NC, L, L)
    causal = torch.ones(L, L, dtype=torch.bool, device=x.device).tril()
    D = torch.exp(log_D.masked_fill(~causal, float("-inf")))  # 0 above the diagonal (s > t)
    S = (q @ k.transpose(-1, -2)) * D  # (B, NH, NC, L, L): D_ts (k_s . q_t)
    numerator = S @ v  # (B, NH, NC, L, d)
    qn = S.sum(-1)  # (B, NH, NC, L)

    # 3. across chunks: the state each chunk starts from (C0, n0), carried by a loop over chunks
    D_last = D[..., -1, :].unsqueeze(-1)  # (B, NH, NC, L, 1): decay from each step to the chunk's end
    C_add = (v * D_last).transpose(-1, -2) @ k  # (B, NH, NC, d, d): sum_s D_Ls v_s k_s^T
    n_add = (k * D_last).sum(-2)  # (B, NH, NC, d)
    b = torch.exp(F_cum + (m0.unsqueeze(-1) - m))  # (B, NH, NC, L): decay of the carried state
    C0_list, n0_list, C_c, n_c = [], [], C_in, n_in
    for c in range(NC):
        C0_list.append(C_c)
        n0_list.append(n_c)
        b_end = b[:, :, c, -1]  # (B, NH)
        C_c = b_end[..., None, None] * C_c + C_add[:, :, c]
        n_c = b_end[..., None] * n_c + n_add[:, :, c]
    C0 = torch.stack(C0_list, 2)  # (B, NH, NC, d, d)
    n0 = torch.stack(n0_list, 2)  # (B, NH, NC, d)
    numerator = numerator + b.unsqueeze(-1) * (q @ C0.transpose(-1, -2))  # + b_t C0 q_t
    qn = qn + b * (q * n0.unsqueeze(-2)).sum(-1)  # + b_t n0 . q_t

    # 4. the output: h = o * C q / max(|n . q|, exp(-m)), heads concatenated
    h_tilde = numerator / torch.maximum(qn.abs(), torch.exp(-m)).unsqueeze(-1)  # (B, NH, NC, L, d)
    h_tilde = h_tilde.reshape(B, NH, NC * L, d).permute(2, 0, 1, 3).reshape(NC * L, B, H)  # (NC*L, B, H)
    h = torch.sigmoid(o_tilde) * h_tilde  # (NC*L, B, H)
    out = torch.where(valid.unsqueeze(-1), h, 0.0)[:T]  # (T, B, H)
    return out, (_last_valid_h(h[:T], mask, h0), C_c, n_c, m_c)


def _chunks(t: Tensor, num_chunks: int, chunk_size: int) -> Tensor:
    """(B, NH, NC*L, ...) -> (B, NH, NC, L, ...)."""
    return t.reshape(t.shape[:2] + (num_chunks, chunk_size) + t.shape[3:])


def _last_valid_h(h: Tensor, mask: Tensor, h0: Tensor) -> Tensor:
    """The output of each sequence's last valid step (h0 where it has none): h (T, B, H) -> (B, H)."""
    T = h.shape[0]
    steps = torch.arange(1, T + 1, device=h.device).unsqueeze(1)  # (T, 1)
    count = (steps * mask).amax(0)  # (B,): last valid step + 1, 0 if none
    index = (count - 1).clamp(min=0)  # (B,)
    last = h.gather(0, index.view(1, -1, 1).expand(1, -1, h.shape[-1])).squeeze(0)  # (B, H)
    return torch.where((count > 0).unsqueeze(-1), last, h0)


def _check(config: MLSTMConfig, x: Tensor, state0, mask: Optional[Tensor], chunk_size: int) -> None:
    owner = "mlstm_sequence"
    check_size(owner, "chunk_size", chunk_size)
    check_heads(owner, config.hidden_size, config.num_heads)
    if x.dim() != 3 or x.shape[-1] != config.input_size:
        raise ValueError(f"{owner}: x must be (T, B, {config.input_size}), got {tuple(x.shape)}")
    T, B, _ = x.shape
    H, NH = config.hidden_size, config.num_heads
    d = H // NH
    shapes = ((B, H), (B, NH, d, d), (B, NH, d), (B, NH))
    if not isinstance(state0, (tuple, list)) or len(state0) != 4:
        raise TypeError(f"{owner}: state0 must be a tuple (h, C, n, m), got {type(state0).__name__}")
    for name, part, shape in zip("hCnm", state0, shapes):
        if tuple(part.shape) != shape:
            raise ValueError(f"{owner}: state0 {name} must have shape {shape}, got {tuple(part.shape)}")
    if mask is not None and (mask.dtype != torch.bool or tuple(mask.shape) != (T, B)):
        raise ValueError(f"{owner}: mask must be a bool tensor of shape {(T, B)}, got {mask.dtype} "
                         f"{tuple(mask.shape)}")
