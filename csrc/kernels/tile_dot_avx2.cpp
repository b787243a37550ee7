// Tiled dot products for the 32-element block family (Q4_0, Q4_1, Q8_0) with AVX2 (and AVX-512
// VNNI for the byte dot where the CPU has it).
//
// Q4_0 is handled as Q4_1 with min = -8·d: the nibbles stay unsigned, so the byte dot needs no
// sign fix-up, and the offset folds into the activation block sum that is already stored.
#include "csrc/kernels/tile_dot.h"

#include "csrc/kernels/type_traits.h"

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#include <immintrin.h>

#include "csrc/kernels/simd_avx2.h"

#include "csrc/kernels/float_convert.h"
#include "quantize/block_formats.h"

namespace edgellama {
namespace {

using simd::dot_u8s8;
using simd::hsum_ps;
using simd::load32;

inline __m256i unpack_nibbles(const uint8_t* qs) { return simd::unpack_nibbles32(qs); }

// Per-format access to one weight block: unsigned or signed codes, scale, min.
struct Q4_0Codes {
    using Block = BlockQ4_0;
    static constexpr bool kHasMin = true;
    static constexpr bool kSigned = false;
    static __m256i codes(const Block& b) { return unpack_nibbles(b.qs); }
    static float scale(const Block& b) { return fp16_to_fp32(b.d); }
    static float min(const Block& b) { return -8.0f * fp16_to_fp32(b.d); }
};

struct Q4_1Codes {
    using Block = BlockQ4_1;
    static constexpr bool kHasMin = true;
    static constexpr bool kSigned = false;
    static __m256i codes(const Block& b) { return unpack_nibbles(b.qs); }
    static float scale(const Block& b) { return fp16_to_fp32(b.d); }
    static float min(const Block& b) { return fp16_to_fp32(b.m); }
};

struct Q8_0Codes {
    using Block = BlockQ8_0;
    static constexpr bool kHasMin = false;
    static constexpr bool kSigned = true;
    static __m256i codes(const Block& b) { return load32(b.qs); }
    static float scale(const Block& b) { return fp16_to_fp32(b.d); }
    static float min(const Block&) { return 0.0f; }
};

template <class F, int T>
void tile_dot_32(int64_t n, const uint8_t* w, size_t w_stride, const uint8_t* act, size_t act_stride,
                 float* out, int64_t out_stride) {
    using Block = typename F::Block;
    const Block* rows[kTileRows];
    for (int r = 0; r < kTileRows; ++r) rows[r] = reinterpret_cast<const Block*>(w + r * w_stride);
    const BlockQ8Act32* acts[T];
    for (int t = 0; t < T; ++t) acts[t] = reinterpret_cast<const BlockQ8Act32*>(act + t * act_stride);

    __m256 acc[kTileRows][T];
    float min_acc[kTileRows][T];
    for (int r = 0; r < kTileRows; ++r) {
        for (int t = 0; t < T; ++t) {
            acc[r][t] = _mm256_setzero_ps();
            min_acc[r][t] = 0.0f;
        }
    }
    for (int64_t b = 0; b < n / kQK32; ++b) {
        __m256i codes[kTileRows];
        float scale[kTileRows], min[kTileRows];
        for (int r = 0; r < kTileRows; ++r) {
            codes[r] = F::codes(rows[r][b]);
            scale[r] = F::scale(rows[r][b]);
            min[r] = F::min(rows[r][b]);
        }
        for (int t = 0; t < T; ++t) {
            const BlockQ8Act32& a = acts[t][b];
            const __m256i a_codes = load32(a.qs);
            for (int r = 0; r < kTileRows; ++r) {
                __m256i isum;
                if constexpr (F::kSigned) {
                    // signed × signed: move the weight's sign onto the activation.
                    isum = dot_u8s8(_mm256_sign_epi8(codes[r], codes[r]), _mm256_sign_epi8(a_codes, codes[r]));
                } else {
                    isum = dot_u8s8(codes[r], a_codes);
                }
                acc[r][t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(scale[r] * a.d), acc[r][t]);
                if constexpr (F::kHasMin) min_acc[r][t] += min[r] * a.sum;
            }
        }
    }
    for (int t = 0; t < T; ++t) {
        for (int r = 0; r < kTileRows; ++r) out[t * out_stride + r] = hsum_ps(acc[r][t]) + min_acc[r][t];
    }
}

template <class F>
void tile_dot_dispatch(int64_t n, const uint8_t* w, size_t w_stride, const uint8_t* act, size_t act_stride,
                       int n_tok, float* out, int64_t out_stride) {
    with_token_count(n_tok, [&](auto t) {
        tile_dot_32<F, decltype(t)::value>(n, w, w_stride, act, act_stride, out, out_stride);
    });
}

}  // namespace

TileDotFn find_tile_dot_avx2(int32_t type_id) {
    switch (static_cast<TensorType>(type_id)) {
        case TensorType::Q4_0: return tile_dot_dispatch<Q4_0Codes>;
        case TensorType::Q4_1: return tile_dot_dispatch<Q4_1Codes>;
        case TensorType::Q8_0: return tile_dot_dispatch<Q8_0Codes>;
        default: return nullptr;
    }
}

}  // namespace edgellama

#else  // no AVX2: every type goes through vec_dot

namespace edgellama {
TileDotFn find_tile_dot_avx2(int32_t) { return nullptr; }
}  // namespace edgellama

#endif
