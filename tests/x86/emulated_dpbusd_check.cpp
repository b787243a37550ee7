// Runs the emulated VPDPBUSD (emulated_dpbusd.h) on stdin's cases, so that
// tests/test_avx_vnni_emulated.py can check it against numpy: each case is 32 unsigned bytes u,
// 32 signed bytes s and 8 int32 sums in; the 8 int32 results out.
#include <cstdint>
#include <cstdio>

#include "tests/x86/emulated_dpbusd.h"

int main() {
    uint8_t u[32];
    int8_t s[32];
    int32_t sum[8], out[8];
    while (std::fread(u, 1, 32, stdin) == 32 && std::fread(s, 1, 32, stdin) == 32 &&
           std::fread(sum, 4, 8, stdin) == 8) {
        const auto load = [](const void* p) { return _mm256_loadu_si256(static_cast<const __m256i*>(p)); };
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), edgellama_emulated_dpbusd(load(sum), load(u), load(s)));
        std::fwrite(out, 4, 8, stdout);
    }
    return 0;
}
