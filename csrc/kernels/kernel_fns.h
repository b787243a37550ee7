// Per-type kernel entry points behind the TypeTraits table (internal to csrc/kernels).
//
// Each weight type has dequantize_row_<type> and a portable vec_dot_<type>_scalar. Where an
// AVX2 version exists (quant_avx2.cpp, float_types.cpp) the table uses it; the scalar one stays compiled so tests
// can check one against the other.
#pragma once

#include <cstdint>

namespace edgellama::kernels {

void dequantize_row_f32(const void* src, float* dst, int64_t n);
void dequantize_row_f16(const void* src, float* dst, int64_t n);
void dequantize_row_bf16(const void* src, float* dst, int64_t n);
void dequantize_row_q4_0(const void* src, float* dst, int64_t n);
void dequantize_row_q4_1(const void* src, float* dst, int64_t n);
void dequantize_row_q5_0(const void* src, float* dst, int64_t n);
void dequantize_row_q5_1(const void* src, float* dst, int64_t n);
void dequantize_row_q8_0(const void* src, float* dst, int64_t n);
void dequantize_row_q4_k(const void* src, float* dst, int64_t n);
void dequantize_row_q5_k(const void* src, float* dst, int64_t n);
void dequantize_row_q6_k(const void* src, float* dst, int64_t n);

float vec_dot_f32_scalar(int64_t n, const void* w, const void* a);
float vec_dot_f16_scalar(int64_t n, const void* w, const void* a);
float vec_dot_bf16_scalar(int64_t n, const void* w, const void* a);
float vec_dot_q4_0_scalar(int64_t n, const void* w, const void* a);
float vec_dot_q4_1_scalar(int64_t n, const void* w, const void* a);
float vec_dot_q5_0_scalar(int64_t n, const void* w, const void* a);
float vec_dot_q5_1_scalar(int64_t n, const void* w, const void* a);
float vec_dot_q8_0_scalar(int64_t n, const void* w, const void* a);
float vec_dot_q4_k_scalar(int64_t n, const void* w, const void* a);
float vec_dot_q5_k_scalar(int64_t n, const void* w, const void* a);
float vec_dot_q6_k_scalar(int64_t n, const void* w, const void* a);

#if defined(__AVX2__) && defined(__FMA__) && defined(__F16C__)
#define EDGELLAMA_HAVE_AVX2_DOTS 1
float vec_dot_f32_avx2(int64_t n, const void* w, const void* a);
float vec_dot_f16_avx2(int64_t n, const void* w, const void* a);
float vec_dot_bf16_avx2(int64_t n, const void* w, const void* a);
float vec_dot_q4_0_avx2(int64_t n, const void* w, const void* a);
float vec_dot_q4_1_avx2(int64_t n, const void* w, const void* a);
float vec_dot_q8_0_avx2(int64_t n, const void* w, const void* a);
float vec_dot_q4_k_avx2(int64_t n, const void* w, const void* a);
float vec_dot_q6_k_avx2(int64_t n, const void* w, const void* a);
#endif

}  // namespace edgellama::kernels
