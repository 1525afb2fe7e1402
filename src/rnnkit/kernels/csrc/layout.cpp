// Describes the argument structs of common.h to the Python loader (rnnkit/kernels/cpu.py), which
// fills them through ctypes Structures of its own: it compares each struct's size and each
// field's name, offset and size with these before it uses the library, so that a struct changed
// on one side only is caught at load time rather than read as the wrong pointer at the first call.
#include <cstddef>

#include "common.h"

namespace {

struct Field {
    const char* name;
    int64_t offset, size;
};

// out[0] = the struct's size and, for each field k < n in declaration order, out[1 + 2k] its
// offset, out[2 + 2k] its size and names[k] its name (out holds 1 + 2n values, names n; out may
// be null when n is 0). Returns the number of fields, whatever n is: call with n = 0 to learn it.
template <size_t N>
int64_t describe(int64_t size, const Field (&fields)[N], int64_t* out, const char** names, int64_t n) {
    if (out) out[0] = size;
    for (int64_t k = 0; k < (int64_t)N && k < n; ++k) {
        out[1 + 2 * k] = fields[k].offset;
        out[2 + 2 * k] = fields[k].size;
        names[k] = fields[k].name;
    }
    return (int64_t)N;
}

}  // namespace

// In declaration order: a field listed here by name reports where the compiler put it.
#define RNNKIT_FIELD(S, f) Field{#f, (int64_t)offsetof(S, f), (int64_t)sizeof(S::f)}

extern "C" {

int64_t rnnkit_layout_lstm_args(int64_t* out, const char** names, int64_t n) {
#define F(f) RNNKIT_FIELD(LSTMArgs, f)
    static const Field fields[] = {
        F(T), F(B), F(H), F(eps), F(gx), F(acts), F(z), F(rstd_hh), F(gain_hh), F(peep), F(ln_w), F(ln_b),
        F(stats_c), F(h0), F(hs), F(cs), F(tcs), F(keep), F(d_out), F(dh), F(dc), F(carry), F(dG), F(dZ),
        F(d_cout), F(scratch),
    };
#undef F
    return describe(sizeof(LSTMArgs), fields, out, names, n);
}

int64_t rnnkit_layout_gru_args(int64_t* out, const char** names, int64_t n) {
#define F(f) RNNKIT_FIELD(GRUArgs, f)
    static const Field fields[] = {
        F(T), F(B), F(H), F(eps), F(gx), F(h0), F(hs), F(acts), F(zp), F(zn), F(rstd), F(gain), F(bias),
        F(ghn), F(rh), F(keep), F(d_out), F(dh), F(carry), F(dG), F(dGh), F(dZ), F(dZn), F(drh), F(scratch),
    };
#undef F
    return describe(sizeof(GRUArgs), fields, out, names, n);
}

int64_t rnnkit_layout_norm_args(int64_t* out, const char** names, int64_t n) {
#define F(f) RNNKIT_FIELD(NormArgs, f)
    static const Field fields[] = {
        F(rows), F(H), F(gates), F(threads), F(eps), F(z), F(out), F(xhat), F(rstd), F(gain), F(bias), F(dy),
        F(dz), F(d_gain), F(d_bias),
    };
#undef F
    return describe(sizeof(NormArgs), fields, out, names, n);
}

int64_t rnnkit_layout_scan_args(int64_t* out, const char** names, int64_t n) {
#define F(f) RNNKIT_FIELD(ScanArgs, f)
    static const Field fields[] = {
        F(T), F(B), F(H), F(kind), F(threads), F(xp), F(h0), F(keep), F(hs), F(d_hs), F(dxp), F(dh0),
    };
#undef F
    return describe(sizeof(ScanArgs), fields, out, names, n);
}

}  // extern "C"
