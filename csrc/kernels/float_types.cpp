// F32 / F16 / BF16 weights: dequantize by widening, dot against plain float activations.
#include "csrc/formats/float_convert.h"
#include "csrc/kernels/kernel_fns.h"

#include <cstring>

#if defined(EDGELLAMA_HAVE_AVX2_DOTS)
#include <immintrin.h>
#endif

namespace edgellama::kernels {
namespace {

// Independent partial sums so the compiler can keep a full vector of accumulators without
// reassociating a single float chain (which it may not do without -ffast-math).
constexpr int kLanes = 16;

template <typename Load>
float dot_lanes(int64_t n, const float* a, Load load) {
    float acc[kLanes] = {};
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes) {
        for (int l = 0; l < kLanes; ++l) acc[l] += load(i + l) * a[i + l];
    }
    float tail = 0.0f;
    for (; i < n; ++i) tail += load(i) * a[i];
    float sum = 0.0f;
    for (int l = 0; l < kLanes; ++l) sum += acc[l];
    return sum + tail;
}

}  // namespace

void dequantize_row_f32(const void* src, float* dst, int64_t n) {
    std::memcpy(dst, src, static_cast<size_t>(n) * sizeof(float));
}

void dequantize_row_f16(const void* src, float* dst, int64_t n) {
    const auto* h = static_cast<const uint16_t*>(src);
    for (int64_t i = 0; i < n; ++i) dst[i] = fp16_to_fp32(h[i]);
}

void dequantize_row_bf16(const void* src, float* dst, int64_t n) {
    const auto* b = static_cast<const uint16_t*>(src);
    for (int64_t i = 0; i < n; ++i) dst[i] = bf16_to_fp32(b[i]);
}

float vec_dot_f32_scalar(int64_t n, const void* w, const void* a) {
    const auto* wf = static_cast<const float*>(w);
    return dot_lanes(n, static_cast<const float*>(a), [wf](int64_t i) { return wf[i]; });
}

float vec_dot_f16_scalar(int64_t n, const void* w, const void* a) {
    const auto* h = static_cast<const uint16_t*>(w);
    return dot_lanes(n, static_cast<const float*>(a), [h](int64_t i) { return fp16_to_fp32(h[i]); });
}

float vec_dot_bf16_scalar(int64_t n, const void* w, const void* a) {
    const auto* b = static_cast<const uint16_t*>(w);
    return dot_lanes(n, static_cast<const float*>(a), [b](int64_t i) { return bf16_to_fp32(b[i]); });
}

#if defined(EDGELLAMA_HAVE_AVX2_DOTS)
namespace {

// 8 floats of each weight type, widened exactly.
inline __m256 load8(const float* p) { return _mm256_loadu_ps(p); }
inline __m256 load8_f16(const uint16_t* p) {
    return _mm256_cvtph_ps(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
}
inline __m256 load8_bf16(const uint16_t* p) {
    const __m256i wide = _mm256_cvtepu16_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(p)));
    return _mm256_castsi256_ps(_mm256_slli_epi32(wide, 16));
}

inline float hsum8(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    s = _mm_add_ss(s, _mm_movehdup_ps(s));
    return _mm_cvtss_f32(s);
}

// Four independent FMA chains hide the FMA latency; the tail (n % 32) goes scalar.
template <typename T, typename Load8, typename Load1>
float dot_fma(int64_t n, const T* w, const float* a, Load8 load, Load1 load1) {
    __m256 acc[4] = {_mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps(), _mm256_setzero_ps()};
    int64_t i = 0;
    for (; i + 32 <= n; i += 32) {
        for (int k = 0; k < 4; ++k) acc[k] = _mm256_fmadd_ps(load(w + i + 8 * k), _mm256_loadu_ps(a + i + 8 * k), acc[k]);
    }
    float tail = 0.0f;
    for (; i < n; ++i) tail += load1(w[i]) * a[i];
    return hsum8(_mm256_add_ps(_mm256_add_ps(acc[0], acc[1]), _mm256_add_ps(acc[2], acc[3]))) + tail;
}

}  // namespace

float vec_dot_f32_avx2(int64_t n, const void* w, const void* a) {
    return dot_fma(n, static_cast<const float*>(w), static_cast<const float*>(a), load8, [](float v) { return v; });
}

float vec_dot_f16_avx2(int64_t n, const void* w, const void* a) {
    return dot_fma(n, static_cast<const uint16_t*>(w), static_cast<const float*>(a), load8_f16, fp16_to_fp32);
}

float vec_dot_bf16_avx2(int64_t n, const void* w, const void* a) {
    return dot_fma(n, static_cast<const uint16_t*>(w), static_cast<const float*>(a), load8_bf16, bf16_to_fp32);
}
#endif

}  // namespace edgellama::kernels
