// The TypeTraits table: one static entry per supported GGUF weight type.
#include "csrc/kernels/type_traits.h"

#include "csrc/kernels/kernel_fns.h"
#include "csrc/formats/block_formats.h"

#include <stdexcept>
#include <string>

namespace edgellama {
namespace {

using namespace kernels;

// The fastest vec_dot compiled in for each quantized type.
#if defined(EDGELLAMA_HAVE_AVX2_DOTS)
constexpr auto kDotF32 = vec_dot_f32_avx2;
constexpr auto kDotF16 = vec_dot_f16_avx2;
constexpr auto kDotBF16 = vec_dot_bf16_avx2;
constexpr auto kDotQ4_0 = vec_dot_q4_0_avx2;
constexpr auto kDotQ4_1 = vec_dot_q4_1_avx2;
constexpr auto kDotQ8_0 = vec_dot_q8_0_avx2;
constexpr auto kDotQ4_K = vec_dot_q4_k_avx2;
constexpr auto kDotQ6_K = vec_dot_q6_k_avx2;
#else
constexpr auto kDotF32 = vec_dot_f32_scalar;
constexpr auto kDotF16 = vec_dot_f16_scalar;
constexpr auto kDotBF16 = vec_dot_bf16_scalar;
constexpr auto kDotQ4_0 = vec_dot_q4_0_scalar;
constexpr auto kDotQ4_1 = vec_dot_q4_1_scalar;
constexpr auto kDotQ8_0 = vec_dot_q8_0_scalar;
constexpr auto kDotQ4_K = vec_dot_q4_k_scalar;
constexpr auto kDotQ6_K = vec_dot_q6_k_scalar;
#endif

struct Entry {
    TensorType type;
    TypeTraits traits;
    float (*scalar_dot)(int64_t, const void*, const void*);
};

// clang-format off
const Entry kEntries[] = {
    {TensorType::F32,  {"F32",  1,      4,                 ActFormat::F32,    dequantize_row_f32,  kDotF32},  vec_dot_f32_scalar},
    {TensorType::F16,  {"F16",  1,      2,                 ActFormat::F32,    dequantize_row_f16,  kDotF16},  vec_dot_f16_scalar},
    {TensorType::BF16, {"BF16", 1,      2,                 ActFormat::F32,    dequantize_row_bf16, kDotBF16}, vec_dot_bf16_scalar},
    {TensorType::Q4_0, {"Q4_0", kQK32,  sizeof(BlockQ4_0), ActFormat::Q8_32,  dequantize_row_q4_0, kDotQ4_0}, vec_dot_q4_0_scalar},
    {TensorType::Q4_1, {"Q4_1", kQK32,  sizeof(BlockQ4_1), ActFormat::Q8_32,  dequantize_row_q4_1, kDotQ4_1}, vec_dot_q4_1_scalar},
    {TensorType::Q5_0, {"Q5_0", kQK32,  sizeof(BlockQ5_0), ActFormat::Q8_32,  dequantize_row_q5_0, vec_dot_q5_0_scalar}, vec_dot_q5_0_scalar},
    {TensorType::Q5_1, {"Q5_1", kQK32,  sizeof(BlockQ5_1), ActFormat::Q8_32,  dequantize_row_q5_1, vec_dot_q5_1_scalar}, vec_dot_q5_1_scalar},
    {TensorType::Q8_0, {"Q8_0", kQK32,  sizeof(BlockQ8_0), ActFormat::Q8_32,  dequantize_row_q8_0, kDotQ8_0}, vec_dot_q8_0_scalar},
    {TensorType::Q4_K, {"Q4_K", kQK256, sizeof(BlockQ4_K), ActFormat::Q8_256, dequantize_row_q4_k, kDotQ4_K}, vec_dot_q4_k_scalar},
    {TensorType::Q5_K, {"Q5_K", kQK256, sizeof(BlockQ5_K), ActFormat::Q8_256, dequantize_row_q5_k, vec_dot_q5_k_scalar}, vec_dot_q5_k_scalar},
    {TensorType::Q6_K, {"Q6_K", kQK256, sizeof(BlockQ6_K), ActFormat::Q8_256, dequantize_row_q6_k, kDotQ6_K}, vec_dot_q6_k_scalar},
};
// clang-format on

const Entry* find_entry(int32_t type_id) {
    for (const Entry& e : kEntries) {
        if (static_cast<int32_t>(e.type) == type_id) return &e;
    }
    return nullptr;
}

}  // namespace

const TypeTraits* find_type_traits(int32_t type_id) {
    const Entry* e = find_entry(type_id);
    return e ? &e->traits : nullptr;
}

const TypeTraits& type_traits(int32_t type_id) {
    const TypeTraits* t = find_type_traits(type_id);
    if (!t) throw std::invalid_argument("unsupported tensor type id " + std::to_string(type_id));
    return *t;
}

VecDotFn scalar_vec_dot(int32_t type_id) {
    const Entry* e = find_entry(type_id);
    return e ? e->scalar_dot : nullptr;
}

std::vector<int32_t> supported_type_ids() {
    std::vector<int32_t> ids;
    for (const Entry& e : kEntries) ids.push_back(static_cast<int32_t>(e.type));
    return ids;
}

size_t weight_row_bytes(int32_t type_id, int64_t n) {
    const TypeTraits& t = type_traits(type_id);
    return static_cast<size_t>(n / t.block_size) * t.block_bytes;
}

}  // namespace edgellama
