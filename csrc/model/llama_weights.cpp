#include "csrc/model/llama_weights.h"

#include <cmath>
#include <stdexcept>
#include <string>

namespace edgellama {

namespace {

void check_matrix(const WeightMatrix& w, int64_t rows, int64_t cols, const std::string& what) {
    if (w.data == nullptr || w.traits == nullptr || w.rows != rows || w.cols != cols) {
        throw std::invalid_argument(what + ": expected " + std::to_string(rows) + " rows of " +
                                    std::to_string(cols) + ", got " + std::to_string(w.rows) + " of " +
                                    std::to_string(w.cols));
    }
}

}  // namespace

void validate_llama_shapes(const LlamaConfig& c, const LlamaWeights& weights) {
    if (c.n_vocab <= 0 || c.n_embd <= 0 || c.n_layer <= 0 || c.n_head <= 0 || c.n_head_kv <= 0 ||
        c.head_dim <= 0 || c.n_ff <= 0) {
        throw std::invalid_argument("model hyper-parameters must be positive");
    }
    if (c.n_head % c.n_head_kv != 0) {
        throw std::invalid_argument("n_head must be a multiple of n_head_kv");
    }
    if (c.rope_dim <= 0 || c.rope_dim > c.head_dim || c.rope_dim % 2 != 0) {
        throw std::invalid_argument("rope dimension must be even and at most head_dim");
    }
    // NaN or a non-positive value here would reach the kernels as NaN (RoPE angles, RMSNorm scale).
    if (!(std::isfinite(c.rope_base) && c.rope_base > 0) || !(std::isfinite(c.rms_eps) && c.rms_eps > 0) ||
        !(std::isfinite(c.rope_magnitude) && c.rope_magnitude > 0)) {
        throw std::invalid_argument("rope_base, rms_eps and rope_magnitude must be finite and positive");
    }
    if (static_cast<int64_t>(weights.layers.size()) != c.n_layer) {
        throw std::invalid_argument("layer count does not match n_layer");
    }
    if (!weights.output_norm) throw std::invalid_argument("output_norm missing");
    const int64_t q_width = c.n_head * c.head_dim, kv_width = c.n_head_kv * c.head_dim;
    check_matrix(weights.token_embd, c.n_vocab, c.n_embd, "token_embd");
    check_matrix(weights.output, c.n_vocab, c.n_embd, "output");
    for (size_t i = 0; i < weights.layers.size(); ++i) {
        const LayerWeights& l = weights.layers[i];
        const std::string p = "layer " + std::to_string(i) + " ";
        if (!l.attn_norm || !l.ffn_norm) throw std::invalid_argument(p + "norm weights missing");
        check_matrix(l.wq, q_width, c.n_embd, p + "attn_q");
        check_matrix(l.wk, kv_width, c.n_embd, p + "attn_k");
        check_matrix(l.wv, kv_width, c.n_embd, p + "attn_v");
        check_matrix(l.wo, c.n_embd, q_width, p + "attn_output");
        check_matrix(l.w_gate, c.n_ff, c.n_embd, p + "ffn_gate");
        check_matrix(l.w_up, c.n_ff, c.n_embd, p + "ffn_up");
        check_matrix(l.w_down, c.n_embd, c.n_ff, p + "ffn_down");
    }
}

}  // namespace edgellama
