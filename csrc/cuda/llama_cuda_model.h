// The llama forward step on an NVIDIA GPU, with the interface of LlamaModel (csrc/model/llama_model.h).
//
// Weights are uploaded once in their GGUF block formats; the KV cache is fp16 on the device; a
// forward call uploads the token ids and downloads only the logits. This header has no CUDA
// types, so the pybind11 glue compiles without nvcc.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "csrc/cuda/cuda_errors.h"
#include "csrc/kernels/matmul.h"  // ActPrecision
#include "csrc/model/llama_weights.h"

namespace edgellama::cuda {

// Number of visible CUDA devices; 0 (with the reason in *why, when given) when there is none or
// the driver is missing.
int device_count(std::string* why = nullptr);
// "NVIDIA H100 80GB HBM3 (sm_90, 79.1 GiB)" or throws CudaError.
std::string device_description(int device);

// Device-to-device copy bandwidth in bytes/s (bytes read + written), for roofline reports.
double measure_copy_bandwidth(size_t bytes, int repeats);

// y[t][r] = row r of a weight matrix (`rows` rows of `cols` elements of GGUF type `type`, row_bytes
// each, in host memory) dotted with host_x[t] (n_tokens rows of cols floats), by the model's
// matmul kernels on `device` (csrc/cuda/matmul_probe.cu). For tests.
// grouped_rows: the matrix is uploaded grouped where its type and width allow (grouped_rows.h).
// precise: the input as precise activations (two int8 rows a token; ops.h MatmulInput::parts).
void run_matmul(int32_t type, const uint8_t* host_rows, int64_t rows, int64_t cols, size_t row_bytes,
                const float* host_x, int64_t n_tokens, float* host_y, bool use_mma = true, bool grouped_rows = false,
                bool precise = false, int device = 0);

// Seconds per product y = W x of one weight matrix (`rows` rows of `cols` elements of GGUF type
// `type`, row_bytes each, given in host memory) with n_tokens input rows, averaged over `repeats`
// back-to-back launches after a warm-up, weights cycled through enough copies to miss the L2
// (csrc/cuda/matmul_probe.cu). For benchmarks: the kernels' own speed, without a step's other costs.
// gemv_shape >= 0 times one token's product by that GEMV block shape instead (gemv_probe_shapes()).
// prefetch_weights: the GEMV blocks prefetch their rows before waiting for the launch before
// (CudaOptions::prefetch_weights), which here is the same product on another copy.
double time_matmul(int32_t type, const uint8_t* host_rows, int64_t rows, int64_t cols, size_t row_bytes,
                   int64_t n_tokens, int repeats, bool use_mma = true, int gemv_shape = -1, bool grouped_rows = false,
                   bool prefetch_weights = false, int device = 0);

// The names of the GEMV block shapes time_matmul can compare, by index.
std::vector<std::string> gemv_probe_shapes();

// Choices of how the engine lays out and launches its work, each within the same bound of the
// reference (tests/test_cuda.py). grouped_rows is on by default; the others measured slower than
// without them on an H100 (README, "Benchmarks").
struct CudaOptions {
    // Q4_0, Q8_0 and Q6_K matrices whose rows are whole groups uploaded regrouped for 16-byte loads
    // (grouped_rows.h; same bytes, results equal up to the order of float additions in the GEMV).
    bool grouped_rows = true;
    // Attention's merge of its position splits done by the last split block of each query, in the
    // same kernel (attention_block.cuh: attention_fused_block; the same bits), which also quantizes
    // the merged output for attn_output.
    bool fused_attention = false;
    // The SwiGLU GEMV quantizes its output for ffn_down itself, chunk by chunk as its blocks
    // finish (gemv_rows.cuh: quantize_finished_chunk; the same bytes as the quantize kernel).
    bool fused_swiglu_quant = false;
    // A one-token step's Q/K/V GEMV applies RoPE and stores the keys and values itself, head by
    // head as its blocks finish (gemv_rows.cuh: gemv_int8_rope_rows; the same bits as rope_store).
    bool fused_rope = false;
    // The int8 GEMV's blocks prefetch their weight rows into the L2 before waiting for the kernel
    // before them, so that under programmatic dependent launch (sm_90+) the first blocks' weights
    // stream in while the previous kernel still runs (gemv_kernel.cuh; no value changes).
    bool prefetch_weights = false;
    // How matmuls with quantized weights round their input, as the CPU engine's setting of the
    // same name: int8 blocks, or precise (ActPrecision::kPrecise: each token's blocks plus a second
    // int8 row of their residual, both dotted with every weight read, their sums added; ops.h
    // MatmulInput::parts). Not a same-bits choice: it changes the results (closer to exact).
    // Precise one-token steps take the separate Q/K/V GEMV and RoPE kernels even with fused_rope.
    ActPrecision activations = ActPrecision::kInt8;
};

class CudaLlamaModel {
public:
    // host_weights point at host memory (the mapped file); they are copied to `device` here and not
    // used afterwards; device -1 runs the same step on the host (backend.h; slow, for tests).
    // Throws std::invalid_argument for bad shapes or a type the GPU does not run,
    // OutOfMemoryError naming the buffer that did not fit, CudaError for other CUDA failures.
    CudaLlamaModel(const LlamaConfig& config, const LlamaWeights& host_weights, int64_t n_ctx, int n_threads,
                   int device = 0, const CudaOptions& options = {});
    ~CudaLlamaModel();
    CudaLlamaModel(const CudaLlamaModel&) = delete;
    CudaLlamaModel& operator=(const CudaLlamaModel&) = delete;

    // As LlamaModel::forward: logits [n_vocab] for the last token or [n_tokens][n_vocab].
    void forward(const int32_t* tokens, int64_t n_tokens, float* logits, bool all_logits);
    // As forward, but the last token's logits stay on the device, which returns only the greedy
    // choice: the first index of the largest logit (*token) and the log-softmax there (*logprob).
    void forward_greedy(const int32_t* tokens, int64_t n_tokens, int32_t* token, double* logprob);

    int64_t n_past() const;
    int64_t n_ctx() const;
    int n_threads() const;
    const LlamaConfig& config() const;
    void truncate(int64_t n);
    void reset();
    // The cache's first n positions (n <= n_past) on the host as fp16 bits
    // [n_layer][n_head_kv][n][head_dim], keys and values alike (saved state; the CPU engine's
    // KVCache::read layout of an f16 cache); write_cache makes the engine hold n positions given so.
    void read_cache(int64_t n, uint16_t* keys, uint16_t* values);
    void write_cache(int64_t n, const uint16_t* keys, const uint16_t* values);
    // Context shift as the CPU engine's KVCache::shift: positions [n_keep, n_keep + n_discard) are
    // dropped and the later ones move down, their keys rotated by RoPE of -n_discard (on the host,
    // through the cache's rows; a shift is rare and its copy is a fraction of a prefill's work).
    void shift(int64_t n_keep, int64_t n_discard);
    // Bytes of weights uploaded to the device (what a decode step reads, plus the embedding).
    size_t weight_bytes() const;
    std::string device_name() const;
    // Whether a one-token step with logits runs as one captured CUDA graph (default on; off
    // launches its kernels one by one — same results, for comparison and diagnosis).
    bool cuda_graphs() const;
    void set_cuda_graphs(bool enabled);
    // Whether long prefills of quantized weights run on int8 tensor cores (default on, sm_80+; off:
    // the dp4a tiles, equal up to the order of float additions).
    const CudaOptions& options() const;
    bool tensor_cores() const;
    void set_tensor_cores(bool enabled);

    static constexpr int64_t kMaxBatch = 256;

private:
    struct Impl;
    std::unique_ptr<Impl> impl_;
};

}  // namespace edgellama::cuda
