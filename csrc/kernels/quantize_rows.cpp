// Type dispatch and the multi-threaded row driver of the quantizers (quantize_rows.h).
#include "csrc/kernels/quantize_rows.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <exception>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "csrc/formats/block_formats.h"
#include "csrc/formats/float_convert.h"
#include "csrc/formats/tensor_type.h"
#include "csrc/kernels/type_traits.h"
#include "quantize/codecs.h"

namespace edgellama::quantize {
namespace {

struct Codec {
    TensorType type;
    int64_t block_size;
    size_t block_bytes;
    void (*quantize)(const float*, void*, int64_t);
};

void quantize_row_f32(const float* x, void* dst, int64_t n) { std::memcpy(dst, x, sizeof(float) * n); }

void quantize_row_f16(const float* x, void* dst, int64_t n) {
    auto* out = static_cast<uint16_t*>(dst);
    for (int64_t i = 0; i < n; ++i) out[i] = fp32_to_fp16(x[i]);
}

// float -> bfloat16, round to nearest even; NaN stays a (quiet) NaN.
void quantize_row_bf16(const float* x, void* dst, int64_t n) {
    auto* out = static_cast<uint16_t*>(dst);
    for (int64_t i = 0; i < n; ++i) {
        const uint32_t bits = float_to_bits(x[i]);
        if ((bits & 0x7fffffffu) > 0x7f800000u) {
            out[i] = static_cast<uint16_t>((bits >> 16) | 0x40u);
        } else {
            out[i] = static_cast<uint16_t>((bits + 0x7fffu + ((bits >> 16) & 1u)) >> 16);
        }
    }
}

const Codec kCodecs[] = {
    {TensorType::F32, 1, 4, quantize_row_f32},
    {TensorType::F16, 1, 2, quantize_row_f16},
    {TensorType::BF16, 1, 2, quantize_row_bf16},
    {TensorType::Q4_0, kQK32, sizeof(BlockQ4_0), quantize_row_q4_0},
    {TensorType::Q4_1, kQK32, sizeof(BlockQ4_1), quantize_row_q4_1},
    {TensorType::Q5_0, kQK32, sizeof(BlockQ5_0), quantize_row_q5_0},
    {TensorType::Q5_1, kQK32, sizeof(BlockQ5_1), quantize_row_q5_1},
    {TensorType::Q8_0, kQK32, sizeof(BlockQ8_0), quantize_row_q8_0},
    {TensorType::Q4_K, kQK256, sizeof(BlockQ4_K), quantize_row_q4_k},
    {TensorType::Q5_K, kQK256, sizeof(BlockQ5_K), quantize_row_q5_k},
    {TensorType::Q6_K, kQK256, sizeof(BlockQ6_K), quantize_row_q6_k},
};

const Codec* find_codec(int32_t type_id) {
    for (const Codec& c : kCodecs) {
        if (id_of(c.type) == type_id) return &c;
    }
    return nullptr;
}

const Codec& codec_or_throw(int32_t type_id, int64_t n) {
    const Codec* c = find_codec(type_id);
    if (!c) throw std::invalid_argument("cannot quantize to tensor type id " + std::to_string(type_id));
    if (n <= 0 || n % c->block_size != 0) {
        throw std::invalid_argument("row length " + std::to_string(n) + " is not a multiple of the block size " +
                                    std::to_string(c->block_size) + " of type id " + std::to_string(type_id));
    }
    return *c;
}

}  // namespace

bool can_quantize(int32_t type_id) { return find_codec(type_id) != nullptr; }

int64_t quant_block_size(int32_t type_id) {
    const Codec* c = find_codec(type_id);
    return c ? c->block_size : 0;
}

size_t quant_row_bytes(int32_t type_id, int64_t n) {
    const Codec& c = codec_or_throw(type_id, n);
    return static_cast<size_t>(n / c.block_size) * c.block_bytes;
}

void quantize_row(int32_t type_id, const float* src, void* dst, int64_t n) {
    codec_or_throw(type_id, n).quantize(src, dst, n);
}

void dequantize_row_any(int32_t type_id, const void* src, float* dst, int64_t n) {
    if (type_id == id_of(TensorType::Q5_0)) return dequantize_row_q5_0(src, dst, n);
    if (type_id == id_of(TensorType::Q5_1)) return dequantize_row_q5_1(src, dst, n);
    type_traits(type_id).dequantize_row(src, dst, n);
}

double quantize_rows(int32_t type_id, const float* src, void* dst, int64_t rows, int64_t cols, int n_threads) {
    const Codec& c = codec_or_throw(type_id, cols);
    const size_t row_bytes = static_cast<size_t>(cols / c.block_size) * c.block_bytes;
    const int64_t workers = std::max<int64_t>(1, std::min<int64_t>(n_threads, rows));
    std::vector<double> sse(static_cast<size_t>(workers), 0.0);
    std::vector<std::exception_ptr> errors(static_cast<size_t>(workers));
    auto work = [&](int64_t w) {
        try {
            const int64_t begin = rows * w / workers, end = rows * (w + 1) / workers;
            std::vector<float> decoded(static_cast<size_t>(cols));
            double acc = 0.0;
            for (int64_t r = begin; r < end; ++r) {
                const float* x = src + r * cols;
                uint8_t* out = static_cast<uint8_t*>(dst) + static_cast<size_t>(r) * row_bytes;
                c.quantize(x, out, cols);
                dequantize_row_any(type_id, out, decoded.data(), cols);
                for (int64_t i = 0; i < cols; ++i) {
                    const double diff = static_cast<double>(decoded[i]) - x[i];
                    acc += diff * diff;
                }
            }
            sse[static_cast<size_t>(w)] = acc;
        } catch (...) {
            errors[static_cast<size_t>(w)] = std::current_exception();
        }
    };
    std::vector<std::thread> threads;
    for (int64_t w = 1; w < workers; ++w) threads.emplace_back(work, w);
    work(0);
    for (auto& t : threads) t.join();
    for (auto& e : errors) {
        if (e) std::rethrow_exception(e);
    }
    double total = 0.0;
    for (double s : sse) total += s;
    return total;
}

}  // namespace edgellama::quantize
