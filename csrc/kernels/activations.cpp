// Activation quantization: one pass per matmul turns the float input row into int8 blocks with
// a float scale (d = max|x| / 127, q = round-to-nearest-even(x / d)) so every weight row can be
// dotted in integers; the residual precision adds a second row of blocks for what the first left
// out. Also the row-size helpers of the activation formats.
#include "csrc/kernels/type_traits.h"
#include "csrc/formats/block_formats.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>

#if defined(__AVX512F__)
#include <immintrin.h>
#endif

namespace edgellama {
namespace {

// Quantizes len floats to int8 with a shared scale; returns the scale. An all-zero block gets
// d = 0 and zero codes. The clamp only matters for subnormal maxima, where max / d can
// round slightly above 127.
// Written so the compiler vectorizes both loops (std::max/min, not fmax/fmin with their NaN rules:
// activations are finite).
inline float quantize_block_i8(const float* x, int8_t* q, int len) {
    float amax = 0.0f;
#pragma omp simd reduction(max : amax)
    for (int j = 0; j < len; ++j) amax = std::max(amax, std::fabs(x[j]));
    const float d = amax / 127.0f;
    if (d == 0.0f) {
        std::memset(q, 0, static_cast<size_t>(len));
        return 0.0f;
    }
    int j = 0;
#if defined(__AVX512F__)
    // The compiler leaves the clamped rounding below scalar (a branchy loop, ~5% of a decode). The
    // same operations 16 at a time: IEEE division, round in the current mode like nearbyint, clamp,
    // then an exact conversion of the integral value; the codes are bitwise those of the loop.
    const __m512 dv = _mm512_set1_ps(d), lo = _mm512_set1_ps(-127.0f), hi = _mm512_set1_ps(127.0f);
    for (; j + 16 <= len; j += 16) {
        const __m512 r = _mm512_roundscale_ps(_mm512_div_ps(_mm512_loadu_ps(x + j), dv),
                                              _MM_FROUND_CUR_DIRECTION | _MM_FROUND_NO_EXC);
        const __m512i codes = _mm512_cvttps_epi32(_mm512_min_ps(hi, _mm512_max_ps(lo, r)));
        _mm_storeu_si128(reinterpret_cast<__m128i*>(q + j), _mm512_cvtepi32_epi8(codes));
    }
#endif
    for (; j < len; ++j) {
        const float r = std::nearbyint(x[j] / d);
        q[j] = static_cast<int8_t>(std::min(127.0f, std::max(-127.0f, r)));
    }
    return d;
}

void quantize_q8_32(const float* src, BlockQ8Act32* dst, int64_t n) {
    for (int64_t b = 0; b < n / kQK32; ++b) {
        BlockQ8Act32& blk = dst[b];
        blk.d = quantize_block_i8(src + b * kQK32, blk.qs, kQK32);
        int32_t s = 0;
        for (int j = 0; j < kQK32; ++j) s += blk.qs[j];
        blk.sum = blk.d * static_cast<float>(s);
    }
}

void quantize_q8_256(const float* src, BlockQ8Act256* dst, int64_t n) {
    for (int64_t b = 0; b < n / kQK256; ++b) {
        BlockQ8Act256& blk = dst[b];
        blk.d = quantize_block_i8(src + b * kQK256, blk.qs, kQK256);
        for (int i = 0; i < kQK256 / 16; ++i) {
            int32_t s = 0;
            for (int j = 0; j < 16; ++j) s += blk.qs[16 * i + j];
            blk.bsums[i] = static_cast<int16_t>(s);
        }
    }
}

// The second block of the residual precision: what the first block's codes left out, x - d·q,
// quantized the same way with its own scale (at most d / 254, as |x - d·q| <= d / 2).
template <class Block, int kLen>
void quantize_residual_blocks(const float* src, const Block* first, Block* dst, int64_t n,
                              void (*quantize)(const float*, Block*, int64_t)) {
    float residual[kLen];
    for (int64_t b = 0; b < n / kLen; ++b) {
        const float* x = src + b * kLen;
        for (int j = 0; j < kLen; ++j) residual[j] = x[j] - first[b].d * static_cast<float>(first[b].qs[j]);
        quantize(residual, dst + b, kLen);
    }
}

[[noreturn]] void bad_format(ActFormat format) {
    throw std::invalid_argument("unknown activation format " + std::to_string(static_cast<int>(format)));
}

}  // namespace

int64_t act_block_size(ActFormat format) {
    switch (format) {
        case ActFormat::F32: return 1;
        case ActFormat::Q8_32: return kQK32;
        case ActFormat::Q8_256: return kQK256;
    }
    bad_format(format);
}

size_t act_row_bytes(ActFormat format, int64_t n) {
    const auto blocks = static_cast<size_t>(n / act_block_size(format));
    switch (format) {
        case ActFormat::F32: return blocks * sizeof(float);
        case ActFormat::Q8_32: return blocks * sizeof(BlockQ8Act32);
        case ActFormat::Q8_256: return blocks * sizeof(BlockQ8Act256);
    }
    bad_format(format);
}

void quantize_act_row(ActFormat format, const float* src, void* dst, int64_t n) {
    switch (format) {
        case ActFormat::F32:
            std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
            return;
        case ActFormat::Q8_32:
            quantize_q8_32(src, static_cast<BlockQ8Act32*>(dst), n);
            return;
        case ActFormat::Q8_256:
            quantize_q8_256(src, static_cast<BlockQ8Act256*>(dst), n);
            return;
    }
    bad_format(format);
}

void quantize_act_residual_row(ActFormat format, const float* src, const void* first, void* dst, int64_t n) {
    switch (format) {
        case ActFormat::Q8_32:
            quantize_residual_blocks<BlockQ8Act32, kQK32>(src, static_cast<const BlockQ8Act32*>(first),
                                                          static_cast<BlockQ8Act32*>(dst), n, quantize_q8_32);
            return;
        case ActFormat::Q8_256:
            quantize_residual_blocks<BlockQ8Act256, kQK256>(src, static_cast<const BlockQ8Act256*>(first),
                                                            static_cast<BlockQ8Act256*>(dst), n, quantize_q8_256);
            return;
        case ActFormat::F32: break;
    }
    bad_format(format);
}

}  // namespace edgellama
