// metahw special functions for hls4ml: raw integers of fixed-point values, integer square
// root, reciprocal square root, unit normalisation and the integer softmax.
//
// Each function implements docs/numerics.md exactly. Static requantisation is an ap_fixed
// assignment into a type that carries the program's rounding and overflow modes; every
// other intermediate type is exact (its width is derived in metahw/hw/hls4ml/head.py).
#ifndef NNET_METAHW_SFU_H_
#define NNET_METAHW_SFU_H_

#include "ap_fixed.h"
#include "ap_int.h"

namespace nnet {
namespace metahw {

// The integer v that a fixed-point value x stands for as v * 2^-F (sign-extended raw bits).
template <int W, int I, bool S, ap_q_mode Q, ap_o_mode O, int N>
ap_int<W + 1> raw_of(const ap_fixed_base<W, I, S, Q, O, N> &x) {
    ap_int_base<W, false> bits = x.range(W - 1, 0);
    ap_int_base<W, S> value = bits;
    return value;
}

// The fixed-point value of type T whose raw integer is v (v must lie in T's integer range).
template <class T, int W, bool S> T from_raw(const ap_int_base<W, S> &v) {
    ap_int_base<T::width, false> bits = v;
    T x;
    x.range(T::width - 1, 0) = bits;
    return x;
}

// Bits of n (0 for n = 0).
inline int bit_length(ap_uint<64> n) {
    int length = 0;
    for (int i = 0; i < 64; i++) {
        if (n[i])
            length = i + 1;
    }
    return length;
}

// floor(sqrt(u)) for 0 <= u < 2^62, digit by digit (31 steps).
inline ap_uint<64> isqrt(ap_uint<64> u) {
    ap_uint<64> root = 0;
    ap_uint<64> bit = ap_uint<64>(1) << 60;
    for (int i = 0; i < 31; i++) {
        if (u >= root + bit) {
            u -= root + bit;
            root = (root >> 1) + bit;
        } else {
            root >>= 1;
        }
        bit >>= 2;
    }
    return root;
}

// 1/sqrt(n) ~= r * 2^-e for 0 <= n < 2^62; rsqrt(0) = (0, 0).
// s = ceil((L - 32) / 2), m = n >> 2s (n << -2s) in [2^30, 2^32), r = isqrt(floor(2^62 / m)), e = 31 + s.
inline void rsqrt(ap_uint<64> n, ap_uint<17> &r, int &e) {
    if (n == 0) {
        r = 0;
        e = 0;
        return;
    }
    int a = bit_length(n) - 32;
    int s = a >= 0 ? (a + 1) / 2 : -((-a) / 2);
    ap_uint<64> m = s >= 0 ? ap_uint<64>(n >> (2 * s)) : ap_uint<64>(n << (-2 * s));
    r = isqrt((ap_uint<64>(1) << 62) / m);
    e = 31 + s;
}

// Row x [n] scaled to unit length in unit_T: u_d = requantise(x_d * r, from frac e), (r, e) = rsqrt(sum x_d^2)
// over the raw integers of x (its format cancels). wide_T holds x_d * r exactly at WIDE_FRAC >= e fractional bits,
// so the assignment to unit_T is the one rounding (and saturation) of the definition.
template <class wide_T, int WIDE_FRAC, int N, class x_T, class unit_T> void normalize(x_T x[N], unit_T u[N]) {
    ap_uint<64> squares = 0;
    for (int d = 0; d < N; d++) {
        ap_int<x_T::width + 1> v = raw_of(x[d]);
        squares += ap_uint<64>(v * v);
    }
    ap_uint<17> r;
    int e;
    rsqrt(squares, r, e);
    for (int d = 0; d < N; d++) {
        ap_int<wide_T::width> v = raw_of(x[d]) * r;
        v = v << (WIDE_FRAC - e);
        u[d] = from_raw<wide_T>(v);
    }
}

// Integer softmax of one row (docs/numerics.md §5 Softmax), with CONFIG_T's sm_* parameters:
// k = -(x - max x) at sm_index_t (program rounding, never clipped); e = table[k] (0 beyond the table);
// r = floor(2^(E+R) / sum e); p = requantise(e * r, from frac E+R) by assignment to p_T.
template <class CONFIG_T, int N, class x_T, class table_T, class p_T>
void softmax_row(x_T x[N], table_T table[CONFIG_T::sm_size], p_T p[N]) {
    x_T top = x[0];
    for (int n = 1; n < N; n++) {
        if (x[n] > top)
            top = x[n];
    }
    ap_uint<64> e[N];
    ap_uint<64> sum = 0;
    for (int n = 0; n < N; n++) {
        // exact and wide: rounding it to sm_index_t never reads a bit beyond its MSB (ap_fixed asserts on that when
        // more fractional bits are dropped than the difference has bits, e.g. logits sq16.22 to index_frac 4)
        ap_fixed<x_T::width + 65, x_T::iwidth + 65> diff = x[n] - top;
        typename CONFIG_T::sm_index_t d = diff;
        ap_int<CONFIG_T::sm_index_t::width + 2> k = -raw_of(d);
        e[n] = k < CONFIG_T::sm_size ? ap_uint<64>(table[k.to_int()]) : ap_uint<64>(0);
        sum += e[n];
    }
    ap_uint<64> r = (ap_uint<64>(1) << (CONFIG_T::sm_exp_frac + CONFIG_T::sm_recip_bits)) / sum;
    for (int n = 0; n < N; n++) {
        p[n] = from_raw<typename CONFIG_T::sm_prod_t>(ap_uint<64>(e[n] * r));
    }
}

} // namespace metahw
} // namespace nnet

#endif
