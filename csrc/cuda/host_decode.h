// Host execution of the GPU's weight decoders and integer dot products (formats.cuh,
// int8_dot.cuh), for tests on machines without a GPU. Weight types are device weight types: GGUF
// ids, or grouped layouts with rows regrouped by group_rows (grouped_rows.h).
#pragma once

#include <cuda_fp16.h>

#include <cstdint>
#include <utility>
#include <vector>

#include "csrc/cuda/ops.h"

namespace edgellama::cuda {

// out[0..cols) = the row decoded by the device code path (formats.cuh), run on the CPU.
// row: raw GGUF bytes, aligned as a device row would be (16 bytes). Throws std::invalid_argument.
void decode_row_on_host(int32_t type, const uint8_t* row, int64_t cols, float* out);

// The bytes of x[0..n) quantized into the int8 activation row a quantized weight type reads, by
// the device's warp quantizers (act_quant.cuh) on 32 host fibers, laid out as the device keeps
// them (ActRow32 / ActRow256 — the CPU's blocks' codes, scales and sums, as three arrays); with
// `precise`, two such rows: the blocks, then their residual (precise activations).
std::vector<uint8_t> quantize_act_on_host(int32_t weight_type, const float* x, int64_t n, bool precise = false);
// The same for one row of activation blocks of `block` (32 or 256) elements, into row (parts = 2:
// and the residual row right after it).
void quantize_act_row_on_host(int block, const float* x, int64_t n, uint8_t* row, int parts = 1);

// dot(weight row, x) as the GPU computes it: x quantized as above, the row's pieces split over
// the threads that gemv_int8_kernel gives a row (its type's GemvLaunchShape: one to four warps),
// each warp's partial sums added by its butterfly, then the warps' sums in order.
// row: 16-byte aligned. Throws std::invalid_argument for a float or unknown type.
float int8_dot_on_host(int32_t weight_type, const uint8_t* row, const float* x, int64_t n);

// RMSNorm of n_rows rows of n (and their int8 rows where act32 / act256 are given, act_parts a
// row) by the kernel's block code (norm_rope.cuh) on kNormThreads host fibers a row.
void rms_norm_on_host(const float* x, const float* weight, float* out, int64_t n_rows, int64_t n, float eps,
                      uint8_t* act32, uint8_t* act256, int act_parts = 1);

// RoPE of q and k and the fp16 store of k and v at rows first_pos + t, pair by pair as the kernel's
// threads do (norm_rope.cuh: rope_store_pair).
void rope_store_on_host(float* q, const float* k, const float* v, int64_t n_tokens, int64_t n_head, int64_t n_head_kv,
                        int64_t head_dim, int64_t n_pairs, const double* inv_freq, int64_t first_pos, __half* k_cache,
                        __half* v_cache, float magnitude = 1.0f);

// Causal grouped-query attention of n_tokens queries q ([token][head][dim]) at positions
// first_pos + t over the fp16 cache rows ([pos][kv_head][dim]), split n_split ways: the two
// passes' block code (attention_block.cuh) on host fibers, or with `fused` the fused form's
// (the blocks one after another, each query merged by its last). out: [token][head][dim].
std::vector<float> attention_on_host(const AttentionDims& dims, const float* q, int64_t n_tokens, int64_t first_pos,
                                     int64_t n_split, const __half* k_cache, const __half* v_cache, bool fused = false);
// The same into caller-owned partials (attention_scratch_floats) and out; fused where split_counts
// (n_tokens * n_head zeros, left zero) are given, and then also quantized into act_out's rows
// where those are given (ops.h: attention).
void attention_into_on_host(const AttentionDims& dims, const float* q, int64_t n_tokens, int64_t first_pos,
                            int64_t n_split, const __half* k_cache, const __half* v_cache, float* partials, float* out,
                            unsigned* split_counts = nullptr, const ActRowsOut& act_out = {});
// The fused form with its quantization into rows of `act_block` (32 or 256) codes: (out, the int8
// activation rows, n_tokens of act_row_bytes each; `precise`: two a token, the blocks and their
// residual).
std::pair<std::vector<float>, std::vector<uint8_t>> attention_quantized_on_host(
    const AttentionDims& dims, const float* q, int64_t n_tokens, int64_t first_pos, int64_t n_split,
    const __half* k_cache, const __half* v_cache, int act_block, bool precise = false);

// The greedy choice over logits[0, n) by the kernel's block code (greedy_block.cuh) on host
// threads: (the first index of the largest logit, the log-softmax there).
std::pair<int32_t, double> greedy_choice_on_host(const float* logits, int64_t n);

// y[t][r] = weight row r (n_rows rows of row_bytes, 16-byte aligned) dotted with x[t] by the
// GEMV's block code (gemv_rows.cuh: row groups of the type's shape, tiles of kGemmTile tokens, the
// warps' sums meeting in shared memory) on 128 host fibers a block; with up_rows,
// silu(row r · x[t]) * (up row r · x[t]) by its SwiGLU form. `precise`: x as precise activations
// (two int8 rows a token by the warp quantizers, both dotted, their sums added).
std::vector<float> gemv_on_host(int32_t weight_type, const uint8_t* rows, const uint8_t* up_rows, int64_t n_rows,
                                size_t row_bytes, const float* x, int64_t n_tokens, int64_t cols,
                                bool precise = false);

// gemv_on_host's SwiGLU form that also quantizes its output (the one-launch SwiGLU's chunks of
// act_block rows, 32 or 256, each by the block that finishes it): (y, the int8 activation rows of
// y, n_tokens of act_row_bytes(n_rows) each; `precise`: precise activations in and out, two rows a
// token).
std::pair<std::vector<float>, std::vector<uint8_t>> swiglu_quantized_on_host(
    int32_t weight_type, const uint8_t* rows, const uint8_t* up_rows, int64_t n_rows, size_t row_bytes, const float* x,
    int64_t n_tokens, int64_t cols, int act_block, bool precise = false);

// y[t][r] = weight row r (n_rows rows of row_bytes, 16-byte aligned) dotted with x[t] (n_tokens rows
// of cols floats) by the tensor-core prefill tiles (mma_tiles.cuh), each warp run on 32 host
// threads with the MMA emulated from the PTX fragment layout (`precise`: as gemv_on_host's).
// Throws std::invalid_argument.
std::vector<float> mma_matmul_on_host(int32_t weight_type, const uint8_t* rows, int64_t n_rows, size_t row_bytes,
                                      const float* x, int64_t n_tokens, int64_t cols, bool precise = false);

}  // namespace edgellama::cuda
