// Activation quantization on the device: float rows → int8 activation rows (int8_dot.cuh:
// ActRow32 / ActRow256), one warp per block (act_quant.cuh).
#include "csrc/cuda/act_quant.cuh"
#include "csrc/cuda/ops.h"

namespace edgellama::cuda {

namespace {

constexpr int kQuantWarps = 4;  // activation blocks per thread block

// One warp per block of 32 (blocks numbered through the rows): lane i quantizes element i. A row
// takes `parts` rows of out (2: its blocks, then their residual: precise activations).
__global__ void __launch_bounds__(kQuantWarps * kWarp)
quantize_act32_kernel(const float* __restrict__ x, int64_t cols, int64_t n_blocks, uint8_t* __restrict__ out,
                      size_t row_bytes, int parts) {
    wait_for_prior_kernels();
    const int64_t blk = static_cast<int64_t>(blockIdx.x) * kQuantWarps + threadIdx.x / kWarp;
    if (blk >= n_blocks) return;  // the whole warp leaves together
    const int64_t row = blk / (cols / kQK32), b = blk % (cols / kQK32);
    quantize_block_warp(DeviceWarp{}, kQK32, [&](int i) { return x[blk * kQK32 + i]; }, out + row * parts * row_bytes,
                        cols, b, residual_offset(parts, row_bytes));
}

// One warp per block of 256.
__global__ void __launch_bounds__(kQuantWarps * kWarp)
quantize_act256_kernel(const float* __restrict__ x, int64_t cols, int64_t n_blocks, uint8_t* __restrict__ out,
                       size_t row_bytes, int parts) {
    wait_for_prior_kernels();
    const int64_t blk = static_cast<int64_t>(blockIdx.x) * kQuantWarps + threadIdx.x / kWarp;
    if (blk >= n_blocks) return;
    const int64_t row = blk / (cols / kQK256), b = blk % (cols / kQK256);
    quantize_block_warp(DeviceWarp{}, kQK256, [&](int i) { return x[blk * kQK256 + i]; }, out + row * parts * row_bytes,
                        cols, b, residual_offset(parts, row_bytes));
}

}  // namespace

void quantize_activations(ActFormat format, const float* x, int64_t n_rows, int64_t cols, void* out, int parts,
                          cudaStream_t stream) {
    if (n_rows <= 0) return;
    if (parts != 1 && parts != 2) throw CudaError("quantize_activations: a row is one or two int8 rows");
    const size_t row_bytes = act_row_bytes(format, cols);
    auto* rows = static_cast<uint8_t*>(out);
    if (format == ActFormat::Q8_32 && cols % kQK32 == 0) {
        const int64_t n_blocks = n_rows * (cols / kQK32);
        launch("quantize_act32_kernel", quantize_act32_kernel, ceil_div(n_blocks, kQuantWarps), kQuantWarps * kWarp,
               stream, x, cols, n_blocks, rows, row_bytes, parts);
    } else if (format == ActFormat::Q8_256 && cols % kQK256 == 0) {
        const int64_t n_blocks = n_rows * (cols / kQK256);
        launch("quantize_act256_kernel", quantize_act256_kernel, ceil_div(n_blocks, kQuantWarps), kQuantWarps * kWarp,
               stream, x, cols, n_blocks, rows, row_bytes, parts);
    } else {
        throw CudaError("quantize_activations: rows of " + std::to_string(cols) +
                        " floats are not whole blocks of an int8 activation format");
    }
}

}  // namespace edgellama::cuda
