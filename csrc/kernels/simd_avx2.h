// Small AVX2 building blocks of the vec_dot kernels (quant_avx2.cpp) and the AVX2 row groups.
// Include only under `#if defined(__AVX2__)`.
#pragma once

#include <immintrin.h>

#include <cstdint>

namespace edgellama::simd {

// Stores the first n (<= 8) lanes of v.
inline void store_first(float* out, __m256 v, int n) {
    if (n >= 8) {
        _mm256_storeu_ps(out, v);
        return;
    }
    alignas(32) float tmp[8];
    _mm256_store_ps(tmp, v);
    for (int i = 0; i < n; ++i) out[i] = tmp[i];
}

inline float hsum_ps(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

inline int32_t hsum_epi32(__m256i v) {
    __m128i s = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(1, 0, 3, 2)));
    s = _mm_add_epi32(s, _mm_shuffle_epi32(s, _MM_SHUFFLE(2, 3, 0, 1)));
    return _mm_cvtsi128_si32(s);
}

// a + b, kept in the order written. The compiler cannot see through the empty asm, so a sum built
// step by step with these stays a chain. Without it GCC rebalances an unrolled chain of integer
// adds into a tree whose products are all live at once, and they spill: the K-quant decode stored
// and reloaded 46 vectors per sub-block. No instruction is emitted.
inline __m256i keep_order(__m256i v) {
    __asm__("" : "+x"(v));
    return v;
}
inline __m256i add_i16_in_order(__m256i a, __m256i b) { return keep_order(_mm256_add_epi16(a, b)); }
inline __m256i add_i32_in_order(__m256i a, __m256i b) { return keep_order(_mm256_add_epi32(a, b)); }

// The 256-bit VNNI byte dot, where the build targets it: AVX-VNNI (Intel Core 12th generation and
// later, which lack AVX-512) or AVX-512 VNNI with VL.
#if defined(__AVXVNNI__) || (defined(__AVX512VNNI__) && defined(__AVX512VL__))
#define EDGELLAMA_VNNI_256 1
// sum + Σ over each 4-byte group of u[i] * s[i] (u unsigned bytes, s signed bytes), exact in int32.
inline __m256i dpbusd(__m256i sum, __m256i u, __m256i s) {
#if defined(__AVX512VNNI__) && defined(__AVX512VL__)
    return _mm256_dpbusd_epi32(sum, u, s);
#else
    return _mm256_dpbusd_avx_epi32(sum, u, s);
#endif
}
#endif

// 8 int32 partial sums of u[i] * s[i] (u unsigned bytes, s signed bytes): one VNNI instruction
// where the CPU has it.
inline __m256i dot_u8s8(__m256i u, __m256i s) {
#if defined(EDGELLAMA_VNNI_256)
    return dpbusd(_mm256_setzero_si256(), u, s);
#else
    return _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1));
#endif
}

// 8 int32 partial sums of x[i] * y[i] for signed bytes: x's sign moves onto y (x is never -128
// for our weights; even so |x| = 128 read as unsigned stays correct).
inline __m256i dot_s8s8(__m256i x, __m256i y) {
    return dot_u8s8(_mm256_sign_epi8(x, x), _mm256_sign_epi8(y, x));
}

// The 32 4-bit codes of a 32-element block in element order: low nibbles (elements 0..15), then
// high nibbles (16..31).
inline __m256i unpack_nibbles32(const uint8_t* qs) {
    const __m128i packed = _mm_loadu_si128(reinterpret_cast<const __m128i*>(qs));
    const __m128i mask = _mm_set1_epi8(0x0f);
    return _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(packed, 4), mask), _mm_and_si128(packed, mask));
}

inline __m256i load32(const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); }

}  // namespace edgellama::simd
