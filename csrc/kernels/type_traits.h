// The single registry of weight block formats: one TypeTraits entry per GGUF tensor type we run.
//
// Every kernel that touches a weight goes through this table: the forward step never switches
// on a type itself. Weight rows are used in place, exactly as GGUF stores them (little-endian
// block structs from csrc/formats/block_formats.h). Activations are quantized once per matmul into
// the format the weight type's dot product wants (act_format), then dotted row by row.
#pragma once

#include <cstddef>
#include <cstdint>
#include <vector>

#include "csrc/formats/tensor_type.h"

namespace edgellama {

struct TypeTraits {
    const char* name;
    int64_t block_size;    // elements per block
    size_t block_bytes;    // bytes per block, as stored in GGUF
    ActFormat act_format;  // activation format vec_dot expects
    // dst[0..n) = weights of src; n is a multiple of block_size.
    void (*dequantize_row)(const void* src, float* dst, int64_t n);
    // sum_i w[i] * a[i] over n elements; weight_row in this type, act_row in act_format.
    float (*vec_dot)(int64_t n, const void* weight_row, const void* act_row);
};

using VecDotFn = float (*)(int64_t n, const void* weight_row, const void* act_row);

// nullptr when the type id is not one we support.
const TypeTraits* find_type_traits(int32_t type_id);
// Throws std::invalid_argument naming the type when unsupported.
const TypeTraits& type_traits(int32_t type_id);

// Every supported type id, in table order.
std::vector<int32_t> supported_type_ids();
// The portable scalar vec_dot of a type (the table may hold a SIMD one); nullptr if unsupported.
// For tests that check the SIMD kernels against the reference loops.
VecDotFn scalar_vec_dot(int32_t type_id);

// Bytes of one row of n elements (n a multiple of the block size).
size_t weight_row_bytes(int32_t type_id, int64_t n);
size_t act_row_bytes(ActFormat format, int64_t n);
int64_t act_block_size(ActFormat format);
// Converts n floats into the activation format (n a multiple of its block size).
void quantize_act_row(ActFormat format, const float* src, void* dst, int64_t n);
// The residual precision's second row (a quantized format only): src minus what `first` (src's
// row from quantize_act_row) holds, in the same format. A dot product is linear in its input, so
// dot(w, first) + dot(w, residual) is the dot with src rounded to about 15 bits per block.
void quantize_act_residual_row(ActFormat format, const float* src, const void* first, void* dst, int64_t n);

}  // namespace edgellama
