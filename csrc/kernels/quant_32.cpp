// Q4_0, Q4_1, Q5_0, Q5_1 and Q8_0: 32-element blocks dotted against BlockQ8Act32 activations
// (Q5_0/Q5_1 by these scalar loops only).
//
// The dot products stay in integers inside a block (int8 x int8 summed in int32) and touch
// floats once per block: that is both faster and closer to the exact product than
// dequantizing. Inner loops are fixed-length over 16/32 bytes so -O3 vectorizes them.
#include "csrc/formats/float_convert.h"
#include "csrc/kernels/kernel_fns.h"
#include "csrc/formats/block_formats.h"

namespace edgellama::kernels {
namespace {

constexpr int kHalf = kQK32 / 2;

// Unpacks the 32 4-bit codes of a block in element order (low nibbles, then high nibbles).
inline void unpack_nibbles(const uint8_t* qs, int8_t* out, int8_t offset) {
    for (int j = 0; j < kHalf; ++j) {
        out[j] = static_cast<int8_t>((qs[j] & 0x0f) - offset);
        out[j + kHalf] = static_cast<int8_t>((qs[j] >> 4) - offset);
    }
}

// Dot of a block's 4-bit codes (minus offset) with 32 int8 activations, read straight from the
// packed bytes so no temporary round-trips through memory.
inline int32_t dot_nibbles(const uint8_t* qs, const int8_t* a, int32_t offset) {
    int32_t s = 0;
    for (int j = 0; j < kHalf; ++j) {
        s += ((qs[j] & 0x0f) - offset) * a[j] + ((qs[j] >> 4) - offset) * a[j + kHalf];
    }
    return s;
}

inline int32_t dot32_i8(const int8_t* x, const int8_t* y) {
    int32_t s = 0;
    for (int j = 0; j < kQK32; ++j) s += static_cast<int32_t>(x[j]) * y[j];
    return s;
}

// The 32 5-bit codes of a Q5_0/Q5_1 block in element order, minus offset: element j takes its
// low four bits from the nibbles as Q4_0 does and bit 4 from bit j of the little-endian qh.
inline void unpack_5bit(const uint8_t* qs, const uint8_t* qh, int8_t* out, int8_t offset) {
    const uint32_t h = static_cast<uint32_t>(qh[0]) | (static_cast<uint32_t>(qh[1]) << 8) |
                       (static_cast<uint32_t>(qh[2]) << 16) | (static_cast<uint32_t>(qh[3]) << 24);
    for (int j = 0; j < kHalf; ++j) {
        out[j] = static_cast<int8_t>(((qs[j] & 0x0f) | (((h >> j) & 1u) << 4)) - offset);
        out[j + kHalf] = static_cast<int8_t>(((qs[j] >> 4) | (((h >> (j + kHalf)) & 1u) << 4)) - offset);
    }
}

}  // namespace

void dequantize_row_q4_0(const void* src, float* dst, int64_t n) {
    const auto* blocks = static_cast<const BlockQ4_0*>(src);
    for (int64_t b = 0; b < n / kQK32; ++b) {
        const float d = fp16_to_fp32(blocks[b].d);
        int8_t q[kQK32];
        unpack_nibbles(blocks[b].qs, q, 8);
        for (int j = 0; j < kQK32; ++j) dst[b * kQK32 + j] = d * static_cast<float>(q[j]);
    }
}

void dequantize_row_q4_1(const void* src, float* dst, int64_t n) {
    const auto* blocks = static_cast<const BlockQ4_1*>(src);
    for (int64_t b = 0; b < n / kQK32; ++b) {
        const float d = fp16_to_fp32(blocks[b].d);
        const float m = fp16_to_fp32(blocks[b].m);
        int8_t q[kQK32];
        unpack_nibbles(blocks[b].qs, q, 0);
        // Built with -ffp-contract=off (see CMakeLists.txt): d * q + m is rounded twice, as
        // the format defines it, not fused.
        for (int j = 0; j < kQK32; ++j) dst[b * kQK32 + j] = d * static_cast<float>(q[j]) + m;
    }
}

void dequantize_row_q5_0(const void* src, float* dst, int64_t n) {
    const auto* blocks = static_cast<const BlockQ5_0*>(src);
    for (int64_t b = 0; b < n / kQK32; ++b) {
        const float d = fp16_to_fp32(blocks[b].d);
        int8_t q[kQK32];
        unpack_5bit(blocks[b].qs, blocks[b].qh, q, 16);
        for (int j = 0; j < kQK32; ++j) dst[b * kQK32 + j] = d * static_cast<float>(q[j]);
    }
}

void dequantize_row_q5_1(const void* src, float* dst, int64_t n) {
    const auto* blocks = static_cast<const BlockQ5_1*>(src);
    for (int64_t b = 0; b < n / kQK32; ++b) {
        const float d = fp16_to_fp32(blocks[b].d);
        const float m = fp16_to_fp32(blocks[b].m);
        int8_t q[kQK32];
        unpack_5bit(blocks[b].qs, blocks[b].qh, q, 0);
        for (int j = 0; j < kQK32; ++j) dst[b * kQK32 + j] = d * static_cast<float>(q[j]) + m;
    }
}

void dequantize_row_q8_0(const void* src, float* dst, int64_t n) {
    const auto* blocks = static_cast<const BlockQ8_0*>(src);
    for (int64_t b = 0; b < n / kQK32; ++b) {
        const float d = fp16_to_fp32(blocks[b].d);
        for (int j = 0; j < kQK32; ++j) dst[b * kQK32 + j] = d * static_cast<float>(blocks[b].qs[j]);
    }
}

float vec_dot_q4_0_scalar(int64_t n, const void* w, const void* a) {
    const auto* wb = static_cast<const BlockQ4_0*>(w);
    const auto* ab = static_cast<const BlockQ8Act32*>(a);
    float sum = 0.0f;
    for (int64_t b = 0; b < n / kQK32; ++b) {
        sum += fp16_to_fp32(wb[b].d) * ab[b].d * static_cast<float>(dot_nibbles(wb[b].qs, ab[b].qs, 8));
    }
    return sum;
}

float vec_dot_q4_1_scalar(int64_t n, const void* w, const void* a) {
    const auto* wb = static_cast<const BlockQ4_1*>(w);
    const auto* ab = static_cast<const BlockQ8Act32*>(a);
    float sum = 0.0f;
    for (int64_t b = 0; b < n / kQK32; ++b) {
        // sum_j (d q_j + m) a_j = d * da * sum_j q_j qa_j + m * sum_j a_j
        sum += fp16_to_fp32(wb[b].d) * ab[b].d * static_cast<float>(dot_nibbles(wb[b].qs, ab[b].qs, 0)) +
               fp16_to_fp32(wb[b].m) * ab[b].sum;
    }
    return sum;
}

float vec_dot_q5_0_scalar(int64_t n, const void* w, const void* a) {
    const auto* wb = static_cast<const BlockQ5_0*>(w);
    const auto* ab = static_cast<const BlockQ8Act32*>(a);
    float sum = 0.0f;
    for (int64_t b = 0; b < n / kQK32; ++b) {
        int8_t q[kQK32];
        unpack_5bit(wb[b].qs, wb[b].qh, q, 16);
        sum += fp16_to_fp32(wb[b].d) * ab[b].d * static_cast<float>(dot32_i8(q, ab[b].qs));
    }
    return sum;
}

float vec_dot_q5_1_scalar(int64_t n, const void* w, const void* a) {
    const auto* wb = static_cast<const BlockQ5_1*>(w);
    const auto* ab = static_cast<const BlockQ8Act32*>(a);
    float sum = 0.0f;
    for (int64_t b = 0; b < n / kQK32; ++b) {
        int8_t q[kQK32];
        unpack_5bit(wb[b].qs, wb[b].qh, q, 0);
        sum += fp16_to_fp32(wb[b].d) * ab[b].d * static_cast<float>(dot32_i8(q, ab[b].qs)) +
               fp16_to_fp32(wb[b].m) * ab[b].sum;
    }
    return sum;
}

float vec_dot_q8_0_scalar(int64_t n, const void* w, const void* a) {
    const auto* wb = static_cast<const BlockQ8_0*>(w);
    const auto* ab = static_cast<const BlockQ8Act32*>(a);
    float sum = 0.0f;
    for (int64_t b = 0; b < n / kQK32; ++b) {
        sum += fp16_to_fp32(wb[b].d) * ab[b].d * static_cast<float>(dot32_i8(wb[b].qs, ab[b].qs));
    }
    return sum;
}

}  // namespace edgellama::kernels
