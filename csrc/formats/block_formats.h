// Weight block layouts exactly as GGUF files store them, plus our in-memory activation blocks.
//
// Weight structs are read in place from the mapped file, so their sizes and field order are the
// file format: each carries a static_assert on its size. f16 fields are raw uint16_t bit patterns
// (see csrc/formats/float_convert.h). All multi-byte fields are little-endian.
#pragma once

#include <cstdint>

namespace edgellama {

constexpr int kQK32 = 32;    // elements per block of the 32-element formats
constexpr int kQK256 = 256;  // elements per K-quant super-block

// Q4_0: 32 weights, value = d * (q - 8), q a 4-bit code. Byte j holds element j in its low
// nibble and element j + 16 in its high nibble.
struct BlockQ4_0 {
    uint16_t d;
    uint8_t qs[kQK32 / 2];
};
static_assert(sizeof(BlockQ4_0) == 18, "Q4_0 block is 18 bytes in GGUF");

// Q4_1: 32 weights, value = d * q + m; nibble order as Q4_0.
struct BlockQ4_1 {
    uint16_t d;
    uint16_t m;
    uint8_t qs[kQK32 / 2];
};
static_assert(sizeof(BlockQ4_1) == 20, "Q4_1 block is 20 bytes in GGUF");

// Q5_0: 32 weights, value = d * (q - 16), q a 5-bit code. qs as Q4_0 holds the low four bits;
// bit j of qh (a little-endian uint32) is bit 4 of element j.
struct BlockQ5_0 {
    uint16_t d;
    uint8_t qh[4];
    uint8_t qs[kQK32 / 2];
};
static_assert(sizeof(BlockQ5_0) == 22, "Q5_0 block is 22 bytes in GGUF");

// Q5_1: 32 weights, value = d * q + m; bits as Q5_0.
struct BlockQ5_1 {
    uint16_t d;
    uint16_t m;
    uint8_t qh[4];
    uint8_t qs[kQK32 / 2];
};
static_assert(sizeof(BlockQ5_1) == 24, "Q5_1 block is 24 bytes in GGUF");

// Q8_0: 32 weights, value = d * qs[i].
struct BlockQ8_0 {
    uint16_t d;
    int8_t qs[kQK32];
};
static_assert(sizeof(BlockQ8_0) == 34, "Q8_0 block is 34 bytes in GGUF");

// Q4_K: 256 weights in 8 sub-blocks of 32, value = d * sc[j] * q - dmin * mn[j] with 6-bit sc/mn
// packed into scales[12] (see unpack_k_scale_min in quant_k.cpp). qs is 4 chunks of 32 bytes:
// chunk c holds sub-block 2c in its low nibbles and sub-block 2c + 1 in its high nibbles.
struct BlockQ4_K {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qs[kQK256 / 2];
};
static_assert(sizeof(BlockQ4_K) == 144, "Q4_K block is 144 bytes in GGUF");

// Q5_K: Q4_K plus a fifth bit per weight: bit j of qh[l] is the high bit of element l of
// sub-block j.
struct BlockQ5_K {
    uint16_t d;
    uint16_t dmin;
    uint8_t scales[12];
    uint8_t qh[kQK256 / 8];
    uint8_t qs[kQK256 / 2];
};
static_assert(sizeof(BlockQ5_K) == 176, "Q5_K block is 176 bytes in GGUF");

// Q6_K: 256 weights, value = d * scales[i / 16] * (q - 32), q a 6-bit code. Each 128-element
// half h uses ql[64h .. 64h+64) and qh[32h .. 32h+32); element 32s + l of the half (s = 0..3,
// l = 0..31) has low nibble from ql[(s & 1) * 32 + l] (low nibble for s < 2, high for s >= 2)
// and its top two bits from qh[l] >> 2s.
struct BlockQ6_K {
    uint8_t ql[kQK256 / 2];
    uint8_t qh[kQK256 / 4];
    int8_t scales[kQK256 / 16];
    uint16_t d;
};
static_assert(sizeof(BlockQ6_K) == 210, "Q6_K block is 210 bytes in GGUF");

// Activation block for the 32-element formats. sum = d * (sum of qs), so the Q4_1 min term of a
// block is a single multiply: m * sum.
struct BlockQ8Act32 {
    float d;
    float sum;
    int8_t qs[kQK32];
};
static_assert(sizeof(BlockQ8Act32) == 40, "BlockQ8Act32 layout");

// Activation block for the K-quants. bsums[i] = sum of qs[16i .. 16i+16): the K-quant min terms
// (and the Q6_K offset) need per-sub-block activation sums.
struct BlockQ8Act256 {
    float d;
    int16_t bsums[kQK256 / 16];
    int8_t qs[kQK256];
};
static_assert(sizeof(BlockQ8Act256) == 292, "BlockQ8Act256 layout");

}  // namespace edgellama
