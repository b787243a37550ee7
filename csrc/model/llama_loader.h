// Assembles LlamaWeights from named tensors (GGUF names) that the Python loader already validated.
#pragma once

#include <cstdint>
#include <map>
#include <string>

#include "csrc/model/llama_weights.h"

namespace edgellama {

// One tensor in the mapped file: rows of `cols` elements (GGUF ne1 = rows, ne0 = cols).
struct TensorRef {
    const void* data = nullptr;
    int32_t type = 0;
    int64_t rows = 0;
    int64_t cols = 0;
};

using TensorMap = std::map<std::string, TensorRef>;

// Throws std::invalid_argument naming the tensor when one is missing or has the wrong type/shape.
// Norms and rope_freqs must be F32 (the Python loader converts other float types first).
LlamaWeights build_llama_weights(const LlamaConfig& config, const TensorMap& tensors);

}  // namespace edgellama
