#include "csrc/kernels/weight_matrix.h"

#include <stdexcept>
#include <string>

namespace edgellama {

WeightMatrix make_weight_matrix(const void* data, int32_t type, int64_t rows, int64_t cols) {
    const TypeTraits& traits = type_traits(type);
    if (data == nullptr || rows <= 0 || cols <= 0) {
        throw std::invalid_argument("weight matrix needs data and positive dimensions");
    }
    if (cols % traits.block_size != 0) {
        throw std::invalid_argument(std::string("rows of ") + std::to_string(cols) + " " + traits.name +
                                    " elements are not a whole number of blocks of " +
                                    std::to_string(traits.block_size));
    }
    WeightMatrix w;
    w.data = static_cast<const uint8_t*>(data);
    w.type = type;
    w.rows = rows;
    w.cols = cols;
    w.traits = &traits;
    w.row_bytes = weight_row_bytes(type, cols);
    return w;
}

}  // namespace edgellama
