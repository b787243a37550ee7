// Row-group layout of the K-quants (Q4_K, Q5_K, Q6_K): packing GGUF super-blocks into groups and
// activations for the dot, shared by every instruction set's kernels (row_groups_k_avx512.cpp,
// row_groups_k_avx2.cpp). Internal to csrc/kernels.
//
// A group holds 16 rows; its super-blocks follow one another, each in the type's bytes × 16:
//   Q4_K  codes 32 chunks (c, k): lane r = bytes 4k .. 4k+3 of row r's qs[32c .. 32c+32)   2048
//         scales 3 chunks: lane r = bytes 4i .. 4i+3 of row r's scales[12]                   192
//         d ×16, dmin ×16 (f16)                                                                64
//   Q5_K  as Q4_K, plus qh 8 chunks (lane r = bytes 4k .. 4k+3 of row r's qh) after the codes
//   Q6_K  ql 32 chunks, qh 16 chunks, scales 4 chunks (lane r = dword i of each row's array),
//         d ×16 (f16)
//   The AVX2 kernels regroup the codes of two (Q5_KFiveBitLayout: codes 32 chunks, their last
//   bits 8 chunks, then as Q5_K; Q6_KSixBitLayout: codes 3 × 16 chunks, then as Q6_K).
// so a group takes exactly the bytes of its rows (a chunk is 64 bytes, 4 per row).
#pragma once

#include <cstddef>
#include <cstdint>
#include <cstring>

#include "csrc/kernels/row_groups.h"
#include "csrc/formats/block_formats.h"

namespace edgellama::row_groups_k {

// Scatters 4-byte groups of each row's field into interleaved chunks: chunk i of the group gets
// bytes 4i .. 4i+3 of row r's field in lane r.
inline void interleave(uint8_t* chunks, int n_chunks, const uint8_t* field, int r) {
    for (int i = 0; i < n_chunks; ++i) std::memcpy(chunks + 64 * i + 4 * r, field + 4 * i, 4);
}
inline void deinterleave(const uint8_t* chunks, int n_chunks, uint8_t* field, int r) {
    for (int i = 0; i < n_chunks; ++i) std::memcpy(field + 4 * i, chunks + 64 * i + 4 * r, 4);
}

// The fields Q4_K and Q5_K share, at their layout's offsets: scales[12] as 3 chunks, then d ×16
// and dmin ×16 (f16).
template <class Block>
void pack_min_scales(const Block& b, int r, uint8_t* scales, uint8_t* d) {
    interleave(scales, 3, b.scales, r);
    std::memcpy(d + 2 * r, &b.d, 2);
    std::memcpy(d + 32 + 2 * r, &b.dmin, 2);
}
template <class Block>
void unpack_min_scales(const uint8_t* scales, const uint8_t* d, int r, Block& b) {
    deinterleave(scales, 3, b.scales, r);
    std::memcpy(&b.d, d + 2 * r, 2);
    std::memcpy(&b.dmin, d + 32 + 2 * r, 2);
}

struct Q4_KLayout {
    using Block = BlockQ4_K;
    static constexpr int kSub = 8, kSubSize = 32, kChunksPerSub = 8;
    static constexpr bool kHasMin = true;
    static constexpr size_t kCodes = 0, kScales = 2048, kD = 2048 + 192;
    static constexpr size_t kSuperBytes = 16 * sizeof(Block);

    static void pack(const Block& b, int r, uint8_t* g) {
        interleave(g + kCodes, 32, b.qs, r);
        pack_min_scales(b, r, g + kScales, g + kD);
    }
    static void unpack(const uint8_t* g, int r, Block& b) {
        deinterleave(g + kCodes, 32, b.qs, r);
        unpack_min_scales(g + kScales, g + kD, r, b);
    }
};

struct Q5_KLayout {
    using Block = BlockQ5_K;
    static constexpr int kSub = 8, kSubSize = 32, kChunksPerSub = 8;
    static constexpr bool kHasMin = true;
    static constexpr size_t kCodes = 0, kHigh = 2048, kScales = 2048 + 512, kD = 2048 + 512 + 192;
    static constexpr size_t kSuperBytes = 16 * sizeof(Block);

    static void pack(const Block& b, int r, uint8_t* g) {
        interleave(g + kCodes, 32, b.qs, r);
        interleave(g + kHigh, 8, b.qh, r);
        pack_scales(b, r, g);
    }
    static void unpack(const uint8_t* g, int r, Block& b) {
        deinterleave(g + kCodes, 32, b.qs, r);
        deinterleave(g + kHigh, 8, b.qh, r);
        unpack_scales(g, r, b);
    }
    static void pack_scales(const Block& b, int r, uint8_t* g) { pack_min_scales(b, r, g + kScales, g + kD); }
    static void unpack_scales(const uint8_t* g, int r, Block& b) { unpack_min_scales(g + kScales, g + kD, r, b); }
};

// Q5_K with each even sub-block's code whole in a byte. Sub-blocks 2c and 2c+1 share the byte
// qs[32c + l] (nibbles) and qh[l] (bits 2c, 2c+1) at position l < 32. Here array c's byte l holds
// code 2c in its low 5 bits and bits 2-4 of code 2c+1 in its top three, and the last array's byte
// l holds bits 0-1 of code 2c+1 at bits 2c, 2c+1. An even code is then one AND away and an odd one
// five operations, where the GGUF nibble and high bit take about four and a half for every code.
// Same offsets as Q5_KLayout (the last array where qh was), same bytes.
struct Q5_KFiveBitLayout : Q5_KLayout {
    static constexpr size_t kLast = kHigh;

    // Word w (positions 4w .. 4w+3) of row r: of array c at chunk 8c + w, of the last at chunk w.
    static size_t array_word(int c, int w, int r) { return kCodes + 64 * (8 * c + w) + 4 * r; }
    static size_t last_word(int w, int r) { return kLast + 64 * w + 4 * r; }

    static void pack(const Block& b, int r, uint8_t* g) {
        for (int l = 0; l < 32; l += 4) {
            const uint32_t qh = load_u32(b.qh + l);
            uint32_t last = 0;
            for (int c = 0; c < 4; ++c) {
                const uint32_t qs = load_u32(b.qs + 32 * c + l);
                const uint32_t even = each_byte(qs, 0x0f) | each_byte(qh >> (2 * c), 0x01) << 4;
                const uint32_t odd = each_byte(qs >> 4, 0x0f) | each_byte(qh >> (2 * c + 1), 0x01) << 4;
                const uint32_t word = even | each_byte(odd, 0x1c) << 3;
                std::memcpy(g + array_word(c, l / 4, r), &word, 4);
                last |= each_byte(odd, 0x03) << (2 * c);
            }
            std::memcpy(g + last_word(l / 4, r), &last, 4);
        }
        pack_scales(b, r, g);
    }
    static void unpack(const uint8_t* g, int r, Block& b) {
        for (int l = 0; l < 32; l += 4) {
            const uint32_t last = load_u32(g + last_word(l / 4, r));
            uint32_t qh = 0;
            for (int c = 0; c < 4; ++c) {
                const uint32_t word = load_u32(g + array_word(c, l / 4, r));
                const uint32_t even = each_byte(word, 0x1f);
                const uint32_t odd = each_byte(word >> 3, 0x1c) | each_byte(last >> (2 * c), 0x03);
                const uint32_t qs = each_byte(even, 0x0f) | each_byte(odd, 0x0f) << 4;
                std::memcpy(b.qs + 32 * c + l, &qs, 4);
                qh |= each_byte(even >> 4, 0x01) << (2 * c) | each_byte(odd >> 4, 0x01) << (2 * c + 1);
            }
            std::memcpy(b.qh + l, &qh, 4);
        }
        unpack_scales(g, r, b);
    }
};

struct Q6_KLayout {
    using Block = BlockQ6_K;
    static constexpr int kSub = 16, kSubSize = 16, kChunksPerSub = 4;
    static constexpr bool kHasMin = false;
    static constexpr size_t kLow = 0, kHigh = 2048, kScales = 2048 + 1024, kD = 2048 + 1024 + 256;
    static constexpr size_t kSuperBytes = 16 * sizeof(Block);

    static void pack(const Block& b, int r, uint8_t* g) {
        interleave(g + kLow, 32, b.ql, r);
        interleave(g + kHigh, 16, b.qh, r);
        pack_scales(b, r, g);
    }
    static void unpack(const uint8_t* g, int r, Block& b) {
        deinterleave(g + kLow, 32, b.ql, r);
        deinterleave(g + kHigh, 16, b.qh, r);
        unpack_scales(g, r, b);
    }
    static void pack_scales(const Block& b, int r, uint8_t* g) {
        interleave(g + kScales, 4, reinterpret_cast<const uint8_t*>(b.scales), r);
        std::memcpy(g + kD + 2 * r, &b.d, 2);
    }
    static void unpack_scales(const uint8_t* g, int r, Block& b) {
        deinterleave(g + kScales, 4, reinterpret_cast<uint8_t*>(b.scales), r);
        std::memcpy(&b.d, g + kD + 2 * r, 2);
    }
};

// Q6_K with its codes regrouped so that most of them are one AND away from a byte. The four codes
// that share a qh byte, elements l, l + 32, l + 64, l + 96 of a 128-element half h (l < 32), go to
// byte 32h + l of three 64-byte arrays: array i holds code i in its low 6 bits and bits 2i, 2i+1
// of code 3 in its top two. So codes 0-2 take one AND to extract and code 3 eight operations, where
// the GGUF split into a nibble and two high bits takes about four for every code. Same bytes.
struct Q6_KSixBitLayout : Q6_KLayout {
    static constexpr size_t kCodes = kLow;  // 3 arrays of 1024 bytes where ql and qh were

    // Array i's word w (positions 4w .. 4w+3) of row r is at chunk w, lane r.
    static size_t array_word(int i, int w, int r) { return kCodes + 1024 * i + 64 * w + 4 * r; }

    static void pack(const Block& b, int r, uint8_t* g) {
        for (int h = 0; h < 2; ++h) {
            for (int l = 0; l < 32; l += 4) {
                const uint32_t ql0 = load_u32(b.ql + 64 * h + l), ql1 = load_u32(b.ql + 64 * h + 32 + l);
                const uint32_t qh = load_u32(b.qh + 32 * h + l);
                const uint32_t c[4] = {each_byte(ql0, 0x0f) | each_byte(qh, 0x03) << 4,
                                       each_byte(ql1, 0x0f) | each_byte(qh, 0x0c) << 2,
                                       each_byte(ql0 >> 4, 0x0f) | each_byte(qh, 0x30),
                                       each_byte(ql1 >> 4, 0x0f) | each_byte(qh >> 2, 0x30)};
                const uint32_t a[3] = {c[0] | each_byte(c[3], 0x03) << 6,
                                       c[1] | each_byte(c[3], 0x0c) << 4,
                                       c[2] | each_byte(c[3], 0x30) << 2};
                for (int i = 0; i < 3; ++i) std::memcpy(g + array_word(i, (32 * h + l) / 4, r), &a[i], 4);
            }
        }
        pack_scales(b, r, g);
    }
    static void unpack(const uint8_t* g, int r, Block& b) {
        for (int h = 0; h < 2; ++h) {
            for (int l = 0; l < 32; l += 4) {
                uint32_t a[3];
                for (int i = 0; i < 3; ++i) a[i] = load_u32(g + array_word(i, (32 * h + l) / 4, r));
                const uint32_t last =
                    each_byte(a[0] >> 6, 0x03) | each_byte(a[1] >> 4, 0x0c) | each_byte(a[2] >> 2, 0x30);
                const uint32_t c[4] = {each_byte(a[0], 0x3f), each_byte(a[1], 0x3f), each_byte(a[2], 0x3f), last};
                const uint32_t ql0 = each_byte(c[0], 0x0f) | each_byte(c[2], 0x0f) << 4;
                const uint32_t ql1 = each_byte(c[1], 0x0f) | each_byte(c[3], 0x0f) << 4;
                const uint32_t qh = each_byte(c[0] >> 4, 0x03) | each_byte(c[1] >> 2, 0x0c) | each_byte(c[2], 0x30) |
                                    each_byte(c[3] << 2, 0xc0);
                std::memcpy(b.ql + 64 * h + l, &ql0, 4);
                std::memcpy(b.ql + 64 * h + 32 + l, &ql1, 4);
                std::memcpy(b.qh + 32 * h + l, &qh, 4);
            }
        }
        unpack_scales(g, r, b);
    }
};

template <class F>
size_t group_bytes(int64_t n) { return static_cast<size_t>(n / kQK256) * F::kSuperBytes; }

template <class F>
void pack_group(int64_t n, const uint8_t* rows, size_t row_stride, int n_rows, uint8_t* dst) {
    const int64_t nsb = n / kQK256;
    std::memset(dst, 0, group_bytes<F>(n));
    for (int r = 0; r < n_rows; ++r) {
        const auto* row = reinterpret_cast<const typename F::Block*>(rows + r * row_stride);
        for (int64_t s = 0; s < nsb; ++s) F::pack(row[s], r, dst + s * F::kSuperBytes);
    }
}

template <class F>
void unpack_row(int64_t n, const uint8_t* group, int r, uint8_t* row) {
    auto* blocks = reinterpret_cast<typename F::Block*>(row);
    for (int64_t s = 0; s < n / kQK256; ++s) F::unpack(group + s * F::kSuperBytes, r, blocks[s]);
}

// Packed activations of one token (nsb super-blocks): nsb × 256 int8 codes, nsb float scales,
// nsb × 16 int32 Q6_K offsets (-32 × the 16-element sums), nsb × 4 int32 pairs of 32-element
// sums (Σa_0, Σa_2), (Σa_1, Σa_3), (Σa_4, Σa_6), (Σa_5, Σa_7) as int16 halves.
inline size_t act_bytes(int64_t n) {
    const size_t nsb = static_cast<size_t>(n / kQK256);
    return (nsb * (kQK256 + 4 + 64 + 16) + 63) / 64 * 64;
}

struct ActView {
    const int8_t* codes;
    const float* d;
    const int32_t* offset16;
    const int32_t* sum_pairs;
};

inline ActView act_view(const uint8_t* p, int64_t nsb) {
    return {reinterpret_cast<const int8_t*>(p), reinterpret_cast<const float*>(p + nsb * kQK256),
            reinterpret_cast<const int32_t*>(p + nsb * (kQK256 + 4)),
            reinterpret_cast<const int32_t*>(p + nsb * (kQK256 + 4 + 64))};
}

inline int32_t int16_pair(int32_t lo, int32_t hi) {
    return static_cast<int32_t>((static_cast<uint32_t>(static_cast<uint16_t>(hi)) << 16) | static_cast<uint16_t>(lo));
}

inline void pack_act(int64_t n, const uint8_t* act_row, uint8_t* dst) {
    const auto* blocks = reinterpret_cast<const BlockQ8Act256*>(act_row);
    const int64_t nsb = n / kQK256;
    int8_t* codes = reinterpret_cast<int8_t*>(dst);
    float* d = reinterpret_cast<float*>(dst + nsb * kQK256);
    int32_t* offset16 = reinterpret_cast<int32_t*>(dst + nsb * (kQK256 + 4));
    int32_t* pairs = reinterpret_cast<int32_t*>(dst + nsb * (kQK256 + 4 + 64));
    for (int64_t s = 0; s < nsb; ++s) {
        const BlockQ8Act256& b = blocks[s];
        std::memcpy(codes + s * kQK256, b.qs, kQK256);
        d[s] = b.d;
        int32_t sum32[8];
        for (int i = 0; i < 16; ++i) offset16[s * 16 + i] = -32 * b.bsums[i];
        for (int j = 0; j < 8; ++j) sum32[j] = b.bsums[2 * j] + b.bsums[2 * j + 1];
        pairs[s * 4 + 0] = int16_pair(sum32[0], sum32[2]);
        pairs[s * 4 + 1] = int16_pair(sum32[1], sum32[3]);
        pairs[s * 4 + 2] = int16_pair(sum32[4], sum32[6]);
        pairs[s * 4 + 3] = int16_pair(sum32[5], sum32[7]);
    }
}

}  // namespace edgellama::row_groups_k
