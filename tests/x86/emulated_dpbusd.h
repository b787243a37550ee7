// Test-only: VPDPBUSD on 8 int32 lanes in AVX2, for the emulated AVX-VNNI and AVX-512 builds
// (emulated_avx_vnni.h, emulated_avx512.h). tests/test_avx_vnni_emulated.py checks it against numpy.
#pragma once

#include <immintrin.h>

// sum + Σ over each 4-byte group of u[i] · s[i] (u unsigned, s signed bytes), in int32 without
// saturation. Even and odd bytes are widened to 16 bits apart; each madd then adds the exact
// products of bytes 4i, 4i+2 (or 4i+1, 4i+3) into lane i.
inline __m256i edgellama_emulated_dpbusd(__m256i sum, __m256i u, __m256i s) {
    const __m256i low_byte = _mm256_set1_epi16(0x00ff);
    const __m256i u_even = _mm256_and_si256(u, low_byte), u_odd = _mm256_srli_epi16(u, 8);
    const __m256i s_even = _mm256_srai_epi16(_mm256_slli_epi16(s, 8), 8), s_odd = _mm256_srai_epi16(s, 8);
    const __m256i products = _mm256_add_epi32(_mm256_madd_epi16(u_even, s_even), _mm256_madd_epi16(u_odd, s_odd));
    return _mm256_add_epi32(sum, products);
}
