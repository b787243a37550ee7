// Weight quantizers: float rows in, GGUF block bytes out.
//
// The 32-element formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) follow the reference rounding of the
// format exactly, so their bytes are reproducible by any conforming encoder. The K-quants
// (Q4_K, Q5_K, Q6_K) search each sub-block's scale (and min) for the lowest weighted squared
// error instead of taking max/min, then pack the sub-block scales into the super-block.
//
// They read and write the block structs of csrc/formats and nothing above them, so the kernels
// (the quantized KV cache) may use them. The threaded row driver with its codec table by tensor
// type is csrc/kernels/quantize_rows.h.
#pragma once

#include <cstddef>
#include <cstdint>

namespace edgellama::quantize {

// The individual codecs (n a multiple of the block size).
void quantize_row_q4_0(const float* x, void* dst, int64_t n);
void quantize_row_q4_1(const float* x, void* dst, int64_t n);
void quantize_row_q5_0(const float* x, void* dst, int64_t n);
void quantize_row_q5_1(const float* x, void* dst, int64_t n);
void quantize_row_q8_0(const float* x, void* dst, int64_t n);
void dequantize_row_q5_0(const void* src, float* dst, int64_t n);
void dequantize_row_q5_1(const void* src, float* dst, int64_t n);
void quantize_row_q4_k(const float* x, void* dst, int64_t n);
void quantize_row_q5_k(const float* x, void* dst, int64_t n);
void quantize_row_q6_k(const float* x, void* dst, int64_t n);

}  // namespace edgellama::quantize
