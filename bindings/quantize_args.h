// Argument checks of the quantizer bindings, shared by the core module (quantize_rows) and the
// test module (the codecs one row at a time), header-only so each module compiles it on its own.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <string>

#include "csrc/kernels/quantize_rows.h"

namespace edgellama::bindings {

inline void check_quantize_type(int32_t type_id) {
    if (!quantize::can_quantize(type_id)) {
        throw pybind11::value_error("cannot quantize to tensor type id " + std::to_string(type_id));
    }
}

inline void check_quantize_cols(int32_t type_id, int64_t cols) {
    const int64_t block = quantize::quant_block_size(type_id);
    if (cols <= 0 || cols % block != 0) {
        throw pybind11::value_error("row length " + std::to_string(cols) + " is not a multiple of the block size " +
                                    std::to_string(block));
    }
}

}  // namespace edgellama::bindings
