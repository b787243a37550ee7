// Tiled dot products for the 32-element block family (Q4_0, Q4_1, Q8_0) with AVX-512 VNNI.
//
// One zmm register holds two 32-element blocks, so each byte-dot instruction covers 64 weights.
// Per (row, token) and block pair the work is one dot, one convert, one scale multiply and one
// FMA; the min term of Q4_0/Q4_1 is accumulated for all rows of the tile at once.
// Q4_0 is Q4_1 with min = -8·d (unsigned nibbles, no sign fix-up). Q8_0's signed weights are
// dotted against activations shifted to unsigned (a + 128), minus 128·Σw of the block.
#include "csrc/kernels/tile_dot.h"

#if defined(__AVX512F__) && defined(__AVX512BW__) && defined(__AVX512DQ__) && defined(__AVX512VL__) && \
    defined(__AVX512VNNI__) && defined(__F16C__)
#include <immintrin.h>

#include "csrc/kernels/float_convert.h"
#include "csrc/kernels/type_traits.h"
#include "quantize/block_formats.h"

namespace edgellama {
namespace {

inline __m512i load_two(const void* first, const void* second) {
    const __m256i lo = _mm256_loadu_si256(static_cast<const __m256i*>(first));
    const __m256i hi = _mm256_loadu_si256(static_cast<const __m256i*>(second));
    return _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
}

// Two blocks' nibbles in element order: [lo(b0), hi(b0), lo(b1), hi(b1)] by 128-bit lane.
inline __m512i unpack_nibbles_two(const uint8_t* qs0, const uint8_t* qs1) {
    const __m256i packed = _mm256_set_m128i(_mm_loadu_si128(reinterpret_cast<const __m128i*>(qs1)),
                                            _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs0)));
    const __m256i mask = _mm256_set1_epi8(0x0f);
    const __m256i lo = _mm256_and_si256(packed, mask);                         // [lo0, lo1]
    const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(packed, 4), mask);  // [hi0, hi1]
    const __m512i both = _mm512_inserti64x4(_mm512_castsi256_si512(lo), hi, 1);
    return _mm512_shuffle_i64x2(both, both, _MM_SHUFFLE(3, 1, 2, 0));
}

inline __m512 two_scales(float first, float second) {
    return _mm512_insertf32x8(_mm512_set1_ps(first), _mm256_set1_ps(second), 1);
}

struct Q4_0Pair {
    using Block = BlockQ4_0;
    static constexpr bool kSigned = false, kHasMin = true;
    static __m512i codes(const Block* b) { return unpack_nibbles_two(b[0].qs, b[1].qs); }
    static float scale(const Block& b) { return fp16_to_fp32(b.d); }
    static float min(const Block& b) { return -8.0f * fp16_to_fp32(b.d); }
};

struct Q4_1Pair {
    using Block = BlockQ4_1;
    static constexpr bool kSigned = false, kHasMin = true;
    static __m512i codes(const Block* b) { return unpack_nibbles_two(b[0].qs, b[1].qs); }
    static float scale(const Block& b) { return fp16_to_fp32(b.d); }
    static float min(const Block& b) { return fp16_to_fp32(b.m); }
};

struct Q8_0Pair {
    using Block = BlockQ8_0;
    static constexpr bool kSigned = true, kHasMin = false;
    static __m512i codes(const Block* b) { return load_two(b[0].qs, b[1].qs); }
    static float scale(const Block& b) { return fp16_to_fp32(b.d); }
    static float min(const Block&) { return 0.0f; }
};

inline float hsum512(__m512 v) { return _mm512_reduce_add_ps(v); }

template <class F, int T>
void tile_dot_pairs(int64_t n, const uint8_t* w, size_t w_stride, const uint8_t* act, size_t act_stride,
                    float* out, int64_t out_stride) {
    using Block = typename F::Block;
    const Block* rows[kTileRows];
    for (int r = 0; r < kTileRows; ++r) rows[r] = reinterpret_cast<const Block*>(w + r * w_stride);
    const BlockQ8Act32* acts[T];
    for (int t = 0; t < T; ++t) acts[t] = reinterpret_cast<const BlockQ8Act32*>(act + t * act_stride);

    __m512 acc[kTileRows][T];
    __m128 min_acc[T];  // lane r: the min term of row r
    for (int t = 0; t < T; ++t) {
        min_acc[t] = _mm_setzero_ps();
        for (int r = 0; r < kTileRows; ++r) acc[r][t] = _mm512_setzero_ps();
    }
    const int64_t n_blocks = n / kQK32;
    const __m512i ones = _mm512_set1_epi8(1), bias = _mm512_set1_epi8(static_cast<char>(0x80));
    // Odd block counts: the last block pairs with itself and its second half is masked out.
    for (int64_t b = 0; b < n_blocks; b += 2) {
        const bool single = b + 1 == n_blocks;
        const int64_t b1 = single ? b : b + 1;
        __m512i codes[kTileRows], code_sums[kTileRows];
        __m512 w_scale[kTileRows];
        float min0[kTileRows], min1[kTileRows];
        for (int r = 0; r < kTileRows; ++r) {
            const Block pair[2] = {rows[r][b], rows[r][b1]};
            codes[r] = F::codes(pair);
            w_scale[r] = two_scales(F::scale(pair[0]), single ? 0.0f : F::scale(pair[1]));
            if constexpr (F::kSigned) {
                // 128·Σw per 4-byte group, subtracted after dotting with (a + 128).
                code_sums[r] = _mm512_slli_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), ones, codes[r]), 7);
            }
            min0[r] = F::min(pair[0]);
            min1[r] = single ? 0.0f : F::min(pair[1]);
        }
        const __m128 mins0 = _mm_loadu_ps(min0), mins1 = _mm_loadu_ps(min1);
        for (int t = 0; t < T; ++t) {
            const BlockQ8Act32& a0 = acts[t][b];
            const BlockQ8Act32& a1 = acts[t][b1];
            __m512i a_codes = load_two(a0.qs, a1.qs);
            if constexpr (F::kSigned) a_codes = _mm512_xor_si512(a_codes, bias);
            const __m512 a_scale = two_scales(a0.d, single ? 0.0f : a1.d);
            for (int r = 0; r < kTileRows; ++r) {
                __m512i isum;
                if constexpr (F::kSigned) {
                    isum = _mm512_sub_epi32(_mm512_dpbusd_epi32(_mm512_setzero_si512(), a_codes, codes[r]),
                                            code_sums[r]);
                } else {
                    isum = _mm512_dpbusd_epi32(_mm512_setzero_si512(), codes[r], a_codes);
                }
                acc[r][t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(isum), _mm512_mul_ps(w_scale[r], a_scale), acc[r][t]);
            }
            if constexpr (F::kHasMin) {
                min_acc[t] = _mm_fmadd_ps(mins0, _mm_set1_ps(a0.sum), min_acc[t]);
                min_acc[t] = _mm_fmadd_ps(mins1, _mm_set1_ps(single ? 0.0f : a1.sum), min_acc[t]);
            }
        }
    }
    for (int t = 0; t < T; ++t) {
        alignas(16) float mins[kTileRows];
        _mm_store_ps(mins, min_acc[t]);
        for (int r = 0; r < kTileRows; ++r) out[t * out_stride + r] = hsum512(acc[r][t]) + mins[r];
    }
}

template <class F>
void tile_dot_dispatch(int64_t n, const uint8_t* w, size_t w_stride, const uint8_t* act, size_t act_stride,
                       int n_tok, float* out, int64_t out_stride) {
    switch (n_tok) {
        case 1: return tile_dot_pairs<F, 1>(n, w, w_stride, act, act_stride, out, out_stride);
        case 2: return tile_dot_pairs<F, 2>(n, w, w_stride, act, act_stride, out, out_stride);
        case 3: return tile_dot_pairs<F, 3>(n, w, w_stride, act, act_stride, out, out_stride);
        default: return tile_dot_pairs<F, 4>(n, w, w_stride, act, act_stride, out, out_stride);
    }
}

}  // namespace

TileDotFn find_tile_dot_avx512(int32_t type_id) {
    switch (static_cast<TensorType>(type_id)) {
        case TensorType::Q4_0: return tile_dot_dispatch<Q4_0Pair>;
        case TensorType::Q4_1: return tile_dot_dispatch<Q4_1Pair>;
        case TensorType::Q8_0: return tile_dot_dispatch<Q8_0Pair>;
        default: return nullptr;
    }
}

}  // namespace edgellama

#else

namespace edgellama {
TileDotFn find_tile_dot_avx512(int32_t) { return nullptr; }
}  // namespace edgellama

#endif
