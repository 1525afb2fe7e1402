// Per-gate layer norm of a whole (rows, H) tensor at once (all steps' products of a sequence),
// forward and backward, its rows split over threads; the gain and bias gradients are accumulated
// in float64 per thread, then summed across threads.
#include <algorithm>
#include <functional>
#include <thread>
#include <vector>

#include "common.h"

namespace {

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
}
