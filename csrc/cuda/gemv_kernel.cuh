// The matrix-vector kernels of decode (one token) and prefill (a tile of up to kGemmTile tokens):
// one warp per weight row, lanes striding over the row's pieces; each piece of weights is decoded
// once in registers and used for every token of the tile, so the weights stream from memory
// once per tile.
//   * gemv_int8_kernel — quantized weights: the piece's codes dotted in integers with the int8
//     activation blocks (int8_dot.cuh), as the CPU engine does.
//   * gemv_float_kernel — F32/F16/BF16 weights: decoded to float and multiplied with float32
//     activations read through the read-only cache.
#pragma once

#include "csrc/cuda/common.cuh"
#include "csrc/cuda/formats.cuh"
#include "csrc/cuda/int8_dot.cuh"
#include "csrc/cuda/ops.h"

namespace edgellama::cuda {

constexpr int kGemvWarps = 4;  // rows per thread block

// Lane 0 stores (or adds) the warp's sums for the tile's tokens.
template <int NT>
__device__ __forceinline__ void store_row_sums(float (&acc)[NT], int lane, int n_tok, int64_t row, float* y,
                                               int64_t ldy, bool accumulate) {
#pragma unroll
    for (int t = 0; t < NT; ++t) acc[t] = warp_sum(acc[t]);
    if (lane != 0) return;
#pragma unroll
    for (int t = 0; t < NT; ++t) {
        if (t < n_tok) {
            float* out = y + t * ldy + row;
            *out = accumulate ? *out + acc[t] : acc[t];
        }
    }
}

template <class Q, int NT>
__global__ void __launch_bounds__(kGemvWarps * kWarp)
gemv_int8_kernel(const uint8_t* __restrict__ w, size_t row_bytes, int64_t rows, int64_t n_pieces,
                 const uint8_t* __restrict__ act, size_t act_row_bytes, int n_tok, float* __restrict__ y, int64_t ldy,
                 bool accumulate) {
    const int lane = threadIdx.x % kWarp;
    const int64_t row = static_cast<int64_t>(blockIdx.x) * kGemvWarps + threadIdx.x / kWarp;
    if (row >= rows) return;  // the whole warp leaves together
    const typename Q::Act* at[NT];
#pragma unroll
    for (int t = 0; t < NT; ++t) {
        at[t] = reinterpret_cast<const typename Q::Act*>(act + static_cast<size_t>(t < n_tok ? t : n_tok - 1) * act_row_bytes);
    }
    float acc[NT];
#pragma unroll
    for (int t = 0; t < NT; ++t) acc[t] = 0.0f;
    int8_lane_partial<Q, NT>(w + static_cast<size_t>(row) * row_bytes, n_pieces, lane, kWarp, at, acc);
    store_row_sums<NT>(acc, lane, n_tok, row, y, ldy, accumulate);
}

template <class Fmt, int NT>
__global__ void __launch_bounds__(kGemvWarps * kWarp)
gemv_float_kernel(const uint8_t* __restrict__ w, size_t row_bytes, int64_t rows, int64_t n_pieces,
                  const float* __restrict__ x, int64_t ldx, int n_tok, float* __restrict__ y, int64_t ldy,
                  bool accumulate) {
    const int lane = threadIdx.x % kWarp;
    const int64_t row = static_cast<int64_t>(blockIdx.x) * kGemvWarps + threadIdx.x / kWarp;
    if (row >= rows) return;
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
    store_row_sums<NT>(acc, lane, n_tok, row, y, ldy, accumulate);
}

}  // namespace edgellama::cuda
