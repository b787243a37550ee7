// The hyper-parameters of a llama GGUF file, after checking: the C++ twin of the checks in
// edgellama/gguf_loader.py (validate_llama_metadata, _read_config, expected_shapes,
// _check_tensor_shapes, _check_tensor_types). The same file is accepted or rejected by both, with
// the same kind of error: GgufError for a malformed file or metadata value, UnsupportedModelError
// for another architecture, tensor type or value length.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>
#include <unordered_map>
#include <utility>
#include <vector>

#include "csrc/model/gguf_reader.h"
#include "csrc/model/llama_weights.h"
#include "csrc/model/metadata_reader.h"
#include "csrc/model/rope_scaling.h"

namespace edgellama {

// The file's tensors by name (the last of repeated names, as Python's dict keeps it).
class TensorTable {
public:
    explicit TensorTable(const GgufFile& file);
    const GgufTensor* find(std::string_view name) const;
    // Distinct names as Python decodes them (UTF-8 with replacement): len(dims) in gguf_loader.py.
    size_t distinct_names() const { return distinct_names_; }

private:
    std::unordered_map<std::string_view, const GgufTensor*> by_name_;
    size_t distinct_names_ = 0;
};

// ModelConfig: what the core reads (LlamaConfig, rope_magnitude included) and the rest.
struct LlamaFileConfig {
    LlamaConfig core;
    double rope_base = 10000.0;  // the float64 value (the core's copy is float32)
    uint64_t context_length = 2048;
    RopeScaling rope_scaling;
};

// GGUF dims (ne0 first) of every tensor the llama forward reads, in expected_shapes' order.
using ShapeList = std::vector<std::pair<std::string, std::vector<uint64_t>>>;
ShapeList expected_shapes(const LlamaFileConfig& c, const TensorTable& tensors);

// validate_llama_metadata followed by _check_tensor_types: the architecture, every hyper-parameter's
// type and range, the tokenizer metadata, every tensor the forward reads present with the shape the
// hyper-parameters imply, and of a type the core runs.
LlamaFileConfig validate_llama_file(const GgufFile& file, const MetadataReader& reader, const TensorTable& tensors);

}  // namespace edgellama
