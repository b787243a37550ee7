// The matrix-vector kernel shared by decode (quant_gemv.cu, one token) and prefill (gemm.cu, a
// tile of tokens): one warp per weight row, lanes striding over the row's pieces; each weight is
// decoded once in registers and multiplied into every token of the tile, so the weights stream
// from memory once per tile. Activations are float32 and read through the read-only cache.
#pragma once

#include "csrc/cuda/common.cuh"
#include "csrc/cuda/formats.cuh"
#include "csrc/cuda/ops.h"

namespace edgellama::cuda {

constexpr int kGemvWarps = 4;  // rows per thread block

template <class Fmt, int NT>
__global__ void __launch_bounds__(kGemvWarps * kWarp)
gemv_kernel(const uint8_t* __restrict__ w, size_t row_bytes, int64_t rows, int64_t n_pieces,
            const float* __restrict__ x, int64_t ldx, int n_tok, float* __restrict__ y, int64_t ldy,
            bool accumulate) {
    const int lane = threadIdx.x % kWarp;
    const int64_t row = static_cast<int64_t>(blockIdx.x) * kGemvWarps + threadIdx.x / kWarp;
    if (row >= rows) return;  // the whole warp leaves together
    const uint8_t* wr = w + static_cast<size_t>(row) * row_bytes;
    const float* xt[NT];
#pragma unroll
    for (int t = 0; t < NT; ++t) xt[t] = x + static_cast<int64_t>(t < n_tok ? t : n_tok - 1) * ldx;
    float acc[NT];
#pragma unroll
    for (int t = 0; t < NT; ++t) acc[t] = 0.0f;
    for (int64_t p = lane; p < n_pieces; p += kWarp) {
        const int64_t base = p * Fmt::kPiece;
        Fmt::visit(wr, p, [&](int i, float wv) {
#pragma unroll
            for (int t = 0; t < NT; ++t) acc[t] = fmaf(wv, __ldg(xt[t] + base + i), acc[t]);
        });
    }
#pragma unroll
    for (int t = 0; t < NT; ++t) acc[t] = warp_sum(acc[t]);
    if (lane == 0) {
#pragma unroll
        for (int t = 0; t < NT; ++t) {
            if (t < n_tok) {
                float* out = y + t * ldy + row;
                *out = accumulate ? *out + acc[t] : acc[t];
            }
        }
    }
}

template <int NT>
void launch_gemv(const DeviceMatrix& w, const float* x, int64_t ldx, int n_tok, float* y, int64_t ldy,
                 bool accumulate, cudaStream_t stream) {
    const bool known = dispatch_format(w.type, [&](auto fmt) {
        using Fmt = decltype(fmt);
        const int64_t n_pieces = w.cols / Fmt::kPiece;
        gemv_kernel<Fmt, NT><<<ceil_div(w.rows, kGemvWarps), kGemvWarps * kWarp, 0, stream>>>(
            w.data, w.row_bytes, w.rows, n_pieces, x, ldx, n_tok, y, ldy, accumulate);
    });
    if (!known) throw CudaError("gemv: unsupported weight type " + std::to_string(w.type));
    check_launch("gemv_kernel");
}

}  // namespace edgellama::cuda
