// The host side of the grouped weight layouts (grouped_rows.h): choosing them and regrouping rows.
#include "csrc/cuda/grouped_rows.h"

#include <cstring>
#include <stdexcept>
#include <string>

#include "csrc/kernels/type_traits.h"
#include "quantize/block_formats.h"

namespace edgellama::cuda {

namespace {

// Bytes of a block's scale (the f16 d) at its start, and of its codes after it.
constexpr size_t kScaleBytes = 2;

size_t code_bytes_of(int32_t type) {
    switch (type) {
        case 2: return sizeof(BlockQ4_0) - kScaleBytes;
        case 8: return sizeof(BlockQ8_0) - kScaleBytes;
        default: return 0;
    }
}

}  // namespace

int32_t grouped_type(int32_t type, int64_t cols) {
    if (code_bytes_of(type) == 0 || cols <= 0 || cols % (kBlocksPerGroup * kQK32) != 0) return type;
    return kGroupedRows | type;
}

void group_rows(int32_t type, int64_t cols, const uint8_t* src, uint8_t* dst, int64_t rows, size_t row_bytes) {
    if (grouped_type(type, cols) == type || row_bytes != weight_row_bytes(type, cols)) {
        throw std::invalid_argument("type " + std::to_string(type) + " rows of " + std::to_string(cols) +
                                    " elements have no grouped layout");
    }
    const size_t codes = code_bytes_of(type), block = codes + kScaleBytes;
    const int64_t groups = cols / (kBlocksPerGroup * kQK32);
    for (int64_t r = 0; r < rows; ++r) {
        for (int64_t g = 0; g < groups; ++g) {
            const size_t at = static_cast<size_t>(r) * row_bytes + static_cast<size_t>(g) * kBlocksPerGroup * block;
            const uint8_t* in = src + at;
            uint8_t* code_out = dst + at;
            uint8_t* scale_out = code_out + kBlocksPerGroup * codes;
            for (int b = 0; b < kBlocksPerGroup; ++b) {
                std::memcpy(scale_out + b * kScaleBytes, in + b * block, kScaleBytes);
                std::memcpy(code_out + b * codes, in + b * block + kScaleBytes, codes);
            }
        }
    }
}

}  // namespace edgellama::cuda
