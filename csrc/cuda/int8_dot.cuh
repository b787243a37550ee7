// Integer dot products of the quantized weight formats with int8 activations, with the CPU
// engine's activation rounding and expressions (csrc/kernels/quant_32.cpp, quant_k.cpp,
// activations.cpp):
//   * activations are quantized per block of 32 (the 32-element formats) or 256 (K-quants) with
//     the CPU's exact rounding: the same codes, scales and sums as BlockQ8Act32 / BlockQ8Act256,
//     stored as three arrays a row (codes, scales, sums: ActRow32 / ActRow256) so that lanes
//     reading neighbouring words read neighbouring addresses;
//   * a piece of a weight row (formats.cuh's pieces) is shared by kLanes lanes: each unpacks its
//     two words of codes into signed bytes and dots them with the matching activation words
//     (dp4a); its partial is scaled in the CPU's expression for the block or sub-block pair
//     (mins and offsets added by the piece's first lane), and the warp sums the lanes;
//   * a lane keeps several pieces of several rows in flight before using them (int8_lane_partial).
// GPU and CPU differ only in the order of float additions (and where that moves an activation
// across a rounding boundary).
//
// Everything is __host__ __device__: host_decode.cu runs the same code on the CPU, where the tests
// check it against the CPU engine and numpy on machines without a GPU.
#pragma once

#include <cstddef>

#include "csrc/cuda/common.cuh"
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

// ---------------------------------------------------------------- activation rows

// A row of `cols` int8 activations as the device stores it, in act_row_bytes(format, cols) bytes
// (the CPU's size), 4-byte aligned: [codes: cols bytes][scales: one float a block][sums], the sums
// being one float a block (32) or sixteen int16 a block (256: sums of 16 codes, read in pairs).
EDGELLAMA_HD int64_t act_scales_offset(int64_t cols) { return cols; }
EDGELLAMA_HD int64_t act_sums_offset(int64_t cols, int block) { return cols + (cols / block) * 4; }

struct ActRow32 {
    const int* qs = nullptr;     // word k of block b: qs[8b + k]
    const float* d = nullptr;    // d[b]
    const float* sum = nullptr;  // sum[b] = d[b] * (sum of block b's codes)
    ActRow32() = default;
    EDGELLAMA_HD ActRow32(const uint8_t* row, int64_t cols)
        : qs(reinterpret_cast<const int*>(row)),
          d(reinterpret_cast<const float*>(row + act_scales_offset(cols))),
          sum(reinterpret_cast<const float*>(row + act_sums_offset(cols, kQK32))) {}
};

struct ActRow256 {
    const int* qs = nullptr;          // word k of block b: qs[64b + k]
    const float* d = nullptr;         // d[b]
    const uint32_t* bsums = nullptr;  // sums of codes 16i .. 16i+15 of block b, two int16 a word: bsums[8b + i/2]
    ActRow256() = default;
    EDGELLAMA_HD ActRow256(const uint8_t* row, int64_t cols)
        : qs(reinterpret_cast<const int*>(row)),
          d(reinterpret_cast<const float*>(row + act_scales_offset(cols))),
          bsums(reinterpret_cast<const uint32_t*>(row + act_sums_offset(cols, kQK256))) {}
};

// The two int16 of a word, added.
EDGELLAMA_HD int sum_of_halves(uint32_t w) {
    return static_cast<int16_t>(w & 0xffffu) + static_cast<int16_t>(w >> 16);
}

// ---------------------------------------------------------------- the 32-element formats

// Lane j (0..3) of a block's four: words j and 4 + j of its codes, i.e. elements 4j..4j+3 (lo) and
// 16+4j..16+4j+3 (hi) — the low and high nibbles of the 4-bit formats' byte word j.
struct Block32Codes {
    uint32_t lo, hi;
    float d, m;
};
struct Block32Slice {
    int lo, hi;
    float d, sum;
};

// What the 32-element formats share: a piece is one block, four lanes to a block.
template <bool kMin>
struct Block32Int8 {
    using ActRow = ActRow32;
    using Codes = Block32Codes;
    using Slice = Block32Slice;
    static constexpr int kPiece = kQK32;
    static constexpr int kLanes = 4;
    static constexpr int kInFlight = 8;  // pieces a lane loads before using any (decode)
    static constexpr bool kHasMin = kMin;
    EDGELLAMA_HD static Slice load_act(const ActRow& a, int64_t p, int j) {
        Slice s;
        s.lo = load_ro(a.qs + 8 * p + j);
        s.hi = load_ro(a.qs + 8 * p + 4 + j);
        s.d = load_ro(a.d + p);
        s.sum = kMin ? load_ro(a.sum + p) : 0.0f;
        return s;
    }
    // d * da * isum, plus m * (activation sum) once a block (lane 0), as quant_32.cpp.
    EDGELLAMA_HD static float dot(const Codes& c, const Slice& s, int j) {
        const int isum = dp4a(static_cast<int>(c.hi), s.hi, dp4a(static_cast<int>(c.lo), s.lo, 0));
        const float r = mul_rn(mul_rn(c.d, s.d), static_cast<float>(isum));
        if constexpr (kMin) return j == 0 ? add_rn(r, mul_rn(c.m, s.sum)) : r;
        return r;
    }
};

// Nibble word v of a 4-bit block as codes (minus offset); `high_bits` (Q5) adds bit 4 of element
// e from bit e.
template <bool kFiveBit>
EDGELLAMA_HD void unpack_nibble_word(uint32_t v, int j, uint32_t high_bits, uint32_t offset, Block32Codes& c) {
    uint32_t lo = v & 0x0f0f0f0fu, hi = (v >> 4) & 0x0f0f0f0fu;
    if constexpr (kFiveBit) {
        lo |= spread_high_bits(high_bits >> (4 * j));
        hi |= spread_high_bits(high_bits >> (4 * j + 16));
    }
    c.lo = offset ? sub_bytes(lo, offset) : lo;
    c.hi = offset ? sub_bytes(hi, offset) : hi;
}

// Q4_0 and Q8_0, their blocks where Fields says (formats.cuh: Gguf32Fields, GroupedBlock32).
template <class Fields>
struct Int8Q4_0Of : Block32Int8<false> {
    EDGELLAMA_HD static Codes load(const uint8_t* row, int64_t p, int j) {
        Codes c;
        c.d = Fields::scale(row, p);
        c.m = 0.0f;
        unpack_nibble_word<false>(Fields::code_word(row, p, j), j, 0, 8, c);
        return c;
    }
};
using Int8Q4_0 = Int8Q4_0Of<Gguf32Fields<BlockQ4_0>>;

struct Int8Q4_1 : Block32Int8<true> {
    EDGELLAMA_HD static Codes load(const uint8_t* row, int64_t p, int j) {
        const auto* b = reinterpret_cast<const BlockQ4_1*>(row) + p;
        const uint32_t dm = load_ro(reinterpret_cast<const uint32_t*>(b));
        Codes c;
        c.d = half_bits_to_float(static_cast<uint16_t>(dm & 0xffffu));
        c.m = half_bits_to_float(static_cast<uint16_t>(dm >> 16));
        // 4-byte aligned (20-byte blocks)
        unpack_nibble_word<false>(load_ro(reinterpret_cast<const uint32_t*>(b->qs) + j), j, 0, 0, c);
        return c;
    }
};

template <class Block, bool kHasMin>
struct Int8Q5 : Block32Int8<kHasMin> {
    using Codes = Block32Codes;
    EDGELLAMA_HD static Codes load(const uint8_t* row, int64_t p, int j) {
        const auto* b = reinterpret_cast<const Block*>(row) + p;
        Codes c;
        c.d = half_bits_to_float(load_ro(&b->d));
        c.m = 0.0f;
        if constexpr (kHasMin) c.m = half_bits_to_float(load_ro(&b->m));
        unpack_nibble_word<true>(load_u32_2aligned(b->qs + 4 * j), j, load_u32_2aligned(b->qh), kHasMin ? 0 : 16, c);
        return c;
    }
};

using Int8Q5_0 = Int8Q5<BlockQ5_0, false>;
using Int8Q5_1 = Int8Q5<BlockQ5_1, true>;

template <class Fields>
struct Int8Q8_0Of : Block32Int8<false> {
    EDGELLAMA_HD static Codes load(const uint8_t* row, int64_t p, int j) {
        Codes c;
        c.d = Fields::scale(row, p);
        c.m = 0.0f;
        c.lo = Fields::code_word(row, p, j);
        c.hi = Fields::code_word(row, p, 4 + j);
        return c;
    }
};
using Int8Q8_0 = Int8Q8_0Of<Gguf32Fields<BlockQ8_0>>;

// Q4_0 and Q8_0 in grouped rows (grouped_rows.h), for the tensor-core tiles: the lanes and codes of
// Int8Q4_0 / Int8Q8_0, each word of codes one 4-byte load.
using Int8Q4_0Grouped = Int8Q4_0Of<GroupedQ4_0>;
using Int8Q8_0Grouped = Int8Q8_0Of<GroupedQ8_0>;

// The GEMV's readers of grouped Q4_0 / Q8_0: a lane a block, its codes in one (Q4_0) or two (Q8_0)
// 16-byte loads and the activation block's in two, so a warp's loads of a step are 512 (1024)
// contiguous bytes of codes. The block's integer sum is complete before it is scaled, d_w * d_a *
// isum, as quant_32.cpp's vec_dot computes a block.
template <class Grouped, bool kNibbles>
struct Int8Block32Wide {
    static constexpr int kCodeWords = kNibbles ? 4 : 8;
    struct Codes {
        uint32_t q[kCodeWords];
        float d;
    };
    struct Slice {
        int a[8];
        float d;
    };
    using ActRow = ActRow32;
    static constexpr int kPiece = kQK32;
    static constexpr int kLanes = 1;
    static constexpr int kInFlight = 4;
    EDGELLAMA_HD static Codes load(const uint8_t* row, int64_t p, int) {
        const uint8_t* codes = Grouped::codes(row, p);
        Codes c;
#pragma unroll
        for (int h = 0; h < kCodeWords / 4; ++h) u128_words(load_u128(codes + 16 * h), c.q + 4 * h);
        c.d = Grouped::scale(row, p);
        return c;
    }
    EDGELLAMA_HD static Slice load_act(const ActRow& a, int64_t p, int) {
        const auto* codes = reinterpret_cast<const uint8_t*>(a.qs + 8 * p);  // 16-byte aligned blocks
        Slice s;
        u128_words(load_u128(codes), s.a);
        u128_words(load_u128(codes + 16), s.a + 4);
        s.d = load_ro(a.d + p);
        return s;
    }
    EDGELLAMA_HD static float dot(const Codes& c, const Slice& s, int) {
        int isum = 0;
#pragma unroll
        for (int k = 0; k < 4; ++k) {
            if constexpr (kNibbles) {  // word k: elements 4k.. (low nibbles) and 16 + 4k.. (high)
                isum = dp4a(static_cast<int>(sub_bytes(c.q[k] & 0x0f0f0f0fu, 8)), s.a[k], isum);
                isum = dp4a(static_cast<int>(sub_bytes((c.q[k] >> 4) & 0x0f0f0f0fu, 8)), s.a[4 + k], isum);
            } else {
                isum = dp4a(static_cast<int>(c.q[k]), s.a[k], isum);
                isum = dp4a(static_cast<int>(c.q[4 + k]), s.a[4 + k], isum);
            }
        }
        return mul_rn(mul_rn(c.d, s.d), static_cast<float>(isum));
    }
};

using Int8Q4_0GroupedWide = Int8Block32Wide<GroupedQ4_0, true>;
using Int8Q8_0GroupedWide = Int8Block32Wide<GroupedQ8_0, false>;

// ---------------------------------------------------------------- K-quants

// Q4_K / Q5_K piece p: chunk c = p % 4 of super-block p / 4 (sub-blocks 2c and 2c + 1), eight
// lanes to a chunk. Lane j takes byte word j of the chunk's codes: elements 4j..4j+3 of sub-block
// 2c (lo, low nibbles) and of sub-block 2c + 1 (hi, high nibbles), as unsigned codes.
struct KQuantCodes {
    uint32_t lo, hi;
    int sc0, sc1, mn0, mn1;
    float d, dmin;
};
struct KQuantSlice {
    int lo, hi;
    float d;
    int asum0, asum1;  // activation sums of sub-blocks 2c and 2c + 1
};

// What both K-quant readers (Int8KQuant, Int8KQuantWide) share.
// d, dmin and the 6-bit scales and mins of sub-blocks 2c and 2c + 1, from a super-block's first
// four words (the f16 pair, then the 12 scale bytes).
template <class Codes>
EDGELLAMA_HD void kquant_chunk_scales(uint32_t dd, uint32_t s0, uint32_t s1, uint32_t s2, int c, Codes& k) {
    k.d = half_bits_to_float(static_cast<uint16_t>(dd & 0xffffu));
    k.dmin = half_bits_to_float(static_cast<uint16_t>(dd >> 16));
    k_scale_min(s0, s1, s2, 2 * c, k.sc0, k.mn0);
    k_scale_min(s0, s1, s2, 2 * c + 1, k.sc1, k.mn1);
}

// Q5_K: bit 4 of four elements of sub-block `sub` (bit i of qh[l] is bit 4 of element l of
// sub-block i), in bit 4 of each byte.
EDGELLAMA_HD uint32_t kquant_fifth_bits(uint32_t qh, int sub) { return ((qh >> sub) & 0x01010101u) << 4; }

// The activation scale of super-block sb and the sums of its sub-blocks 2c and 2c + 1.
template <class Slice>
EDGELLAMA_HD void kquant_act_sums(const ActRow256& a, int64_t sb, int c, Slice& s) {
    s.d = load_ro(a.d + sb);
    s.asum0 = sum_of_halves(load_ro(a.bsums + 8 * sb + 2 * c));
    s.asum1 = sum_of_halves(load_ro(a.bsums + 8 * sb + 2 * c + 1));
}

// act_d * (d * isum - dmin * imin), as quant_k.cpp's dot_scaled_mins rounds it (also the
// tensor-core tiles' super-block term).
EDGELLAMA_HD float kquant_scaled(float act_d, float d, float dmin, int isum, int imin) {
    return mul_rn(act_d, sub_rn(mul_rn(d, static_cast<float>(isum)), mul_rn(dmin, static_cast<float>(imin))));
}

// A lane's term of a chunk: isum = sc0 * (its dot with sub-block 2c) + sc1 * (with 2c + 1); the
// min term mn0 * asum0 + mn1 * asum1 is taken by the chunk's first lane.
template <class Codes, class Slice>
EDGELLAMA_HD float kquant_chunk_dot(const Codes& k, const Slice& s, int j, int isum) {
    const int imin = j == 0 ? k.mn0 * s.asum0 + k.mn1 * s.asum1 : 0;
    return kquant_scaled(s.d, k.d, k.dmin, isum, imin);
}

template <class Block, bool kHighBit>
struct Int8KQuant {
    using ActRow = ActRow256;
    using Codes = KQuantCodes;
    using Slice = KQuantSlice;
    static constexpr int kPiece = 64;
    static constexpr int kLanes = 8;
    static constexpr int kInFlight = 8;
    EDGELLAMA_HD static Codes load(const uint8_t* row, int64_t p, int j) {
        const auto* b = reinterpret_cast<const Block*>(row) + p / 4;
        const int c = static_cast<int>(p % 4);
        Codes k;
        const auto* sw = reinterpret_cast<const uint32_t*>(b->scales);
        kquant_chunk_scales(load_ro(reinterpret_cast<const uint32_t*>(b)), load_ro(sw), load_ro(sw + 1), load_ro(sw + 2),
                            c, k);
        const uint32_t q = load_ro(reinterpret_cast<const uint32_t*>(b->qs + 32 * c) + j);  // 16-byte aligned blocks
        k.lo = q & 0x0f0f0f0fu;
        k.hi = (q >> 4) & 0x0f0f0f0fu;
        if constexpr (kHighBit) {  // bit i of qh[l] is bit 4 of element l of sub-block i
            const uint32_t h = load_ro(reinterpret_cast<const uint32_t*>(b->qh) + j);
            k.lo |= kquant_fifth_bits(h, 2 * c);
            k.hi |= kquant_fifth_bits(h, 2 * c + 1);
        }
        return k;
    }
    EDGELLAMA_HD static Slice load_act(const ActRow& a, int64_t p, int j) {
        const int64_t sb = p / 4;
        const int c = static_cast<int>(p % 4);
        Slice s;
        s.lo = load_ro(a.qs + 64 * sb + 16 * c + j);
        s.hi = load_ro(a.qs + 64 * sb + 16 * c + 8 + j);
        kquant_act_sums(a, sb, c, s);
        return s;
    }
    // act.d * (d * (sc0 * isum0 + sc1 * isum1) - dmin * (mn0 * asum0 + mn1 * asum1)) as
    // quant_k.cpp's dot_scaled_mins, the min term taken by the chunk's first lane.
    EDGELLAMA_HD static float dot(const Codes& k, const Slice& s, int j) {
        return kquant_chunk_dot(k, s, j,
                                k.sc0 * dp4a(static_cast<int>(k.lo), s.lo, 0) + k.sc1 * dp4a(static_cast<int>(k.hi), s.hi, 0));
    }
};

using Int8Q4_K = Int8KQuant<BlockQ4_K, false>;
using Int8Q5_K = Int8KQuant<BlockQ5_K, true>;


// The GEMV's reader of Q4_K / Q5_K: the same chunks (piece p = chunk p % 4 of super-block p / 4),
// two lanes to a chunk, each reading its half with two 16-byte loads (super-blocks are 144 / 176
// bytes, so 16-byte aligned in 16-byte aligned rows): the super-block's header (d, dmin, scales)
// and bytes 16j..16j+15 of the chunk's codes, i.e. elements 16j..16j+15 of sub-blocks 2c (lo,
// low nibbles) and 2c + 1 (hi). Eight lanes a chunk with a word each (Int8KQuant, which the
// tensor-core tiles need) issue five loads for four bytes of codes; this issues two for sixteen.
struct WideKQuantCodes {
    uint32_t lo[4], hi[4];
    int sc0, sc1, mn0, mn1;
    float d, dmin;
};
struct WideKQuantSlice {
    int lo[4], hi[4];
    float d;
    int asum0, asum1;
};

template <class Block, bool kHighBit>
struct Int8KQuantWide {
    using ActRow = ActRow256;
    using Codes = WideKQuantCodes;
    using Slice = WideKQuantSlice;
    static constexpr int kPiece = 64;
    static constexpr int kLanes = 2;
    static constexpr int kInFlight = 4;  // 14 registers a piece
    EDGELLAMA_HD static Codes load(const uint8_t* row, int64_t p, int j) {
        const uint8_t* b = row + (p / 4) * sizeof(Block);
        const int c = static_cast<int>(p % 4);
        const uint4 head = load_u128(b);  // d and dmin, then the 12 scale bytes
        const uint4 q = load_u128(b + offsetof(Block, qs) + 32 * c + 16 * j);
        Codes k;
        kquant_chunk_scales(head.x, head.y, head.z, head.w, c, k);
        const uint32_t words[4] = {q.x, q.y, q.z, q.w};
        uint32_t h[4] = {0, 0, 0, 0};
        if constexpr (kHighBit) {  // bit i of qh[l] is bit 4 of element l of sub-block i
            const uint4 qh = load_u128(b + offsetof(Block, qh) + 16 * j);
            h[0] = qh.x, h[1] = qh.y, h[2] = qh.z, h[3] = qh.w;
        }
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            k.lo[i] = words[i] & 0x0f0f0f0fu;
            k.hi[i] = (words[i] >> 4) & 0x0f0f0f0fu;
            if constexpr (kHighBit) {
                k.lo[i] |= kquant_fifth_bits(h[i], 2 * c);
                k.hi[i] |= kquant_fifth_bits(h[i], 2 * c + 1);
            }
        }
        return k;
    }
    EDGELLAMA_HD static Slice load_act(const ActRow& a, int64_t p, int j) {
        const int64_t sb = p / 4;
        const int c = static_cast<int>(p % 4);
        const int* lo = a.qs + 64 * sb + 16 * c + 4 * j;  // words of sub-block 2c, then 2c + 1
        Slice s;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            s.lo[i] = load_ro(lo + i);
            s.hi[i] = load_ro(lo + 8 + i);
        }
        kquant_act_sums(a, sb, c, s);
        return s;
    }
    // Int8KQuant::dot's expression over the lane's 16 elements of each sub-block.
    EDGELLAMA_HD static float dot(const Codes& k, const Slice& s, int j) {
        int isum0 = 0, isum1 = 0;
#pragma unroll
        for (int i = 0; i < 4; ++i) {
            isum0 = dp4a(static_cast<int>(k.lo[i]), s.lo[i], isum0);
            isum1 = dp4a(static_cast<int>(k.hi[i]), s.hi[i], isum1);
        }
        return kquant_chunk_dot(k, s, j, k.sc0 * isum0 + k.sc1 * isum1);
    }
};

// Q6_K piece p: part s = p % 4 of half h = (p / 4) % 2 of super-block p / 8 (elements
// 128h + 32s .. +31, layout at BlockQ6_K), four lanes to a part. Lane j takes elements
// 8j..8j+7 as signed codes q - 32 (two words), all in one 16-element sub-block.
struct Q6KCodes {
    uint32_t w0, w1;
    int sc;
    float d;
};
struct Q6KSlice {
    int a0, a1;
    float d;
};

// Fields: where super-block p / 8's fields are (formats.cuh: Q6KFields, the GGUF block, 2-byte
// aligned; GroupedQ6KFields, a grouped row).
template <class Fields>
struct Int8Q6KOf {
    using ActRow = ActRow256;
    using Codes = Q6KCodes;
    using Slice = Q6KSlice;
    static constexpr int kPiece = 32;
    static constexpr int kLanes = 4;
    static constexpr int kInFlight = 8;
    EDGELLAMA_HD static Codes load(const uint8_t* row, int64_t p, int j) {
        const Q6KParts b = Fields::at(row, p / 8);
        const int h = static_cast<int>((p / 4) % 2), s = static_cast<int>(p % 4);
        Codes k;
        k.d = half_bits_to_float(load_ro(b.d));
        k.sc = load_ro(&b.scales[8 * h + 2 * s + j / 2]);
        const uint8_t* ql = b.ql + 64 * h + (s & 1) * 32 + 8 * j;
        const uint8_t* qh = b.qh + 32 * h + 8 * j;
        const int low_shift = s < 2 ? 0 : 4;
        const auto code_word = [&](int i) {
            const uint32_t lo = (load_u32_2aligned(ql + 4 * i) >> low_shift) & 0x0f0f0f0fu;
            const uint32_t hi = (load_u32_2aligned(qh + 4 * i) >> (2 * s)) & 0x03030303u;
            return sub_bytes(lo | (hi << 4), 32);
        };
        k.w0 = code_word(0);
        k.w1 = code_word(1);
        return k;
    }
    EDGELLAMA_HD static Slice load_act(const ActRow& a, int64_t p, int j) {
        const int64_t sb = p / 8;
        const int h = static_cast<int>((p / 4) % 2), s = static_cast<int>(p % 4);
        const int* q = a.qs + 64 * sb + 32 * h + 8 * s + 2 * j;
        Slice sl;
        sl.a0 = load_ro(q);
        sl.a1 = load_ro(q + 1);
        sl.d = load_ro(a.d + sb);
        return sl;
    }
    // d * act.d * (scale * isum), as quant_k.cpp's Q6_K vec_dot per sub-block.
    EDGELLAMA_HD static float dot(const Codes& k, const Slice& s, int) {
        const int isum = dp4a(static_cast<int>(k.w1), s.a1, dp4a(static_cast<int>(k.w0), s.a0, 0));
        return mul_rn(mul_rn(k.d, s.d), static_cast<float>(k.sc * isum));
    }
};

using Int8Q6_K = Int8Q6KOf<Q6KFields>;
using Int8Q6_KGrouped = Int8Q6KOf<GroupedQ6KFields>;

// The GEMV's reader of grouped Q6_K: piece p is half h = p % 2 of super-block p / 2 (128
// elements), two lanes to a half. Lane j takes l = 16j..16j+15 of all four parts s (elements
// 32s + l of the half, sub-blocks 2s + j): 16 bytes each of ql[l], ql[32 + l] and qh[l], three
// 16-byte loads for 64 codes, and the half's 8 scale bytes in one. Its integer sum
// sum_s scale[2s + j] * isum_s is complete before the one float product d * act.d * isum.
struct WideQ6KCodes {
    uint32_t ql0[4], ql1[4], qh[4];  // ql[l], ql[32 + l], qh[l], four bytes a word
    uint32_t sc0, sc1;               // the half's scale bytes 0..3 and 4..7
    float d;
};
struct WideQ6KSlice {
    int a[4][4];  // part s, word i
    float d;
};

struct Int8Q6_KGroupedWide {
    using ActRow = ActRow256;
    using Codes = WideQ6KCodes;
    using Slice = WideQ6KSlice;
    static constexpr int kPiece = 128;
    static constexpr int kLanes = 2;
    static constexpr int kInFlight = 4;
    EDGELLAMA_HD static Codes load(const uint8_t* row, int64_t p, int j) {
        const Q6KParts b = GroupedQ6KFields::at(row, p / 2);
        const int h = static_cast<int>(p % 2);
        const uint2 sc = load_ro(reinterpret_cast<const uint2*>(b.scales + 8 * h));  // 8-byte aligned
        Codes k;
        u128_words(load_u128(b.ql + 64 * h + 16 * j), k.ql0);
        u128_words(load_u128(b.ql + 64 * h + 32 + 16 * j), k.ql1);
        u128_words(load_u128(b.qh + 32 * h + 16 * j), k.qh);
        k.sc0 = sc.x;
        k.sc1 = sc.y;
        k.d = half_bits_to_float(load_ro(b.d));
        return k;
    }
    EDGELLAMA_HD static Slice load_act(const ActRow& a, int64_t p, int j) {
        const int64_t sb = p / 2;
        const int h = static_cast<int>(p % 2);
        Slice sl;
#pragma unroll
        for (int s = 0; s < 4; ++s) {  // words of elements 128h + 32s + 16j ..
            u128_words(load_u128(reinterpret_cast<const uint8_t*>(a.qs + 64 * sb + 32 * h + 8 * s + 4 * j)), sl.a[s]);
        }
        sl.d = load_ro(a.d + sb);
        return sl;
    }
    EDGELLAMA_HD static float dot(const Codes& k, const Slice& sl, int j) {
        int isum = 0;
#pragma unroll
        for (int s = 0; s < 4; ++s) {
            int part = 0;
#pragma unroll
            for (int i = 0; i < 4; ++i) {
                const uint32_t low = ((s & 1 ? k.ql1[i] : k.ql0[i]) >> (s < 2 ? 0 : 4)) & 0x0f0f0f0fu;
                const uint32_t high = (k.qh[i] >> (2 * s)) & 0x03030303u;
                part = dp4a(static_cast<int>(sub_bytes(low | (high << 4), 32)), sl.a[s][i], part);
            }
            const uint32_t scale_word = s < 2 ? k.sc0 : k.sc1;  // scale byte 2s + j of the half
            const int scale = static_cast<int8_t>((scale_word >> (8 * (2 * (s % 2) + j))) & 0xffu);
            isum += scale * part;
        }
        return mul_rn(mul_rn(k.d, sl.d), static_cast<float>(isum));
    }
};

// Calls fn(Int8Fmt{}) for a quantized device weight type (a GGUF type id or a grouped layout:
// grouped_rows.h); false for float types and unknown ids. These readers give the tensor-core tiles
// their fragments (mma_tiles.cuh).
template <class Fn>
bool dispatch_int8_format(int32_t type, Fn&& fn) {
    switch (type) {
        case id_of(TensorType::Q4_0): fn(Int8Q4_0{}); return true;
        case id_of(TensorType::Q4_1): fn(Int8Q4_1{}); return true;
        case id_of(TensorType::Q5_0): fn(Int8Q5_0{}); return true;
        case id_of(TensorType::Q5_1): fn(Int8Q5_1{}); return true;
        case id_of(TensorType::Q8_0): fn(Int8Q8_0{}); return true;
        case id_of(TensorType::Q4_K): fn(Int8Q4_K{}); return true;
        case id_of(TensorType::Q5_K): fn(Int8Q5_K{}); return true;
        case id_of(TensorType::Q6_K): fn(Int8Q6_K{}); return true;
        case kDeviceQ4_0Grouped: fn(Int8Q4_0Grouped{}); return true;
        case kDeviceQ8_0Grouped: fn(Int8Q8_0Grouped{}); return true;
        case kDeviceQ6_KGrouped: fn(Int8Q6_KGrouped{}); return true;
        default: return false;
    }
}

// The reader the GEMV (gemv_rows.cuh) takes for a tensor-core reader: the same, but the wide ones
// for Q4_K / Q5_K and grouped Q4_0 / Q8_0 / Q6_K.
template <class Q>
struct GemvReaderOf {
    using type = Q;
};
template <class Block, bool kHighBit>
struct GemvReaderOf<Int8KQuant<Block, kHighBit>> {
    using type = Int8KQuantWide<Block, kHighBit>;
};
template <>
struct GemvReaderOf<Int8Q4_0Grouped> {
    using type = Int8Q4_0GroupedWide;
};
template <>
struct GemvReaderOf<Int8Q8_0Grouped> {
    using type = Int8Q8_0GroupedWide;
};
template <>
struct GemvReaderOf<Int8Q6_KGrouped> {
    using type = Int8Q6_KGroupedWide;
};

// dispatch_int8_format with the GEMV's readers.
template <class Fn>
bool dispatch_gemv_reader(int32_t type, Fn&& fn) {
    return dispatch_int8_format(type, [&](auto q) { fn(typename GemvReaderOf<decltype(q)>::type{}); });
}

// One thread's share of the dots of R weight rows with NT activation rows, kThreads threads (a
// warp, or several warps of a block) sharing the rows. The threads work in groups of Q::kLanes on
// one piece each (thread % kLanes is the thread's part of it), the kThreads / kLanes groups on
// consecutive pieces, step after step along the rows. For one token (decode, bound by HBM
// latency) the codes of several steps and rows, Q::kInFlight in all, are loaded before any is
// used; a tile of tokens (prefill, bound by arithmetic) keeps one step in flight and its registers
// for the accumulators. Each activation slice, loaded once a step and token, serves the R rows.
// acc[r][t] += the thread's partial sums, piece by piece in row order (the same sequence whatever
// R and NT are, so the host execution with R = NT = 1 gives the device's bits).
template <class Q, int NT, int R, int kThreads = kWarp>
EDGELLAMA_HD void int8_lane_partial(const uint8_t* const (&rows)[R], int64_t n_pieces, int thread,
                                    const typename Q::ActRow (&act)[NT], float (&acc)[R][NT]) {
    constexpr int kGroups = kThreads / Q::kLanes;
    constexpr int kSteps = NT > 1 || R >= Q::kInFlight ? 1 : Q::kInFlight / R;
    const int j = thread % Q::kLanes;
    int64_t p = thread / Q::kLanes;
    for (; p + (kSteps - 1) * kGroups < n_pieces; p += kSteps * kGroups) {
        typename Q::Codes codes[kSteps][R];
#pragma unroll
        for (int f = 0; f < kSteps; ++f) {
#pragma unroll
            for (int r = 0; r < R; ++r) codes[f][r] = Q::load(rows[r], p + f * kGroups, j);
        }
#pragma unroll
        for (int f = 0; f < kSteps; ++f) {
#pragma unroll
            for (int t = 0; t < NT; ++t) {
                const typename Q::Slice slice = Q::load_act(act[t], p + f * kGroups, j);
#pragma unroll
                for (int r = 0; r < R; ++r) acc[r][t] += Q::dot(codes[f][r], slice, j);
            }
        }
    }
    for (; p < n_pieces; p += kGroups) {
        typename Q::Codes codes[R];
#pragma unroll
        for (int r = 0; r < R; ++r) codes[r] = Q::load(rows[r], p, j);
#pragma unroll
        for (int t = 0; t < NT; ++t) {
            const typename Q::Slice slice = Q::load_act(act[t], p, j);
#pragma unroll
            for (int r = 0; r < R; ++r) acc[r][t] += Q::dot(codes[r], slice, j);
        }
    }
}

}  // namespace edgellama::cuda
