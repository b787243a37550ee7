#include "csrc/model/llama_config.h"

#include <unordered_set>

#include "csrc/model/load_errors.h"

namespace edgellama {
namespace {

constexpr const char* kTokens = "tokenizer.ggml.tokens";
// Tensors of one transformer block, and the ones outside the blocks that every model has.
constexpr const char* kLayerTensors[] = {"attn_norm", "attn_q", "attn_k", "attn_v", "attn_output",
                                          "ffn_norm", "ffn_gate", "ffn_up", "ffn_down"};
constexpr size_t kPerLayer = sizeof kLayerTensors / sizeof kLayerTensors[0];
constexpr const char* kGlobalTensors[] = {"token_embd.weight", "output_norm.weight"};
constexpr size_t kGlobals = 2;

std::string layer_tensor(uint64_t layer, const char* name) {
    return "blk." + std::to_string(layer) + "." + name + ".weight";
}

// ggml type names (gguf's GGMLQuantizationType), for messages.
std::string type_name(int32_t type) {
    static constexpr std::pair<int32_t, const char*> kNames[] = {
        {0, "F32"}, {1, "F16"}, {2, "Q4_0"}, {3, "Q4_1"}, {6, "Q5_0"}, {7, "Q5_1"}, {8, "Q8_0"}, {9, "Q8_1"},
        {10, "Q2_K"}, {11, "Q3_K"}, {12, "Q4_K"}, {13, "Q5_K"}, {14, "Q6_K"}, {15, "Q8_K"}, {16, "IQ2_XXS"},
        {17, "IQ2_XS"}, {18, "IQ3_XXS"}, {19, "IQ1_S"}, {20, "IQ4_NL"}, {21, "IQ3_S"}, {22, "IQ2_S"},
        {23, "IQ4_XS"}, {24, "I8"}, {25, "I16"}, {26, "I32"}, {27, "I64"}, {28, "F64"}, {29, "IQ1_M"},
        {30, "BF16"}, {34, "TQ1_0"}, {35, "TQ2_0"}, {39, "MXFP4"}, {40, "NVFP4"}, {41, "Q1_0"}};
    for (const auto& [id, name] : kNames) {
        if (id == type) return name;
    }
    return "type " + std::to_string(type);
}

// Vectors (norms, rope factors) the core reads as float32 once converted; matrix types it has kernels for.
bool is_float_type(int32_t t) { return t == 0 || t == 1 || t == 30; }
bool is_supported_matrix_type(int32_t t) {
    switch (t) {
        case 0: case 1: case 30: case 8: case 2: case 3: case 6: case 7: case 12: case 13: case 14: return true;
        default: return false;
    }
}

// a * b, or UINT64_MAX when it does not fit (no tensor dimension can be that large: the parser
// bounds every tensor's bytes by the file's size).
uint64_t saturating_mul(uint64_t a, uint64_t b) {
    uint64_t p = 0;
    return __builtin_mul_overflow(a, b, &p) ? UINT64_MAX : p;
}

std::string dims_text(const std::vector<uint64_t>& dims) {
    std::string out = "[";
    for (size_t i = 0; i < dims.size(); ++i) out += (i ? ", " : "") + std::to_string(dims[i]);
    return out + "]";
}

uint64_t required_dim(const TensorTable& tensors, const std::string& name, size_t axis) {
    const GgufTensor* t = tensors.find(name);
    if (!t) throw GgufError("required tensor is missing", name);
    return axis < t->dims.size() ? t->dims[axis] : 1;
}

// llama.block_count, bounded by the tensor table before anything loops over it: each block has
// kPerLayer tensors of its own.
uint64_t read_block_count(const MetadataReader& r, const TensorTable& tensors) {
    const size_t n = tensors.distinct_names();
    const uint64_t max_layers = (n > kGlobals ? n - kGlobals : 0) / kPerLayer;
    const uint64_t n_layer = r.required_integer("llama.block_count", 1, UINT64_MAX);
    if (n_layer <= max_layers) return n_layer;
    std::string missing;
    for (const char* name : kGlobalTensors) {
        if (missing.empty() && !tensors.find(name)) missing = name;
    }
    for (uint64_t i = 0; i <= max_layers && missing.empty(); ++i) {
        for (const char* name : kLayerTensors) {
            if (missing.empty() && !tensors.find(layer_tensor(i, name))) missing = layer_tensor(i, name);
        }
    }
    r.fail("llama.block_count", std::to_string(n_layer),
           "the file has " + std::to_string(n) + " tensors, room for at most " + std::to_string(max_layers) +
               " blocks of " + std::to_string(kPerLayer) + (missing.empty() ? "" : " (" + missing + " is missing)"));
}

// _read_config: every hyper-parameter with its type and range, in the Python loader's order (the
// first problem found is the same one). Ranges come from the tensors where one determines the value.
LlamaFileConfig read_config(const MetadataReader& r, const TensorTable& tensors) {
    LlamaFileConfig out;
    LlamaConfig& c = out.core;
    const uint64_t embd_cols = required_dim(tensors, "token_embd.weight", 0);
    const uint64_t embd_rows = required_dim(tensors, "token_embd.weight", 1);
    const uint64_t n_embd = r.required_integer("llama.embedding_length", 1, kInt32Max);
    if (n_embd != embd_cols) {
        r.fail("llama.embedding_length", std::to_string(n_embd), "token_embd.weight has rows of " + std::to_string(embd_cols));
    }
    const uint64_t n_vocab = r.integer("llama.vocab_size", 1, kInt32Max).value_or(embd_rows);
    if (n_vocab != embd_rows) {
        r.fail("llama.vocab_size", std::to_string(n_vocab),
               "token_embd.weight has " + std::to_string(embd_rows) + " rows (one per token)");
    }
    const uint64_t n_layer = read_block_count(r, tensors);
    const uint64_t n_head = r.required_integer("llama.attention.head_count", 1, n_embd);
    const uint64_t n_head_kv = r.integer("llama.attention.head_count_kv", 1, n_head).value_or(n_head);
    if (n_head % n_head_kv) {
        r.fail("llama.attention.head_count_kv", std::to_string(n_head_kv),
               "head_count " + std::to_string(n_head) + " is not a multiple of it");
    }
    const uint64_t q_rows = required_dim(tensors, "blk.0.attn_q.weight", 1);
    const uint64_t head_dim = r.integer("llama.attention.key_length", 1, q_rows).value_or(n_embd / n_head);
    const uint64_t value_dim = r.integer("llama.attention.value_length", 1, q_rows).value_or(head_dim);
    if (value_dim != head_dim) {
        throw UnsupportedModelError("value_length " + std::to_string(value_dim) + " differs from key_length " +
                                    std::to_string(head_dim));
    }
    const uint64_t n_ff = r.required_integer("llama.feed_forward_length", 1, kInt32Max);
    const uint64_t gate_rows = required_dim(tensors, "blk.0.ffn_gate.weight", 1);
    if (n_ff != gate_rows) {
        r.fail("llama.feed_forward_length", std::to_string(n_ff), "blk.0.ffn_gate.weight has " + std::to_string(gate_rows) + " rows");
    }
    const uint64_t rope_dim = r.integer("llama.rope.dimension_count", 2, head_dim).value_or(head_dim);
    if (rope_dim % 2) {
        r.fail("llama.rope.dimension_count", std::to_string(rope_dim), "must be even (RoPE rotates pairs of dimensions)");
    }
    out.context_length = r.integer("llama.context_length", 1, UINT32_MAX).value_or(2048);
    // RoPE computes base ** (-2i / rope_dim): any finite positive base is well defined. RMSNorm
    // divides by sqrt(mean(x^2) + eps): eps must stay away from 0 in float32 and not swamp mean(x^2).
    out.rope_base = r.real("llama.rope.freq_base", {0.0, kFloat32Max, true, false}).value_or(10000.0);
    const double rms_eps = r.real("llama.attention.layer_norm_rms_epsilon", {kFloat32Tiny, 1.0, false, true}).value_or(1e-5);
    out.rope_scaling = RopeScaling::read(r, "llama", out.context_length);

    // Every count is bounded by the file (its tensors' dims, or INT32_MAX): int64 holds them all.
    c.n_vocab = static_cast<int64_t>(n_vocab);
    c.n_embd = static_cast<int64_t>(n_embd);
    c.n_layer = static_cast<int64_t>(n_layer);
    c.n_head = static_cast<int64_t>(n_head);
    c.n_head_kv = static_cast<int64_t>(n_head_kv);
    c.head_dim = static_cast<int64_t>(head_dim);
    c.n_ff = static_cast<int64_t>(n_ff);
    c.rope_dim = static_cast<int64_t>(rope_dim);
    c.rope_base = static_cast<float>(out.rope_base);
    c.rms_eps = static_cast<float>(rms_eps);
    c.rope_magnitude = static_cast<float>(out.rope_scaling.magnitude());
    return out;
}

void check_tensor_shapes(const ShapeList& shapes, const TensorTable& tensors) {
    for (const auto& [name, shape] : shapes) {
        const GgufTensor* t = tensors.find(name);
        if (!t) throw GgufError("required tensor is missing", name);
        if (t->dims != shape) {
            throw GgufError("shape " + dims_text(t->dims) + " does not match the hyper-parameters, which imply " +
                                dims_text(shape), name);
        }
    }
}

// The forward step's vectors must be float, its matrices of a type the core has kernels for (every
// tensor of a used name is checked, repeated ones too, as Python's loop over the table does).
void check_tensor_types(const GgufFile& file, const ShapeList& shapes) {
    std::unordered_set<std::string_view> used;
    for (const auto& entry : shapes) used.insert(entry.first);
    for (const GgufTensor& t : file.tensors) {
        if (!used.count(t.name)) continue;
        if (t.dims.size() == 1 && !is_float_type(t.type)) {
            throw UnsupportedModelError("tensor '" + t.name + "': vector tensor of type " + type_name(t.type) +
                                        " (expected F32/F16/BF16)");
        }
        if (t.dims.size() > 1 && !is_supported_matrix_type(t.type)) {
            throw UnsupportedModelError("tensor '" + t.name + "': tensor type " + type_name(t.type) +
                                        " is not supported (supported: BF16, F16, F32, Q4_0, Q4_1, Q4_K, Q5_0, "
                                        "Q5_1, Q5_K, Q6_K, Q8_0)");
        }
    }
}

// The core receives the RoPE base and magnitude as float32 and requires them positive
// (validate_llama_shapes): a float64 value in range that rounds to 0 there is refused here, as a
// metadata error. (The Python loader accepts such a file; its core refuses it in Llama() with a
// ValueError. Checked last, as there.)
void check_float32_values(const MetadataReader& r, const LlamaFileConfig& config) {
    if (!(config.core.rope_base > 0)) {
        r.fail("llama.rope.freq_base", python_float_repr(config.rope_base),
               "rounds to 0 in float32, the precision the core computes RoPE in");
    }
    if (!(config.core.rope_magnitude > 0)) {
        r.fail("llama.rope.scaling.attn_factor", python_float_repr(config.rope_scaling.attn_factor),
               "the RoPE magnitude it gives rounds to 0 in float32, the precision the core computes RoPE in");
    }
}

}  // namespace

TensorTable::TensorTable(const GgufFile& file) {
    std::unordered_set<std::string> decoded;
    for (const GgufTensor& t : file.tensors) {
        by_name_[t.name] = &t;  // a later tensor of the same name replaces the earlier one
        decoded.insert(utf8_replace(t.name));
    }
    distinct_names_ = decoded.size();
}

const GgufTensor* TensorTable::find(std::string_view name) const {
    const auto it = by_name_.find(name);
    return it == by_name_.end() ? nullptr : it->second;
}

ShapeList expected_shapes(const LlamaFileConfig& config, const TensorTable& tensors) {
    const LlamaConfig& c = config.core;
    const auto u = [](int64_t v) { return static_cast<uint64_t>(v); };
    const uint64_t q_width = saturating_mul(u(c.n_head), u(c.head_dim));
    const uint64_t kv_width = saturating_mul(u(c.n_head_kv), u(c.head_dim));
    ShapeList shapes{{"token_embd.weight", {u(c.n_embd), u(c.n_vocab)}}, {"output_norm.weight", {u(c.n_embd)}}};
    if (tensors.find("output.weight")) shapes.push_back({"output.weight", {u(c.n_embd), u(c.n_vocab)}});
    if (tensors.find("rope_freqs.weight")) shapes.push_back({"rope_freqs.weight", {u(c.rope_dim / 2)}});
    shapes.reserve(shapes.size() + kPerLayer * u(c.n_layer));  // n_layer is bounded by the tensor count
    for (int64_t i = 0; i < c.n_layer; ++i) {
        const uint64_t layer = u(i);
        shapes.push_back({layer_tensor(layer, "attn_norm"), {u(c.n_embd)}});
        shapes.push_back({layer_tensor(layer, "attn_q"), {u(c.n_embd), q_width}});
        shapes.push_back({layer_tensor(layer, "attn_k"), {u(c.n_embd), kv_width}});
        shapes.push_back({layer_tensor(layer, "attn_v"), {u(c.n_embd), kv_width}});
        shapes.push_back({layer_tensor(layer, "attn_output"), {q_width, u(c.n_embd)}});
        shapes.push_back({layer_tensor(layer, "ffn_norm"), {u(c.n_embd)}});
        shapes.push_back({layer_tensor(layer, "ffn_gate"), {u(c.n_embd), u(c.n_ff)}});
        shapes.push_back({layer_tensor(layer, "ffn_up"), {u(c.n_embd), u(c.n_ff)}});
        shapes.push_back({layer_tensor(layer, "ffn_down"), {u(c.n_ff), u(c.n_embd)}});
    }
    return shapes;
}

LlamaFileConfig validate_llama_file(const GgufFile& file, const MetadataReader& r, const TensorTable& tensors) {
    const std::string_view arch = r.required_text("general.architecture");
    if (arch != "llama") {
        throw UnsupportedModelError("architecture '" + printable(arch) +
                                    "' is not supported (edgellama runs 'llama')");
    }
    LlamaFileConfig config = read_config(r, tensors);
    r.integer("general.file_type", 0, kInt32Max);
    const std::optional<uint64_t> n_tokens = check_tokenizer_metadata(r);
    if (n_tokens && *n_tokens != static_cast<uint64_t>(config.core.n_vocab)) {
        r.fail(kTokens, r.find(kTokens), "has " + std::to_string(*n_tokens) + " tokens but the model's vocabulary "
                                         "(token_embd.weight rows) has " + std::to_string(config.core.n_vocab));
    }
    const ShapeList shapes = expected_shapes(config, tensors);
    check_tensor_shapes(shapes, tensors);
    check_tensor_types(file, shapes);
    check_float32_values(r, config);
    return config;
}

}  // namespace edgellama
