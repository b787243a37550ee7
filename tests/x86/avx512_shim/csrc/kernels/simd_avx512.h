// Test-only stand-in for csrc/kernels/simd_avx512.h in the emulated AVX-512 build
// (tests/test_avx512_emulated.py puts this folder ahead on the include path). The real header's
// dpbusd_broadcast is inline assembly, which no emulation can reach; this is the same operation,
// sum + VPDPBUSD(w, the four bytes at p broadcast to every lane), through the emulated intrinsic.
#pragma once

#include <immintrin.h>

#include <cstdint>
#include <cstring>

namespace edgellama {

inline __m512i dpbusd_broadcast(__m512i sum, __m512i w, const void* p) {
    int32_t v;
    std::memcpy(&v, p, sizeof v);
    return _mm512_dpbusd_epi32(sum, w, _mm512_set1_epi32(v));
}

}  // namespace edgellama
