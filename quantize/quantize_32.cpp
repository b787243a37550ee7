// Quantizers of the 32-element formats, with the reference rounding of each format.
//
// Every step is a single float32 operation in a fixed order (this file is compiled with
// -ffp-contract=off), so the bytes match any encoder that follows the format definition:
//   Q4_0 / Q5_0: d = (signed value of largest magnitude) / -8 (or -16); q = trunc(x / d + 8.5)
//                (or + 16.5), clamped to the code range.
//   Q4_1 / Q5_1: d = (max - min) / 15 (or 31), m = min; q = trunc((x - min) / d + 0.5), clamped.
//   Q8_0:        d = max|x| / 127; q = round-half-away(x / d).
// "x / d" is x times the float reciprocal of d (0 when d is 0). A reciprocal that overflows
// (a block of denormals) yields non-finite products; those codes are 0, and d is 0 in f16
// anyway, so the block decodes to zeros.
#include <cmath>
#include <cstring>

#include "csrc/formats/float_convert.h"
#include "csrc/formats/block_formats.h"
#include "quantize/codecs.h"

namespace edgellama::quantize {
namespace {

// Float code to an integer code clamped to [0, hi], as a truncating cast to uint8 would give it.
inline uint8_t code_from(float v, int hi) {
    if (!std::isfinite(v)) return 0;
    const int32_t i = static_cast<int32_t>(v);  // truncates toward zero
    const uint8_t u = static_cast<uint8_t>(i);  // wraps like an 8-bit cast
    return u > hi ? static_cast<uint8_t>(hi) : u;
}

inline float reciprocal_or_zero(float d) { return d != 0.0f ? 1.0f / d : 0.0f; }

// The value of largest magnitude, first one on ties.
inline float signed_absmax(const float* x) {
    float amax = 0.0f, vmax = 0.0f;
    for (int i = 0; i < kQK32; ++i) {
        const float a = std::fabs(x[i]);
        if (a > amax) {
            amax = a;
            vmax = x[i];
        }
    }
    return vmax;
}

inline void min_max(const float* x, float* lo, float* hi) {
    float mn = x[0], mx = x[0];
    for (int i = 1; i < kQK32; ++i) {
        mn = x[i] < mn ? x[i] : mn;
        mx = x[i] > mx ? x[i] : mx;
    }
    *lo = mn;
    *hi = mx;
}

// Low nibbles of elements 0..15 and 16..31 into qs; bit 4 of every code into qh (LE uint32).
inline void pack_nibbles(const uint8_t* q, uint8_t* qs) {
    for (int j = 0; j < kQK32 / 2; ++j) qs[j] = static_cast<uint8_t>((q[j] & 0x0f) | ((q[j + 16] & 0x0f) << 4));
}

inline void pack_high_bits(const uint8_t* q, uint8_t* qh) {
    uint32_t bits = 0;
    for (int j = 0; j < kQK32; ++j) bits |= static_cast<uint32_t>((q[j] >> 4) & 1) << j;
    for (int b = 0; b < 4; ++b) qh[b] = static_cast<uint8_t>(bits >> (8 * b));
}

}  // namespace

void quantize_row_q4_0(const float* x, void* dst, int64_t n) {
    auto* out = static_cast<BlockQ4_0*>(dst);
    for (int64_t b = 0; b < n / kQK32; ++b, x += kQK32) {
        const float d = signed_absmax(x) / -8.0f;
        const float id = reciprocal_or_zero(d);
        uint8_t q[kQK32];
        for (int i = 0; i < kQK32; ++i) q[i] = code_from(x[i] * id + 8.5f, 15);
        out[b].d = fp32_to_fp16(d);
        pack_nibbles(q, out[b].qs);
    }
}

void quantize_row_q4_1(const float* x, void* dst, int64_t n) {
    auto* out = static_cast<BlockQ4_1*>(dst);
    for (int64_t b = 0; b < n / kQK32; ++b, x += kQK32) {
        float lo, hi;
        min_max(x, &lo, &hi);
        const float d = (hi - lo) / 15.0f;
        const float id = reciprocal_or_zero(d);
        uint8_t q[kQK32];
        for (int i = 0; i < kQK32; ++i) q[i] = code_from((x[i] - lo) * id + 0.5f, 15);
        out[b].d = fp32_to_fp16(d);
        out[b].m = fp32_to_fp16(lo);
        pack_nibbles(q, out[b].qs);
    }
}

void quantize_row_q5_0(const float* x, void* dst, int64_t n) {
    auto* out = static_cast<BlockQ5_0*>(dst);
    for (int64_t b = 0; b < n / kQK32; ++b, x += kQK32) {
        const float d = signed_absmax(x) / -16.0f;
        const float id = reciprocal_or_zero(d);
        uint8_t q[kQK32];
        for (int i = 0; i < kQK32; ++i) q[i] = code_from(x[i] * id + 16.5f, 31);
        out[b].d = fp32_to_fp16(d);
        pack_high_bits(q, out[b].qh);
        pack_nibbles(q, out[b].qs);
    }
}

void quantize_row_q5_1(const float* x, void* dst, int64_t n) {
    auto* out = static_cast<BlockQ5_1*>(dst);
    for (int64_t b = 0; b < n / kQK32; ++b, x += kQK32) {
        float lo, hi;
        min_max(x, &lo, &hi);
        const float d = (hi - lo) / 31.0f;
        const float id = reciprocal_or_zero(d);
        uint8_t q[kQK32];
        for (int i = 0; i < kQK32; ++i) q[i] = code_from((x[i] - lo) * id + 0.5f, 31);
        out[b].d = fp32_to_fp16(d);
        out[b].m = fp32_to_fp16(lo);
        pack_high_bits(q, out[b].qh);
        pack_nibbles(q, out[b].qs);
    }
}

void quantize_row_q8_0(const float* x, void* dst, int64_t n) {
    auto* out = static_cast<BlockQ8_0*>(dst);
    for (int64_t b = 0; b < n / kQK32; ++b, x += kQK32) {
        float amax = 0.0f;
        for (int i = 0; i < kQK32; ++i) amax = std::fmax(amax, std::fabs(x[i]));
        const float d = amax / 127.0f;
        const float id = reciprocal_or_zero(d);
        for (int i = 0; i < kQK32; ++i) {
            const float v = std::round(x[i] * id);  // half away from zero
            out[b].qs[i] = std::isfinite(v) ? static_cast<int8_t>(static_cast<int32_t>(v)) : 0;
        }
        out[b].d = fp32_to_fp16(d);
    }
}

void dequantize_row_q5_0(const void* src, float* dst, int64_t n) {
    const auto* in = static_cast<const BlockQ5_0*>(src);
    for (int64_t b = 0; b < n / kQK32; ++b, dst += kQK32) {
        const float d = fp16_to_fp32(in[b].d);
        uint32_t qh;
        std::memcpy(&qh, in[b].qh, 4);
        for (int j = 0; j < kQK32 / 2; ++j) {
            const int lo = (in[b].qs[j] & 0x0f) | static_cast<int>(((qh >> j) & 1) << 4);
            const int hi = (in[b].qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1) << 4);
            dst[j] = d * static_cast<float>(lo - 16);
            dst[j + 16] = d * static_cast<float>(hi - 16);
        }
    }
}

void dequantize_row_q5_1(const void* src, float* dst, int64_t n) {
    const auto* in = static_cast<const BlockQ5_1*>(src);
    for (int64_t b = 0; b < n / kQK32; ++b, dst += kQK32) {
        const float d = fp16_to_fp32(in[b].d);
        const float m = fp16_to_fp32(in[b].m);
        uint32_t qh;
        std::memcpy(&qh, in[b].qh, 4);
        for (int j = 0; j < kQK32 / 2; ++j) {
            const int lo = (in[b].qs[j] & 0x0f) | static_cast<int>(((qh >> j) & 1) << 4);
            const int hi = (in[b].qs[j] >> 4) | static_cast<int>(((qh >> (j + 16)) & 1) << 4);
            dst[j] = d * static_cast<float>(lo) + m;
            dst[j + 16] = d * static_cast<float>(hi) + m;
        }
    }
}

}  // namespace edgellama::quantize
