// Test-only: lets the x86_64_v4 level's AVX-512 matmul code (row_groups_avx512.cpp,
// row_groups_k_avx512.cpp, and the activation quantizer in activations.cpp) run on an AVX2 CPU.
// tests/test_avx512_emulated.py compiles those files with -march=x86-64-v3, this header
// force-included and tests/x86/avx512_shim ahead on the include path, and links them into the
// matmul harness. Nothing in the package includes it.
//
// It declares the AVX-512 feature macros the files test, then maps each AVX-512 intrinsic they
// use to an exact equivalent on 256-bit halves or GCC's generic vectors (which GCC splits into AVX2
// instructions): the same lanes, roundings and wrapping, one instruction at a time.
#pragma once

#include <immintrin.h>  // first, so that the compiler's own AVX-512 headers are already read

#include <cstdint>
#include <cstring>

#include "tests/x86/emulated_dpbusd.h"

namespace edgellama_emulated {

typedef uint32_t U32x16 __attribute__((vector_size(64)));
typedef int32_t I32x16 __attribute__((vector_size(64)));
typedef uint16_t U16x32 __attribute__((vector_size(64)));
typedef uint8_t U8x64 __attribute__((vector_size(64)));
typedef float F32x16 __attribute__((vector_size(64)));

template <class To, class From>
inline To cast(From v) {
    static_assert(sizeof(To) == sizeof(From), "same size");
    To out;
    std::memcpy(&out, &v, sizeof out);
    return out;
}

// The low and high halves of a vector (a 512-bit one: lanes 0-7 and 8-15), and back.
template <class Half, class Whole>
inline void halves(Whole v, Half& lo, Half& hi) {
    static_assert(2 * sizeof(Half) == sizeof(Whole), "halves");
    std::memcpy(&lo, &v, sizeof lo);
    std::memcpy(&hi, reinterpret_cast<const char*>(&v) + sizeof lo, sizeof hi);
}
template <class Whole, class Half>
inline Whole join(Half lo, Half hi) {
    static_assert(2 * sizeof(Half) == sizeof(Whole), "halves");
    Whole v;
    std::memcpy(&v, &lo, sizeof lo);
    std::memcpy(reinterpret_cast<char*>(&v) + sizeof lo, &hi, sizeof hi);
    return v;
}

inline __m512i dpbusd(__m512i sum, __m512i u, __m512i s) {
    __m256i sl, sh, ul, uh, vl, vh;
    halves(sum, sl, sh), halves(u, ul, uh), halves(s, vl, vh);
    return join<__m512i>(edgellama_emulated_dpbusd(sl, ul, vl), edgellama_emulated_dpbusd(sh, uh, vh));
}

// VPDPWSSD: sum + the two int16 products of each 32-bit lane, wrapping (VPMADDWD's sums wrap alike).
inline __m512i dpwssd(__m512i sum, __m512i a, __m512i b) {
    __m256i sl, sh, al, ah, bl, bh;
    halves(sum, sl, sh), halves(a, al, ah), halves(b, bl, bh);
    return join<__m512i>(_mm256_add_epi32(sl, _mm256_madd_epi16(al, bl)), _mm256_add_epi32(sh, _mm256_madd_epi16(ah, bh)));
}

inline __m512 fmadd(__m512 a, __m512 b, __m512 c) {  // fused, one rounding
    __m256 al, ah, bl, bh, cl, ch;
    halves(a, al, ah), halves(b, bl, bh), halves(c, cl, ch);
    return join<__m512>(_mm256_fmadd_ps(al, bl, cl), _mm256_fmadd_ps(ah, bh, ch));
}

inline __m512 cvtph(__m256i h) {
    __m128i lo, hi;
    halves(h, lo, hi);
    return join<__m512>(_mm256_cvtph_ps(lo), _mm256_cvtph_ps(hi));
}

// VPTERNLOGD: each result bit is bit (a << 2 | b << 1 | c) of imm.
inline __m512i ternarylogic(__m512i a, __m512i b, __m512i c, int imm) {
    const U32x16 x = cast<U32x16>(a), y = cast<U32x16>(b), z = cast<U32x16>(c);
    U32x16 out = x ^ x;
    for (int i = 0; i < 8; ++i) {
        if (imm >> i & 1) out |= (i & 4 ? x : ~x) & (i & 2 ? y : ~y) & (i & 1 ? z : ~z);
    }
    return cast<__m512i>(out);
}

// VRNDSCALEPS with scale 0 (the quantizer's use): round in the rounding mode imm names, as VROUNDPS.
#define EDGELLAMA_EMULATED_ROUND(v, imm)                                                  \
    [&](__m512 whole) {                                                                   \
        __m256 lo, hi;                                                                    \
        edgellama_emulated::halves(whole, lo, hi);                                        \
        return edgellama_emulated::join<__m512>(_mm256_round_ps(lo, imm), _mm256_round_ps(hi, imm)); \
    }(v)

template <class H, H (*op)(H, H), class W>
inline W pairwise(W a, W b) {
    H al, ah, bl, bh;
    halves(a, al, ah), halves(b, bl, bh);
    return join<W>(op(al, bl), op(ah, bh));
}
inline __m256 min256(__m256 a, __m256 b) { return _mm256_min_ps(a, b); }
inline __m256 max256(__m256 a, __m256 b) { return _mm256_max_ps(a, b); }

inline __m512i cvtt_epi32(__m512 v) {  // truncating; out of range gives 0x80000000, as VCVTTPS2DQ
    __m256 lo, hi;
    halves(v, lo, hi);
    return join<__m512i>(_mm256_cvttps_epi32(lo), _mm256_cvttps_epi32(hi));
}

typedef int8_t I8x16 __attribute__((vector_size(16)));
inline __m128i cvt_epi32_epi8(__m512i v) {  // VPMOVDB: each lane's low byte
    return cast<__m128i>(__builtin_convertvector(cast<I32x16>(v), I8x16));
}

inline __m512 loadu_ps(const float* p) {
    __m512 v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

inline void mask_storeu(float* p, __mmask16 mask, __m512 v) {
    float lanes[16];
    std::memcpy(lanes, &v, sizeof lanes);
    for (int i = 0; i < 16; ++i)
        if (mask >> i & 1) p[i] = lanes[i];
}

inline __m512i loadu(const void* p) {
    __m512i v;
    std::memcpy(&v, p, sizeof v);
    return v;
}

template <class V, class T>
inline V splat(T x) {
    V v;
    for (size_t i = 0; i < sizeof v / sizeof x; ++i) v[i] = x;
    return v;
}

}  // namespace edgellama_emulated

#define __AVX512F__ 1
#define __AVX512BW__ 1
#define __AVX512VL__ 1
#define __AVX512VNNI__ 1

#define EDGELLAMA_EMU edgellama_emulated
#define _mm512_dpbusd_epi32(sum, u, s) EDGELLAMA_EMU::dpbusd(sum, u, s)
#define _mm512_dpwssd_epi32(sum, a, b) EDGELLAMA_EMU::dpwssd(sum, a, b)
#define _mm512_fmadd_ps(a, b, c) EDGELLAMA_EMU::fmadd(a, b, c)
#define _mm512_cvtph_ps(h) EDGELLAMA_EMU::cvtph(h)
#define _mm512_ternarylogic_epi32(a, b, c, imm) EDGELLAMA_EMU::ternarylogic(a, b, c, imm)
#define _mm512_mask_storeu_ps(p, mask, v) EDGELLAMA_EMU::mask_storeu(p, mask, v)
#define _mm512_loadu_si512(p) EDGELLAMA_EMU::loadu(p)
#define _mm512_add_epi32(a, b) \
    EDGELLAMA_EMU::cast<__m512i>(EDGELLAMA_EMU::cast<EDGELLAMA_EMU::U32x16>(a) + EDGELLAMA_EMU::cast<EDGELLAMA_EMU::U32x16>(b))
#define _mm512_and_si512(a, b) \
    EDGELLAMA_EMU::cast<__m512i>(EDGELLAMA_EMU::cast<EDGELLAMA_EMU::U32x16>(a) & EDGELLAMA_EMU::cast<EDGELLAMA_EMU::U32x16>(b))
#define _mm512_or_si512(a, b) \
    EDGELLAMA_EMU::cast<__m512i>(EDGELLAMA_EMU::cast<EDGELLAMA_EMU::U32x16>(a) | EDGELLAMA_EMU::cast<EDGELLAMA_EMU::U32x16>(b))
// Shifts by counts below the lane width, as the kernels use them.
#define _mm512_srli_epi32(a, n) EDGELLAMA_EMU::cast<__m512i>(EDGELLAMA_EMU::cast<EDGELLAMA_EMU::U32x16>(a) >> (n))
#define _mm512_slli_epi32(a, n) EDGELLAMA_EMU::cast<__m512i>(EDGELLAMA_EMU::cast<EDGELLAMA_EMU::U32x16>(a) << (n))
#define _mm512_srai_epi32(a, n) EDGELLAMA_EMU::cast<__m512i>(EDGELLAMA_EMU::cast<EDGELLAMA_EMU::I32x16>(a) >> (n))
#define _mm512_srli_epi16(a, n) EDGELLAMA_EMU::cast<__m512i>(EDGELLAMA_EMU::cast<EDGELLAMA_EMU::U16x32>(a) >> (n))
#define _mm512_slli_epi16(a, n) \
    EDGELLAMA_EMU::cast<__m512i>(EDGELLAMA_EMU::U16x32(EDGELLAMA_EMU::cast<EDGELLAMA_EMU::U16x32>(a) << (n)))
#define _mm512_set1_epi8(x) \
    EDGELLAMA_EMU::cast<__m512i>(EDGELLAMA_EMU::splat<EDGELLAMA_EMU::U8x64>(static_cast<uint8_t>(x)))
#define _mm512_set1_epi32(x) \
    EDGELLAMA_EMU::cast<__m512i>(EDGELLAMA_EMU::splat<EDGELLAMA_EMU::U32x16>(static_cast<uint32_t>(x)))
#define _mm512_set1_ps(x) EDGELLAMA_EMU::cast<__m512>(EDGELLAMA_EMU::splat<EDGELLAMA_EMU::F32x16>(static_cast<float>(x)))
#define _mm512_setzero_si512() _mm512_set1_epi32(0)
#define _mm512_setzero_ps() _mm512_set1_ps(0.0f)
#define _mm512_mul_ps(a, b) \
    EDGELLAMA_EMU::cast<__m512>(EDGELLAMA_EMU::cast<EDGELLAMA_EMU::F32x16>(a) * EDGELLAMA_EMU::cast<EDGELLAMA_EMU::F32x16>(b))
#define _mm512_sub_ps(a, b) \
    EDGELLAMA_EMU::cast<__m512>(EDGELLAMA_EMU::cast<EDGELLAMA_EMU::F32x16>(a) - EDGELLAMA_EMU::cast<EDGELLAMA_EMU::F32x16>(b))
#define _mm512_roundscale_ps(v, imm) EDGELLAMA_EMULATED_ROUND(v, imm)
#define _mm512_min_ps(a, b) EDGELLAMA_EMU::pairwise<__m256, EDGELLAMA_EMU::min256>(a, b)
#define _mm512_max_ps(a, b) EDGELLAMA_EMU::pairwise<__m256, EDGELLAMA_EMU::max256>(a, b)
#define _mm512_cvttps_epi32(v) EDGELLAMA_EMU::cvtt_epi32(v)
#define _mm512_cvtepi32_epi8(v) EDGELLAMA_EMU::cvt_epi32_epi8(v)
#define _mm512_loadu_ps(p) EDGELLAMA_EMU::loadu_ps(p)
#define _mm512_div_ps(a, b) \
    EDGELLAMA_EMU::cast<__m512>(EDGELLAMA_EMU::cast<EDGELLAMA_EMU::F32x16>(a) / EDGELLAMA_EMU::cast<EDGELLAMA_EMU::F32x16>(b))
#define _mm512_cvtepi32_ps(a) \
    EDGELLAMA_EMU::cast<__m512>(__builtin_convertvector(EDGELLAMA_EMU::cast<EDGELLAMA_EMU::I32x16>(a), EDGELLAMA_EMU::F32x16))
