// The fused GRU's element-wise steps, gates r, z, n, h = n + z * (h_tm1 - n): reset after
// (torch.nn's GRU, one kernel per step) and reset before (Cho et al., two kernels per step around
// the second product), each with the optional per-gate layer norm, and their backward.
#include "common.h"

namespace {

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
#pragma omp parallel for num_threads(step_threads(B, H)) schedule(static)
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
    const uint8_t* keep = a.keep ? a.keep + t * B : nullptr;
#pragma omp parallel for num_threads(step_threads(B, H)) schedule(static)
    for (int64_t b = 0; b < B; ++b) {
        T* scratch = thread_scratch<T>(a.scratch, H);  // this thread's own (H)
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
#pragma omp parallel for num_threads(step_threads(B, H)) schedule(static)
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
#pragma omp parallel for num_threads(step_threads(B, H)) schedule(static)
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
#pragma omp parallel for num_threads(step_threads(B, H)) schedule(static)
    for (int64_t b = 0; b < B; ++b) {
        T* scratch = thread_scratch<T>(a.scratch, H);  // this thread's own (H)
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
#pragma omp parallel for num_threads(step_threads(B, H)) schedule(static)
    for (int64_t b = 0; b < B; ++b) {
        T* scratch = thread_scratch<T>(a.scratch, H);  // this thread's own (H)
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

}  // namespace

extern "C" {
RNNKIT_EXPORT(gru_forward, GRUArgs)
RNNKIT_EXPORT(gru_backward, GRUArgs)
RNNKIT_EXPORT(gru_forward_a, GRUArgs)
RNNKIT_EXPORT(gru_forward_b, GRUArgs)
RNNKIT_EXPORT(gru_backward_b, GRUArgs)
RNNKIT_EXPORT(gru_backward_c, GRUArgs)
}
