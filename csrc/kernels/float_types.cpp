// F32 / F16 / BF16 weights: dequantize by widening, dot against plain float activations.
#include "csrc/kernels/float_convert.h"
#include "csrc/kernels/kernel_fns.h"

#include <cstring>

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

float vec_dot_f32(int64_t n, const void* w, const void* a) {
    const auto* wf = static_cast<const float*>(w);
    return dot_lanes(n, static_cast<const float*>(a), [wf](int64_t i) { return wf[i]; });
}

float vec_dot_f16(int64_t n, const void* w, const void* a) {
    const auto* h = static_cast<const uint16_t*>(w);
    return dot_lanes(n, static_cast<const float*>(a), [h](int64_t i) { return fp16_to_fp32(h[i]); });
}

float vec_dot_bf16(int64_t n, const void* w, const void* a) {
    const auto* b = static_cast<const uint16_t*>(w);
    return dot_lanes(n, static_cast<const float*>(a), [b](int64_t i) { return bf16_to_fp32(b[i]); });
}

}  // namespace edgellama::kernels
