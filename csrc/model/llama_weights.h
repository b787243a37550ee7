// Hyper-parameters and weight views of one llama model. Weights are pointers into the memory-mapped
// GGUF file (never copied); Python validated every shape, type and offset before building these.
#pragma once

#include <cstdint>
#include <vector>

#include "csrc/kernels/row_groups.h"
#include "csrc/kernels/type_traits.h"
#include "csrc/kernels/weight_matrix.h"

namespace edgellama {

struct LlamaConfig {
    int64_t n_vocab = 0;
    int64_t n_embd = 0;    // width of the residual stream
    int64_t n_layer = 0;
    int64_t n_head = 0;
    int64_t n_head_kv = 0;  // grouped-query attention: n_head / n_head_kv query heads share one KV head
    int64_t head_dim = 0;
    int64_t n_ff = 0;       // SwiGLU hidden width
    int64_t rope_dim = 0;   // leading dims of each head that RoPE rotates (== head_dim for llama)
    float rope_base = 10000.0f;
    float rms_eps = 1e-5f;
    // Multiplies RoPE's cos and sin, so the rotated queries and keys (cached so) scale by it:
    // YaRN's magnitude (edgellama/rope_scaling.py); 1 for plain RoPE.
    float rope_magnitude = 1.0f;
};

struct LayerWeights {
    const float* attn_norm = nullptr;  // [n_embd]
    WeightMatrix wq;                   // [n_head*head_dim] x [n_embd]
    WeightMatrix wk;                   // [n_head_kv*head_dim] x [n_embd]
    WeightMatrix wv;                   // [n_head_kv*head_dim] x [n_embd]
    WeightMatrix wo;                   // [n_embd] x [n_head*head_dim]
    const float* ffn_norm = nullptr;   // [n_embd]
    WeightMatrix w_gate;               // [n_ff] x [n_embd]
    WeightMatrix w_up;                 // [n_ff] x [n_embd]
    WeightMatrix w_down;               // [n_embd] x [n_ff]
};

struct LlamaWeights {
    WeightMatrix token_embd;             // [n_vocab] x [n_embd]
    const float* output_norm = nullptr;  // [n_embd]
    WeightMatrix output;                 // [n_vocab] x [n_embd]; token_embd when the file ties them
    const float* rope_freqs = nullptr;   // [rope_dim/2] frequency divisors (Llama 3.1 style), or null
    std::vector<LayerWeights> layers;
};

// The checks every engine (CPU and CUDA) runs on a model before using it: positive
// hyper-parameters, whole GQA groups, an even RoPE width within the head, finite positive
// rope_base and rms_eps, and every matrix present with the shape the config implies. Throws
// std::invalid_argument naming the first problem.
void validate_llama_shapes(const LlamaConfig& config, const LlamaWeights& weights);

}  // namespace edgellama
