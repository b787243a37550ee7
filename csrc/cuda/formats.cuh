// Device-side readers of the GGUF block formats (csrc/formats/block_formats.h), one struct per type.
//
// A row is cut into "pieces": the unit one thread decodes at a time (a block for the 32-element
// formats, a 64-element chunk of a K-quant super-block, 32 elements of a Q6_K half, 1 or 2
// floats). Fmt::visit(row, p, f) decodes piece p of a row in registers and calls f(i, w) for
// every element i of the piece (compile-time after unrolling) with its value w, computed exactly
// as the CPU dequantizers in csrc/kernels/ define it (separate roundings where they use them).
// GEMV and embedding kernels are written once on top of visit().
//
// Alignment: cudaMalloc returns 256-byte aligned rows' bases and each matrix is its own
// allocation, so a block starts at row_base + k * block_bytes: 16-byte aligned for Q4_K (144)
// and Q5_K (176), 8-byte for Q5_1 (24), 4-byte for Q4_1 (20), only 2-byte aligned for Q4_0 (18),
// Q5_0 (22), Q8_0 (34) and Q6_K (210). Loads are as wide as that allows. Q4_0, Q8_0 and Q6_K rows
// may also be uploaded grouped (grouped_rows.h): every field of every block 16-byte aligned.
#pragma once

#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <cstring>

#include "csrc/cuda/grouped_rows.h"
#include "csrc/formats/block_formats.h"
#include "csrc/formats/tensor_type.h"

namespace edgellama::cuda {

// Everything below is __host__ __device__: the same decoders also run on the CPU (host_decode.cu)
// so a machine without a GPU checks them against the CPU dequantizers (tests/test_cuda.py).
#define EDGELLAMA_HD __host__ __device__ __forceinline__

template <class T>
EDGELLAMA_HD T load_ro(const T* p) {  // through the read-only data cache on the device
#if defined(__CUDA_ARCH__)
    return __ldg(p);
#else
    return *p;
#endif
}

// A value another block wrote (in this kernel, or in the one before into a reused scratch), read
// from L2: a line of this SM's L1 could hold an older value.
template <class T>
EDGELLAMA_HD T load_cg(const T* p) {
#if defined(__CUDA_ARCH__)
    return __ldcg(p);
#else
    return *p;
#endif
}

// A plain load and load_cg as function objects, for code that reads its inputs either way.
struct PlainLoad {
    template <class T>
    EDGELLAMA_HD T operator()(const T* p) const { return *p; }
};
struct L2Load {
    template <class T>
    EDGELLAMA_HD T operator()(const T* p) const { return load_cg(p); }
};

// Products and sums rounded separately, never fused into an FMA (the formats define two roundings;
// the host build of these files uses -ffp-contract=off for the same reason).
EDGELLAMA_HD float mul_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}
EDGELLAMA_HD float add_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fadd_rn(a, b);
#else
    return a + b;
#endif
}
EDGELLAMA_HD float sub_rn(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fsub_rn(a, b);
#else
    return a - b;
#endif
}

EDGELLAMA_HD float half_bits_to_float(uint16_t bits) { return __half2float(__ushort_as_half(bits)); }
EDGELLAMA_HD float bf16_bits_to_float(uint16_t bits) {
    const uint32_t u = static_cast<uint32_t>(bits) << 16;
#if defined(__CUDA_ARCH__)
    return __uint_as_float(u);
#else
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
#endif
}

// Byte k (0..3) of a little-endian word.
EDGELLAMA_HD int byte_of(uint32_t w, int k) { return static_cast<int>((w >> (8 * k)) & 0xffu); }

struct FmtF32 {
    static constexpr int kPiece = 1;
    template <class F>
    EDGELLAMA_HD static void visit(const uint8_t* row, int64_t p, F&& f) {
        f(0, load_ro(reinterpret_cast<const float*>(row) + p));
    }
};

struct FmtF16 {
    static constexpr int kPiece = 2;  // rows of an even length (checked when uploading)
    template <class F>
    EDGELLAMA_HD static void visit(const uint8_t* row, int64_t p, F&& f) {
        const uint32_t w = load_ro(reinterpret_cast<const uint32_t*>(row) + p);
        f(0, half_bits_to_float(static_cast<uint16_t>(w & 0xffffu)));
        f(1, half_bits_to_float(static_cast<uint16_t>(w >> 16)));
    }
};

struct FmtBF16 {
    static constexpr int kPiece = 2;
    template <class F>
    EDGELLAMA_HD static void visit(const uint8_t* row, int64_t p, F&& f) {
        const uint32_t w = load_ro(reinterpret_cast<const uint32_t*>(row) + p);
        f(0, bf16_bits_to_float(static_cast<uint16_t>(w & 0xffffu)));
        f(1, bf16_bits_to_float(static_cast<uint16_t>(w >> 16)));
    }
};

// Bit 4 of the four elements whose bits are the low four bits of `bits`, placed in bit 4 of each
// byte: x * 0x00204081 copies bit k of x to bit 8k (the four shifted copies do not overlap).
EDGELLAMA_HD uint32_t spread_high_bits(uint32_t bits) { return ((bits & 15u) * 0x00204081u & 0x01010101u) << 4; }

// A 4-byte little-endian word from a 2-byte aligned address (two 16-bit loads).
EDGELLAMA_HD uint32_t load_u32_2aligned(const uint8_t* p) {
    const auto* h = reinterpret_cast<const uint16_t*>(p);
    return static_cast<uint32_t>(load_ro(h)) | (static_cast<uint32_t>(load_ro(h + 1)) << 16);
}

// 16 bytes from a 16-byte aligned address, in one load on the device.
EDGELLAMA_HD uint4 load_u128(const uint8_t* p) {
#if defined(__CUDA_ARCH__)
    return __ldg(reinterpret_cast<const uint4*>(p));
#else
    uint4 v;
    std::memcpy(&v, p, sizeof v);
    return v;
#endif
}

// The four words of a 16-byte load into w[0..3].
template <class T>
EDGELLAMA_HD void u128_words(const uint4& v, T* w) {
    w[0] = static_cast<T>(v.x), w[1] = static_cast<T>(v.y), w[2] = static_cast<T>(v.z), w[3] = static_cast<T>(v.w);
}

// Where block p of a row of Q4_0 or Q8_0 (an f16 scale, then codes) keeps its scale and codes, and
// word k of its codes as wide a load as their alignment allows: in the GGUF block (Gguf32Fields:
// 2-byte aligned, two 2-byte loads a word) or in a grouped row (GroupedBlock32, grouped_rows.h:
// the eight blocks' codes, then their scales; codes 16-byte aligned in a 16-byte aligned row).
template <class Block>
struct Gguf32Fields {
    EDGELLAMA_HD static const uint8_t* codes(const uint8_t* row, int64_t p) {
        return reinterpret_cast<const uint8_t*>(reinterpret_cast<const Block*>(row)[p].qs);
    }
    EDGELLAMA_HD static float scale(const uint8_t* row, int64_t p) {
        return half_bits_to_float(load_ro(&reinterpret_cast<const Block*>(row)[p].d));
    }
    EDGELLAMA_HD static uint32_t code_word(const uint8_t* row, int64_t p, int k) {
        return load_u32_2aligned(codes(row, p) + 4 * k);
    }
};
template <int kCodeBytes>
struct GroupedBlock32 {
    static constexpr int kGroupBytes = kBlocksPerGroup * (kCodeBytes + 2);
    EDGELLAMA_HD static const uint8_t* codes(const uint8_t* row, int64_t p) {
        return row + (p / kBlocksPerGroup) * kGroupBytes + (p % kBlocksPerGroup) * kCodeBytes;
    }
    EDGELLAMA_HD static float scale(const uint8_t* row, int64_t p) {
        const auto* d = reinterpret_cast<const uint16_t*>(row + (p / kBlocksPerGroup) * kGroupBytes +
                                                          kBlocksPerGroup * kCodeBytes);
        return half_bits_to_float(load_ro(d + p % kBlocksPerGroup));
    }
    EDGELLAMA_HD static uint32_t code_word(const uint8_t* row, int64_t p, int k) {
        return load_ro(reinterpret_cast<const uint32_t*>(codes(row, p)) + k);
    }
};
using GroupedQ4_0 = GroupedBlock32<sizeof(BlockQ4_0::qs)>;
using GroupedQ8_0 = GroupedBlock32<sizeof(BlockQ8_0::qs)>;

// value = d * (q - 8); byte j: element j (low nibble), element j + 16 (high nibble).
template <class Fields>
struct FmtQ4_0Of {
    static constexpr int kPiece = kQK32;
    template <class F>
    EDGELLAMA_HD static void visit(const uint8_t* row, int64_t p, F&& f) {
        const float d = Fields::scale(row, p);
        const auto* q16 = reinterpret_cast<const uint16_t*>(Fields::codes(row, p));
#pragma unroll
        for (int j = 0; j < 8; ++j) {
            const uint32_t v = load_ro(q16 + j);
#pragma unroll
            for (int k = 0; k < 2; ++k) {
                const int byte = static_cast<int>((v >> (8 * k)) & 0xffu);
                f(2 * j + k, d * static_cast<float>((byte & 15) - 8));
                f(2 * j + k + 16, d * static_cast<float>((byte >> 4) - 8));
            }
        }
    }
};
using FmtQ4_0 = FmtQ4_0Of<Gguf32Fields<BlockQ4_0>>;
using FmtQ4_0Grouped = FmtQ4_0Of<GroupedQ4_0>;

// value = d * q + m (rounded twice, as the format defines it).
struct FmtQ4_1 {
    static constexpr int kPiece = kQK32;
    template <class F>
    EDGELLAMA_HD static void visit(const uint8_t* row, int64_t p, F&& f) {
        const auto* b = reinterpret_cast<const BlockQ4_1*>(row) + p;
        const uint32_t dm = load_ro(reinterpret_cast<const uint32_t*>(b));
        const float d = half_bits_to_float(static_cast<uint16_t>(dm & 0xffffu));
        const float m = half_bits_to_float(static_cast<uint16_t>(dm >> 16));
        const auto* q32 = reinterpret_cast<const uint32_t*>(b->qs);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const uint32_t v = load_ro(q32 + j);
#pragma unroll
            for (int k = 0; k < 4; ++k) {
                const int byte = byte_of(v, k);
                f(4 * j + k, add_rn(mul_rn(d, static_cast<float>(byte & 15)), m));
                f(4 * j + k + 16, add_rn(mul_rn(d, static_cast<float>(byte >> 4)), m));
            }
        }
    }
};

// Q5_0 (value = d * (q - 16)) and Q5_1 (value = d * q + m, rounded twice): the nibbles as Q4_0,
// bit 4 of element j is bit j of qh. Word j of the nibbles holds elements 4j..4j+3 (low) and
// 4j+16..4j+19 (high).
template <class Block, bool kHasMin>
struct Fmt5Bit {
    static constexpr int kPiece = kQK32;
    template <class F>
    EDGELLAMA_HD static void visit(const uint8_t* row, int64_t p, F&& f) {
        const auto* b = reinterpret_cast<const Block*>(row) + p;
        const float d = half_bits_to_float(load_ro(&b->d));
        float m = 0.0f;
        if constexpr (kHasMin) m = half_bits_to_float(load_ro(&b->m));
        const uint32_t qh = load_u32_2aligned(b->qh);
#pragma unroll
        for (int j = 0; j < 4; ++j) {
            const uint32_t v = load_u32_2aligned(b->qs + 4 * j);
            const uint32_t lo = (v & 0x0f0f0f0fu) | spread_high_bits(qh >> (4 * j));
            const uint32_t hi = ((v >> 4) & 0x0f0f0f0fu) | spread_high_bits(qh >> (4 * j + 16));
#pragma unroll
            for (int k = 0; k < 4; ++k) {
                if constexpr (kHasMin) {
                    f(4 * j + k, add_rn(mul_rn(d, static_cast<float>(byte_of(lo, k))), m));
                    f(4 * j + k + 16, add_rn(mul_rn(d, static_cast<float>(byte_of(hi, k))), m));
                } else {
                    f(4 * j + k, d * static_cast<float>(byte_of(lo, k) - 16));
                    f(4 * j + k + 16, d * static_cast<float>(byte_of(hi, k) - 16));
                }
            }
        }
    }
};

using FmtQ5_0 = Fmt5Bit<BlockQ5_0, false>;
using FmtQ5_1 = Fmt5Bit<BlockQ5_1, true>;

// value = d * qs[i].
template <class Fields>
struct FmtQ8_0Of {
    static constexpr int kPiece = kQK32;
    template <class F>
    EDGELLAMA_HD static void visit(const uint8_t* row, int64_t p, F&& f) {
        const float d = Fields::scale(row, p);
        const auto* q16 = reinterpret_cast<const uint16_t*>(Fields::codes(row, p));
#pragma unroll
        for (int j = 0; j < 16; ++j) {
            const uint32_t v = load_ro(q16 + j);
            f(2 * j, d * static_cast<float>(static_cast<int8_t>(v & 0xffu)));
            f(2 * j + 1, d * static_cast<float>(static_cast<int8_t>(v >> 8)));
        }
    }
};
using FmtQ8_0 = FmtQ8_0Of<Gguf32Fields<BlockQ8_0>>;
using FmtQ8_0Grouped = FmtQ8_0Of<GroupedQ8_0>;

// The 6-bit scale and min of K-quant sub-block j (0..7) from the 12 packed scale bytes, given
// as three little-endian words (bytes 0-3, 4-7, 8-11) so nothing is indexed in local memory.
EDGELLAMA_HD void k_scale_min(uint32_t s0, uint32_t s1, uint32_t s2, int j, int& sc, int& mn) {
    if (j < 4) {
        sc = byte_of(s0, j) & 63;
        mn = byte_of(s1, j) & 63;
    } else {
        const int k = j - 4;
        sc = (byte_of(s2, k) & 0x0f) | ((byte_of(s0, k) >> 6) << 4);
        mn = (byte_of(s2, k) >> 4) | ((byte_of(s1, k) >> 6) << 4);
    }
}

// Shared by Q4_K and Q5_K: piece p is chunk c = p % 4 of super-block p / 4, i.e. elements
// 64c .. 64c+63, sub-block 2c from the low nibbles of qs[32c ..] and 2c+1 from the high ones;
// value = (d * sc) * q - (dmin * mn), rounded twice. HighBits adds Q5_K's fifth bit.
template <class Block, bool kHighBit>
struct FmtKQuant {
    static constexpr int kPiece = 64;
    template <class F>
    EDGELLAMA_HD static void visit(const uint8_t* row, int64_t p, F&& f) {
        const auto* b = reinterpret_cast<const Block*>(row) + p / 4;
        const int c = static_cast<int>(p % 4);
        const uint32_t dd = load_ro(reinterpret_cast<const uint32_t*>(b));
        const float d = half_bits_to_float(static_cast<uint16_t>(dd & 0xffffu));
        const float dmin = half_bits_to_float(static_cast<uint16_t>(dd >> 16));
        const auto* sw = reinterpret_cast<const uint32_t*>(b->scales);
        const uint32_t s0 = load_ro(sw), s1 = load_ro(sw + 1), s2 = load_ro(sw + 2);
        int sc0, mn0, sc1, mn1;
        k_scale_min(s0, s1, s2, 2 * c, sc0, mn0);
        k_scale_min(s0, s1, s2, 2 * c + 1, sc1, mn1);
        const float dl0 = d * static_cast<float>(sc0), ml0 = dmin * static_cast<float>(mn0);
        const float dl1 = d * static_cast<float>(sc1), ml1 = dmin * static_cast<float>(mn1);
        const uint4* qs = reinterpret_cast<const uint4*>(b->qs + 32 * c);
        const uint4 qa = load_ro(qs), qb = load_ro(qs + 1);
        const uint32_t q[8] = {qa.x, qa.y, qa.z, qa.w, qb.x, qb.y, qb.z, qb.w};
        uint32_t h[8] = {0, 0, 0, 0, 0, 0, 0, 0};
        if constexpr (kHighBit) {
            const uint4* qh = reinterpret_cast<const uint4*>(b->qh);
            const uint4 ha = load_ro(qh), hb = load_ro(qh + 1);
            h[0] = ha.x; h[1] = ha.y; h[2] = ha.z; h[3] = ha.w;
            h[4] = hb.x; h[5] = hb.y; h[6] = hb.z; h[7] = hb.w;
        }
#pragma unroll
        for (int l = 0; l < 32; ++l) {
            const int byte = byte_of(q[l / 4], l % 4);
            int lo = byte & 15, hi = byte >> 4;
            if constexpr (kHighBit) {
                const int hbits = byte_of(h[l / 4], l % 4);
                lo |= ((hbits >> (2 * c)) & 1) << 4;
                hi |= ((hbits >> (2 * c + 1)) & 1) << 4;
            }
            f(l, sub_rn(mul_rn(dl0, static_cast<float>(lo)), ml0));
            f(l + 32, sub_rn(mul_rn(dl1, static_cast<float>(hi)), ml1));
        }
    }
};

using FmtQ4_K = FmtKQuant<BlockQ4_K, false>;
using FmtQ5_K = FmtKQuant<BlockQ5_K, true>;

// The fields of Q6_K super-block sb of a row: in the GGUF block (Q6KFields), or in a grouped row
// (GroupedQ6KFields: grouped_rows.h, ql then qh, scales and d of eight super-blocks each).
struct Q6KParts {
    const uint8_t* ql;
    const uint8_t* qh;
    const int8_t* scales;
    const uint16_t* d;
};
struct Q6KFields {
    EDGELLAMA_HD static Q6KParts at(const uint8_t* row, int64_t sb) {
        const auto* b = reinterpret_cast<const BlockQ6_K*>(row) + sb;
        return {b->ql, b->qh, b->scales, &b->d};
    }
};
struct GroupedQ6KFields {
    static constexpr int kN = kBlocksPerGroup;
    EDGELLAMA_HD static Q6KParts at(const uint8_t* row, int64_t sb) {
        const uint8_t* g = row + (sb / kN) * (kN * sizeof(BlockQ6_K));
        const int k = static_cast<int>(sb % kN);
        constexpr size_t kQh = kN * sizeof(BlockQ6_K::ql), kScales = kQh + kN * sizeof(BlockQ6_K::qh);
        constexpr size_t kD = kScales + kN * sizeof(BlockQ6_K::scales);
        return {g + k * sizeof(BlockQ6_K::ql), g + kQh + k * sizeof(BlockQ6_K::qh),
                reinterpret_cast<const int8_t*>(g + kScales + k * sizeof(BlockQ6_K::scales)),
                reinterpret_cast<const uint16_t*>(g + kD) + k};
    }
};

// Q6_K: piece p is part s = p % 4 of half h = (p / 4) % 2 of super-block p / 8: elements
// 128h + 32s + l, l = 0..31 (layout at BlockQ6_K). value = (d * scale) * (q - 32).
template <class Fields>
struct FmtQ6KOf {
    static constexpr int kPiece = 32;
    template <class F>
    EDGELLAMA_HD static void visit(const uint8_t* row, int64_t p, F&& f) {
        const Q6KParts b = Fields::at(row, p / 8);
        const int h = static_cast<int>((p / 4) % 2), s = static_cast<int>(p % 4);
        const float d = half_bits_to_float(load_ro(b.d));
        const auto* ql = reinterpret_cast<const uint16_t*>(b.ql + 64 * h + (s & 1) * 32);
        const auto* qh = reinterpret_cast<const uint16_t*>(b.qh + 32 * h);
        const int scale_base = 8 * h + 2 * s;
        const float dl0 = d * static_cast<float>(b.scales[scale_base]);
        const float dl1 = d * static_cast<float>(b.scales[scale_base + 1]);
        const int low_shift = s < 2 ? 0 : 4;
#pragma unroll
        for (int j = 0; j < 16; ++j) {
            const uint32_t lv = load_ro(ql + j), hv = load_ro(qh + j);
#pragma unroll
            for (int k = 0; k < 2; ++k) {
                const int l = 2 * j + k;
                const int lo = static_cast<int>((lv >> (8 * k)) & 0xffu) >> low_shift & 15;
                const int hi = (static_cast<int>((hv >> (8 * k)) & 0xffu) >> (2 * s)) & 3;
                const float q = static_cast<float>((lo | (hi << 4)) - 32);
                f(l, (l < 16 ? dl0 : dl1) * q);
            }
        }
    }
};
using FmtQ6_K = FmtQ6KOf<Q6KFields>;
using FmtQ6_KGrouped = FmtQ6KOf<GroupedQ6KFields>;

// Calls fn(Fmt{}) for the format of a device weight type (a GGUF type id or a grouped layout:
// grouped_rows.h); returns false for a type we do not run.
template <class Fn>
bool dispatch_format(int32_t type, Fn&& fn) {
    switch (type) {
        case id_of(TensorType::F32): fn(FmtF32{}); return true;
        case id_of(TensorType::F16): fn(FmtF16{}); return true;
        case id_of(TensorType::Q4_0): fn(FmtQ4_0{}); return true;
        case id_of(TensorType::Q4_1): fn(FmtQ4_1{}); return true;
        case id_of(TensorType::Q5_0): fn(FmtQ5_0{}); return true;
        case id_of(TensorType::Q5_1): fn(FmtQ5_1{}); return true;
        case id_of(TensorType::Q8_0): fn(FmtQ8_0{}); return true;
        case id_of(TensorType::Q4_K): fn(FmtQ4_K{}); return true;
        case id_of(TensorType::Q5_K): fn(FmtQ5_K{}); return true;
        case id_of(TensorType::Q6_K): fn(FmtQ6_K{}); return true;
        case id_of(TensorType::BF16): fn(FmtBF16{}); return true;
        case kDeviceQ4_0Grouped: fn(FmtQ4_0Grouped{}); return true;
        case kDeviceQ8_0Grouped: fn(FmtQ8_0Grouped{}); return true;
        case kDeviceQ6_KGrouped: fn(FmtQ6_KGrouped{}); return true;
        default: return false;
    }
}

}  // namespace edgellama::cuda
