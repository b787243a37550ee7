// The device block decoders of formats.cuh and the integer dots of int8_dot.cuh run on the host:
// a CPU-only machine (CI) checks them against the CPU engine, since nothing else there can
// execute GPU code. Built with -ffp-contract=off (CMakeLists.txt) so the host compiler rounds
// like the device code.
#include "csrc/cuda/host_decode.h"

#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "csrc/cuda/int8_dot.cuh"

namespace edgellama::cuda {

namespace {

constexpr int kLanes = 32;  // a warp, as gemv_int8_kernel splits a row

struct alignas(16) Aligned16 {
    uint8_t bytes[16];
};

// The warp's quantization of one activation block (act_quant.cu), element by element.
void quantize_block(const float* x, int len, float* d, int8_t* q) {
    float amax = 0.0f;
    for (int i = 0; i < len; ++i) amax = fmaxf(amax, fabsf(x[i]));
    *d = act_scale(amax);
    for (int i = 0; i < len; ++i) q[i] = static_cast<int8_t>(act_code(x[i], *d));
}

void quantize_blocks(const float* x, int64_t n, BlockQ8Act32* out) {
    for (int64_t b = 0; b < n / kQK32; ++b) {
        quantize_block(x + b * kQK32, kQK32, &out[b].d, out[b].qs);
        int s = 0;
        for (int i = 0; i < kQK32; ++i) s += out[b].qs[i];
        out[b].sum = out[b].d * static_cast<float>(s);
    }
}

void quantize_blocks(const float* x, int64_t n, BlockQ8Act256* out) {
    for (int64_t b = 0; b < n / kQK256; ++b) {
        quantize_block(x + b * kQK256, kQK256, &out[b].d, out[b].qs);
        for (int i = 0; i < kQK256 / 16; ++i) {
            int s = 0;
            for (int j = 0; j < 16; ++j) s += out[b].qs[16 * i + j];
            out[b].bsums[i] = static_cast<int16_t>(s);
        }
    }
}

template <class Act>
std::vector<Aligned16> quantized(const float* x, int64_t n) {
    if (n % (std::is_same_v<Act, BlockQ8Act32> ? kQK32 : kQK256) != 0) {
        throw std::invalid_argument(std::to_string(n) + " elements are not a whole number of activation blocks");
    }
    const size_t blocks = static_cast<size_t>(n / (std::is_same_v<Act, BlockQ8Act32> ? kQK32 : kQK256));
    std::vector<Aligned16> buf((blocks * sizeof(Act) + 15) / 16);
    quantize_blocks(x, n, reinterpret_cast<Act*>(buf.data()));
    return buf;
}

[[noreturn]] void not_quantized(int32_t type) {
    throw std::invalid_argument("type " + std::to_string(type) + " has no int8 dot product");
}

}  // namespace

void decode_row_on_host(int32_t type, const uint8_t* row, int64_t cols, float* out) {
    const bool known = dispatch_format(type, [&](auto fmt) {
        using Fmt = decltype(fmt);
        if (cols % Fmt::kPiece != 0) {
            throw std::invalid_argument("row of " + std::to_string(cols) + " elements is not a whole number of pieces");
        }
        for (int64_t p = 0; p < cols / Fmt::kPiece; ++p) {
            float* dst = out + p * Fmt::kPiece;
            Fmt::visit(row, p, [&](int i, float v) { dst[i] = v; });
        }
    });
    if (!known) throw std::invalid_argument("unsupported type " + std::to_string(type));
}

std::vector<uint8_t> quantize_act_on_host(int32_t weight_type, const float* x, int64_t n) {
    std::vector<uint8_t> bytes;
    const bool known = dispatch_int8_format(weight_type, [&](auto fmt) {
        using Act = typename decltype(fmt)::Act;
        const std::vector<Aligned16> buf = quantized<Act>(x, n);
        const auto* first = reinterpret_cast<const uint8_t*>(buf.data());
        bytes.assign(first, first + static_cast<size_t>(n / (std::is_same_v<Act, BlockQ8Act32> ? kQK32 : kQK256)) *
                                        sizeof(Act));
    });
    if (!known) not_quantized(weight_type);
    return bytes;
}

float int8_dot_on_host(int32_t weight_type, const uint8_t* row, const float* x, int64_t n) {
    float total = 0.0f;
    const bool known = dispatch_int8_format(weight_type, [&](auto fmt) {
        using Q = decltype(fmt);
        if (n % Q::kPiece != 0) {
            throw std::invalid_argument("row of " + std::to_string(n) + " elements is not a whole number of pieces");
        }
        const std::vector<Aligned16> buf = quantized<typename Q::Act>(x, n);
        const typename Q::Act* const act[1] = {reinterpret_cast<const typename Q::Act*>(buf.data())};
        float lane_sums[kLanes];
        for (int lane = 0; lane < kLanes; ++lane) {
            float acc[1] = {0.0f};
            int8_lane_partial<Q, 1>(row, n / Q::kPiece, lane, kLanes, act, acc);
            lane_sums[lane] = acc[0];
        }
        for (int width = kLanes / 2; width > 0; width /= 2) {  // the butterfly of warp_sum
            for (int lane = 0; lane < width; ++lane) lane_sums[lane] += lane_sums[lane + width];
        }
        total = lane_sums[0];
    });
    if (!known) not_quantized(weight_type);
    return total;
}

}  // namespace edgellama::cuda
