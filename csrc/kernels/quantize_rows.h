// Quantizing whole matrices by tensor type (the export tool's engine): a table of the codecs in
// quantize/codecs.h by type, run over rows on threads, with the squared error measured by decoding
// each row again through the kernels' dequantizers.
#pragma once

#include <cstddef>
#include <cstdint>

namespace edgellama::quantize {

// True when quantize_rows can write this type (a TensorType id).
bool can_quantize(int32_t type_id);
// Elements per block of the type (1 for the float types); 0 when unsupported.
int64_t quant_block_size(int32_t type_id);
// Bytes of one row of n elements; n must be a multiple of the block size.
size_t quant_row_bytes(int32_t type_id, int64_t n);

// One row of n elements (a multiple of the block size) into dst.
void quantize_row(int32_t type_id, const float* src, void* dst, int64_t n);
// Decodes one row of any type quantize_row writes.
void dequantize_row_any(int32_t type_id, const void* src, float* dst, int64_t n);

// Quantizes rows x cols floats (row-major) into dst (rows * quant_row_bytes(cols) bytes) on
// n_threads threads, and returns the sum over all elements of (decoded - source)^2, in double.
double quantize_rows(int32_t type_id, const float* src, void* dst, int64_t rows, int64_t cols, int n_threads);

}  // namespace edgellama::quantize
