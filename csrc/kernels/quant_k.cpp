// Q4_K, Q5_K and Q6_K: 256-element super-blocks dotted against BlockQ8Act256 activations.
//
// Per super-block we unpack the codes to int8, take int32 dot products per sub-block, combine
// those with the small integer sub-block scales (still in int32: the largest total, Q6_K's
// 16 * 128 * 16 * 32 * 127, fits easily), and only then multiply by the float super-block
// scales. K-quant mins become dmin * sum_j mn[j] * (activation sum of sub-block j), which is why
// the activation blocks carry 16-element partial sums.
#include "csrc/formats/float_convert.h"
#include "csrc/kernels/kernel_fns.h"
#include "csrc/formats/block_formats.h"

namespace edgellama::kernels {
namespace {

constexpr int kSub = 32;                   // Q4_K / Q5_K sub-block length
constexpr int kNumSub = kQK256 / kSub;     // 8 sub-blocks
constexpr int kSub6 = 16;                  // Q6_K sub-block length
constexpr int kNumSub6 = kQK256 / kSub6;   // 16 sub-blocks

// The 12 scale bytes hold 8 six-bit scales and 8 six-bit mins. Sub-blocks 0..3 use the low six
// bits of bytes 0..3 (scale) and 4..7 (min); sub-blocks 4..7 take their low four bits from a
// nibble of bytes 8..11 and their top two bits from the spare top bits of bytes 0..7.
inline void unpack_k_scale_min(const uint8_t* s, uint8_t* sc, uint8_t* mn) {
    for (int j = 0; j < 4; ++j) {
        sc[j] = s[j] & 63;
        mn[j] = s[j + 4] & 63;
        sc[j + 4] = static_cast<uint8_t>((s[j + 8] & 0x0f) | ((s[j] >> 6) << 4));
        mn[j + 4] = static_cast<uint8_t>((s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4));
    }
}

// 4-bit codes in element order: chunk c gives sub-block 2c (low nibbles), 2c + 1 (high).
inline void unpack_q4_k(const uint8_t* qs, int8_t* q) {
    for (int c = 0; c < kNumSub / 2; ++c) {
        for (int l = 0; l < kSub; ++l) {
            q[64 * c + l] = static_cast<int8_t>(qs[32 * c + l] & 0x0f);
            q[64 * c + 32 + l] = static_cast<int8_t>(qs[32 * c + l] >> 4);
        }
    }
}

// Q5_K codes: the Q4_K nibble plus bit j of qh[l] as bit 4 for element l of sub-block j.
inline void unpack_q5_k(const BlockQ5_K& blk, int8_t* q) {
    unpack_q4_k(blk.qs, q);
    for (int j = 0; j < kNumSub; ++j) {
        for (int l = 0; l < kSub; ++l) q[kSub * j + l] |= static_cast<int8_t>(((blk.qh[l] >> j) & 1) << 4);
    }
}

// Q6_K codes minus 32, in element order (layout described at BlockQ6_K).
inline void unpack_q6_k(const BlockQ6_K& blk, int8_t* q) {
    for (int h = 0; h < 2; ++h) {
        const uint8_t* ql = blk.ql + 64 * h;
        const uint8_t* qh = blk.qh + 32 * h;
        int8_t* out = q + 128 * h;
        for (int l = 0; l < 32; ++l) {
            out[l] = static_cast<int8_t>(((ql[l] & 0x0f) | (((qh[l] >> 0) & 3) << 4)) - 32);
            out[l + 32] = static_cast<int8_t>(((ql[l + 32] & 0x0f) | (((qh[l] >> 2) & 3) << 4)) - 32);
            out[l + 64] = static_cast<int8_t>(((ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4)) - 32);
            out[l + 96] = static_cast<int8_t>(((ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4)) - 32);
        }
    }
}

template <int N>
inline int32_t dot_i8(const int8_t* x, const int8_t* y) {
    int32_t s = 0;
    for (int j = 0; j < N; ++j) s += static_cast<int32_t>(x[j]) * y[j];
    return s;
}

// Dequantizes 8 sub-blocks of codes with value (d * sc[j]) * q - (dmin * mn[j]).
inline void dequantize_scaled_mins(const int8_t* q, uint16_t d16, uint16_t dmin16, const uint8_t* scales,
                                   float* dst) {
    uint8_t sc[kNumSub], mn[kNumSub];
    unpack_k_scale_min(scales, sc, mn);
    const float d = fp16_to_fp32(d16);
    const float dmin = fp16_to_fp32(dmin16);
    for (int j = 0; j < kNumSub; ++j) {
        const float dl = d * static_cast<float>(sc[j]);
        const float ml = dmin * static_cast<float>(mn[j]);
        // Built with -ffp-contract=off: two roundings, as the format defines the value.
        for (int l = 0; l < kSub; ++l) dst[kSub * j + l] = dl * static_cast<float>(q[kSub * j + l]) - ml;
    }
}

// One super-block of a Q4_K / Q5_K dot product, given its unpacked codes.
inline float dot_scaled_mins(const int8_t* q, uint16_t d16, uint16_t dmin16, const uint8_t* scales,
                             const BlockQ8Act256& act) {
    uint8_t sc[kNumSub], mn[kNumSub];
    unpack_k_scale_min(scales, sc, mn);
    int32_t isum = 0;
    int32_t imin = 0;
    for (int j = 0; j < kNumSub; ++j) {
        isum += sc[j] * dot_i8<kSub>(q + kSub * j, act.qs + kSub * j);
        imin += mn[j] * (act.bsums[2 * j] + act.bsums[2 * j + 1]);
    }
    return act.d * (fp16_to_fp32(d16) * static_cast<float>(isum) - fp16_to_fp32(dmin16) * static_cast<float>(imin));
}

}  // namespace

void dequantize_row_q4_k(const void* src, float* dst, int64_t n) {
    const auto* blocks = static_cast<const BlockQ4_K*>(src);
    for (int64_t b = 0; b < n / kQK256; ++b) {
        int8_t q[kQK256];
        unpack_q4_k(blocks[b].qs, q);
        dequantize_scaled_mins(q, blocks[b].d, blocks[b].dmin, blocks[b].scales, dst + b * kQK256);
    }
}

void dequantize_row_q5_k(const void* src, float* dst, int64_t n) {
    const auto* blocks = static_cast<const BlockQ5_K*>(src);
    for (int64_t b = 0; b < n / kQK256; ++b) {
        int8_t q[kQK256];
        unpack_q5_k(blocks[b], q);
        dequantize_scaled_mins(q, blocks[b].d, blocks[b].dmin, blocks[b].scales, dst + b * kQK256);
    }
}

void dequantize_row_q6_k(const void* src, float* dst, int64_t n) {
    const auto* blocks = static_cast<const BlockQ6_K*>(src);
    for (int64_t b = 0; b < n / kQK256; ++b) {
        int8_t q[kQK256];
        unpack_q6_k(blocks[b], q);
        const float d = fp16_to_fp32(blocks[b].d);
        float* out = dst + b * kQK256;
        for (int i = 0; i < kNumSub6; ++i) {
            const float dl = d * static_cast<float>(blocks[b].scales[i]);
            for (int l = 0; l < kSub6; ++l) out[kSub6 * i + l] = dl * static_cast<float>(q[kSub6 * i + l]);
        }
    }
}

float vec_dot_q4_k_scalar(int64_t n, const void* w, const void* a) {
    const auto* wb = static_cast<const BlockQ4_K*>(w);
    const auto* ab = static_cast<const BlockQ8Act256*>(a);
    float sum = 0.0f;
    for (int64_t b = 0; b < n / kQK256; ++b) {
        int8_t q[kQK256];
        unpack_q4_k(wb[b].qs, q);
        sum += dot_scaled_mins(q, wb[b].d, wb[b].dmin, wb[b].scales, ab[b]);
    }
    return sum;
}

float vec_dot_q5_k_scalar(int64_t n, const void* w, const void* a) {
    const auto* wb = static_cast<const BlockQ5_K*>(w);
    const auto* ab = static_cast<const BlockQ8Act256*>(a);
    float sum = 0.0f;
    for (int64_t b = 0; b < n / kQK256; ++b) {
        int8_t q[kQK256];
        unpack_q5_k(wb[b], q);
        sum += dot_scaled_mins(q, wb[b].d, wb[b].dmin, wb[b].scales, ab[b]);
    }
    return sum;
}

float vec_dot_q6_k_scalar(int64_t n, const void* w, const void* a) {
    const auto* wb = static_cast<const BlockQ6_K*>(w);
    const auto* ab = static_cast<const BlockQ8Act256*>(a);
    float sum = 0.0f;
    for (int64_t b = 0; b < n / kQK256; ++b) {
        int8_t q[kQK256];
        unpack_q6_k(wb[b], q);
        int32_t isum = 0;
        for (int i = 0; i < kNumSub6; ++i) {
            isum += wb[b].scales[i] * dot_i8<kSub6>(q + kSub6 * i, ab[b].qs + kSub6 * i);
        }
        sum += fp16_to_fp32(wb[b].d) * ab[b].d * static_cast<float>(isum);
    }
    return sum;
}

}  // namespace edgellama::kernels
