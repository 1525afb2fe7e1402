// minGRU and minLSTM over a whole sequence: the gates from the projected input and the linear
// recurrence h_t = a_t h_tm1 + b_t in one pass forward, and the reversed recurrence of the
// gradient, g_t = dh_t + a_{t+1} g_{t+1}, in one pass backward (the gates recomputed from the
// projected input, nothing else saved but the states). The equations are the reference's
// (rnnkit/cells/minrnn.py: mingru_coefficients, minlstm_coefficients):
//
//   minGRU  (kind 0, xp = [k | x_h]):     z = sigmoid(k), h~ = g(x_h), h = h_tm1 + z (h~ - h_tm1)
//   minLSTM (kind 1, xp = [x_f | x_i | x_h]): f' = f / (f + i), f = sigmoid(x_f), i = sigmoid(x_i),
//                                             h = h~ + f' (h_tm1 - h~)
//   (the reference computes f' from log-sigmoids; here as (1 + e^-x_i) / ((1 + e^-x_i) + (1 + e^-x_f))
//   with every exponential scaled by e^-m, m = max(0, -x_f, -x_i): no overflow, no 0 / 0, vectorised)
//
// with g(x) = x + 1/2 (x >= 0), sigmoid(x) (x < 0). Each unit (b, j) is a recurrence of its own:
// the B * H units are split over threads in contiguous ranges, each range stepping through time.
#include <functional>
#include <thread>
#include <vector>

#include "common.h"

namespace {

template <typename T>
inline T normalised_forget(T xf, T xi) {  // f / (f + i), f = sigmoid(xf), i = sigmoid(xi)
    const T m = std::max(std::max((T)0, -xf), -xi);  // every exponent below is <= 0, one of them 0
    const T base = Math<T>::exp(-m);
    const T num_f = base + Math<T>::exp(-xi - m), num_i = base + Math<T>::exp(-xf - m);
    return num_f / (num_f + num_i);
}

template <typename T>
inline T positive(T x, T s) {  // g(x), given s = sigmoid(x)
    return x >= 0 ? x + (T)0.5 : s;
}

template <typename T>
inline T positive_grad(T x, T s) {  // g'(x)
    return x >= 0 ? (T)1 : s * ((T)1 - s);
}

// Calls body(t, b, j0, j1) for every time step t and every row b, over the units [n0, n1) of
// the flat (b, j) index: units of one row are contiguous, so each call covers a slice of a row.
template <typename F>
inline void for_units(const ScanArgs& a, int64_t n0, int64_t n1, bool reverse, F body) {
    for (int64_t s = 0; s < a.T; ++s) {
        const int64_t t = reverse ? a.T - 1 - s : s;
        for (int64_t b = n0 / a.H; b * a.H < n1; ++b) {
            const int64_t j0 = std::max(n0 - b * a.H, (int64_t)0), j1 = std::min(n1 - b * a.H, a.H);
            body(t, b, j0, j1);
        }
    }
}

template <typename T>
void scan_forward_range(const ScanArgs& a, int64_t n0, int64_t n1) {
    const int64_t B = a.B, H = a.H, G = (a.kind == 0 ? 2 : 3) * H;
    const T* xp_all = (const T*)a.xp;
    T* hs = (T*)a.hs;
    for_units(a, n0, n1, false, [&](int64_t t, int64_t b, int64_t j0, int64_t j1) {
        const T* prev = t == 0 ? (const T*)a.h0 + b * H : hs + ((t - 1) * B + b) * H;
        T* cur = hs + (t * B + b) * H;
        if (a.keep && !a.keep[t * B + b]) {
            for (int64_t j = j0; j < j1; ++j) cur[j] = prev[j];
            return;
        }
        const T* x = xp_all + (t * B + b) * G;
        if (a.kind == 0) {
#pragma omp simd
            for (int64_t j = j0; j < j1; ++j) {
                const T z = Math<T>::sigmoid(x[j]), xh = x[H + j];
                const T ht = positive(xh, Math<T>::sigmoid(xh));
                cur[j] = prev[j] + z * (ht - prev[j]);
            }
        } else {
#pragma omp simd
            for (int64_t j = j0; j < j1; ++j) {
                const T f = normalised_forget(x[j], x[H + j]);
                const T xh = x[2 * H + j], ht = positive(xh, Math<T>::sigmoid(xh));
                cur[j] = ht + f * (prev[j] - ht);
            }
        }
    });
}

template <typename T>
void scan_backward_range(const ScanArgs& a, int64_t n0, int64_t n1) {
    const int64_t B = a.B, H = a.H, G = (a.kind == 0 ? 2 : 3) * H;
    const T* xp_all = (const T*)a.xp;
    const T* hs = (const T*)a.hs;
    const T* d_hs = (const T*)a.d_hs;
    T* dxp_all = (T*)a.dxp;
    std::vector<T> carry(n1 - n0, (T)0);  // a_{t+1} g_{t+1} of each unit of the range
    for_units(a, n0, n1, true, [&](int64_t t, int64_t b, int64_t j0, int64_t j1) {
        T* g = carry.data() + (b * H - n0);  // g[j]: unit (b, j)
        const T* dh = d_hs + (t * B + b) * H;
        T* dx = dxp_all + (t * B + b) * G;
        if (a.keep && !a.keep[t * B + b]) {  // a = 1, b = 0: the gradient passes through
            for (int64_t j = j0; j < j1; ++j) {
                g[j] += dh[j];
                for (int64_t k = 0; k < G / H; ++k) dx[k * H + j] = 0;
            }
            return;
        }
        const T* prev = t == 0 ? (const T*)a.h0 + b * H : hs + ((t - 1) * B + b) * H;
        const T* x = xp_all + (t * B + b) * G;
        if (a.kind == 0) {
#pragma omp simd
            for (int64_t j = j0; j < j1; ++j) {
                const T gj = g[j] + dh[j];
                const T z = Math<T>::sigmoid(x[j]), xh = x[H + j], s = Math<T>::sigmoid(xh);
                const T ht = positive(xh, s);
                dx[j] = gj * (ht - prev[j]) * z * ((T)1 - z);
                dx[H + j] = gj * z * positive_grad(xh, s);
                g[j] = gj * ((T)1 - z);
            }
        } else {
#pragma omp simd
            for (int64_t j = j0; j < j1; ++j) {
                const T gj = g[j] + dh[j];
                const T xf = x[j], xi = x[H + j], xh = x[2 * H + j], s = Math<T>::sigmoid(xh);
                const T f = normalised_forget(xf, xi);
                const T ht = positive(xh, s);
                const T du = gj * (prev[j] - ht) * f * ((T)1 - f);
                dx[j] = du * Math<T>::sigmoid(-xf);  // d logsigmoid(x) / dx = sigmoid(-x)
                dx[H + j] = -du * Math<T>::sigmoid(-xi);
                dx[2 * H + j] = gj * ((T)1 - f) * positive_grad(xh, s);
                g[j] = gj * f;
            }
        }
    });
    T* dh0 = (T*)a.dh0;
    for (int64_t n = n0; n < n1; ++n) dh0[n] = carry[n - n0];
}

// Splits the B * H units over a.threads threads (at least 64 units each) and runs range on each.
template <typename T>
void split_units(const ScanArgs& a, void (*range)(const ScanArgs&, int64_t, int64_t)) {
    const int64_t N = a.B * a.H;
    const int64_t n = std::max<int64_t>(1, std::min<int64_t>(a.threads, N / 64));
    const int64_t chunk = (N + n - 1) / n;
    std::vector<std::thread> pool;
    for (int64_t i = 1; i < n; ++i)
        pool.emplace_back(range, std::cref(a), std::min(N, i * chunk), std::min(N, (i + 1) * chunk));
    range(a, 0, std::min(N, chunk));
    for (auto& th : pool) th.join();
}

}  // namespace

extern "C" {
void min_scan_forward_f32(const ScanArgs* a) { split_units<float>(*a, scan_forward_range<float>); }
void min_scan_forward_f64(const ScanArgs* a) { split_units<double>(*a, scan_forward_range<double>); }
void min_scan_backward_f32(const ScanArgs* a) { split_units<float>(*a, scan_backward_range<float>); }
void min_scan_backward_f64(const ScanArgs* a) { split_units<double>(*a, scan_backward_range<double>); }
}
