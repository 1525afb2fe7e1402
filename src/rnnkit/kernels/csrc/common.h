// What every kernel file shares: the float32/float64 maths, the layer-norm moments and their
// backward, the split of a step's batch rows over threads, the argument structs the Python loader
// (rnnkit/kernels/cpu.py) fills through ctypes, and the macro that exports a step kernel for both
// dtypes. Plain C++14, no torch headers.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>
#ifdef _OPENMP
#include <omp.h>
#endif

// threads.cpp: at most this many threads split a step's rows (set by the loader; default: no limit).
int64_t rnnkit_thread_limit();

namespace {

template <typename T> struct Math;

template <> struct Math<double> {
    static inline double exp(double x) { return std::exp(x); }
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

// Threads: a step kernel splits its batch rows over OpenMP threads (`#pragma omp parallel for`
// over b, static schedule: each row's arithmetic is the same whichever thread does it). The
// library links the OpenMP runtime by its name, libgomp.so.1, which is the one torch has loaded:
// the threads are torch's intra-op threads (as many as torch.get_num_threads() on the calling
// thread), still spinning from the step's matrix product. The loader lowers rnnkit_thread_limit
// (threads.cpp) to 1 unless it sees that the library's runtime is the one torch had loaded.
// Built without OpenMP, the pragmas are ignored and one thread runs.

// Below this many hidden units per step (B * H), waking the other threads costs more than it saves.
constexpr int64_t kMinParallelUnits = 1 << 13;

// How many threads a step over B rows of H units runs on.
inline int64_t step_threads(int64_t B, int64_t H) {
#ifdef _OPENMP
    if (B * H < kMinParallelUnits) return 1;
    const int64_t threads = std::min<int64_t>(omp_get_max_threads(), rnnkit_thread_limit());
    return std::max<int64_t>(1, std::min(threads, B));
#else
    (void)B;
    (void)H;
    return 1;
#endif
}

// This thread's index in the team (0 outside a parallel region).
inline int64_t thread_index() {
#ifdef _OPENMP
    return omp_get_thread_num();
#else
    return 0;
#endif
}

// A step's scratch row of H values for this thread: the struct's own for the first thread (as
// when one thread runs), a buffer kept per thread (and dtype) for the others.
template <typename T>
inline T* thread_scratch(void* shared, int64_t H) {
    if (thread_index() == 0) return (T*)shared;
    static thread_local std::vector<T> own;
    if ((int64_t)own.size() < H) own.resize(H);
    return own.data();
}

}  // namespace

// The structs below are mirrored by ctypes Structures in rnnkit/kernels/cpu.py and described to
// it by layout.cpp: a field added, removed or moved here changes both of those too, or the
// loader refuses the library (and torch operations run instead).
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
    void* scratch;       // (H) the first thread's; the others have their own (thread_scratch)
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
    void* scratch;       // (H) the first thread's; the others have their own (thread_scratch)
};

// One direction of a minGRU (kind 0) or minLSTM (kind 1) layer over a whole sequence: the
// gates from the projected input and the linear recurrence h_t = a_t h_tm1 + b_t, forward and
// backward, the B * H units split over threads (each unit's steps in time order on one thread).
struct ScanArgs {
    int64_t T, B, H, kind, threads;
    const void* xp;      // (T, B, G) projected input, G = 2H (z, h) or 3H (f, i, h)
    const void* h0;      // (B, H)
    const uint8_t* keep; // (T, B) mask, or null
    void* hs;            // (T, B, H) the states (past a length: the state kept)
    const void* d_hs;    // backward: (T, B, H) gradient of hs
    void* dxp;           // backward, out: (T, B, G)
    void* dh0;           // backward, out: (B, H)
};

}  // extern "C"

// Exports step kernel `name` for float32 and float64 as `name_f32` and `name_f64`, called from
// Python with one struct of pointers and the step index t.
#define RNNKIT_EXPORT(name, Args)                                                  \
    void name##_f32(const Args* a, int64_t t) { name<float>(*a, t); }               \
    void name##_f64(const Args* a, int64_t t) { name<double>(*a, t); }
