// exp(x) in float32 that vectorizes: called from plain loops (SwiGLU, softmax), the compiler turns
// it into the CPU level's SIMD, where std::exp stays a scalar library call per element. Files that
// use it compile with -fno-trapping-math, without which GCC keeps its clamps as branches.
//
// Cody-Waite range reduction x = n·ln2 + r with |r| <= ln2/2, a degree-6 polynomial for e^r
// (the Cephes expf coefficients) and 2^n built in the exponent bits: within 2 ulp of exp over
// the clamped range, which keeps 2^n a normal float; below it the result is ~1e-38, not 0.
#pragma once

#include <cstdint>
#include <cstring>

namespace edgellama {

inline float exp_approx(float x) {
    // A NaN (corrupt weights can produce one) must never reach the float-to-int conversion
    // below, where it is undefined behaviour: the clamps are written so that a NaN fails the
    // first comparison and becomes -87 (exp ~ 1e-38). Returning NaN instead would take a select
    // that stops the callers' loops from vectorizing; the logits of such a model are NaN anyway
    // (the matmuls carry the NaN), and generation rejects non-finite logits.
    // Plain comparisons, not std::fmin/fmax: those are library calls that stop vectorization.
    x = x > -87.0f ? x : -87.0f;
    x = x < 88.0f ? x : 88.0f;
    // n = round(x / ln2) by a truncating conversion (std::floor would be a library call here).
    const float v = x * 1.44269504088896341f;
    const int32_t ni = static_cast<int32_t>(v + (v >= 0.0f ? 0.5f : -0.5f));
    const float n = static_cast<float>(ni);
    const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    const int32_t bits = (ni + 127) << 23;
    float scale;
    std::memcpy(&scale, &bits, sizeof scale);
    return p * scale;
}

}  // namespace edgellama
