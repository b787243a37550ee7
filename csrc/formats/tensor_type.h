// The GGUF tensor types the core runs and the activation formats their dot products take: the ids
// every layer above dispatches on (kernels through the TypeTraits table, CUDA through its format
// structs, the codecs through their table). Adding a format starts here and in block_formats.h.
#pragma once

#include <cstdint>

namespace edgellama {

// GGUF / ggml tensor type ids (the numbers stored in the file).
enum class TensorType : int32_t {
    F32 = 0,
    F16 = 1,
    Q4_0 = 2,
    Q4_1 = 3,
    Q5_0 = 6,
    Q5_1 = 7,
    Q8_0 = 8,
    Q4_K = 12,
    Q5_K = 13,
    Q6_K = 14,
    BF16 = 30,
};

constexpr int32_t id_of(TensorType t) { return static_cast<int32_t>(t); }

// In-memory activation formats (never written to a file).
enum class ActFormat : int32_t {
    F32 = 0,     // plain floats: the dot product of F32/F16/BF16 weights
    Q8_32 = 1,   // BlockQ8Act32: 32 int8 with a float scale and the block sum (Q4_0, Q4_1, Q8_0)
    Q8_256 = 2,  // BlockQ8Act256: 256 int8 with a float scale and 16 partial sums (K-quants)
};

}  // namespace edgellama
