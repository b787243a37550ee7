// One quantized (or float) weight matrix as the kernels take it: rows in a GGUF block format, and
// its row-group copy once the model has repacked it. Below the model, so that matmul needs
// nothing of the llama layer.
#pragma once

#include <cstddef>
#include <cstdint>

#include "csrc/kernels/row_groups.h"
#include "csrc/kernels/type_traits.h"

namespace edgellama {

// A 2-D weight stored row by row: `rows` rows of `cols` elements in GGUF block format `type`.
struct WeightMatrix {
    const uint8_t* data = nullptr;
    int32_t type = 0;
    int64_t rows = 0;
    int64_t cols = 0;
    const TypeTraits* traits = nullptr;
    size_t row_bytes = 0;
    // Set when the model repacked this matrix into row groups at load (csrc/model/weight_repack.h):
    // matmul then uses only `groups`, ceil(rows / kGroupRows) groups of group_bytes each.
    const RowGroupKernel* group_kernel = nullptr;
    const uint8_t* groups = nullptr;
    size_t group_bytes = 0;

    const uint8_t* row(int64_t r) const { return data + static_cast<size_t>(r) * row_bytes; }
};

// Fills traits and row_bytes; throws std::invalid_argument on an unsupported type or a row
// length that is not a whole number of blocks.
WeightMatrix make_weight_matrix(const void* data, int32_t type, int64_t rows, int64_t cols);

}  // namespace edgellama
