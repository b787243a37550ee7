#include "csrc/kernels/elementwise.h"

#include <cmath>

#include "csrc/kernels/fast_exp.h"
#include "csrc/formats/float_convert.h"

#if defined(__aarch64__)
#include <arm_neon.h>
#endif

namespace edgellama {

void rms_norm(const float* x, const float* weight, float* out, int64_t n, float eps) {
    double sum_sq = 0.0;  // double: a 4096-wide sum of squares loses bits in float
#pragma omp simd reduction(+ : sum_sq)
    for (int64_t i = 0; i < n; ++i) sum_sq += static_cast<double>(x[i]) * x[i];
    const float scale = static_cast<float>(1.0 / std::sqrt(sum_sq / static_cast<double>(n) + eps));
    for (int64_t i = 0; i < n; ++i) out[i] = x[i] * scale * weight[i];
}

void rope_angles(int64_t pos, const double* inv_freq, int64_t n_pairs, float* cos_out, float* sin_out,
                 float magnitude) {
    for (int64_t i = 0; i < n_pairs; ++i) {
        const double angle = static_cast<double>(pos) * inv_freq[i];
        cos_out[i] = static_cast<float>(std::cos(angle)) * magnitude;
        sin_out[i] = static_cast<float>(std::sin(angle)) * magnitude;
    }
}

void rope_apply(float* x, int64_t n_heads, int64_t head_dim, const float* cos_v, const float* sin_v,
                int64_t n_pairs) {
    for (int64_t h = 0; h < n_heads; ++h) {
        float* head = x + h * head_dim;
        for (int64_t i = 0; i < n_pairs; ++i) {
            const float a = head[2 * i], b = head[2 * i + 1];
            head[2 * i] = a * cos_v[i] - b * sin_v[i];
            head[2 * i + 1] = a * sin_v[i] + b * cos_v[i];
        }
    }
}

void swiglu(float* gate, const float* up, int64_t n) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) {
        const float g = gate[i];
        gate[i] = g / (1.0f + exp_approx(-g)) * up[i];
    }
}

void float_to_half_row(const float* src, uint16_t* dst, int64_t n) {
    int64_t i = 0;
#if defined(__F16C__) && defined(__AVX__)
    for (; i + 8 <= n; i += 8) {
        const __m128i h = _mm256_cvtps_ph(_mm256_loadu_ps(src + i), _MM_FROUND_TO_NEAREST_INT);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(dst + i), h);
    }
#endif
    for (; i < n; ++i) dst[i] = fp32_to_fp16(src[i]);
}

void half_to_float_row(const uint16_t* src, float* dst, int64_t n) {
    int64_t i = 0;
#if defined(__F16C__) && defined(__AVX__)
    for (; i + 8 <= n; i += 8) {
        _mm256_storeu_ps(dst + i, _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(src + i))));
    }
#elif defined(__aarch64__)
    for (; i + 4 <= n; i += 4) vst1q_f32(dst + i, vcvt_f32_f16(vreinterpret_f16_u16(vld1_u16(src + i))));
#endif
    for (; i < n; ++i) dst[i] = fp16_to_fp32(src[i]);
}

}  // namespace edgellama
