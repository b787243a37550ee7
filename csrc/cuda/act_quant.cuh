// Warp-wide activation quantization into the CPU's int8 blocks, with the element arithmetic of
// int8_dot.cuh (act_scale, act_code), so the codes equal the CPU engine's for the same floats.
// Used by the quantize kernels (act_quant.cu) and the fused RMSNorm (elementwise.cu).
#pragma once

#include "csrc/cuda/common.cuh"
#include "csrc/cuda/int8_dot.cuh"

namespace edgellama::cuda {

// Sum over the 16 lanes of this lane's half-warp.
__device__ __forceinline__ int half_warp_sum_int(int v) {
#pragma unroll
    for (int o = kWarp / 4; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// The whole warp quantizes one block of 32: lane i holds element i.
__device__ __forceinline__ void quantize_block32_warp(float v, int lane, BlockQ8Act32& b) {
    const float d = act_scale(warp_max(fabsf(v)));
    const int q = act_code(v, d);
    const int sum = warp_sum(q);
    b.qs[lane] = static_cast<int8_t>(q);
    if (lane == 0) {
        b.d = d;
        b.sum = d * static_cast<float>(sum);
    }
}

// The whole warp quantizes one block of 256: lane i holds elements 32k + i (k < 8); the 16-element
// sums bsums[2k] and bsums[2k+1] are the two half-warps' sums of code k.
__device__ __forceinline__ void quantize_block256_warp(const float (&v)[8], int lane, BlockQ8Act256& b) {
    float amax = 0.0f;
#pragma unroll
    for (int k = 0; k < 8; ++k) amax = fmaxf(amax, fabsf(v[k]));
    const float d = act_scale(warp_max(amax));
#pragma unroll
    for (int k = 0; k < 8; ++k) {
        const int q = act_code(v[k], d);
        b.qs[32 * k + lane] = static_cast<int8_t>(q);
        const int half_sum = half_warp_sum_int(q);
        if (lane % 16 == 0) b.bsums[2 * k + lane / 16] = static_cast<int16_t>(half_sum);
    }
    if (lane == 0) b.d = d;
}

}  // namespace edgellama::cuda
