// Weight quantizers: float rows in, GGUF block bytes out.
//
// The 32-element formats (Q4_0, Q4_1, Q5_0, Q5_1, Q8_0) follow the reference rounding of the
// format exactly, so their bytes are reproducible by any conforming encoder. The K-quants
// (Q4_K, Q5_K, Q6_K) search each sub-block's scale (and min) for the lowest weighted squared
// error instead of taking max/min, then pack the sub-block scales into the super-block.
//
// Type ids are the GGUF tensor type numbers (see csrc/kernels/type_traits.h), plus Q5_0 = 6 and
// Q5_1 = 7, which only this exporter writes.
#pragma once

#include <cstddef>
#include <cstdint>

namespace edgellama::quantize {

constexpr int32_t kTypeF32 = 0;
constexpr int32_t kTypeF16 = 1;
constexpr int32_t kTypeQ4_0 = 2;
constexpr int32_t kTypeQ4_1 = 3;
constexpr int32_t kTypeQ5_0 = 6;
constexpr int32_t kTypeQ5_1 = 7;
constexpr int32_t kTypeQ8_0 = 8;
constexpr int32_t kTypeQ4_K = 12;
constexpr int32_t kTypeQ5_K = 13;
constexpr int32_t kTypeQ6_K = 14;
constexpr int32_t kTypeBF16 = 30;

// True when quantize_rows can write this type.
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
