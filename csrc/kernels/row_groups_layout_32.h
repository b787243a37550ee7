// Row-group layout of the 32-element family (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0): the packing of GGUF
// rows into groups and of activations for the dot, shared by every instruction set's kernels
// (row_groups_avx512.cpp, row_groups_avx2.cpp). Internal to csrc/kernels.
//
// Group layout for n-element rows (nb = n / 32 blocks):
//   codes  nb × kCodeChunks × 64 bytes: chunk k of block b holds, in 32-bit lane r, bytes
//          4k .. 4k+3 of row r's qs (Q4/Q5: packed nibbles, 4 chunks, Q5 then a fifth chunk of
//          rearranged qh bits; Q8_0: codes XOR 0x80, i.e. the unsigned code + 128, 8 chunks;
//          the AVX2 kernels' Q5: five-bit codes, Q5FiveBitFormat; their Q8_0 without VNNI: the
//          signed codes as stored, Q8_0SignedFormat)
//   d      nb × 16 f16: the rows' block scales
//   m      nb × 16 f16 (Q4_1, Q5_1): the rows' block mins
// Packed activations of one token: nb × 32 int8 codes, nb float scales d, nb int32 offset terms,
// nb float sums (d·Σa). The offset term makes the integer block sum exact for formats whose codes
// are shifted: Q4_0 dots unsigned q against a (q - 8 is the weight), so it starts from -8·Σa;
// Q5_0 likewise from -16·Σa; Q8_0 dots w + 128, so it starts from -128·Σa.
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "csrc/kernels/row_groups.h"
#include "csrc/kernels/type_traits.h"
#include "csrc/formats/block_formats.h"

namespace edgellama::row_groups_32 {

struct Q4_0Format {
    using Block = BlockQ4_0;
    static constexpr int kCodeChunks = 4;
    static constexpr bool kHasMin = false;
    static constexpr int32_t kActOffset = -8;
    static uint32_t chunk(const Block& b, int k) { return load_u32(b.qs + 4 * k); }
    static uint16_t min(const Block&) { return 0; }
    static void set(Block& b, const uint32_t* chunks, uint16_t) { std::memcpy(b.qs, chunks, sizeof b.qs); }
};

struct Q4_1Format {
    using Block = BlockQ4_1;
    static constexpr int kCodeChunks = 4;
    static constexpr bool kHasMin = true;
    static constexpr int32_t kActOffset = 0;
    static uint32_t chunk(const Block& b, int k) { return load_u32(b.qs + 4 * k); }
    static uint16_t min(const Block& b) { return b.m; }
    static void set(Block& b, const uint32_t* chunks, uint16_t m) {
        std::memcpy(b.qs, chunks, sizeof b.qs);
        b.m = m;
    }
};

// Q5_0 / Q5_1: Q4_0 / Q4_1 plus a fifth bit per weight. Chunk 4 holds each row's qh rearranged so
// that bit g of byte i is the fifth bit of element 4g + i: one shift and mask then put element
// group g's fifth bits at bit 4 of every byte (same bytes, another order).
inline uint32_t spread_high_bits(uint32_t qh) {
    uint32_t out = 0;
    for (int g = 0; g < 8; ++g)
        for (int i = 0; i < 4; ++i) out |= ((qh >> (4 * g + i)) & 1u) << (8 * i + g);
    return out;
}
inline uint32_t gather_high_bits(uint32_t spread) {
    uint32_t qh = 0;
    for (int g = 0; g < 8; ++g)
        for (int i = 0; i < 4; ++i) qh |= ((spread >> (8 * i + g)) & 1u) << (4 * g + i);
    return qh;
}

template <class B, bool kMin>
struct Q5Format {
    using Block = B;
    static constexpr int kCodeChunks = 5;
    static constexpr bool kHasMin = kMin;
    static constexpr int32_t kActOffset = kMin ? 0 : -16;
    static uint32_t chunk(const Block& b, int k) { return k < 4 ? load_u32(b.qs + 4 * k) : spread_high_bits(load_u32(b.qh)); }
    static uint16_t min(const Block& b) {
        if constexpr (kMin) return b.m;
        return 0;
    }
    static void set(Block& b, const uint32_t* chunks, uint16_t m) {
        std::memcpy(b.qs, chunks, sizeof b.qs);
        const uint32_t qh = gather_high_bits(chunks[4]);
        std::memcpy(b.qh, &qh, 4);
        if constexpr (kMin) b.m = m;
    }
};
using Q5_0Format = Q5Format<BlockQ5_0, false>;
using Q5_1Format = Q5Format<BlockQ5_1, true>;

// Q5_0 / Q5_1 as the AVX2 kernels hold them, with half the codes whole in a byte: chunk k < 4,
// byte i, holds element 4k + i's code in its low 5 bits and bits 2-4 of element 16 + 4k + i's in
// its top three; chunk 4, byte i, holds bits 0-1 of element 16 + 4k + i at bits 2k, 2k+1. A low
// code is then one AND away and a high one five operations, where a nibble and a fifth bit take
// about four and a half each without AVX-512's three-input logic. Same bytes.
template <class B, bool kMin>
struct Q5FiveBitFormat : Q5Format<B, kMin> {
    using Block = B;  // a dependent base's names are not visible here unqualified
    static constexpr bool kFiveBitCodes = true;
    // The codes of elements 4g .. 4g+3 (g < 8), one a byte, as GGUF stores them: nibbles of
    // qs[4 (g % 4) + i], fifth bits 4g + i of qh.
    static uint32_t code_word(const Block& b, int g) {
        const uint32_t qs = load_u32(b.qs + 4 * (g % 4)), qh = load_u32(b.qh);
        // Bit i of the 4 to bit 8i: the multiply's four shifted copies (by 0, 7, 14, 21) never overlap.
        const uint32_t fifth = ((qh >> (4 * g) & 0x0fu) * 0x00204081u & 0x01010101u) << 4;
        return each_byte(g < 4 ? qs : qs >> 4, 0x0f) | fifth;
    }
    static uint32_t chunk(const Block& b, int k) {
        if (k < 4) return code_word(b, k) | each_byte(code_word(b, 4 + k), 0x1c) << 3;
        uint32_t last = 0;
        for (int g = 0; g < 4; ++g) last |= each_byte(code_word(b, 4 + g), 0x03) << (2 * g);
        return last;
    }
    static void set(Block& b, const uint32_t* chunks, uint16_t m) {
        uint32_t qh = 0;
        for (int k = 0; k < 4; ++k) {
            const uint32_t low = each_byte(chunks[k], 0x1f);
            const uint32_t high = each_byte(chunks[k] >> 3, 0x1c) | each_byte(chunks[4] >> (2 * k), 0x03);
            const uint32_t qs = each_byte(low, 0x0f) | each_byte(high, 0x0f) << 4;
            std::memcpy(b.qs + 4 * k, &qs, 4);
            for (int i = 0; i < 4; ++i) {
                qh |= (low >> (8 * i + 4) & 1u) << (4 * k + i) | (high >> (8 * i + 4) & 1u) << (16 + 4 * k + i);
            }
        }
        std::memcpy(b.qh, &qh, 4);
        if constexpr (kMin) b.m = m;
    }
};

struct Q8_0Format {
    using Block = BlockQ8_0;
    static constexpr int kCodeChunks = 8;
    static constexpr bool kHasMin = false;
    static constexpr int32_t kActOffset = -128;
    static uint32_t chunk(const Block& b, int k) { return load_u32(b.qs + 4 * k) ^ 0x80808080u; }
    static uint16_t min(const Block&) { return 0; }
    static void set(Block& b, const uint32_t* chunks, uint16_t) {
        for (int k = 0; k < kCodeChunks; ++k) {
            const uint32_t codes = chunks[k] ^ 0x80808080u;
            std::memcpy(b.qs + 4 * k, &codes, 4);
        }
    }
};

// Q8_0 as the AVX2 kernels without VNNI hold it: the signed codes as GGUF stores them. Their
// maddubs route dots |w| against sign(a, w), so the + 128 of Q8_0Format would only be undone by an
// XOR at every step; without it there is no offset term either.
struct Q8_0SignedFormat : Q8_0Format {
    static constexpr int32_t kActOffset = 0;
    static constexpr bool kSignedCodes = true;
    static uint32_t chunk(const Block& b, int k) { return load_u32(b.qs + 4 * k); }
    static void set(Block& b, const uint32_t* chunks, uint16_t) { std::memcpy(b.qs, chunks, sizeof b.qs); }
};

template <class F>
constexpr size_t code_bytes_per_block() { return F::kCodeChunks * 64; }

template <class F>
size_t group_bytes(int64_t n) {
    const size_t nb = static_cast<size_t>(n / kQK32);
    return nb * (code_bytes_per_block<F>() + 32 + (F::kHasMin ? 32 : 0));
}

template <class F>
void pack_group(int64_t n, const uint8_t* rows, size_t row_stride, int n_rows, uint8_t* dst) {
    using Block = typename F::Block;
    const int64_t nb = n / kQK32;
    uint8_t* codes = dst;
    uint16_t* d = reinterpret_cast<uint16_t*>(dst + nb * code_bytes_per_block<F>());
    uint16_t* m = d + nb * kGroupRows;
    std::memset(dst, 0, group_bytes<F>(n));
    for (int r = 0; r < n_rows; ++r) {
        const auto* row = reinterpret_cast<const Block*>(rows + r * row_stride);
        for (int64_t b = 0; b < nb; ++b) {
            for (int k = 0; k < F::kCodeChunks; ++k) {
                const uint32_t c = F::chunk(row[b], k);
                std::memcpy(codes + b * code_bytes_per_block<F>() + k * 64 + 4 * r, &c, 4);
            }
            d[b * kGroupRows + r] = row[b].d;
            if constexpr (F::kHasMin) m[b * kGroupRows + r] = F::min(row[b]);
        }
    }
}

template <class F>
void unpack_row(int64_t n, const uint8_t* group, int r, uint8_t* row) {
    using Block = typename F::Block;
    const int64_t nb = n / kQK32;
    const uint16_t* d = reinterpret_cast<const uint16_t*>(group + nb * code_bytes_per_block<F>());
    const uint16_t* m = d + nb * kGroupRows;
    auto* blocks = reinterpret_cast<Block*>(row);
    for (int64_t b = 0; b < nb; ++b) {
        blocks[b].d = d[b * kGroupRows + r];
        const uint16_t min = F::kHasMin ? m[b * kGroupRows + r] : 0;
        uint32_t chunks[F::kCodeChunks];
        const uint8_t* block = group + b * code_bytes_per_block<F>();
        for (int k = 0; k < F::kCodeChunks; ++k) chunks[k] = load_u32(block + k * 64 + 4 * r);
        F::set(blocks[b], chunks, min);
    }
}

inline size_t act_bytes(int64_t n) {
    const size_t nb = static_cast<size_t>(n / kQK32);
    return (nb * (kQK32 + 12) + 63) / 64 * 64;
}

struct ActView {
    const int8_t* codes;
    const float* d;
    const int32_t* offset;
    const float* sum;
};

inline ActView act_view(const uint8_t* p, int64_t nb) {
    return {reinterpret_cast<const int8_t*>(p), reinterpret_cast<const float*>(p + nb * kQK32),
            reinterpret_cast<const int32_t*>(p + nb * (kQK32 + 4)), reinterpret_cast<const float*>(p + nb * (kQK32 + 8))};
}

template <class F>
void pack_act(int64_t n, const uint8_t* act_row, uint8_t* dst) {
    const auto* blocks = reinterpret_cast<const BlockQ8Act32*>(act_row);
    const int64_t nb = n / kQK32;
    int8_t* codes = reinterpret_cast<int8_t*>(dst);
    float* d = reinterpret_cast<float*>(dst + nb * kQK32);
    int32_t* offset = reinterpret_cast<int32_t*>(dst + nb * (kQK32 + 4));
    float* sum = reinterpret_cast<float*>(dst + nb * (kQK32 + 8));
    for (int64_t b = 0; b < nb; ++b) {
        std::memcpy(codes + b * kQK32, blocks[b].qs, kQK32);
        int32_t s = 0;
        for (int i = 0; i < kQK32; ++i) s += blocks[b].qs[i];
        d[b] = blocks[b].d;
        offset[b] = F::kActOffset * s;
        sum[b] = blocks[b].sum;
    }
}

// kernel_of(Format{}) for the 32-element format of a GGUF type id, nullptr for any other type: each
// ISA file passes a lambda returning its own kernel table entry for the format.
template <class KernelOf>
const RowGroupKernel* kernel_for_type(int32_t type_id, KernelOf&& kernel_of) {
    switch (static_cast<TensorType>(type_id)) {
        case TensorType::Q4_0: return kernel_of(Q4_0Format{});
        case TensorType::Q4_1: return kernel_of(Q4_1Format{});
        case TensorType::Q5_0: return kernel_of(Q5_0Format{});
        case TensorType::Q5_1: return kernel_of(Q5_1Format{});
        case TensorType::Q8_0: return kernel_of(Q8_0Format{});
        default: return nullptr;
    }
}

}  // namespace edgellama::row_groups_32
