# long-file: the LSTM's and the GRU's step kernels (forward and backward) in Triton, one module as the C++ ones
"""The fused step kernels on CUDA: ``csrc/lstm.cpp`` and ``csrc/gru.cpp`` written in Triton.

The whole-sequence BPTT of ``lstm_bptt`` and ``gru_bptt`` runs each step as one matrix product
(cuBLAS, through torch) and one call of a step kernel that does the step's element-wise work
(gates, per-gate layer norms, peepholes, the layer norm of c, masks; forward and backward). On
the CPU those kernels are the compiled C++ of ``rnnkit.kernels.cpu``; on CUDA they are these,
with the same names, the same buffers (the dict the Python side allocates, ``lstm_bptt`` and
``gru_bptt``) and the same arithmetic, one program per batch row with the row's hidden units
in one block: ``lstm_forward``, ``lstm_backward``; ``gru_forward``, ``gru_backward`` (reset
after); ``gru_forward_a``, ``gru_forward_b``, ``gru_backward_b``, ``gru_backward_c`` (reset
before, around the second product).

They apply (``applies``) to float32 and float64 CUDA tensors where Triton imports and the
kernels pass a check at first use; otherwise the sequence functions run on torch operations.
The check (``_check``, once per process and device type) runs a tiny LSTM and GRU sequence of
every form with every option on, and again with every option off (both sides of every
compile-time branch), forward and backward, through these kernels and through the torch
operations, and compares outputs and gradients: a kernel that fails to compile on a GPU or
computes otherwise is never used (one warning says why). It costs the kernels' compilation
once (Triton caches the binaries on disk).

``TRITON_INTERPRET=1`` runs them on CPU tensors through Triton's interpreter:
``tests/kernels/test_triton_steps.py`` pins them to the reference that way on a machine without
a GPU; ``tests/test_cuda.py`` and ``tests/layers/test_backends.py`` do on a GPU.
"""
from __future__ import annotations

import logging
import os
from typing import Callable

import torch
from torch import Tensor

from ..cells.base import LN_EPS

log = logging.getLogger(__name__)

try:
    import triton
    import triton.language as tl
except ImportError:  # no Triton: the sequence functions run on torch operations
    triton = None

__all__ = ["applies", "interpreted", "StepKernels"]


def interpreted() -> bool:
    """Whether Triton runs its kernels in its interpreter (``TRITON_INTERPRET=1``): on CPU tensors."""
    return triton is not None and os.environ.get("TRITON_INTERPRET") == "1"


_checked: dict[str, bool] = {}  # device type -> the kernels passed their first-use check


def applies(like: Tensor) -> bool:
    """Whether these kernels run for tensors like ``like``: CUDA (or the interpreter on the CPU),
    float32/64, Triton importable, the first-use check passed."""
    device_ok = like.device.type == "cuda" or (like.device.type == "cpu" and interpreted())
    return device_ok and like.dtype in (torch.float32, torch.float64) and _usable(like.device.type)


@torch.compiler.assume_constant_result
def _usable(device_type: str) -> bool:
    """Triton imports and the kernels pass ``_check`` on ``device_type`` (run once; ``torch.compile``
    calls this outside the trace and keeps the answer)."""
    if triton is None:
        return False
    if device_type not in _checked:
        _checked[device_type] = True  # while the check runs, the kernels apply
        _checked[device_type] = _check(device_type)
    return _checked[device_type]


def _check(device_type: str) -> bool:
    """Every kernel, every compile-time branch: a tiny sequence through the kernels and through
    torch operations, outputs and gradients compared (see the module docstring). With gradients
    and in float32 whatever mode the first call came in (no_grad, inference mode, autocast)."""
    try:
        with torch.inference_mode(False), torch.enable_grad(), torch.autocast(device_type, enabled=False):
            _check_all(device_type)
    except Exception as error:  # a kernel that does not compile or computes otherwise is not used
        log.warning("rnnkit: the Triton step kernels failed their first-use check on %s (%s: %s); the "
                    "LSTM and GRU variants run on torch operations there", device_type, type(error).__name__,
                    str(error).splitlines()[0] if str(error) else "")
        return False
    return True


def _check_all(device_type: str) -> None:
    from .gru_bptt import gru_kernel_sequence, gru_sequence  # they import this module
    from .lstm_bptt import lstm_kernel_sequence, lstm_sequence

    T, B, H = 3, 2, 4
    gen = torch.Generator().manual_seed(0)

    def rand(*shape):
        return (torch.rand(shape, generator=gen) - 0.5).to(device_type).requires_grad_()

    mask = torch.tensor([[True, True], [True, False], [True, False]], device=device_type)
    for on in (True, False):  # every option on (peepholes, norms, bias, mask), then every option off
        def some(*shape):
            return rand(*shape) if on else None
        m = mask if on else None
        _compare(lstm_kernel_sequence, lstm_sequence, rand(T, B, 4 * H), rand(B, H), rand(B, H),
                 rand(4 * H, H), some(3 * H), m, some(4 * H), some(H), some(H))
        for reset_after in (True, False):
            _compare(gru_kernel_sequence, gru_sequence, rand(T, B, 3 * H), rand(B, H), rand(3 * H, H),
                     some(3 * H), m, reset_after, some(3 * H))


def _compare(kernel_fn, reference_fn, *args) -> None:
    leaves = [a for a in args if isinstance(a, Tensor) and a.requires_grad]
    results = []
    for fn in (kernel_fn, reference_fn):
        outputs = fn(*args)
        weights = torch.Generator().manual_seed(1)
        loss = sum((o * torch.rand(o.shape, generator=weights).to(o.device)).sum() for o in outputs)
        results.append([o.detach() for o in outputs] + list(torch.autograd.grad(loss, leaves, allow_unused=True)))
    for got, expected in zip(*results):
        if (got is None) != (expected is None):
            raise ArithmeticError(f"{kernel_fn.__name__}: a gradient is missing on one side")
        if got is not None and not torch.allclose(got, expected, atol=1e-4, rtol=1e-4):
            raise ArithmeticError(f"{kernel_fn.__name__} differs from {reference_fn.__name__} by "
                                  f"{(got - expected).abs().max().item():.3g}")


class StepKernels:
    """The step kernels over one sequence's buffers: ``StepKernels(cell, buffers, T, B, H)("name")``
    is a function of the step t that runs the kernel ``name`` (as ``lib.name_f32(ref, t)`` does for
    the C++ kernels). ``buffers``: name -> tensor or None (absent), the names of ``csrc/common.h``."""

    def __init__(self, buffers: dict[str, Tensor | None], T: int, B: int, H: int) -> None:
        self.buffers, self.T, self.B, self.H = buffers, T, B, H
        present = next(v for v in buffers.values() if v is not None)
        self.dummy = present.new_empty(1)  # passed for an absent buffer (never read: its flag is off)
        self.block = triton.next_power_of_2(H)
        self.warps = 4 if self.block <= 512 else 8

    def __call__(self, name: str) -> Callable[[int], None]:
        kernel, params, flags = _KERNELS[name]
        args = [self.dummy if self.buffers.get(p) is None else self.buffers[p] for p in params]
        consts = {flag: self.buffers.get(buffer) is not None for flag, buffer in flags.items()}
        grid, B, H, block, warps = (self.B,), self.B, self.H, self.block, self.warps

        def step(t: int) -> None:
            kernel[grid](t, B, H, LN_EPS, *args, **consts, BLOCK=block, num_warps=warps)
        return step


if triton is not None:

    @triton.jit
    def _sigmoid(x):
        return 1.0 / (1.0 + tl.exp(-x))

    @triton.jit
    def _tanh(x):
        e = tl.exp(-2.0 * tl.abs(x))
        y = (1.0 - e) / (1.0 + e)
        return tl.where(x < 0, -y, y)

    @triton.jit
    def _normalise(x, m, H, eps):
        """(x - mean) * rstd over the first H of the block (0 beyond), and rstd."""
        mean = tl.sum(tl.where(m, x, 0.0), 0) / H
        d = tl.where(m, x - mean, 0.0)
        rstd = 1.0 / tl.sqrt(tl.sum(d * d, 0) / H + eps)
        return d * rstd, mean, rstd

    @triton.jit
    def _norm_backward(dxhat, xhat, rstd, m, H):
        """dx of y = (x - mean) * rstd given dy = dxhat and xhat (``norm_backward`` in common.h)."""
        dxhat = tl.where(m, dxhat, 0.0)
        m1 = tl.sum(dxhat, 0) / H
        m2 = tl.sum(dxhat * xhat, 0) / H
        return rstd * (dxhat - m1 - xhat * m2)

    @triton.jit
    def _h_prev(t, b, B, H, j, m, hs, h0):
        if t > 0:
            hp = tl.load(hs + ((t - 1) * B + b).to(tl.int64) * H + j, mask=m, other=0.0)
        else:
            hp = tl.load(h0 + b * H + j, mask=m, other=0.0)
        return hp

    @triton.jit
    def _d_prev(t, b, B, H, j, m, d_out):
        """carry starts as d_out[t - 1] (0 at t = 0)."""
        if t > 0:
            cp = tl.load(d_out + ((t - 1) * B + b).to(tl.int64) * H + j, mask=m, other=0.0)
        else:
            cp = tl.zeros_like(j).to(d_out.dtype.element_ty)
        return cp

    @triton.jit
    def _keep(t, b, B, keep, HAS_KEEP: tl.constexpr):
        """Whether row b's sequence still runs at step t (a scalar bool)."""
        if HAS_KEEP:
            k = tl.load(keep + (t * B + b).to(tl.int64)) != 0
        else:
            k = b >= 0  # true, as a value of the same kind
        return k

    # -- LSTM (csrc/lstm.cpp) -------------------------------------------------------------------

    @triton.jit(do_not_specialize=["t"])
    def _lstm_forward(t, B, H, eps, gx, acts, z, rstd_hh, gain_hh, peep, ln_w, ln_b, stats_c, h0, hs, cs, tcs,
                      keep, NORM_HH: tl.constexpr, PEEP: tl.constexpr, LN_C: tl.constexpr, LN_B: tl.constexpr,
                      HAS_KEEP: tl.constexpr, BLOCK: tl.constexpr):
        b = tl.program_id(0)
        j = tl.arange(0, BLOCK)
        m = j < H
        row = (t * B + b).to(tl.int64)
        G = 4 * H
        ga = acts + row * G + j  # the pre-activations (product + gx, or written here), then the gates
        kept = _keep(t, b, B, keep, HAS_KEEP)
        if NORM_HH:  # pre = LN(z) * gain + gx per gate, z = W_hh h_tm1 (kept normalised for backward)
            gz, gg = z + row * G + j, gx + row * G + j
            xi, _, ri = _normalise(tl.load(gz, mask=m, other=0.0), m, H, eps)
            xf, _, rf = _normalise(tl.load(gz + H, mask=m, other=0.0), m, H, eps)
            xg, _, rg = _normalise(tl.load(gz + 2 * H, mask=m, other=0.0), m, H, eps)
            xo, _, ro = _normalise(tl.load(gz + 3 * H, mask=m, other=0.0), m, H, eps)
            pi = xi * tl.load(gain_hh + j, mask=m, other=0.0) + tl.load(gg, mask=m, other=0.0)
            pf = xf * tl.load(gain_hh + H + j, mask=m, other=0.0) + tl.load(gg + H, mask=m, other=0.0)
            pg = xg * tl.load(gain_hh + 2 * H + j, mask=m, other=0.0) + tl.load(gg + 2 * H, mask=m, other=0.0)
            po = xo * tl.load(gain_hh + 3 * H + j, mask=m, other=0.0) + tl.load(gg + 3 * H, mask=m, other=0.0)
            tl.store(gz, tl.where(kept, xi, 0.0), mask=m)
            tl.store(gz + H, tl.where(kept, xf, 0.0), mask=m)
            tl.store(gz + 2 * H, tl.where(kept, xg, 0.0), mask=m)
            tl.store(gz + 3 * H, tl.where(kept, xo, 0.0), mask=m)
            rs = rstd_hh + row * 4
            tl.store(rs, tl.where(kept, ri, 0.0))
            tl.store(rs + 1, tl.where(kept, rf, 0.0))
            tl.store(rs + 2, tl.where(kept, rg, 0.0))
            tl.store(rs + 3, tl.where(kept, ro, 0.0))
        else:
            pi = tl.load(ga, mask=m, other=0.0)
            pf = tl.load(ga + H, mask=m, other=0.0)
            pg = tl.load(ga + 2 * H, mask=m, other=0.0)
            po = tl.load(ga + 3 * H, mask=m, other=0.0)
        cp = tl.load(cs + row * H + j, mask=m, other=0.0)
        if PEEP:  # i, f look at c_tm1
            pi += tl.load(peep + j, mask=m, other=0.0) * cp
            pf += tl.load(peep + H + j, mask=m, other=0.0) * cp
        i = _sigmoid(pi)
        f = _sigmoid(pf)
        g = _tanh(pg)
        cn = f * cp + i * g
        if PEEP:  # o looks at the new c
            po += tl.load(peep + 2 * H + j, mask=m, other=0.0) * cn
        o = _sigmoid(po)
        if LN_C:
            xc, mean, rstd = _normalise(cn, m, H, eps)
            y = xc * tl.load(ln_w + j, mask=m, other=0.0)
            if LN_B:
                y += tl.load(ln_b + j, mask=m, other=0.0)
            tc = _tanh(y)
            tl.store(stats_c + row * 2, tl.where(kept, mean, 0.0))
            tl.store(stats_c + row * 2 + 1, tl.where(kept, rstd, 0.0))
        else:
            tc = _tanh(cn)
        h = o * tc
        hp = _h_prev(t, b, B, H, j, m, hs, h0)
        tl.store(ga, tl.where(kept, i, 0.0), mask=m)
        tl.store(ga + H, tl.where(kept, f, 0.0), mask=m)
        tl.store(ga + 2 * H, tl.where(kept, g, 0.0), mask=m)
        tl.store(ga + 3 * H, tl.where(kept, o, 0.0), mask=m)
        tl.store(cs + (row + B) * H + j, tl.where(kept, cn, cp), mask=m)  # ended: the state passes
        tl.store(tcs + row * H + j, tl.where(kept, tc, 0.0), mask=m)
        tl.store(hs + row * H + j, tl.where(kept, h, hp), mask=m)

    @triton.jit(do_not_specialize=["t"])
    def _lstm_backward(t, B, H, eps, acts, z, rstd_hh, gain_hh, peep, ln_w, stats_c, cs, tcs, keep, dh, dc,
                       d_out, carry, dG, dZ, d_cout, NORM_HH: tl.constexpr, PEEP: tl.constexpr,
                       LN_C: tl.constexpr, HAS_KEEP: tl.constexpr, BLOCK: tl.constexpr):
        b = tl.program_id(0)
        j = tl.arange(0, BLOCK)
        m = j < H
        row = (t * B + b).to(tl.int64)
        G = 4 * H
        kept = _keep(t, b, B, keep, HAS_KEEP)
        dhb = tl.load(dh + b * H + j, mask=m, other=0.0)
        dcb = tl.load(dc + b * H + j, mask=m, other=0.0)
        cry = _d_prev(t, b, B, H, j, m, d_out)
        ga = acts + row * G + j
        i = tl.load(ga, mask=m, other=0.0)
        f = tl.load(ga + H, mask=m, other=0.0)
        g = tl.load(ga + 2 * H, mask=m, other=0.0)
        o = tl.load(ga + 3 * H, mask=m, other=0.0)
        cp = tl.load(cs + row * H + j, mask=m, other=0.0)
        tc = tl.load(tcs + row * H + j, mask=m, other=0.0)
        d_tc = dhb * o * (1.0 - tc * tc)  # the gradient of c (or of LN(c)) through h = o tanh(.)
        if LN_C:  # through LN(c)
            cn = tl.load(cs + (row + B) * H + j, mask=m, other=0.0)
            mean = tl.load(stats_c + row * 2)
            rstd = tl.load(stats_c + row * 2 + 1)
            xhat = tl.where(m, (cn - mean) * rstd, 0.0)
            tl.store(d_cout + row * H + j, tl.where(kept, d_tc, 0.0), mask=m)
            d_tc = _norm_backward(d_tc * tl.load(ln_w + j, mask=m, other=0.0), xhat, rstd, m, H)
        dGo = dhb * tc * o * (1.0 - o)
        dct = dcb + d_tc
        if PEEP:
            dct += dGo * tl.load(peep + 2 * H + j, mask=m, other=0.0)
        dGi = dct * g * i * (1.0 - i)
        dGf = dct * cp * f * (1.0 - f)
        dGg = dct * i * (1.0 - g * g)
        dcp = dct * f
        if PEEP:
            dcp += dGi * tl.load(peep + j, mask=m, other=0.0) + dGf * tl.load(peep + H + j, mask=m, other=0.0)
        tl.store(dc + b * H + j, tl.where(kept, dcp, dcb), mask=m)  # ended: dc passes through
        tl.store(carry + b * H + j, tl.where(kept, cry, cry + dhb), mask=m)  # ... and dh
        gd = dG + row * G + j
        tl.store(gd, tl.where(kept, dGi, 0.0), mask=m)
        tl.store(gd + H, tl.where(kept, dGf, 0.0), mask=m)
        tl.store(gd + 2 * H, tl.where(kept, dGg, 0.0), mask=m)
        tl.store(gd + 3 * H, tl.where(kept, dGo, 0.0), mask=m)
        if NORM_HH:  # through pre = LN(z) * gain + gx, per gate
            gz, gdz, rs = z + row * G + j, dZ + row * G + j, rstd_hh + row * 4
            dzi = _norm_backward(dGi * tl.load(gain_hh + j, mask=m, other=0.0), tl.load(gz, mask=m, other=0.0),
                                 tl.load(rs), m, H)
            dzf = _norm_backward(dGf * tl.load(gain_hh + H + j, mask=m, other=0.0),
                                 tl.load(gz + H, mask=m, other=0.0), tl.load(rs + 1), m, H)
            dzg = _norm_backward(dGg * tl.load(gain_hh + 2 * H + j, mask=m, other=0.0),
                                 tl.load(gz + 2 * H, mask=m, other=0.0), tl.load(rs + 2), m, H)
            dzo = _norm_backward(dGo * tl.load(gain_hh + 3 * H + j, mask=m, other=0.0),
                                 tl.load(gz + 3 * H, mask=m, other=0.0), tl.load(rs + 3), m, H)
            tl.store(gdz, tl.where(kept, dzi, 0.0), mask=m)
            tl.store(gdz + H, tl.where(kept, dzf, 0.0), mask=m)
            tl.store(gdz + 2 * H, tl.where(kept, dzg, 0.0), mask=m)
            tl.store(gdz + 3 * H, tl.where(kept, dzo, 0.0), mask=m)

    # -- GRU (csrc/gru.cpp) ---------------------------------------------------------------------

    @triton.jit
    def _gate_pre(zk, gain, bias, k, j, m, H, eps, NORM: tl.constexpr, BIAS: tl.constexpr):
        """One gate's recurrent part: LN(z_k) * gain_k (or z_k), + bias_k; and z_k normalised, rstd."""
        if NORM:
            xk, _, rk = _normalise(zk, m, H, eps)
            y = xk * tl.load(gain + k * H + j, mask=m, other=0.0)
        else:
            xk = zk
            rk = 0.0
            y = zk
        if BIAS:
            y += tl.load(bias + k * H + j, mask=m, other=0.0)
        return y, xk, rk

    @triton.jit(do_not_specialize=["t"])
    def _gru_forward(t, B, H, eps, gx, acts, zp, rstd, gain, bias, ghn, h0, hs, keep, NORM: tl.constexpr,
                     BIAS: tl.constexpr, HAS_KEEP: tl.constexpr, BLOCK: tl.constexpr):
        b = tl.program_id(0)
        j = tl.arange(0, BLOCK)
        m = j < H
        row = (t * B + b).to(tl.int64)
        G = 3 * H
        kept = _keep(t, b, B, keep, HAS_KEEP)
        gz, gxb, ga = zp + row * G + j, gx + row * G + j, acts + row * G + j
        yr, xr, rr = _gate_pre(tl.load(gz, mask=m, other=0.0), gain, bias, 0, j, m, H, eps, NORM, BIAS)
        yz, xz, rz = _gate_pre(tl.load(gz + H, mask=m, other=0.0), gain, bias, 1, j, m, H, eps, NORM, BIAS)
        yn, xn, rn = _gate_pre(tl.load(gz + 2 * H, mask=m, other=0.0), gain, bias, 2, j, m, H, eps, NORM, BIAS)
        r = _sigmoid(yr + tl.load(gxb, mask=m, other=0.0))
        zg = _sigmoid(yz + tl.load(gxb + H, mask=m, other=0.0))
        n = _tanh(tl.load(gxb + 2 * H, mask=m, other=0.0) + r * yn)
        hp = _h_prev(t, b, B, H, j, m, hs, h0)
        h = n + zg * (hp - n)
        tl.store(gz, tl.where(kept, xr, 0.0), mask=m)  # normalised with NORM (ended rows: 0)
        tl.store(gz + H, tl.where(kept, xz, 0.0), mask=m)
        tl.store(gz + 2 * H, tl.where(kept, xn, 0.0), mask=m)
        if NORM:
            tl.store(rstd + row * 3, tl.where(kept, rr, 0.0))
            tl.store(rstd + row * 3 + 1, tl.where(kept, rz, 0.0))
            tl.store(rstd + row * 3 + 2, tl.where(kept, rn, 0.0))
        tl.store(ga, tl.where(kept, r, 0.0), mask=m)
        tl.store(ga + H, tl.where(kept, zg, 0.0), mask=m)
        tl.store(ga + 2 * H, tl.where(kept, n, 0.0), mask=m)
        tl.store(ghn + row * H + j, tl.where(kept, yn, 0.0), mask=m)
        tl.store(hs + row * H + j, tl.where(kept, h, hp), mask=m)

    @triton.jit(do_not_specialize=["t"])
    def _gru_backward(t, B, H, eps, acts, zp, rstd, gain, ghn, h0, hs, keep, dh, d_out, carry, dG, dGh, dZ,
                      NORM: tl.constexpr, HAS_KEEP: tl.constexpr, BLOCK: tl.constexpr):
        b = tl.program_id(0)
        j = tl.arange(0, BLOCK)
        m = j < H
        row = (t * B + b).to(tl.int64)
        G = 3 * H
        kept = _keep(t, b, B, keep, HAS_KEEP)
        dhb = tl.load(dh + b * H + j, mask=m, other=0.0)
        hp = _h_prev(t, b, B, H, j, m, hs, h0)
        cry = _d_prev(t, b, B, H, j, m, d_out)
        ga = acts + row * G + j
        r = tl.load(ga, mask=m, other=0.0)
        zg = tl.load(ga + H, mask=m, other=0.0)
        n = tl.load(ga + 2 * H, mask=m, other=0.0)
        gn = tl.load(ghn + row * H + j, mask=m, other=0.0)
        dn = dhb * (1.0 - zg) * (1.0 - n * n)  # the gradient of x_n + r * gh_n
        dr = dn * gn * r * (1.0 - r)
        dz = dhb * (hp - n) * zg * (1.0 - zg)
        gd, gdh = dG + row * G + j, dGh + row * G + j
        tl.store(gd, tl.where(kept, dr, 0.0), mask=m)
        tl.store(gd + H, tl.where(kept, dz, 0.0), mask=m)
        tl.store(gd + 2 * H, tl.where(kept, dn, 0.0), mask=m)
        tl.store(gdh, tl.where(kept, dr, 0.0), mask=m)
        tl.store(gdh + H, tl.where(kept, dz, 0.0), mask=m)
        tl.store(gdh + 2 * H, tl.where(kept, dn * r, 0.0), mask=m)
        tl.store(carry + b * H + j, cry + dhb * tl.where(kept, zg, 1.0), mask=m)
        if NORM:
            gz, gdz, rs = zp + row * G + j, dZ + row * G + j, rstd + row * 3
            d0 = _norm_backward(dr * tl.load(gain + j, mask=m, other=0.0), tl.load(gz, mask=m, other=0.0),
                                tl.load(rs), m, H)
            d1 = _norm_backward(dz * tl.load(gain + H + j, mask=m, other=0.0), tl.load(gz + H, mask=m, other=0.0),
                                tl.load(rs + 1), m, H)
            d2 = _norm_backward(dn * r * tl.load(gain + 2 * H + j, mask=m, other=0.0),
                                tl.load(gz + 2 * H, mask=m, other=0.0), tl.load(rs + 2), m, H)
            tl.store(gdz, tl.where(kept, d0, 0.0), mask=m)
            tl.store(gdz + H, tl.where(kept, d1, 0.0), mask=m)
            tl.store(gdz + 2 * H, tl.where(kept, d2, 0.0), mask=m)

    @triton.jit(do_not_specialize=["t"])
    def _gru_forward_a(t, B, H, eps, gx, acts, zp, rstd, gain, rh, h0, hs, keep, NORM: tl.constexpr,
                       HAS_KEEP: tl.constexpr, BLOCK: tl.constexpr):
        """reset before, part a: r, z from W_rz h_tm1 (zp: (T, B, 2H)), and r * h_tm1."""
        b = tl.program_id(0)
        j = tl.arange(0, BLOCK)
        m = j < H
        row = (t * B + b).to(tl.int64)
        kept = _keep(t, b, B, keep, HAS_KEEP)
        gz, gxb, ga = zp + row * 2 * H + j, gx + row * 3 * H + j, acts + row * 3 * H + j
        yr, xr, rr = _gate_pre(tl.load(gz, mask=m, other=0.0), gain, gain, 0, j, m, H, eps, NORM, False)
        yz, xz, rz = _gate_pre(tl.load(gz + H, mask=m, other=0.0), gain, gain, 1, j, m, H, eps, NORM, False)
        r = _sigmoid(yr + tl.load(gxb, mask=m, other=0.0))
        zg = _sigmoid(yz + tl.load(gxb + H, mask=m, other=0.0))
        hp = _h_prev(t, b, B, H, j, m, hs, h0)
        tl.store(gz, tl.where(kept, xr, 0.0), mask=m)
        tl.store(gz + H, tl.where(kept, xz, 0.0), mask=m)
        if NORM:
            tl.store(rstd + row * 3, tl.where(kept, rr, 0.0))
            tl.store(rstd + row * 3 + 1, tl.where(kept, rz, 0.0))
        tl.store(ga, tl.where(kept, r, 0.0), mask=m)
        tl.store(ga + H, tl.where(kept, zg, 0.0), mask=m)
        tl.store(ga + 2 * H, tl.zeros_like(r), mask=m)  # n: part b
        tl.store(rh + row * H + j, tl.where(kept, r * hp, 0.0), mask=m)

    @triton.jit(do_not_specialize=["t"])
    def _gru_forward_b(t, B, H, eps, gx, acts, zn, rstd, gain, h0, hs, keep, NORM: tl.constexpr,
                       HAS_KEEP: tl.constexpr, BLOCK: tl.constexpr):
        """reset before, part b: n = tanh(x_n + W_n (r * h_tm1)) (zn), h."""
        b = tl.program_id(0)
        j = tl.arange(0, BLOCK)
        m = j < H
        row = (t * B + b).to(tl.int64)
        kept = _keep(t, b, B, keep, HAS_KEEP)
        gzn, ga = zn + row * H + j, acts + row * 3 * H + j
        yn, xn, rn = _gate_pre(tl.load(gzn, mask=m, other=0.0), gain, gain, 2, j, m, H, eps, NORM, False)
        n = _tanh(yn + tl.load(gx + row * 3 * H + 2 * H + j, mask=m, other=0.0))
        zg = tl.load(ga + H, mask=m, other=0.0)
        hp = _h_prev(t, b, B, H, j, m, hs, h0)
        h = n + zg * (hp - n)
        if NORM:
            tl.store(rstd + row * 3 + 2, tl.where(kept, rn, 0.0))
        tl.store(gzn, tl.where(kept, xn, 0.0), mask=m)
        tl.store(ga + 2 * H, tl.where(kept, n, 0.0), mask=m)
        tl.store(hs + row * H + j, tl.where(kept, h, hp), mask=m)

    @triton.jit(do_not_specialize=["t"])
    def _gru_backward_b(t, B, H, eps, acts, zn, rstd, gain, h0, hs, keep, dh, dG, dZn, NORM: tl.constexpr,
                        HAS_KEEP: tl.constexpr, BLOCK: tl.constexpr):
        """reset before, backward part b: dG_z, dG_n and the gradient of W_n (r * h_tm1) (dZn)."""
        b = tl.program_id(0)
        j = tl.arange(0, BLOCK)
        m = j < H
        row = (t * B + b).to(tl.int64)
        kept = _keep(t, b, B, keep, HAS_KEEP)
        dhb = tl.load(dh + b * H + j, mask=m, other=0.0)
        hp = _h_prev(t, b, B, H, j, m, hs, h0)
        ga = acts + row * 3 * H + j
        zg = tl.load(ga + H, mask=m, other=0.0)
        n = tl.load(ga + 2 * H, mask=m, other=0.0)
        dz = dhb * (hp - n) * zg * (1.0 - zg)
        dn = dhb * (1.0 - zg) * (1.0 - n * n)
        gd = dG + row * 3 * H + j
        tl.store(gd + H, tl.where(kept, dz, 0.0), mask=m)
        tl.store(gd + 2 * H, tl.where(kept, dn, 0.0), mask=m)
        if NORM:
            dzn = _norm_backward(dn * tl.load(gain + 2 * H + j, mask=m, other=0.0),
                                 tl.load(zn + row * H + j, mask=m, other=0.0), tl.load(rstd + row * 3 + 2), m, H)
        else:
            dzn = dn
        tl.store(dZn + row * H + j, tl.where(kept, dzn, 0.0), mask=m)

    @triton.jit(do_not_specialize=["t"])
    def _gru_backward_c(t, B, H, eps, acts, zp, rstd, gain, h0, hs, keep, dh, drh, d_out, carry, dG, dZ,
                        NORM: tl.constexpr, HAS_KEEP: tl.constexpr, BLOCK: tl.constexpr):
        """part c, from d(r * h_tm1) (drh): dG_r, the gradient of W_rz h_tm1 (dZ) and the carry."""
        b = tl.program_id(0)
        j = tl.arange(0, BLOCK)
        m = j < H
        row = (t * B + b).to(tl.int64)
        kept = _keep(t, b, B, keep, HAS_KEEP)
        dhb = tl.load(dh + b * H + j, mask=m, other=0.0)
        drb = tl.load(drh + b * H + j, mask=m, other=0.0)
        hp = _h_prev(t, b, B, H, j, m, hs, h0)
        cry = _d_prev(t, b, B, H, j, m, d_out)
        ga = acts + row * 3 * H + j
        r = tl.load(ga, mask=m, other=0.0)
        zg = tl.load(ga + H, mask=m, other=0.0)
        dr = drb * hp * r * (1.0 - r)
        dz = tl.load(dG + row * 3 * H + H + j, mask=m, other=0.0)  # written by part b
        tl.store(dG + row * 3 * H + j, tl.where(kept, dr, 0.0), mask=m)
        tl.store(carry + b * H + j, tl.where(kept, cry + dhb * zg + drb * r, cry + dhb), mask=m)
        if NORM:
            gz, rs = zp + row * 2 * H + j, rstd + row * 3
            d0 = _norm_backward(dr * tl.load(gain + j, mask=m, other=0.0), tl.load(gz, mask=m, other=0.0),
                                tl.load(rs), m, H)
            d1 = _norm_backward(dz * tl.load(gain + H + j, mask=m, other=0.0), tl.load(gz + H, mask=m, other=0.0),
                                tl.load(rs + 1), m, H)
        else:
            d0 = dr
            d1 = dz
        gdz = dZ + row * 2 * H + j
        tl.store(gdz, tl.where(kept, d0, 0.0), mask=m)
        tl.store(gdz + H, tl.where(kept, d1, 0.0), mask=m)

    # name -> (kernel, its buffer arguments after (t, B, H, eps), {constexpr flag: buffer present})
    _KERNELS = {
        "lstm_forward": (_lstm_forward, ["gx", "acts", "z", "rstd_hh", "gain_hh", "peep", "ln_w", "ln_b", "stats_c",
                                         "h0", "hs", "cs", "tcs", "keep"],
                         {"NORM_HH": "gain_hh", "PEEP": "peep", "LN_C": "ln_w", "LN_B": "ln_b", "HAS_KEEP": "keep"}),
        "lstm_backward": (_lstm_backward, ["acts", "z", "rstd_hh", "gain_hh", "peep", "ln_w", "stats_c", "cs", "tcs",
                                           "keep", "dh", "dc", "d_out", "carry", "dG", "dZ", "d_cout"],
                          {"NORM_HH": "gain_hh", "PEEP": "peep", "LN_C": "ln_w", "HAS_KEEP": "keep"}),
        "gru_forward": (_gru_forward, ["gx", "acts", "zp", "rstd", "gain", "bias", "ghn", "h0", "hs", "keep"],
                        {"NORM": "gain", "BIAS": "bias", "HAS_KEEP": "keep"}),
        "gru_backward": (_gru_backward, ["acts", "zp", "rstd", "gain", "ghn", "h0", "hs", "keep", "dh", "d_out",
                                         "carry", "dG", "dGh", "dZ"],
                         {"NORM": "gain", "HAS_KEEP": "keep"}),
        "gru_forward_a": (_gru_forward_a, ["gx", "acts", "zp", "rstd", "gain", "rh", "h0", "hs", "keep"],
                          {"NORM": "gain", "HAS_KEEP": "keep"}),
        "gru_forward_b": (_gru_forward_b, ["gx", "acts", "zn", "rstd", "gain", "h0", "hs", "keep"],
                          {"NORM": "gain", "HAS_KEEP": "keep"}),
        "gru_backward_b": (_gru_backward_b, ["acts", "zn", "rstd", "gain", "h0", "hs", "keep", "dh", "dG", "dZn"],
                           {"NORM": "gain", "HAS_KEEP": "keep"}),
        "gru_backward_c": (_gru_backward_c, ["acts", "zp", "rstd", "gain", "h0", "hs", "keep", "dh", "drh", "d_out",
                                             "carry", "dG", "dZ"],
                           {"NORM": "gain", "HAS_KEEP": "keep"}),
    }
