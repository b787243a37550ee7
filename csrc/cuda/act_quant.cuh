// Warp-wide activation quantization into the device's activation rows (int8_dot.cuh: ActRow32,
// ActRow256), with the element arithmetic of act_scale / act_code, so codes, scales and sums equal
// the CPU engine's blocks for the same floats; with precise activations also the second row of
// each token, the residual (the CPU's quantize_act_residual_row: the same bytes).
// Used by the quantize kernels (act_quant.cu) and the fused RMSNorm (elementwise.cu) with
// DeviceWarp, and by the tests' host execution with HostWarp (host_decode.cu).
#pragma once

#include "csrc/cuda/common.cuh"
#include "csrc/cuda/int8_dot.cuh"
#include "csrc/cuda/warp.cuh"

namespace edgellama::cuda {

// Where block b of an activation row goes (the layout at ActRow32 / ActRow256). With precise
// activations (residual_bytes > 0) the block also has a residual block, at the same place of the
// row residual_bytes further on (the token's second row): what the block's codes left out,
// x - d·q, quantized the same way with its own scale, as the CPU's quantize_act_residual_row.
template <int kBlock>
struct ActRowOut {
    int8_t* qs;     // the block's kBlock codes
    float* d;       // its scale
    void* sums;     // its sum (a float, 32) or sixteen int16 sums (256)
    size_t residual_bytes = 0;  // 0: one row (int8 activations)
    EDGELLAMA_HD ActRowOut(uint8_t* row, int64_t cols, int64_t b, size_t residual = 0)
        : qs(reinterpret_cast<int8_t*>(row) + b * kBlock),
          d(reinterpret_cast<float*>(row + act_scales_offset(cols)) + b),
          sums(row + act_sums_offset(cols, kBlock) + b * (kBlock == kQK32 ? 4 : 32)),
          residual_bytes(residual) {}
    // The residual block's place (itself with no residual).
    EDGELLAMA_HD ActRowOut residual() const {
        ActRowOut r = *this;
        r.qs = reinterpret_cast<int8_t*>(reinterpret_cast<uint8_t*>(qs) + residual_bytes);
        r.d = reinterpret_cast<float*>(reinterpret_cast<uint8_t*>(d) + residual_bytes);
        r.sums = static_cast<uint8_t*>(sums) + residual_bytes;
        r.residual_bytes = 0;
        return r;
    }
};

// What a code left of its value: x - d·q, the product rounded before the difference (never an
// FMA), as the CPU computes it (activations.cpp, built with -ffp-contract=off).
EDGELLAMA_HD float act_residual(float x, float d, int q) { return sub_rn(x, mul_rn(d, static_cast<float>(q))); }

// The whole warp quantizes one block of 32: lane i holds element i. Returns the lane's residual.
template <class Warp>
EDGELLAMA_HD float quantize_block32_part(const Warp& warp, float v, const ActRowOut<kQK32>& out) {
    const int lane = warp.lane();
    const float d = act_scale(warp_reduce_max(warp, fabsf(v)));
    const int q = act_code(v, d);
    const int sum = warp_reduce_sum(warp, q);
    out.qs[lane] = static_cast<int8_t>(q);
    if (lane == 0) {
        *out.d = d;
        *static_cast<float*>(out.sums) = d * static_cast<float>(sum);
    }
    return act_residual(v, d, q);
}

// The block, and its residual block where out has one (precise activations).
template <class Warp>
EDGELLAMA_HD void quantize_block32_warp(const Warp& warp, float v, const ActRowOut<kQK32>& out) {
    const float left = quantize_block32_part(warp, v, out);
    if (out.residual_bytes != 0) quantize_block32_part(warp, left, out.residual());
}

// The whole warp quantizes one block of 256: lane i holds elements 32k + i (k < 8); the 16-element
// sums 2k and 2k + 1 are the two half-warps' sums of code k. v becomes the lane's residuals.
template <class Warp>
EDGELLAMA_HD void quantize_block256_part(const Warp& warp, float (&v)[8], const ActRowOut<kQK256>& out) {
    const int lane = warp.lane();
    float amax = 0.0f;
#pragma unroll
    for (int k = 0; k < 8; ++k) amax = fmaxf(amax, fabsf(v[k]));
    const float d = act_scale(warp_reduce_max(warp, amax));
    auto* bsums = static_cast<int16_t*>(out.sums);
#pragma unroll
    for (int k = 0; k < 8; ++k) {
        const int q = act_code(v[k], d);
        out.qs[32 * k + lane] = static_cast<int8_t>(q);
        const int half_sum = half_warp_reduce_sum(warp, q);
        if (lane % 16 == 0) bsums[2 * k + lane / 16] = static_cast<int16_t>(half_sum);
        v[k] = act_residual(v[k], d, q);
    }
    if (lane == 0) *out.d = d;
}

template <class Warp>
EDGELLAMA_HD void quantize_block256_warp(const Warp& warp, const float (&v)[8], const ActRowOut<kQK256>& out) {
    float left[8];
#pragma unroll
    for (int k = 0; k < 8; ++k) left[k] = v[k];
    quantize_block256_part(warp, left, out);
    if (out.residual_bytes != 0) quantize_block256_part(warp, left, out.residual());
}

// The whole warp quantizes block b of an activation row of `cols` at `row`, in the format of
// `block` elements (kQK32 or kQK256); element(i) gives the block's i-th float; residual_bytes > 0:
// also its residual block that far on (ActRowOut). Which lane holds which element is decided here
// once, so every kernel that quantizes writes the same bytes.
template <class Warp, class Element>
EDGELLAMA_HD void quantize_block_warp(const Warp& warp, int block, Element&& element, uint8_t* row, int64_t cols,
                                      int64_t b, size_t residual_bytes = 0) {
    const int lane = warp.lane();
    if (block == kQK32) {
        quantize_block32_warp(warp, element(lane), ActRowOut<kQK32>(row, cols, b, residual_bytes));
    } else {
        float v[8];
#pragma unroll
        for (int k = 0; k < 8; ++k) v[k] = element(32 * k + lane);
        quantize_block256_warp(warp, v, ActRowOut<kQK256>(row, cols, b, residual_bytes));
    }
}

// The bytes from a token's first activation row to its residual row: the row's size with precise
// activations (parts == 2), 0 without.
EDGELLAMA_HD size_t residual_offset(int parts, size_t row_bytes) { return parts == 2 ? row_bytes : 0; }

}  // namespace edgellama::cuda
