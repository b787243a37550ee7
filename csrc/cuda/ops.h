// The CUDA engine's operations, one family per .cu file. All take device pointers and enqueue
// on `stream`; errors in enqueuing throw CudaError.
#pragma once

#include <cuda_fp16.h>
#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>

#include "csrc/kernels/type_traits.h"  // ActFormat, act_row_bytes: the CPU's activation blocks

namespace edgellama::cuda {

// A weight matrix on the device, in its GGUF block format: `rows` rows of `cols` elements.
struct DeviceMatrix {
    const uint8_t* data = nullptr;
    int32_t type = 0;
    int64_t rows = 0;
    int64_t cols = 0;
    size_t row_bytes = 0;
};

// Elements each thread decodes at once for a type (see formats.cuh); 0 for an unsupported type.
int piece_elements(int32_t type);

// Int8 activation rows an operation also writes for the next matmul, as quantize_activations
// would write them from its float output (the same bytes).
struct ActRowsOut {
    uint8_t* rows = nullptr;  // null: no quantization
    int block = 0;            // kQK32 (ActFormat::Q8_32) or kQK256 (Q8_256)
    size_t row_bytes = 0;     // act_row_bytes of the format and the row's length (a host function)
    int parts = 1;            // rows a token: 2 with precise activations (MatmulInput::parts)
    // Token t's first row (its residual row follows with precise activations).
    __host__ __device__ uint8_t* token_row(int64_t t) const {
        return rows + static_cast<size_t>(t * parts) * row_bytes;
    }
};
// act_out for n-element rows at `rows` in the format of `block` (32 or 256), `parts` rows a token.
inline ActRowsOut act_rows_out(uint8_t* rows, int block, int64_t n, int parts = 1) {
    return ActRowsOut{rows, block, act_row_bytes(block == 32 ? ActFormat::Q8_32 : ActFormat::Q8_256, n), parts};
}

// The input of a matmul: n float rows of `cols` (contiguous) and, for quantized weights, the same
// rows as int8 activations in the weight type's format (type_traits' act_format; device layout:
// int8_dot.cuh ActRow32 / ActRow256), rows act_row_bytes(format, cols) apart. A matmul with a
// quantized weight reads only the int8 rows.
// Precise activations (parts = 2, the CPU's ActPrecision::kPrecise): each token has two int8
// rows, its blocks (row 2t) and their residual (row 2t + 1: x - d·q quantized again). The kernels
// take the 2n rows as 2n tokens, so a weight read serves both, and each output is the sum
// dot(w, row 2t) + dot(w, row 2t + 1), added in registers where it is stored.
struct MatmulInput {
    const float* x = nullptr;
    const uint8_t* act32 = nullptr;   // ActFormat::Q8_32 rows, or null when not prepared
    const uint8_t* act256 = nullptr;  // ActFormat::Q8_256 rows, or null when not prepared
    int64_t n = 0;
    int64_t cols = 0;
    int parts = 1;  // int8 rows a token: 1 (int8 activations) or 2 (precise)
    bool use_mma = true;  // long prefills of quantized weights on int8 tensor cores (gemm_mma.cu)
    // The int8 GEMV's blocks prefetch their weight rows into the L2 before waiting for the kernel
    // before them (gemv_kernel.cuh: prefetch_block_rows; sm_90+, no value changes).
    bool prefetch_weights = false;
};

// act_quant.cu — out = the n_rows float rows of x (cols each, contiguous) as `format` blocks;
// with parts = 2 (precise activations) each row as two rows, its blocks and their residual.
void quantize_activations(ActFormat format, const float* x, int64_t n_rows, int64_t cols, void* out, int parts,
                          cudaStream_t stream);

// quant_gemv.cu — y[t][r] (+)= sum_c W[r][c] * x[t][c] for the input's rows, output rows w.rows
// wide: one kernel per tile of kGemmTile tokens, so each weight row is read once per tile.
// Quantized weights are dotted in integers with the int8 blocks, float weights with the floats.
constexpr int kGemmTile = 8;
// From this many tokens on, quantized weights multiply on int8 tensor cores (sm_80+; gemm_mma.cu)
// unless MatmulInput::use_mma is off: the same results as the CPU's scalar vec_dot.
constexpr int64_t kMmaMinTokens = 16;
void matmul(const DeviceMatrix& w, const MatmulInput& in, float* y, bool accumulate, cudaStream_t stream);
// Several matmuls of one input (Q/K/V): matrices of one type and width share each launch.
struct MatmulTarget {
    const DeviceMatrix* w;
    float* y;
};
void matmul_group(const MatmulTarget* targets, int count, const MatmulInput& in, bool accumulate,
                  cudaStream_t stream);
inline void matmul_group(std::initializer_list<MatmulTarget> targets, const MatmulInput& in, bool accumulate,
                         cudaStream_t stream) {
    matmul_group(targets.begin(), static_cast<int>(targets.size()), in, accumulate, stream);
}
// gate = silu(W_gate x) * (W_up x) — one launch per tile when both matrices have one quantized
// type and shape (a warp computes a row of each), else two matmuls (up into `up`) and swiglu().
// The one-launch form also quantizes gate into act_out where act_out.rows is given and gate's
// rows are whole act_out blocks: the last thread block to finish a block of rows quantizes it,
// counted in chunk_counts (w_gate.rows / act_out.block zeros, left zero). act_out must not be
// the input's rows. Returns whether it did.
bool matmul_swiglu(const DeviceMatrix& w_gate, const DeviceMatrix& w_up, const MatmulInput& in, float* gate,
                   float* up, const ActRowsOut& act_out, unsigned* chunk_counts, cudaStream_t stream);
// The int8 GEMV variants that benchmarks compare on one token (Q4_0, Q8_0, Q4_K, Q6_K weights and
// the grouped readers): block shapes (gemv_rows.cuh: GemvShape), then the launch shape with other
// numbers of pieces a lane keeps in flight, and with no register cap. Their count and names, and
// one product by variant `shape`.
int gemv_probe_shape_count();
std::string gemv_probe_shape_name(int shape);
void matmul_with_gemv_shape(int shape, const DeviceMatrix& w, const MatmulInput& in, float* y, cudaStream_t stream);
// embedding lookup: out[t][:] = dequantized row ids[t] of w, t < n.
void dequantize_rows(const DeviceMatrix& w, const int32_t* ids, int64_t n, float* out, cudaStream_t stream);


// elementwise.cu
// out[t] = x[t] * (1 / sqrt(mean(x[t]^2) + eps)) * weight, rows of n, t < n_rows; also quantized
// into act32 (ActFormat::Q8_32 rows) and act256 (Q8_256) where those are not null, act_parts rows
// a row (2: precise activations, the blocks and their residual).
void rms_norm(const float* x, const float* weight, float* out, int64_t n_rows, int64_t n, float eps, void* act32,
              void* act256, int act_parts, cudaStream_t stream);
// Positions are read on the device (first_pos: a device pointer), so a captured decode step
// (CUDA graph) replays at any position.
// RoPE for the rows of q (in place) and of the new keys k, token t at position *first_pos + t:
// adjacent pairs (2i, 2i+1), i < n_pairs, of every head rotate by position * inv_freq[i] (double,
// as the CPU does); then the keys and values v are rounded to fp16 into the caches' rows
// *first_pos + t (n_head_kv * head_dim elements a row).
struct RopeStore {
    float* q = nullptr;
    const float* k = nullptr;
    const float* v = nullptr;
    int64_t n_head = 0;
    int64_t n_head_kv = 0;
    int64_t head_dim = 0;
    int64_t n_pairs = 0;
    const double* inv_freq = nullptr;
    const int64_t* first_pos = nullptr;
    __half* k_cache = nullptr;
    __half* v_cache = nullptr;
    float magnitude = 1.0f;  // on cos and sin (LlamaConfig::rope_magnitude)
};
void rope_store(const RopeStore& rope, int64_t n_tokens, cudaStream_t stream);
// quant_gemv.cu — the Q/K/V products of a one-token step (qkv: wq into rope.q, wk into rope.k, wv
// into rope.v) with rope_store's work done in the same launches: the GEMV block that finishes a
// head's rows (a query head, or a KV head's key and value rows) rotates and stores that head with
// rope_store's code (the same bits), counted in head_counts (n_head + n_head_kv zeros, left zero).
// Where that does not apply (more tokens, a float matrix, GEMV blocks whose rows would straddle
// heads, no head_counts), returns false with nothing enqueued.
bool matmul_qkv_rope(const MatmulTarget (&qkv)[3], const MatmulInput& in, const RopeStore& rope,
                     unsigned* head_counts, cudaStream_t stream);
// gate = silu(gate) * up over n elements.
void swiglu(float* gate, const float* up, int64_t n, cudaStream_t stream);

// greedy.cu — the greedy choice over a row of n logits into out (a GreedyChoice,
// greedy_block.cuh: the first index of the largest logit and the log-softmax there).
void greedy_choice(const float* logits, int64_t n, void* out, cudaStream_t stream);

// attention.cu — causal grouped-query attention of n_tokens queries (positions *first_pos + t)
// over the fp16 cache rows 0 .. *first_pos + t. Query head h reads KV head h / (n_head / n_head_kv).
// The positions are split over n_split thread blocks per query (attention_splits), merged after:
// by a second kernel, or, given split_counts (n_tokens * n_head zeros, left zero), by the last of
// each query's blocks in the same kernel (the same merge: the same bits). That fused form can also
// quantize the output rows into the next matmul's int8 activations (act_out), where
// attention_can_quantize says the heads make whole blocks.
struct AttentionDims {
    int64_t n_head = 0;
    int64_t n_head_kv = 0;
    int64_t head_dim = 0;  // at most kMaxHeadDim
};
bool attention_can_quantize(const AttentionDims& dims, int block);
// Whether attention() takes these arguments: act_out only with split_counts, in blocks the heads
// fill (the device and the host execution check the same).
inline bool attention_act_out_allowed(const AttentionDims& dims, const unsigned* split_counts,
                                      const ActRowsOut& act_out) {
    return act_out.rows == nullptr || (split_counts != nullptr && attention_can_quantize(dims, act_out.block));
}
constexpr int kMaxHeadDim = 256;
// Floats of the scratch `partials` that attention() needs for n_tokens queries.
size_t attention_scratch_floats(const AttentionDims& dims, int64_t n_tokens);
// Splits for n_tokens queries whose last one sees max_pos positions (chunks of at least 64
// positions; a larger count leaves the splits past the positions empty, at one early exit each).
int64_t attention_splits(int64_t max_pos, int64_t n_tokens);
// The split count of a captured decode step whose token sees max_pos positions: that of max_pos
// rounded up to a power of two (at least 64), so a handful of graphs serve every position. Chunks
// stay at 64 positions wherever attention_splits(max_pos, 1) gives 64 either, so both counts
// compute the same partials (the extra splits are empty).
int64_t decode_graph_splits(int64_t max_pos);
void attention(const AttentionDims& dims, const float* q, int64_t n_tokens, const int64_t* first_pos, int64_t n_split,
               const __half* k_cache, const __half* v_cache, float* partials, float* out, unsigned* split_counts,
               const ActRowsOut& act_out, cudaStream_t stream);

}  // namespace edgellama::cuda
