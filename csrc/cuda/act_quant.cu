// Activation quantization on the device: float rows → the CPU's int8 activation blocks
// (BlockQ8Act32 / BlockQ8Act256), with the element arithmetic of int8_dot.cuh (act_scale,
// act_code), so the codes equal the CPU engine's for the same floats.
#include "csrc/cuda/common.cuh"
#include "csrc/cuda/int8_dot.cuh"
#include "csrc/cuda/ops.h"

namespace edgellama::cuda {

namespace {

constexpr int kQuantWarps = 4;  // activation blocks per thread block

__device__ __forceinline__ int warp_sum_int(int v) {
#pragma unroll
    for (int o = kWarp / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// Sum over the 16 lanes of this lane's half-warp.
__device__ __forceinline__ int half_warp_sum_int(int v) {
#pragma unroll
    for (int o = kWarp / 4; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

// One warp per block of 32: lane i quantizes element i.
__global__ void __launch_bounds__(kQuantWarps * kWarp)
quantize_act32_kernel(const float* __restrict__ x, int64_t n_blocks, BlockQ8Act32* __restrict__ out) {
    const int64_t blk = static_cast<int64_t>(blockIdx.x) * kQuantWarps + threadIdx.x / kWarp;
    if (blk >= n_blocks) return;  // the whole warp leaves together
    const int lane = threadIdx.x % kWarp;
    const float v = x[blk * kQK32 + lane];
    const float d = act_scale(warp_max(fabsf(v)));
    const int q = act_code(v, d);
    const int sum = warp_sum_int(q);
    BlockQ8Act32& b = out[blk];
    b.qs[lane] = static_cast<int8_t>(q);
    if (lane == 0) {
        b.d = d;
        b.sum = d * static_cast<float>(sum);
    }
}

// One warp per block of 256: lane i quantizes elements 32k + i (k < 8); the 16-element sums
// bsums[2k] and bsums[2k+1] are the two half-warps' sums of code k.
__global__ void __launch_bounds__(kQuantWarps * kWarp)
quantize_act256_kernel(const float* __restrict__ x, int64_t n_blocks, BlockQ8Act256* __restrict__ out) {
    const int64_t blk = static_cast<int64_t>(blockIdx.x) * kQuantWarps + threadIdx.x / kWarp;
    if (blk >= n_blocks) return;
    const int lane = threadIdx.x % kWarp;
    const float* xb = x + blk * kQK256;
    float v[8];
    float amax = 0.0f;
#pragma unroll
    for (int k = 0; k < 8; ++k) {
        v[k] = xb[32 * k + lane];
        amax = fmaxf(amax, fabsf(v[k]));
    }
    const float d = act_scale(warp_max(amax));
    BlockQ8Act256& b = out[blk];
#pragma unroll
    for (int k = 0; k < 8; ++k) {
        const int q = act_code(v[k], d);
        b.qs[32 * k + lane] = static_cast<int8_t>(q);
        const int half_sum = half_warp_sum_int(q);
        if (lane % 16 == 0) b.bsums[2 * k + lane / 16] = static_cast<int16_t>(half_sum);
    }
    if (lane == 0) b.d = d;
}

}  // namespace

void quantize_activations(ActFormat format, const float* x, int64_t n_rows, int64_t cols, void* out,
                          cudaStream_t stream) {
    if (n_rows <= 0) return;
    if (format == ActFormat::Q8_32) {
        const int64_t n_blocks = n_rows * (cols / kQK32);
        quantize_act32_kernel<<<ceil_div(n_blocks, kQuantWarps), kQuantWarps * kWarp, 0, stream>>>(
            x, n_blocks, static_cast<BlockQ8Act32*>(out));
        check_launch("quantize_act32_kernel");
    } else if (format == ActFormat::Q8_256) {
        const int64_t n_blocks = n_rows * (cols / kQK256);
        quantize_act256_kernel<<<ceil_div(n_blocks, kQuantWarps), kQuantWarps * kWarp, 0, stream>>>(
            x, n_blocks, static_cast<BlockQ8Act256*>(out));
        check_launch("quantize_act256_kernel");
    } else {
        throw CudaError("quantize_activations: float rows need no quantization");
    }
}

}  // namespace edgellama::cuda
