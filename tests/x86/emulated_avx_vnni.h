// Test-only: lets the AVX-VNNI build of the kernels (the x86_64_v3_vnni level: Intel Core 12th
// generation and later, which lack AVX-512) run on an AVX2 CPU without AVX-VNNI.
//
// tests/test_avx_vnni_emulated.py force-includes this header (g++ -include) when it builds the
// matmul harness with the level's -march=x86-64-v3. It declares __AVXVNNI__, so the kernels compile
// their EDGELLAMA_VNNI_256 code (csrc/kernels/simd_avx2.h), and maps the one VNNI instruction they
// use to an exact AVX2 equivalent. Nothing in the package includes it.
#pragma once

#include <immintrin.h>  // first, so that the compiler's own AVX-VNNI header is already read

#include "tests/x86/emulated_dpbusd.h"

#define __AVXVNNI__ 1
#define _mm256_dpbusd_avx_epi32(sum, u, s) edgellama_emulated_dpbusd(sum, u, s)
