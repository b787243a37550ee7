#include "csrc/model/llama_loader.h"

#include <stdexcept>

namespace edgellama {

namespace {

const TensorRef& require(const TensorMap& tensors, const std::string& name) {
    auto it = tensors.find(name);
    if (it == tensors.end()) throw std::invalid_argument("missing tensor '" + name + "'");
    return it->second;
}

WeightMatrix matrix(const TensorMap& tensors, const std::string& name) {
    const TensorRef& t = require(tensors, name);
    try {
        return make_weight_matrix(t.data, t.type, t.rows, t.cols);
    } catch (const std::invalid_argument& e) {
        throw std::invalid_argument("tensor '" + name + "': " + e.what());
    }
}

const float* vector_f32(const TensorMap& tensors, const std::string& name, int64_t length) {
    const TensorRef& t = require(tensors, name);
    if (t.type != static_cast<int32_t>(TensorType::F32) || t.rows * t.cols != length || !t.data) {
        throw std::invalid_argument("tensor '" + name + "' must be F32 with " + std::to_string(length) +
                                    " elements");
    }
    return static_cast<const float*>(t.data);
}

}  // namespace

LlamaWeights build_llama_weights(const LlamaConfig& config, const TensorMap& tensors) {
    LlamaWeights w;
    w.token_embd = matrix(tensors, "token_embd.weight");
    w.output_norm = vector_f32(tensors, "output_norm.weight", config.n_embd);
    w.output = tensors.count("output.weight") ? matrix(tensors, "output.weight") : w.token_embd;
    if (tensors.count("rope_freqs.weight")) {
        w.rope_freqs = vector_f32(tensors, "rope_freqs.weight", config.rope_dim / 2);
    }
    for (int64_t i = 0; i < config.n_layer; ++i) {
        const std::string p = "blk." + std::to_string(i) + ".";
        LayerWeights l;
        l.attn_norm = vector_f32(tensors, p + "attn_norm.weight", config.n_embd);
        l.wq = matrix(tensors, p + "attn_q.weight");
        l.wk = matrix(tensors, p + "attn_k.weight");
        l.wv = matrix(tensors, p + "attn_v.weight");
        l.wo = matrix(tensors, p + "attn_output.weight");
        l.ffn_norm = vector_f32(tensors, p + "ffn_norm.weight", config.n_embd);
        l.w_gate = matrix(tensors, p + "ffn_gate.weight");
        l.w_up = matrix(tensors, p + "ffn_up.weight");
        l.w_down = matrix(tensors, p + "ffn_down.weight");
        w.layers.push_back(l);
    }
    return w;
}

}  // namespace edgellama
