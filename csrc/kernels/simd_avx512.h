// AVX-512 VNNI helpers shared by the row-group kernels (row_groups_avx512.cpp,
// row_groups_k_avx512.cpp). Include only where __AVX512VNNI__ is defined. Internal to csrc/kernels.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace edgellama {

// sum + dpbusd(w, the four activation bytes at p broadcast to every lane). The broadcast is folded
// into the instruction (EVEX {1to16} memory operand): GCC 12 does not fold it and emits a separate
// vpbroadcastd, one more uop through the load ports per dot, whose share of a decode step is large
// (a dot per 64 weight bytes and token). Folded, 1B-shape decode at one thread: Q8_0 +7-14% with
// int8 activations and +3-7% precise, Q4_K_M int8 +3-6% and precise even, Q4_0 even (within this
// shared machine's noise).
inline __m512i dpbusd_broadcast(__m512i sum, __m512i w, const void* p) {
#if defined(__GNUC__)
    typedef int32_t __attribute__((may_alias, aligned(1))) unaligned_i32;
    asm("vpdpbusd %2%{1to16%}, %1, %0" : "+v"(sum) : "v"(w), "m"(*static_cast<const unaligned_i32*>(p)));
    return sum;
#else
    int32_t v;
    std::memcpy(&v, p, sizeof v);
    return _mm512_dpbusd_epi32(sum, w, _mm512_set1_epi32(v));
#endif
}

}  // namespace edgellama
