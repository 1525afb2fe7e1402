// The fused LSTM's element-wise step, gates i, f, g, o: the gates' activations (after the
// optional per-gate layer norm of W_hh h_tm1 and the peepholes), c = f * c_tm1 + i * g,
// h = o * tanh(c or LN(c)), and its backward; one call per step and sequence batch.
#include "common.h"

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
#pragma omp parallel for num_threads(step_threads(B, H)) schedule(static)
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
    const uint8_t* keep = a.keep ? a.keep + t * B : nullptr;
#pragma omp parallel for num_threads(step_threads(B, H)) schedule(static)
    for (int64_t b = 0; b < B; ++b) {
        T* scratch = thread_scratch<T>(a.scratch, H);  // this thread's own (H)
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

}  // namespace

extern "C" {
RNNKIT_EXPORT(lstm_forward, LSTMArgs)
RNNKIT_EXPORT(lstm_backward, LSTMArgs)
}
