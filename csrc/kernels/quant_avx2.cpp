// AVX2 vec_dot for Q4_0, Q4_1, Q8_0, Q4_K and Q6_K (the scalar loops in quant_32.cpp and
// quant_k.cpp define the results; tests compare the two).
//
// The workhorse is u8 x s8 -> s16 pair sums (maddubs), widened to s32 with a multiply by the
// integer scale (or 1), or a single u8 x s8 -> s32 dot where AVX-512 VNNI is available. A signed
// x signed product is turned into unsigned x signed by moving x's sign onto y. Floats appear
// once per block: the int32 lanes are converted and accumulated with the block's scale.
#include "csrc/kernels/kernel_fns.h"

#if defined(EDGELLAMA_HAVE_AVX2_DOTS)

#include <immintrin.h>

#include "csrc/kernels/simd_avx2.h"

#include "csrc/formats/float_convert.h"
#include "csrc/formats/block_formats.h"

namespace edgellama::kernels {
namespace {

using simd::dot_s8s8;
using simd::dot_u8s8;
using simd::hsum_epi32;
using simd::hsum_ps;
using simd::load32;
using simd::unpack_nibbles32;

}  // namespace

float vec_dot_q4_0_avx2(int64_t n, const void* w, const void* a) {
    const auto* wb = static_cast<const BlockQ4_0*>(w);
    const auto* ab = static_cast<const BlockQ8Act32*>(a);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / kQK32; ++b) {
        const __m256i q = _mm256_sub_epi8(unpack_nibbles32(wb[b].qs), _mm256_set1_epi8(8));
        const __m256i isum = dot_s8s8(q, load32(ab[b].qs));
        const __m256 scale = _mm256_set1_ps(fp16_to_fp32(wb[b].d) * ab[b].d);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), scale, acc);
    }
    return hsum_ps(acc);
}

float vec_dot_q4_1_avx2(int64_t n, const void* w, const void* a) {
    const auto* wb = static_cast<const BlockQ4_1*>(w);
    const auto* ab = static_cast<const BlockQ8Act32*>(a);
    __m256 acc = _mm256_setzero_ps();
    float mins = 0.0f;
    for (int64_t b = 0; b < n / kQK32; ++b) {
        const __m256i isum = dot_u8s8(unpack_nibbles32(wb[b].qs), load32(ab[b].qs));
        const __m256 scale = _mm256_set1_ps(fp16_to_fp32(wb[b].d) * ab[b].d);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), scale, acc);
        mins += fp16_to_fp32(wb[b].m) * ab[b].sum;
    }
    return hsum_ps(acc) + mins;
}

float vec_dot_q8_0_avx2(int64_t n, const void* w, const void* a) {
    const auto* wb = static_cast<const BlockQ8_0*>(w);
    const auto* ab = static_cast<const BlockQ8Act32*>(a);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / kQK32; ++b) {
        const __m256i isum = dot_s8s8(load32(wb[b].qs), load32(ab[b].qs));
        const __m256 scale = _mm256_set1_ps(fp16_to_fp32(wb[b].d) * ab[b].d);
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), scale, acc);
    }
    return hsum_ps(acc);
}

float vec_dot_q4_k_avx2(int64_t n, const void* w, const void* a) {
    const auto* wb = static_cast<const BlockQ4_K*>(w);
    const auto* ab = static_cast<const BlockQ8Act256*>(a);
    const __m256i mask = _mm256_set1_epi8(0x0f);
    __m256 acc = _mm256_setzero_ps();
    float mins = 0.0f;
    for (int64_t b = 0; b < n / kQK256; ++b) {
        const BlockQ4_K& blk = wb[b];
        const BlockQ8Act256& act = ab[b];
        // Same 6-bit unpacking as unpack_k_scale_min in quant_k.cpp.
        const uint8_t* s = blk.scales;
        int16_t sc[8];
        int32_t imin = 0;
        for (int j = 0; j < 4; ++j) {
            sc[j] = s[j] & 63;
            sc[j + 4] = static_cast<int16_t>((s[j + 8] & 0x0f) | ((s[j] >> 6) << 4));
            const int32_t mn_lo = s[j + 4] & 63;
            const int32_t mn_hi = (s[j + 8] >> 4) | ((s[j + 4] >> 6) << 4);
            imin += mn_lo * (act.bsums[2 * j] + act.bsums[2 * j + 1]);
            imin += mn_hi * (act.bsums[2 * j + 8] + act.bsums[2 * j + 9]);
        }
        __m256i isum = _mm256_setzero_si256();
        for (int c = 0; c < 4; ++c) {
            const __m256i packed = load32(blk.qs + 32 * c);
            const __m256i lo = _mm256_and_si256(packed, mask);
            const __m256i hi = _mm256_and_si256(_mm256_srli_epi16(packed, 4), mask);
            // u4 x s8 pair sums fit int16 (2 * 15 * 127); the sub-block scale widens them to int32.
            const __m256i plo = _mm256_maddubs_epi16(lo, load32(act.qs + 64 * c));
            const __m256i phi = _mm256_maddubs_epi16(hi, load32(act.qs + 64 * c + 32));
            isum = _mm256_add_epi32(isum, _mm256_madd_epi16(plo, _mm256_set1_epi16(sc[2 * c])));
            isum = _mm256_add_epi32(isum, _mm256_madd_epi16(phi, _mm256_set1_epi16(sc[2 * c + 1])));
        }
        const float da = act.d;
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(fp16_to_fp32(blk.d) * da), acc);
        mins += fp16_to_fp32(blk.dmin) * da * static_cast<float>(imin);
    }
    return hsum_ps(acc) - mins;
}

float vec_dot_q6_k_avx2(int64_t n, const void* w, const void* a) {
    const auto* wb = static_cast<const BlockQ6_K*>(w);
    const auto* ab = static_cast<const BlockQ8Act256*>(a);
    const __m256i m4 = _mm256_set1_epi8(0x0f);
    const __m256i m2 = _mm256_set1_epi8(0x03);
    const __m256i k32 = _mm256_set1_epi8(32);
    __m256 acc = _mm256_setzero_ps();
    for (int64_t b = 0; b < n / kQK256; ++b) {
        const BlockQ6_K& blk = wb[b];
        const BlockQ8Act256& act = ab[b];
        __m256i isum = _mm256_setzero_si256();
        for (int h = 0; h < 2; ++h) {
            const __m256i ql0 = load32(blk.ql + 64 * h);
            const __m256i ql1 = load32(blk.ql + 64 * h + 32);
            const __m256i qh = load32(blk.qh + 32 * h);
            // The four 32-element groups of this half (layout at BlockQ6_K), codes 0..63.
            const __m256i q[4] = {
                _mm256_or_si256(_mm256_and_si256(ql0, m4), _mm256_slli_epi16(_mm256_and_si256(qh, m2), 4)),
                _mm256_or_si256(_mm256_and_si256(ql1, m4),
                                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 2), m2), 4)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql0, 4), m4),
                                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 4), m2), 4)),
                _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(ql1, 4), m4),
                                _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(qh, 6), m2), 4)),
            };
            for (int s = 0; s < 4; ++s) {
                const __m256i av = load32(act.qs + 128 * h + 32 * s);
                // (q - 32) * a as two exact int16 pair sums: q * a minus 32 * a.
                const __m256i p = _mm256_sub_epi16(_mm256_maddubs_epi16(q[s], av), _mm256_maddubs_epi16(k32, av));
                // Each 128-bit lane is one 16-element sub-block with its own scale.
                const int i = 8 * h + 2 * s;
                const __m256i scale = _mm256_set_m128i(_mm_set1_epi16(blk.scales[i + 1]), _mm_set1_epi16(blk.scales[i]));
                isum = _mm256_add_epi32(isum, _mm256_madd_epi16(p, scale));
            }
        }
        acc = _mm256_fmadd_ps(_mm256_cvtepi32_ps(isum), _mm256_set1_ps(fp16_to_fp32(blk.d) * act.d), acc);
    }
    return hsum_ps(acc);
}

}  // namespace edgellama::kernels

#endif  // EDGELLAMA_HAVE_AVX2_DOTS
