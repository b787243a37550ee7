// Activation quantization on the device: float rows → the CPU's int8 activation blocks
// (BlockQ8Act32 / BlockQ8Act256), one warp per block (act_quant.cuh).
#include "csrc/cuda/act_quant.cuh"
#include "csrc/cuda/ops.h"

namespace edgellama::cuda {

namespace {

constexpr int kQuantWarps = 4;  // activation blocks per thread block

// One warp per block of 32: lane i quantizes element i.
__global__ void __launch_bounds__(kQuantWarps * kWarp)
quantize_act32_kernel(const float* __restrict__ x, int64_t n_blocks, BlockQ8Act32* __restrict__ out) {
    const int64_t blk = static_cast<int64_t>(blockIdx.x) * kQuantWarps + threadIdx.x / kWarp;
    if (blk >= n_blocks) return;  // the whole warp leaves together
    const int lane = threadIdx.x % kWarp;
    quantize_block32_warp(x[blk * kQK32 + lane], lane, out[blk]);
}

// One warp per block of 256.
__global__ void __launch_bounds__(kQuantWarps * kWarp)
quantize_act256_kernel(const float* __restrict__ x, int64_t n_blocks, BlockQ8Act256* __restrict__ out) {
    const int64_t blk = static_cast<int64_t>(blockIdx.x) * kQuantWarps + threadIdx.x / kWarp;
    if (blk >= n_blocks) return;
    const int lane = threadIdx.x % kWarp;
    float v[8];
#pragma unroll
    for (int k = 0; k < 8; ++k) v[k] = x[blk * kQK256 + 32 * k + lane];
    quantize_block256_warp(v, lane, out[blk]);
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
