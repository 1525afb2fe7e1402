"""Fused element-wise CPU kernels for ``rnnkit.layers.fused``, compiled at first use.

Each step of the fused LSTM and GRU runs one matrix product (torch's) and then ~10-25 small
element-wise torch operations of 1-5 us each; at small sizes those dominate. The kernels
below do a step's element-wise work (gates, layer norms, peepholes, masks; forward, and
backward) in one call. They are plain C++ (no torch headers), compiled with the machine's
C++ compiler (``$CXX``, else ``c++``/``g++``/``clang++``) into a shared library cached
under ``$RNNKIT_CACHE`` (default ``~/.cache/rnnkit``), keyed by the source, the flags and the
CPU, and called through ctypes with the step index and one struct of pointers per sequence.

Nothing needs a compiler at install time: without one (or with ``RNNKIT_KERNELS=0``, or for
dtypes other than float32/float64) ``fused`` runs the same steps with torch operations. The
float32 kernels use their own vectorisable ``exp`` (Cephes' polynomial), so sigmoid and tanh
are within a few ulp of the exact values, as torch's are, but not bit for bit the same as
torch's; float64 uses ``std::exp`` and ``std::tanh``.
"""
from __future__ import annotations

import ctypes
import hashlib
import logging
import os
import platform
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import torch
from torch import Tensor

log = logging.getLogger(__name__)

_SOURCE = r"""
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <functional>
#include <thread>
#include <vector>

namespace {

template <typename T> struct Math;

template <> struct Math<double> {
    static inline double sigmoid(double x) { return 1.0 / (1.0 + std::exp(-x)); }
    static inline double tanh(double x) { return std::tanh(x); }
    static inline double sqrt(double x) { return std::sqrt(x); }
};

template <> struct Math<float> {
    // exp(x) = 2^n exp(r), r = x - n ln2 in [-ln2/2, ln2/2]: Cephes' expf polynomial. Branch
    // free, so the compiler vectorises the loops that call it. NaN propagates.
    static inline float exp(float x) {
        x = x > 88.0f ? 88.0f : x;
        x = x < -87.0f ? -87.0f : x;  // keeps 2^n a normal float
        float n = x * 1.44269504088896341f + 12582912.0f;  // round to nearest: 1.5 * 2^23
        n -= 12582912.0f;
        float r = x - n * 0.693359375f;
        r = r - n * -2.12194440e-4f;
        float y = 1.9875691500e-4f;
        y = y * r + 1.3981999507e-3f;
        y = y * r + 8.3334519073e-3f;
        y = y * r + 4.1665795894e-2f;
        y = y * r + 1.6666665459e-1f;
        y = y * r + 5.0000001201e-1f;
        y = y * r * r + r + 1.0f;
        int32_t bits = ((int32_t)n + 127) << 23;
        float scale;
        std::memcpy(&scale, &bits, sizeof scale);
        return y * scale;
    }
    static inline float sigmoid(float x) { return 1.0f / (1.0f + exp(-x)); }
    static inline float tanh(float x) {
        float big = 1.0f - 2.0f / (1.0f + exp(2.0f * x));
        float x2 = x * x;  // |x| < 0.4: the Taylor series to x^11, for relative precision near 0
        float p = -8.86323552e-3f;
        p = p * x2 + 2.18694885e-2f;
        p = p * x2 - 5.39682540e-2f;
        p = p * x2 + 1.33333333e-1f;
        p = p * x2 - 3.33333333e-1f;
        float small = x + x * x2 * p;
        return (x2 < 0.16f) ? small : big;
    }
    static inline float sqrt(float x) { return std::sqrt(x); }
};

// Mean and 1 / std (biased variance + eps) of x[0..n), two passes.
template <typename T>
inline void moments(const T* x, int64_t n, T eps, T& mean, T& rstd) {
    T s = 0;
#pragma omp simd reduction(+ : s)
    for (int64_t j = 0; j < n; ++j) s += x[j];
    mean = s / (T)n;
    T v = 0;
#pragma omp simd reduction(+ : v)
    for (int64_t j = 0; j < n; ++j) v += (x[j] - mean) * (x[j] - mean);
    rstd = (T)1 / Math<T>::sqrt(v / (T)n + eps);
}

// dx of y = (x - mean) * rstd given dy and xhat (layer norm without affine), in place of dx.
template <typename T>
inline void norm_backward(const T* dxhat, const T* xhat, T rstd, int64_t n, T* dx) {
    T s1 = 0, s2 = 0;
#pragma omp simd reduction(+ : s1, s2)
    for (int64_t j = 0; j < n; ++j) { s1 += dxhat[j]; s2 += dxhat[j] * xhat[j]; }
    const T m1 = s1 / (T)n, m2 = s2 / (T)n;
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) dx[j] = rstd * (dxhat[j] - m1 - xhat[j] * m2);
}

}  // namespace

extern "C" {

// One LSTM sequence's buffers, all contiguous, gates i, f, g, o. Null pointers: not used.
struct LSTMArgs {
    int64_t T, B, H;
    double eps;
    const void* gx;      // (T, B, 4H) input part of the pre-activations
    void* acts;          // (T, B, 4H) in: pre-activations (no norm); out: activated gates
    void* z;             // (T, B, 4H) norm only: in W_hh h_tm1, out its normalised value (xhat)
    void* rstd_hh;       // (T, B, 4) norm only: 1 / std of each gate's product
    const void* gain_hh; // (4H) norm gain
    const void* peep;    // (3H) p_i, p_f, p_o
    const void* ln_w;    // (H) layer norm of c (weight; bias may be null)
    const void* ln_b;
    void* stats_c;       // (T, B, 2) mean and 1 / std of c
    const void* h0;      // (B, H)
    void* hs;            // (T, B, H) states h
    void* cs;            // (T + 1, B, H) states c, cs[0] = c0
    void* tcs;           // (T, B, H) tanh(c or LN(c))
    const uint8_t* keep; // (T, B) mask
    // backward
    const void* d_out;   // (T, B, H) gradient of the output
    const void* dh;      // (B, H) gradient of h_t (total)
    void* dc;            // (B, H) gradient of c_t, becomes that of c_tm1
    void* carry;         // (B, H) out: what dh_tm1 gets besides dZ_t @ W_hh
    void* dG;            // (T, B, 4H) out: gradient of the pre-activations (of gx)
    void* dZ;            // (T, B, 4H) norm only, out: gradient of W_hh h_tm1
    void* d_cout;        // (T, B, H) norm of c only, out: gradient of LN(c)
    void* scratch;       // (H)
};

// Per-gate layer norm of a whole (rows, H) tensor, row r in gate r % gates: out = xhat * gain + bias.
struct NormArgs {
    int64_t rows, H, gates, threads;
    double eps;
    const void* z;       // (rows, H)
    void* out;           // (rows, H)
    void* xhat;          // (rows, H) saved for backward
    void* rstd;          // (rows)
    const void* gain;    // (gates * H)
    const void* bias;    // (gates * H) or null
    const void* dy;      // backward: (rows, H) gradient of out
    void* dz;            // (rows, H) out: gradient of z
    void* d_gain;        // (gates * H) out
    void* d_bias;        // (gates * H) out, or null
};

// One GRU sequence's buffers, all contiguous, gates r, z, n. Null pointers: not used.
struct GRUArgs {
    int64_t T, B, H;
    double eps;
    const void* gx;      // (T, B, 3H) input part of the pre-activations
    const void* h0;      // (B, H)
    void* hs;            // (T, B, H) states
    void* acts;          // (T, B, 3H) out: activated r, z, n
    void* zp;            // in: W_hh h_tm1 (T, B, 3H) or, reset before, W_rz h_tm1 (T, B, 2H); norm: out xhat
    void* zn;            // reset before: (T, B, H) W_n (r * h_tm1); norm: out xhat
    void* rstd;          // (T, B, 3) norm only: 1 / std per gate
    const void* gain;    // (3H) norm gain
    const void* bias;    // (3H) b_hh, reset after only (may be null)
    void* ghn;           // reset after: (T, B, H) out W_hn h_tm1 (normalised) + b_hn
    void* rh;            // reset before: (T, B, H) out r * h_tm1
    const uint8_t* keep; // (T, B) mask
    // backward
    const void* d_out;   // (T, B, H)
    const void* dh;      // (B, H) gradient of h_t (total)
    void* carry;         // (B, H) out: what dh_tm1 gets besides the products' gradients
    void* dG;            // (T, B, 3H) out: gradient of the pre-activations (of gx)
    void* dGh;           // reset after: (T, B, 3H) out: gradient of W_hh h_tm1 + b_hh (normalised)
    void* dZ;            // out: gradient of the raw products: (T, B, 3H) reset after with norm,
                         // (T, B, 2H) reset before (W_rz h_tm1)
    void* dZn;           // reset before: (T, B, H) out: gradient of W_n (r * h_tm1)
    void* drh;           // reset before: (B, H) in: gradient of r * h_tm1 (dZn_t @ W_n)
    void* scratch;       // (H)
};

}

namespace {

template <typename T>
void lstm_forward(const LSTMArgs& a, int64_t t) {
    const int64_t B = a.B, H = a.H, G = 4 * H;
    const T eps = (T)a.eps;
    const T* gx = (const T*)a.gx + t * B * G;
    T* acts = (T*)a.acts + t * B * G;
    T* z = a.z ? (T*)a.z + t * B * G : nullptr;
    const T* gain = (const T*)a.gain_hh;
    const T* peep = (const T*)a.peep;
    const T* ln_w = (const T*)a.ln_w;
    const T* ln_b = (const T*)a.ln_b;
    const T* h_prev = t ? (const T*)a.hs + (t - 1) * B * H : (const T*)a.h0;
    T* h_new = (T*)a.hs + t * B * H;
    const T* c_prev = (const T*)a.cs + t * B * H;
    T* c_new = (T*)a.cs + (t + 1) * B * H;
    T* tc = (T*)a.tcs + t * B * H;
    const uint8_t* keep = a.keep ? a.keep + t * B : nullptr;
    for (int64_t b = 0; b < B; ++b) {
        T* pre = acts + b * G;
        const T* cp = c_prev + b * H;
        T* cn = c_new + b * H;
        T* tcb = tc + b * H;
        T* hb = h_new + b * H;
        if (keep && !keep[b]) {  // this sequence has ended: its state passes through
            std::memcpy(cn, cp, H * sizeof(T));
            std::memcpy(hb, h_prev + b * H, H * sizeof(T));
            std::memset(pre, 0, G * sizeof(T));
            std::memset(tcb, 0, H * sizeof(T));
            if (z) std::memset(z + b * G, 0, G * sizeof(T));
            if (ln_w) std::memset((T*)a.stats_c + (t * B + b) * 2, 0, 2 * sizeof(T));  // read by torch
            continue;
        }
        if (z) {  // pre = LN(z) * gain + gx, per gate
            T* rstd_out = (T*)a.rstd_hh + (t * B + b) * 4;
            for (int64_t k = 0; k < 4; ++k) {
                T* zk = z + b * G + k * H;
                const T* gk = gx + b * G + k * H;
                T mean, rstd;
                moments(zk, H, eps, mean, rstd);
                rstd_out[k] = rstd;
#pragma omp simd
                for (int64_t j = 0; j < H; ++j) {
                    zk[j] = (zk[j] - mean) * rstd;
                    pre[k * H + j] = zk[j] * gain[k * H + j] + gk[j];
                }
            }
        }
        T* gi = pre;
        T* gf = pre + H;
        T* gg = pre + 2 * H;
        T* go = pre + 3 * H;
        if (peep) {
#pragma omp simd
            for (int64_t j = 0; j < H; ++j) {
                gi[j] += peep[j] * cp[j];
                gf[j] += peep[H + j] * cp[j];
            }
        }
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
            T i = Math<T>::sigmoid(gi[j]), f = Math<T>::sigmoid(gf[j]), g = Math<T>::tanh(gg[j]);
            gi[j] = i;
            gf[j] = f;
            gg[j] = g;
            cn[j] = f * cp[j] + i * g;
        }
        if (peep) {
#pragma omp simd
            for (int64_t j = 0; j < H; ++j) go[j] += peep[2 * H + j] * cn[j];
        }
        if (ln_w) {
            T* st = (T*)a.stats_c + (t * B + b) * 2;
            T mean, rstd;
            moments(cn, H, eps, mean, rstd);
            st[0] = mean;
            st[1] = rstd;
#pragma omp simd
            for (int64_t j = 0; j < H; ++j) {
                T y = (cn[j] - mean) * rstd * ln_w[j] + (ln_b ? ln_b[j] : (T)0);
                T o = Math<T>::sigmoid(go[j]);
                go[j] = o;
                tcb[j] = Math<T>::tanh(y);
                hb[j] = o * tcb[j];
            }
        } else {
#pragma omp simd
            for (int64_t j = 0; j < H; ++j) {
                T o = Math<T>::sigmoid(go[j]);
                go[j] = o;
                tcb[j] = Math<T>::tanh(cn[j]);
                hb[j] = o * tcb[j];
            }
        }
    }
}

template <typename T>
void lstm_backward(const LSTMArgs& a, int64_t t) {
    const int64_t B = a.B, H = a.H, G = 4 * H;
    const T* acts = (const T*)a.acts + t * B * G;
    const T* c_prev = (const T*)a.cs + t * B * H;
    const T* c_new = (const T*)a.cs + (t + 1) * B * H;
    const T* tc = (const T*)a.tcs + t * B * H;
    const T* peep = (const T*)a.peep;
    const T* ln_w = (const T*)a.ln_w;
    const T* gain = (const T*)a.gain_hh;
    const T* dh = (const T*)a.dh;
    const T* d_prev = t ? (const T*)a.d_out + (t - 1) * B * H : nullptr;
    T* dc = (T*)a.dc;
    T* carry = (T*)a.carry;
    T* dG = (T*)a.dG + t * B * G;
    T* dZ = a.dZ ? (T*)a.dZ + t * B * G : nullptr;
    T* d_cout = a.d_cout ? (T*)a.d_cout + t * B * H : nullptr;
    T* scratch = (T*)a.scratch;
    const uint8_t* keep = a.keep ? a.keep + t * B : nullptr;
    for (int64_t b = 0; b < B; ++b) {
        const T* dhb = dh + b * H;
        T* dcb = dc + b * H;
        T* cb = carry + b * H;
        T* dGb = dG + b * G;
        if (d_prev) std::memcpy(cb, d_prev + b * H, H * sizeof(T));
        else std::memset(cb, 0, H * sizeof(T));
        if (keep && !keep[b]) {  // ended: h and c pass through, no gate gradient
#pragma omp simd
            for (int64_t j = 0; j < H; ++j) cb[j] += dhb[j];
            std::memset(dGb, 0, G * sizeof(T));
            if (dZ) std::memset(dZ + b * G, 0, G * sizeof(T));
            if (d_cout) std::memset(d_cout + b * H, 0, H * sizeof(T));
            continue;
        }
        const T* i = acts + b * G;
        const T* f = i + H;
        const T* g = i + 2 * H;
        const T* o = i + 3 * H;
        const T* cp = c_prev + b * H;
        const T* cn = c_new + b * H;
        const T* tcb = tc + b * H;
        if (ln_w) {  // gradient of c through LN(c), into scratch
            const T* st = (const T*)a.stats_c + (t * B + b) * 2;
            const T mean = st[0], rstd = st[1];
            T* dco = d_cout + b * H;
            T s1 = 0, s2 = 0;
#pragma omp simd reduction(+ : s1, s2)
            for (int64_t j = 0; j < H; ++j) {
                T d = dhb[j] * o[j] * (1 - tcb[j] * tcb[j]);  // gradient of LN(c)
                dco[j] = d;
                T dxhat = d * ln_w[j], xhat = (cn[j] - mean) * rstd;
                s1 += dxhat;
                s2 += dxhat * xhat;
            }
            const T m1 = s1 / (T)H, m2 = s2 / (T)H;
#pragma omp simd
            for (int64_t j = 0; j < H; ++j)
                scratch[j] = rstd * (dco[j] * ln_w[j] - m1 - (cn[j] - mean) * rstd * m2);
        }
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
            T dGo = dhb[j] * tcb[j] * o[j] * (1 - o[j]);
            T dct = dcb[j] + (ln_w ? scratch[j] : dhb[j] * o[j] * (1 - tcb[j] * tcb[j]));
            if (peep) dct += dGo * peep[2 * H + j];
            T dGi = dct * g[j] * i[j] * (1 - i[j]);
            T dGf = dct * cp[j] * f[j] * (1 - f[j]);
            T dGg = dct * i[j] * (1 - g[j] * g[j]);
            T dcp = dct * f[j];
            if (peep) dcp += dGi * peep[j] + dGf * peep[H + j];
            dcb[j] = dcp;
            dGb[j] = dGi;
            dGb[H + j] = dGf;
            dGb[2 * H + j] = dGg;
            dGb[3 * H + j] = dGo;
        }
        if (dZ) {  // through pre = LN(z) * gain + gx, per gate
            const T* rstd = (const T*)a.rstd_hh + (t * B + b) * 4;
            const T* xhat = (const T*)a.z + t * B * G + b * G;
            for (int64_t k = 0; k < 4; ++k) {
#pragma omp simd
                for (int64_t j = 0; j < H; ++j) scratch[j] = dGb[k * H + j] * gain[k * H + j];
                norm_backward(scratch, xhat + k * H, rstd[k], H, dZ + b * G + k * H);
            }
        }
    }
}

// Normalise z[0..H) in place (xhat), out = xhat * gain (+ add) (+ bias); returns rstd.
template <typename T>
inline T norm_gate(T* z, const T* gain, const T* add, const T* bias, int64_t H, T eps, T* out) {
    T mean, rstd;
    moments(z, H, eps, mean, rstd);
#pragma omp simd
    for (int64_t j = 0; j < H; ++j) {
        z[j] = (z[j] - mean) * rstd;
        out[j] = z[j] * gain[j] + (add ? add[j] : (T)0) + (bias ? bias[j] : (T)0);
    }
    return rstd;
}

// reset after (torch.nn's GRU): n = tanh(x_n + r * (W_hn h_tm1 + b_hn)), one product per step
template <typename T>
void gru_forward(const GRUArgs& a, int64_t t) {
    const int64_t B = a.B, H = a.H, G = 3 * H;
    const T eps = (T)a.eps;
    const T* gx = (const T*)a.gx + t * B * G;
    T* acts = (T*)a.acts + t * B * G;
    T* zp = (T*)a.zp + t * B * G;
    T* ghn = (T*)a.ghn + t * B * H;
    const T* gain = (const T*)a.gain;
    const T* bias = (const T*)a.bias;
    const T* h_prev = t ? (const T*)a.hs + (t - 1) * B * H : (const T*)a.h0;
    T* h_new = (T*)a.hs + t * B * H;
    const uint8_t* keep = a.keep ? a.keep + t * B : nullptr;
    for (int64_t b = 0; b < B; ++b) {
        const T* hp = h_prev + b * H;
        T* hb = h_new + b * H;
        T* ab = acts + b * G;
        T* zb = zp + b * G;
        T* gn = ghn + b * H;
        const T* xb = gx + b * G;
        if (keep && !keep[b]) {
            std::memcpy(hb, hp, H * sizeof(T));
            std::memset(ab, 0, G * sizeof(T));
            std::memset(zb, 0, G * sizeof(T));
            std::memset(gn, 0, H * sizeof(T));
            continue;
        }
        if (gain) {  // gh = LN(z) * gain + b_hh per gate; r, z pre-activations into acts
            T* rstd = (T*)a.rstd + (t * B + b) * 3;
            for (int64_t k = 0; k < 2; ++k)
                rstd[k] = norm_gate(zb + k * H, gain + k * H, xb + k * H, bias ? bias + k * H : nullptr, H, eps,
                                    ab + k * H);
            rstd[2] = norm_gate(zb + 2 * H, gain + 2 * H, (const T*)nullptr, bias ? bias + 2 * H : nullptr, H, eps, gn);
        } else {
#pragma omp simd
            for (int64_t j = 0; j < 2 * H; ++j) ab[j] = zb[j] + xb[j] + (bias ? bias[j] : (T)0);
#pragma omp simd
            for (int64_t j = 0; j < H; ++j) gn[j] = zb[2 * H + j] + (bias ? bias[2 * H + j] : (T)0);
        }
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
            T r = Math<T>::sigmoid(ab[j]), z = Math<T>::sigmoid(ab[H + j]);
            T n = Math<T>::tanh(xb[2 * H + j] + r * gn[j]);
            ab[j] = r;
            ab[H + j] = z;
            ab[2 * H + j] = n;
            hb[j] = n + z * (hp[j] - n);
        }
    }
}

template <typename T>
void gru_backward(const GRUArgs& a, int64_t t) {
    const int64_t B = a.B, H = a.H, G = 3 * H;
    const T* acts = (const T*)a.acts + t * B * G;
    const T* ghn = (const T*)a.ghn + t * B * H;
    const T* gain = (const T*)a.gain;
    const T* h_prev = t ? (const T*)a.hs + (t - 1) * B * H : (const T*)a.h0;
    const T* dh = (const T*)a.dh;
    const T* d_prev = t ? (const T*)a.d_out + (t - 1) * B * H : nullptr;
    T* carry = (T*)a.carry;
    T* dG = (T*)a.dG + t * B * G;
    T* dGh = (T*)a.dGh + t * B * G;
    T* dZ = a.dZ ? (T*)a.dZ + t * B * G : nullptr;
    T* scratch = (T*)a.scratch;
    const uint8_t* keep = a.keep ? a.keep + t * B : nullptr;
    for (int64_t b = 0; b < B; ++b) {
        const T* dhb = dh + b * H;
        const T* hp = h_prev + b * H;
        T* cb = carry + b * H;
        T* dGb = dG + b * G;
        T* dGhb = dGh + b * G;
        if (d_prev) std::memcpy(cb, d_prev + b * H, H * sizeof(T));
        else std::memset(cb, 0, H * sizeof(T));
        if (keep && !keep[b]) {
#pragma omp simd
            for (int64_t j = 0; j < H; ++j) cb[j] += dhb[j];
            std::memset(dGb, 0, G * sizeof(T));
            std::memset(dGhb, 0, G * sizeof(T));
            if (dZ) std::memset(dZ + b * G, 0, G * sizeof(T));
            continue;
        }
        const T* r = acts + b * G;
        const T* z = r + H;
        const T* n = r + 2 * H;
        const T* gn = ghn + b * H;
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
            T dn = dhb[j] * (1 - z[j]) * (1 - n[j] * n[j]);  // gradient of x_n + r * gh_n
            T dr = dn * gn[j] * r[j] * (1 - r[j]);
            T dz = dhb[j] * (hp[j] - n[j]) * z[j] * (1 - z[j]);
            dGb[j] = dr;
            dGb[H + j] = dz;
            dGb[2 * H + j] = dn;
            dGhb[j] = dr;
            dGhb[H + j] = dz;
            dGhb[2 * H + j] = dn * r[j];
            cb[j] += dhb[j] * z[j];
        }
        if (dZ) {
            const T* rstd = (const T*)a.rstd + (t * B + b) * 3;
            const T* xhat = (const T*)a.zp + t * B * G + b * G;
            for (int64_t k = 0; k < 3; ++k) {
#pragma omp simd
                for (int64_t j = 0; j < H; ++j) scratch[j] = dGhb[k * H + j] * gain[k * H + j];
                norm_backward(scratch, xhat + k * H, rstd[k], H, dZ + b * G + k * H);
            }
        }
    }
}

// reset before (Cho et al.): r, z from W_rz h_tm1 (part a), then n from W_n (r * h_tm1) (part b)
template <typename T>
void gru_forward_a(const GRUArgs& a, int64_t t) {
    const int64_t B = a.B, H = a.H, G = 3 * H;
    const T eps = (T)a.eps;
    const T* gx = (const T*)a.gx + t * B * G;
    T* acts = (T*)a.acts + t * B * G;
    T* zp = (T*)a.zp + t * B * 2 * H;
    T* rh = (T*)a.rh + t * B * H;
    const T* gain = (const T*)a.gain;
    const T* h_prev = t ? (const T*)a.hs + (t - 1) * B * H : (const T*)a.h0;
    const uint8_t* keep = a.keep ? a.keep + t * B : nullptr;
    for (int64_t b = 0; b < B; ++b) {
        const T* hp = h_prev + b * H;
        T* ab = acts + b * G;
        T* zb = zp + b * 2 * H;
        T* rhb = rh + b * H;
        const T* xb = gx + b * G;
        if (keep && !keep[b]) {
            std::memset(ab, 0, G * sizeof(T));
            std::memset(zb, 0, 2 * H * sizeof(T));
            std::memset(rhb, 0, H * sizeof(T));
            continue;
        }
        if (gain) {
            T* rstd = (T*)a.rstd + (t * B + b) * 3;
            for (int64_t k = 0; k < 2; ++k)
                rstd[k] = norm_gate(zb + k * H, gain + k * H, xb + k * H, (const T*)nullptr, H, eps, ab + k * H);
        } else {
#pragma omp simd
            for (int64_t j = 0; j < 2 * H; ++j) ab[j] = zb[j] + xb[j];
        }
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
            T r = Math<T>::sigmoid(ab[j]);
            ab[j] = r;
            ab[H + j] = Math<T>::sigmoid(ab[H + j]);
            rhb[j] = r * hp[j];
        }
    }
}

template <typename T>
void gru_forward_b(const GRUArgs& a, int64_t t) {
    const int64_t B = a.B, H = a.H, G = 3 * H;
    const T eps = (T)a.eps;
    const T* gx = (const T*)a.gx + t * B * G;
    T* acts = (T*)a.acts + t * B * G;
    T* zn = (T*)a.zn + t * B * H;
    const T* gain = (const T*)a.gain;
    const T* h_prev = t ? (const T*)a.hs + (t - 1) * B * H : (const T*)a.h0;
    T* h_new = (T*)a.hs + t * B * H;
    const uint8_t* keep = a.keep ? a.keep + t * B : nullptr;
    for (int64_t b = 0; b < B; ++b) {
        const T* hp = h_prev + b * H;
        T* hb = h_new + b * H;
        T* ab = acts + b * G;
        T* zb = zn + b * H;
        const T* xn = gx + b * G + 2 * H;
        if (keep && !keep[b]) {
            std::memcpy(hb, hp, H * sizeof(T));
            std::memset(zb, 0, H * sizeof(T));
            continue;
        }
        T* n = ab + 2 * H;
        if (gain) {
            T* rstd = (T*)a.rstd + (t * B + b) * 3;
            rstd[2] = norm_gate(zb, gain + 2 * H, xn, (const T*)nullptr, H, eps, n);
        } else {
#pragma omp simd
            for (int64_t j = 0; j < H; ++j) n[j] = zb[j] + xn[j];
        }
        const T* z = ab + H;
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
            T nj = Math<T>::tanh(n[j]);
            n[j] = nj;
            hb[j] = nj + z[j] * (hp[j] - nj);
        }
    }
}

// backward, reset before, part b: dG_z, dG_n and the gradient of W_n (r * h_tm1) (dZn)
template <typename T>
void gru_backward_b(const GRUArgs& a, int64_t t) {
    const int64_t B = a.B, H = a.H, G = 3 * H;
    const T* acts = (const T*)a.acts + t * B * G;
    const T* gain = (const T*)a.gain;
    const T* h_prev = t ? (const T*)a.hs + (t - 1) * B * H : (const T*)a.h0;
    const T* dh = (const T*)a.dh;
    T* dG = (T*)a.dG + t * B * G;
    T* dZn = (T*)a.dZn + t * B * H;
    const uint8_t* keep = a.keep ? a.keep + t * B : nullptr;
    for (int64_t b = 0; b < B; ++b) {
        const T* dhb = dh + b * H;
        const T* hp = h_prev + b * H;
        T* dGb = dG + b * G;
        T* dzn = dZn + b * H;
        if (keep && !keep[b]) {
            std::memset(dGb, 0, G * sizeof(T));
            std::memset(dzn, 0, H * sizeof(T));
            continue;
        }
        const T* z = acts + b * G + H;
        const T* n = z + H;
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
            dGb[H + j] = dhb[j] * (hp[j] - n[j]) * z[j] * (1 - z[j]);
            dGb[2 * H + j] = dhb[j] * (1 - z[j]) * (1 - n[j] * n[j]);
        }
        if (gain) {
            const T* rstd = (const T*)a.rstd + (t * B + b) * 3;
            const T* xhat = (const T*)a.zn + t * B * H + b * H;
            T* scratch = (T*)a.scratch;
#pragma omp simd
            for (int64_t j = 0; j < H; ++j) scratch[j] = dGb[2 * H + j] * gain[2 * H + j];
            norm_backward(scratch, xhat, rstd[2], H, dzn);
        } else {
            std::memcpy(dzn, dGb + 2 * H, H * sizeof(T));
        }
    }
}

// part c, from d(r * h_tm1) (drh): dG_r, the gradient of W_rz h_tm1 (dZ) and the carry
template <typename T>
void gru_backward_c(const GRUArgs& a, int64_t t) {
    const int64_t B = a.B, H = a.H, G = 3 * H;
    const T* acts = (const T*)a.acts + t * B * G;
    const T* gain = (const T*)a.gain;
    const T* h_prev = t ? (const T*)a.hs + (t - 1) * B * H : (const T*)a.h0;
    const T* dh = (const T*)a.dh;
    const T* drh = (const T*)a.drh;
    const T* d_prev = t ? (const T*)a.d_out + (t - 1) * B * H : nullptr;
    T* carry = (T*)a.carry;
    T* dG = (T*)a.dG + t * B * G;
    T* dZ = (T*)a.dZ + t * B * 2 * H;
    const uint8_t* keep = a.keep ? a.keep + t * B : nullptr;
    for (int64_t b = 0; b < B; ++b) {
        const T* dhb = dh + b * H;
        const T* hp = h_prev + b * H;
        const T* drb = drh + b * H;
        T* cb = carry + b * H;
        T* dGb = dG + b * G;
        T* dzb = dZ + b * 2 * H;
        if (d_prev) std::memcpy(cb, d_prev + b * H, H * sizeof(T));
        else std::memset(cb, 0, H * sizeof(T));
        if (keep && !keep[b]) {
#pragma omp simd
            for (int64_t j = 0; j < H; ++j) cb[j] += dhb[j];
            std::memset(dzb, 0, 2 * H * sizeof(T));
            continue;
        }
        const T* r = acts + b * G;
        const T* z = r + H;
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
            dGb[j] = drb[j] * hp[j] * r[j] * (1 - r[j]);
            cb[j] += dhb[j] * z[j] + drb[j] * r[j];
        }
        if (gain) {
            const T* rstd = (const T*)a.rstd + (t * B + b) * 3;
            const T* xhat = (const T*)a.zp + t * B * 2 * H + b * 2 * H;
            T* scratch = (T*)a.scratch;
            for (int64_t k = 0; k < 2; ++k) {
#pragma omp simd
                for (int64_t j = 0; j < H; ++j) scratch[j] = dGb[k * H + j] * gain[k * H + j];
                norm_backward(scratch, xhat + k * H, rstd[k], H, dzb + k * H);
            }
        } else {
            std::memcpy(dzb, dGb, 2 * H * sizeof(T));
        }
    }
}

template <typename T>
void gate_norm_rows(const NormArgs& a, int64_t begin, int64_t end) {
    const int64_t H = a.H;
    const T eps = (T)a.eps;
    const T* gain = (const T*)a.gain;
    const T* bias = (const T*)a.bias;
    for (int64_t r = begin; r < end; ++r) {
        const int64_t k = r % a.gates;
        const T* z = (const T*)a.z + r * H;
        T* xhat = (T*)a.xhat + r * H;
        T* out = (T*)a.out + r * H;
        const T* g = gain + k * H;
        T mean, rstd;
        moments(z, H, eps, mean, rstd);
        ((T*)a.rstd)[r] = rstd;
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
            xhat[j] = (z[j] - mean) * rstd;
            out[j] = xhat[j] * g[j] + (bias ? bias[k * H + j] : (T)0);
        }
    }
}

// rows [begin, end): dz, and the gain and bias gradients summed into acc (2 * gates * H)
template <typename T>
void gate_norm_backward_rows(const NormArgs& a, int64_t begin, int64_t end, double* acc) {
    const int64_t H = a.H, G = a.gates * H;
    const T* gain = (const T*)a.gain;
    std::vector<T> dxhat(H);
    for (int64_t r = begin; r < end; ++r) {
        const int64_t k = r % a.gates;
        const T* dy = (const T*)a.dy + r * H;
        const T* xhat = (const T*)a.xhat + r * H;
        double* acc_g = acc + k * H;
        double* acc_b = acc + G + k * H;
#pragma omp simd
        for (int64_t j = 0; j < H; ++j) {
            dxhat[j] = dy[j] * gain[k * H + j];
            acc_g[j] += (double)dy[j] * (double)xhat[j];
            acc_b[j] += (double)dy[j];
        }
        norm_backward(dxhat.data(), xhat, ((const T*)a.rstd)[r], H, (T*)a.dz + r * H);
    }
}

template <typename T>
void gate_norm_forward(const NormArgs& a) {
    const int64_t n = a.threads > 1 ? a.threads : 1, chunk = (a.rows + n - 1) / n;
    std::vector<std::thread> pool;
    for (int64_t i = 1; i < n; ++i)
        pool.emplace_back(gate_norm_rows<T>, std::cref(a), std::min(a.rows, i * chunk), std::min(a.rows, (i + 1) * chunk));
    gate_norm_rows<T>(a, 0, std::min(a.rows, chunk));
    for (auto& th : pool) th.join();
}

template <typename T>
void gate_norm_backward(const NormArgs& a) {
    const int64_t n = a.threads > 1 ? a.threads : 1, chunk = (a.rows + n - 1) / n, G = a.gates * a.H;
    std::vector<std::vector<double>> acc(n, std::vector<double>(2 * G, 0.0));
    std::vector<std::thread> pool;
    for (int64_t i = 1; i < n; ++i)
        pool.emplace_back(gate_norm_backward_rows<T>, std::cref(a), std::min(a.rows, i * chunk),
                          std::min(a.rows, (i + 1) * chunk), acc[i].data());
    gate_norm_backward_rows<T>(a, 0, std::min(a.rows, chunk), acc[0].data());
    for (auto& th : pool) th.join();
    for (int64_t j = 0; j < 2 * G; ++j) {
        double s = 0;
        for (int64_t i = 0; i < n; ++i) s += acc[i][j];
        if (j < G) ((T*)a.d_gain)[j] = (T)s;
        else if (a.d_bias) ((T*)a.d_bias)[j - G] = (T)s;
    }
}

}  // namespace

extern "C" {
void gate_norm_forward_f32(const NormArgs* a) { gate_norm_forward<float>(*a); }
void gate_norm_forward_f64(const NormArgs* a) { gate_norm_forward<double>(*a); }
void gate_norm_backward_f32(const NormArgs* a) { gate_norm_backward<float>(*a); }
void gate_norm_backward_f64(const NormArgs* a) { gate_norm_backward<double>(*a); }
#define RNNKIT_EXPORT(name, Args)                                                  \
    void name##_f32(const Args* a, int64_t t) { name<float>(*a, t); }               \
    void name##_f64(const Args* a, int64_t t) { name<double>(*a, t); }
RNNKIT_EXPORT(lstm_forward, LSTMArgs)
RNNKIT_EXPORT(lstm_backward, LSTMArgs)
RNNKIT_EXPORT(gru_forward, GRUArgs)
RNNKIT_EXPORT(gru_backward, GRUArgs)
RNNKIT_EXPORT(gru_forward_a, GRUArgs)
RNNKIT_EXPORT(gru_forward_b, GRUArgs)
RNNKIT_EXPORT(gru_backward_b, GRUArgs)
RNNKIT_EXPORT(gru_backward_c, GRUArgs)
}
"""

_FLAGS = ["-O3", "-march=native", "-fopenmp-simd", "-fno-math-errno", "-shared", "-fPIC", "-std=c++14", "-pthread"]


class LSTMArgs(ctypes.Structure):
    _fields_ = [("T", ctypes.c_int64), ("B", ctypes.c_int64), ("H", ctypes.c_int64), ("eps", ctypes.c_double)] + [
        (name, ctypes.c_void_p) for name in (
            "gx", "acts", "z", "rstd_hh", "gain_hh", "peep", "ln_w", "ln_b", "stats_c", "h0", "hs", "cs", "tcs",
            "keep", "d_out", "dh", "dc", "carry", "dG", "dZ", "d_cout", "scratch",
        )
    ]


class GRUArgs(ctypes.Structure):
    _fields_ = [("T", ctypes.c_int64), ("B", ctypes.c_int64), ("H", ctypes.c_int64), ("eps", ctypes.c_double)] + [
        (name, ctypes.c_void_p) for name in (
            "gx", "h0", "hs", "acts", "zp", "zn", "rstd", "gain", "bias", "ghn", "rh", "keep",
            "d_out", "dh", "carry", "dG", "dGh", "dZ", "dZn", "drh", "scratch",
        )
    ]


class NormArgs(ctypes.Structure):
    _fields_ = [(name, ctypes.c_int64) for name in ("rows", "H", "gates", "threads")] + [("eps", ctypes.c_double)] + [
        (name, ctypes.c_void_p) for name in ("z", "out", "xhat", "rstd", "gain", "bias", "dy", "dz", "d_gain", "d_bias")
    ]


def pointer(t: Tensor | None) -> int | None:
    """The data pointer of a contiguous tensor, None for None."""
    if t is None:
        return None
    assert t.is_contiguous()
    return t.data_ptr()


_lock = threading.Lock()
_library = None  # the loaded library, False once it failed (then never tried again)
_enabled = os.environ.get("RNNKIT_KERNELS", "1") != "0"


def set_enabled(value: bool) -> bool:
    """Use the kernels (True) or torch operations (False); returns the previous setting."""
    global _enabled
    previous, _enabled = _enabled, bool(value)
    return previous


def kernels_for(like: Tensor):
    """The loaded library if the kernels apply to tensors like ``like`` (CPU, float32/64), else None."""
    if not _enabled or like.device.type != "cpu" or like.dtype not in (torch.float32, torch.float64):
        return None
    return load() or None


def suffix(dtype: torch.dtype) -> str:
    return "f32" if dtype == torch.float32 else "f64"


def _cpu_key() -> str:
    """What the compiled code depends on besides the source: the CPU's features (-march=native)."""
    text = platform.machine() + platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            text += "".join(line for line in f if line.startswith(("flags", "Features", "model name")))
    except OSError:
        pass
    return text


def _compiler() -> str | None:
    for name in (os.environ.get("CXX"), "c++", "g++", "clang++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def load():
    global _library
    if _library is not None:
        return _library
    with _lock:
        if _library is None:
            try:
                _library = _build_and_load()
            except (OSError, subprocess.SubprocessError) as e:
                log.warning("rnnkit: fused CPU kernels unavailable (%s); using torch operations", e)
                _library = False
    return _library


def _build_and_load():
    compiler = _compiler()
    if compiler is None:
        raise OSError("no C++ compiler found ($CXX, c++, g++, clang++)")
    key = hashlib.sha256("\n".join([_SOURCE, " ".join(_FLAGS), compiler, _cpu_key()]).encode()).hexdigest()[:16]
    cache = os.environ.get("RNNKIT_CACHE") or Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "rnnkit"
    cache = Path(cache)
    path = cache / f"fused_kernels_{key}.so"
    if not path.exists():
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache) as tmp:
            src, out = Path(tmp) / "kernels.cpp", Path(tmp) / "kernels.so"
            src.write_text(_SOURCE)
            result = subprocess.run([compiler, *_FLAGS, str(src), "-o", str(out)], capture_output=True, text=True,
                                    timeout=300)
            if result.returncode != 0:
                raise OSError(f"{compiler} failed: {result.stderr.strip().splitlines()[:1]}")
            os.replace(out, path)  # atomic: concurrent builders each write their own, one wins
        log.info("rnnkit: compiled fused CPU kernels into %s", path)
    lib = ctypes.CDLL(str(path))
    kernels = {"lstm_forward": LSTMArgs, "lstm_backward": LSTMArgs, "gru_forward": GRUArgs, "gru_backward": GRUArgs,
               "gru_forward_a": GRUArgs, "gru_forward_b": GRUArgs, "gru_backward_b": GRUArgs, "gru_backward_c": GRUArgs}
    for dtype in ("f32", "f64"):
        for name in ("gate_norm_forward", "gate_norm_backward"):
            fn = getattr(lib, f"{name}_{dtype}")
            fn.argtypes = [ctypes.POINTER(NormArgs)]
            fn.restype = None
    for name, args in kernels.items():
        for dtype in ("f32", "f64"):
            fn = getattr(lib, f"{name}_{dtype}")
            fn.argtypes = [ctypes.POINTER(args), ctypes.c_int64]
            fn.restype = None
    return lib
