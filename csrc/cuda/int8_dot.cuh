// Integer dot products of the quantized weight formats with int8 activations, as the CPU engine
// computes them (csrc/kernels/quant_32.cpp, quant_k.cpp, activations.cpp):
//   * activations are quantized per block with the CPU's exact rounding, into the CPU's block
//     layouts: BlockQ8Act32 for the 32-element formats, BlockQ8Act256 for the K-quants;
//   * a thread unpacks one piece of a weight row (formats.cuh's pieces) into signed bytes in
//     registers, four to a word, and dots them with the activation bytes four at a time (dp4a);
//   * floats enter once per block or sub-block pair, in the CPU's expressions.
// The integer sums equal the CPU's, so the GPU and CPU engines differ only in the order of float
// additions (and where that moves an activation across a rounding boundary).
//
// Everything is __host__ __device__: host_decode.cu runs the same code on the CPU, where the tests
// check it against the CPU engine and numpy on machines without a GPU.
#pragma once

#include "csrc/cuda/formats.cuh"

namespace edgellama::cuda {

// c + the dot of the four signed bytes of a and b.
EDGELLAMA_HD int dp4a(int a, int b, int c) {
#if defined(__CUDA_ARCH__)
    return __dp4a(a, b, c);
#else
    for (int k = 0; k < 4; ++k) {
        c += static_cast<int8_t>((a >> (8 * k)) & 0xff) * static_cast<int8_t>((b >> (8 * k)) & 0xff);
    }
    return c;
#endif
}

// Subtracts `offset` (< 128) from each byte of w, whose bytes are all below 128, without borrows
// between bytes: set each top bit, subtract, clear the top bits again (two's complement bytes).
EDGELLAMA_HD uint32_t sub_bytes(uint32_t w, uint32_t offset) {
    return ((w | 0x80808080u) - offset * 0x01010101u) ^ 0x80808080u;
}

// ---------------------------------------------------------------- activation quantization

// Scale and code of one activation element: d = max|x over the block| / 127,
// q = clamp(round-half-even(x / d), -127, 127), all-zero codes when d == 0.
EDGELLAMA_HD float act_scale(float block_amax) {
#if defined(__CUDA_ARCH__)
    return __fdiv_rn(block_amax, 127.0f);
#else
    return block_amax / 127.0f;
#endif
}

EDGELLAMA_HD int act_code(float x, float d) {
    if (d == 0.0f) return 0;
#if defined(__CUDA_ARCH__)
    const float r = rintf(__fdiv_rn(x, d));
#else
    const float r = rintf(x / d);  // the default rounding mode: half to even, like nearbyint
#endif
    return static_cast<int>(fminf(127.0f, fmaxf(-127.0f, r)));
}

// ---------------------------------------------------------------- the 32-element formats

// One block of 32 weights as signed byte codes in element order (word k: elements 4k..4k+3), its
// scale d and, for Q4_1/Q5_1, its min m.
struct Block32Codes {
    uint32_t w[8];
    float d;
    float m;
};

// sum of codes x activation bytes of one BlockQ8Act32 (its codes are 8-byte aligned).
EDGELLAMA_HD int dot_block32(const Block32Codes& c, const BlockQ8Act32* a) {
    const auto* aq = reinterpret_cast<const int2*>(a->qs);
    int s = 0;
#pragma unroll
    for (int k = 0; k < 4; ++k) {
        const int2 v = load_ro(aq + k);
        s = dp4a(static_cast<int>(c.w[2 * k]), v.x, s);
        s = dp4a(static_cast<int>(c.w[2 * k + 1]), v.y, s);
    }
    return s;
}

// The block's contribution, as quant_32.cpp's vec_dots: d * da * isum (+ m * activation sum).
template <bool kHasMin>
EDGELLAMA_HD float block32_dot(const Block32Codes& c, const BlockQ8Act32* a) {
    const float isum = static_cast<float>(dot_block32(c, a));
    const float r = mul_rn(mul_rn(c.d, load_ro(&a->d)), isum);
    if constexpr (kHasMin) return add_rn(r, mul_rn(c.m, load_ro(&a->sum)));
    return r;
}

// Nibble word j (bytes 4j..4j+3 of qs) holds elements 4j..4j+3 in its low nibbles and
// 4j+16..4j+19 in its high ones; `high_bits` (Q5) adds bit 4 of element e from bit e.
template <bool kFiveBit>
EDGELLAMA_HD void unpack_nibble_word(uint32_t v, int j, uint32_t high_bits, uint32_t offset, Block32Codes& c) {
    uint32_t lo = v & 0x0f0f0f0fu, hi = (v >> 4) & 0x0f0f0f0fu;
    if constexpr (kFiveBit) {
        lo |= spread_high_bits(high_bits >> (4 * j));
        hi |= spread_high_bits(high_bits >> (4 * j + 16));
    }
    c.w[j] = offset ? sub_bytes(lo, offset) : lo;
    c.w[j + 4] = offset ? sub_bytes(hi, offset) : hi;
}

// What the 32-element formats share: a piece is one block, dotted with one BlockQ8Act32.
template <bool kHasMin>
struct Block32Int8 {
    using Act = BlockQ8Act32;
    using Codes = Block32Codes;
    static constexpr int kPiece = kQK32;
    EDGELLAMA_HD static float dot(const Codes& c, const Act* act, int64_t p) {
        return block32_dot<kHasMin>(c, act + p);
    }
};

struct Int8Q4_0 : Block32Int8<false> {
    EDGELLAMA_HD static Codes load(const uint8_t* row, int64_t p) {
        const auto* b = reinterpret_cast<const BlockQ4_0*>(row) + p;
        Codes c;
        c.d = half_bits_to_float(load_ro(&b->d));
        c.m = 0.0f;
#pragma unroll
        for (int j = 0; j < 4; ++j) unpack_nibble_word<false>(load_u32_2aligned(b->qs + 4 * j), j, 0, 8, c);
        return c;
    }
};

struct Int8Q4_1 : Block32Int8<true> {
    EDGELLAMA_HD static Codes load(const uint8_t* row, int64_t p) {
        const auto* b = reinterpret_cast<const BlockQ4_1*>(row) + p;
        const uint32_t dm = load_ro(reinterpret_cast<const uint32_t*>(b));
        Codes c;
        c.d = half_bits_to_float(static_cast<uint16_t>(dm & 0xffffu));
        c.m = half_bits_to_float(static_cast<uint16_t>(dm >> 16));
        const auto* qs = reinterpret_cast<const uint32_t*>(b->qs);  // 4-byte aligned (20-byte blocks)
#pragma unroll
        for (int j = 0; j < 4; ++j) unpack_nibble_word<false>(load_ro(qs + j), j, 0, 0, c);
        return c;
    }
};

template <class Block, bool kHasMin>
struct Int8Q5 : Block32Int8<kHasMin> {
    using Codes = Block32Codes;
    EDGELLAMA_HD static Codes load(const uint8_t* row, int64_t p) {
        const auto* b = reinterpret_cast<const Block*>(row) + p;
        Codes c;
        c.d = half_bits_to_float(load_ro(&b->d));
        c.m = 0.0f;
        if constexpr (kHasMin) c.m = half_bits_to_float(load_ro(&b->m));
        const uint32_t qh = load_u32_2aligned(b->qh);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            unpack_nibble_word<true>(load_u32_2aligned(b->qs + 4 * j), j, qh, kHasMin ? 0 : 16, c);
        }
        return c;
    }
};

using Int8Q5_0 = Int8Q5<BlockQ5_0, false>;
using Int8Q5_1 = Int8Q5<BlockQ5_1, true>;

struct Int8Q8_0 : Block32Int8<false> {
    EDGELLAMA_HD static Codes load(const uint8_t* row, int64_t p) {
        const auto* b = reinterpret_cast<const BlockQ8_0*>(row) + p;
        Codes c;
        c.d = half_bits_to_float(load_ro(&b->d));
        c.m = 0.0f;
        const auto* qs = reinterpret_cast<const uint8_t*>(b->qs);
#pragma unroll
        for (int k = 0; k < 8; ++k) c.w[k] = load_u32_2aligned(qs + 4 * k);
        return c;
    }
};

// ---------------------------------------------------------------- K-quants

// Q4_K / Q5_K piece p: chunk c = p % 4 of super-block p / 4, i.e. sub-blocks 2c (w[0..7]) and
// 2c + 1 (w[8..15]) as unsigned codes (0..31), their 6-bit scales and mins, d and dmin.
struct KQuantCodes {
    uint32_t w[16];
    int sc0, sc1, mn0, mn1;
    float d, dmin;
};

template <class Block, bool kHighBit>
struct Int8KQuant {
    using Act = BlockQ8Act256;
    static constexpr int kPiece = 64;
    using Codes = KQuantCodes;
    EDGELLAMA_HD static Codes load(const uint8_t* row, int64_t p) {
        const auto* b = reinterpret_cast<const Block*>(row) + p / 4;
        const int c = static_cast<int>(p % 4);
        Codes k;
        const uint32_t dd = load_ro(reinterpret_cast<const uint32_t*>(b));
        k.d = half_bits_to_float(static_cast<uint16_t>(dd & 0xffffu));
        k.dmin = half_bits_to_float(static_cast<uint16_t>(dd >> 16));
        const auto* sw = reinterpret_cast<const uint32_t*>(b->scales);
        const uint32_t s0 = load_ro(sw), s1 = load_ro(sw + 1), s2 = load_ro(sw + 2);
        k_scale_min(s0, s1, s2, 2 * c, k.sc0, k.mn0);
        k_scale_min(s0, s1, s2, 2 * c + 1, k.sc1, k.mn1);
        const uint4* qs = reinterpret_cast<const uint4*>(b->qs + 32 * c);  // 16-byte aligned blocks
        const uint4 qa = load_ro(qs), qb = load_ro(qs + 1);
        const uint32_t q[8] = {qa.x, qa.y, qa.z, qa.w, qb.x, qb.y, qb.z, qb.w};
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            k.w[i] = q[i] & 0x0f0f0f0fu;
            k.w[i + 8] = (q[i] >> 4) & 0x0f0f0f0fu;
        }
        if constexpr (kHighBit) {  // bit j of qh[l] is bit 4 of element l of sub-block j
            const uint4* qh = reinterpret_cast<const uint4*>(b->qh);
            const uint4 ha = load_ro(qh), hb = load_ro(qh + 1);
            const uint32_t h[8] = {ha.x, ha.y, ha.z, ha.w, hb.x, hb.y, hb.z, hb.w};
#pragma unroll
            for (int i = 0; i < 8; ++i) {
                k.w[i] |= ((h[i] >> (2 * c)) & 0x01010101u) << 4;
                k.w[i + 8] |= ((h[i] >> (2 * c + 1)) & 0x01010101u) << 4;
            }
        }
        return k;
    }
    // act.d * (d * (sc0 * isum0 + sc1 * isum1) - dmin * (mn0 * asum0 + mn1 * asum1)), as
    // quant_k.cpp's dot_scaled_mins restricted to the piece's two sub-blocks.
    EDGELLAMA_HD static float dot(const Codes& k, const Act* act, int64_t p) {
        const Act* a = act + p / 4;
        const int c = static_cast<int>(p % 4);
        const auto* aq = reinterpret_cast<const int*>(a->qs) + 16 * c;  // 4-byte aligned (292-byte blocks)
        int i0 = 0, i1 = 0;
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            i0 = dp4a(static_cast<int>(k.w[i]), load_ro(aq + i), i0);
            i1 = dp4a(static_cast<int>(k.w[i + 8]), load_ro(aq + 8 + i), i1);
        }
        const auto* bs = reinterpret_cast<const uint32_t*>(a->bsums) + 2 * c;  // bsums[4c .. 4c+3]
        const uint32_t b01 = load_ro(bs), b23 = load_ro(bs + 1);
        const int asum0 = static_cast<int16_t>(b01 & 0xffffu) + static_cast<int16_t>(b01 >> 16);
        const int asum1 = static_cast<int16_t>(b23 & 0xffffu) + static_cast<int16_t>(b23 >> 16);
        const float isum = static_cast<float>(k.sc0 * i0 + k.sc1 * i1);
        const float imin = static_cast<float>(k.mn0 * asum0 + k.mn1 * asum1);
        return mul_rn(load_ro(&a->d), sub_rn(mul_rn(k.d, isum), mul_rn(k.dmin, imin)));
    }
};

using Int8Q4_K = Int8KQuant<BlockQ4_K, false>;
using Int8Q5_K = Int8KQuant<BlockQ5_K, true>;

// Q6_K piece p: part s = p % 4 of half h = (p / 4) % 2 of super-block p / 8 (elements
// 128h + 32s .. +31, layout at BlockQ6_K) as signed codes q - 32, with the scales of its two
// 16-element sub-blocks (w[0..3] and w[4..7]).
struct Q6KCodes {
    uint32_t w[8];
    int sc0, sc1;
    float d;
};

struct Int8Q6_K {
    using Act = BlockQ8Act256;
    static constexpr int kPiece = 32;
    using Codes = Q6KCodes;
    EDGELLAMA_HD static Codes load(const uint8_t* row, int64_t p) {
        const auto* b = reinterpret_cast<const BlockQ6_K*>(row) + p / 8;  // 2-byte aligned blocks
        const int h = static_cast<int>((p / 4) % 2), s = static_cast<int>(p % 4);
        Codes k;
        k.d = half_bits_to_float(load_ro(&b->d));
        k.sc0 = load_ro(&b->scales[8 * h + 2 * s]);
        k.sc1 = load_ro(&b->scales[8 * h + 2 * s + 1]);
        const uint8_t* ql = b->ql + 64 * h + (s & 1) * 32;
        const uint8_t* qh = b->qh + 32 * h;
        const int low_shift = s < 2 ? 0 : 4;
#pragma unroll
        for (int i = 0; i < 8; ++i) {
            const uint32_t lo = (load_u32_2aligned(ql + 4 * i) >> low_shift) & 0x0f0f0f0fu;
            const uint32_t hi = (load_u32_2aligned(qh + 4 * i) >> (2 * s)) & 0x03030303u;
            k.w[i] = sub_bytes(lo | (hi << 4), 32);
        }
        return k;
    }
    // d * act.d * (sc0 * isum0 + sc1 * isum1), as quant_k.cpp's Q6_K vec_dot per sub-block pair.
    EDGELLAMA_HD static float dot(const Codes& k, const Act* act, int64_t p) {
        const Act* a = act + p / 8;
        const int h = static_cast<int>((p / 4) % 2), s = static_cast<int>(p % 4);
        const auto* aq = reinterpret_cast<const int*>(a->qs) + 32 * h + 8 * s;
        int i0 = 0, i1 = 0;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            i0 = dp4a(static_cast<int>(k.w[i]), load_ro(aq + i), i0);
            i1 = dp4a(static_cast<int>(k.w[i + 4]), load_ro(aq + 4 + i), i1);
        }
        return mul_rn(mul_rn(k.d, load_ro(&a->d)), static_cast<float>(k.sc0 * i0 + k.sc1 * i1));
    }
};

// Calls fn(Int8Fmt{}) for a quantized GGUF type id; false for float types and unknown ids.
template <class Fn>
bool dispatch_int8_format(int32_t type, Fn&& fn) {
    switch (type) {
        case 2: fn(Int8Q4_0{}); return true;
        case 3: fn(Int8Q4_1{}); return true;
        case 6: fn(Int8Q5_0{}); return true;
        case 7: fn(Int8Q5_1{}); return true;
        case 8: fn(Int8Q8_0{}); return true;
        case 12: fn(Int8Q4_K{}); return true;
        case 13: fn(Int8Q5_K{}); return true;
        case 14: fn(Int8Q6_K{}); return true;
        default: return false;
    }
}

// One lane's share of a row's dot with NT activation rows: pieces lane, lane + lanes, ... Each
// piece is unpacked once and dotted with every token. acc[t] += the partial sums, piece by piece.
// Two pieces are loaded before either is used, so a lane keeps twice the bytes in flight (a
// decode GEMV is bound by how much of HBM's latency the loads in flight cover).
template <class Q, int NT>
EDGELLAMA_HD void int8_lane_partial(const uint8_t* row, int64_t n_pieces, int lane, int lanes,
                                    const typename Q::Act* const (&act)[NT], float (&acc)[NT]) {
    int64_t p = lane;
    for (; p + lanes < n_pieces; p += 2 * lanes) {
        const typename Q::Codes first = Q::load(row, p);
        const typename Q::Codes second = Q::load(row, p + lanes);
#pragma unroll
        for (int t = 0; t < NT; ++t) acc[t] += Q::dot(first, act[t], p);
#pragma unroll
        for (int t = 0; t < NT; ++t) acc[t] += Q::dot(second, act[t], p + lanes);
    }
    if (p < n_pieces) {
        const typename Q::Codes last = Q::load(row, p);
#pragma unroll
        for (int t = 0; t < NT; ++t) acc[t] += Q::dot(last, act[t], p);
    }
}

}  // namespace edgellama::cuda
