// The device block decoders of formats.cuh and the integer dots of int8_dot.cuh run on the host:
// a CPU-only machine (CI) checks them against the CPU engine, since nothing else there can
// execute GPU code. Built with -ffp-contract=off (CMakeLists.txt) so the host compiler rounds
// like the device code.
#include "csrc/cuda/host_decode.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <stdexcept>
#include <string>
#include <type_traits>

#include "csrc/cuda/act_quant.cuh"
#include "csrc/cuda/attention_block.cuh"
#include "csrc/cuda/backend.h"
#include "csrc/cuda/gemv_rows.cuh"
#include "csrc/cuda/greedy_block.cuh"
#include "csrc/cuda/host_warp.h"
#include "csrc/cuda/int8_dot.cuh"
#include "csrc/cuda/norm_rope.cuh"
#include "csrc/cuda/ops.h"

namespace edgellama::cuda {

namespace {


struct alignas(16) Aligned16 {
    uint8_t bytes[16];
};

// The warp's quantization of one activation block (act_quant.cuh), element by element: codes q,
// returns the scale.
float quantize_block(const float* x, int len, int8_t* q) {
    float amax = 0.0f;
    for (int i = 0; i < len; ++i) amax = fmaxf(amax, fabsf(x[i]));
    const float d = act_scale(amax);
    for (int i = 0; i < len; ++i) q[i] = static_cast<int8_t>(act_code(x[i], d));
    return d;
}

// One activation row of n elements in the device layout (ActRow32 / ActRow256), 16-byte aligned.
std::vector<Aligned16> quantized_row(const float* x, int64_t n, int block) {
    if (n % block != 0) {
        throw std::invalid_argument(std::to_string(n) + " elements are not a whole number of activation blocks");
    }
    const int64_t n_blocks = n / block;
    const size_t bytes = static_cast<size_t>(n_blocks) * (block == kQK32 ? sizeof(BlockQ8Act32) : sizeof(BlockQ8Act256));
    std::vector<Aligned16> buf((bytes + 15) / 16);
    auto* row = reinterpret_cast<uint8_t*>(buf.data());
    auto* qs = reinterpret_cast<int8_t*>(row);
    auto* d = reinterpret_cast<float*>(row + act_scales_offset(n));
    uint8_t* sums = row + act_sums_offset(n, block);
    for (int64_t b = 0; b < n_blocks; ++b) {
        int8_t* q = qs + b * block;
        d[b] = quantize_block(x + b * block, block, q);
        if (block == kQK32) {
            int s = 0;
            for (int i = 0; i < block; ++i) s += q[i];
            const float sum = d[b] * static_cast<float>(s);
            std::memcpy(sums + b * sizeof(float), &sum, sizeof sum);
        } else {
            for (int i = 0; i < block / 16; ++i) {
                int s = 0;
                for (int k = 0; k < 16; ++k) s += q[16 * i + k];
                const auto bsum = static_cast<int16_t>(s);
                std::memcpy(sums + (b * 16 + i) * sizeof(int16_t), &bsum, sizeof bsum);
            }
        }
    }
    return buf;
}

// The activation rows of n_tokens rows of x, one after another as the device keeps them.
std::vector<Aligned16> quantized_rows(const float* x, int64_t n_tokens, int64_t cols, int block, size_t* row_bytes) {
    *row_bytes = static_cast<size_t>(cols / block) * (block == kQK32 ? sizeof(BlockQ8Act32) : sizeof(BlockQ8Act256));
    std::vector<Aligned16> act((n_tokens * *row_bytes + 15) / 16);
    for (int64_t t = 0; t < n_tokens; ++t) {
        const std::vector<Aligned16> row = quantized_row(x + t * cols, cols, block);
        std::memcpy(reinterpret_cast<uint8_t*>(act.data()) + t * *row_bytes, row.data(), *row_bytes);
    }
    return act;
}

template <class Q>
constexpr int act_block() {
    return std::is_same_v<typename Q::ActRow, ActRow32> ? kQK32 : kQK256;
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

void quantize_act_row_on_host(int block, const float* x, int64_t n, uint8_t* row, int parts) {
    if (n % block != 0) throw std::invalid_argument(std::to_string(n) + " elements are not whole activation blocks");
    if (parts != 1 && parts != 2) throw std::invalid_argument("a row is one or two int8 rows");
    const size_t residual = residual_offset(parts, act_rows_out(nullptr, block, n).row_bytes);
    // The device's warp quantizers (act_quant.cuh), a block at a time, as act_quant.cu runs them.
    run_host_warp([&](const HostWarp& warp) {
        for (int64_t b = 0; b < n / block; ++b) {
            quantize_block_warp(warp, block, [&](int i) { return x[b * block + i]; }, row, n, b, residual);
        }
    });
}

std::vector<uint8_t> quantize_act_on_host(int32_t weight_type, const float* x, int64_t n, bool precise) {
    std::vector<uint8_t> bytes;
    const bool known = dispatch_int8_format(weight_type, [&](auto fmt) {
        constexpr int block = act_block<decltype(fmt)>();
        if (n % block != 0) throw std::invalid_argument(std::to_string(n) + " elements are not whole activation blocks");
        const int parts = precise ? 2 : 1;
        bytes.assign(parts * act_rows_out(nullptr, block, n).row_bytes, 0);
        quantize_act_row_on_host(block, x, n, bytes.data(), parts);
    });
    if (!known) not_quantized(weight_type);
    return bytes;
}

void rms_norm_on_host(const float* x, const float* weight, float* out, int64_t n_rows, int64_t n, float eps,
                      uint8_t* act32, uint8_t* act256, int act_parts) {
    if ((act32 != nullptr && n % kQK32 != 0) || (act256 != nullptr && n % kQK256 != 0)) {
        throw std::invalid_argument("rows are not whole activation blocks");
    }
    if (act_parts != 1 && act_parts != 2) throw std::invalid_argument("a row is one or two int8 rows");
    for (int64_t row = 0; row < n_rows; ++row) {
        run_host_block<NormShared>(kNormThreads, [&](const HostBlock<NormShared>& block) {
            rms_norm_block(block, x, weight, out, n, eps, act32, act256, row, act_parts);
        });
    }
}

void rope_store_on_host(float* q, const float* k, const float* v, int64_t n_tokens, int64_t n_head, int64_t n_head_kv,
                        int64_t head_dim, int64_t n_pairs, const double* inv_freq, int64_t first_pos, __half* k_cache,
                        __half* v_cache, float magnitude) {
    const int64_t q_width = n_head * head_dim, kv_width = n_head_kv * head_dim;
    for (int64_t idx = 0; idx < n_tokens * (q_width + kv_width) / 2; ++idx) {
        rope_store_pair(idx, q, k, v, q_width, kv_width, head_dim, n_pairs, inv_freq, magnitude, first_pos, k_cache,
                        v_cache);
    }
}

namespace {

void check_attention_shape(const AttentionDims& dims, int64_t n_tokens, int64_t first_pos, int64_t n_split) {
    if (dims.n_head <= 0 || dims.n_head_kv <= 0 || dims.n_head % dims.n_head_kv != 0 || dims.head_dim <= 0 ||
        dims.head_dim > kMaxHeadDim || dims.head_dim % 2 != 0 || n_tokens <= 0 || first_pos < 0 || n_split < 1 ||
        n_tokens * n_split > std::max<int64_t>(n_tokens, kMaxSplitRows)) {
        throw std::invalid_argument("attention_on_host: bad shape or split count");
    }
}

}  // namespace

std::vector<float> attention_on_host(const AttentionDims& dims, const float* q, int64_t n_tokens, int64_t first_pos,
                                     int64_t n_split, const __half* k_cache, const __half* v_cache, bool fused) {
    if (fused) {
        return attention_quantized_on_host(dims, q, n_tokens, first_pos, n_split, k_cache, v_cache, 0, false).first;
    }
    check_attention_shape(dims, n_tokens, first_pos, n_split);
    std::vector<float> partials(attention_scratch_floats(dims, n_tokens));
    std::vector<float> out(static_cast<size_t>(n_tokens * dims.n_head * dims.head_dim));
    attention_into_on_host(dims, q, n_tokens, first_pos, n_split, k_cache, v_cache, partials.data(), out.data());
    return out;
}

std::pair<std::vector<float>, std::vector<uint8_t>> attention_quantized_on_host(
    const AttentionDims& dims, const float* q, int64_t n_tokens, int64_t first_pos, int64_t n_split,
    const __half* k_cache, const __half* v_cache, int act_block, bool precise) {
    check_attention_shape(dims, n_tokens, first_pos, n_split);
    if (act_block != 0 && act_block != kQK32 && act_block != kQK256) {
        throw std::invalid_argument("activation blocks are of 32 or 256 elements");
    }
    if (act_block != 0 && !attention_can_quantize(dims, act_block)) {
        throw std::invalid_argument("attention: its output cannot be quantized in the kernel here");
    }
    const int64_t q_width = dims.n_head * dims.head_dim;
    std::vector<float> partials(attention_scratch_floats(dims, n_tokens));
    std::vector<float> out(static_cast<size_t>(n_tokens * q_width));
    std::vector<unsigned> counts(static_cast<size_t>(n_tokens * dims.n_head), 0u);
    std::vector<uint8_t> act;
    ActRowsOut act_out;
    if (act_block != 0) {
        const int parts = precise ? 2 : 1;
        act.assign(n_tokens * parts * act_rows_out(nullptr, act_block, q_width).row_bytes, 0);
        act_out = act_rows_out(act.data(), act_block, q_width, parts);
    }
    attention_into_on_host(dims, q, n_tokens, first_pos, n_split, k_cache, v_cache, partials.data(), out.data(),
                           counts.data(), act_out);
    for (unsigned c : counts) {
        if (c != 0) throw std::logic_error("attention_on_host: a split count was not reset");
    }
    return {std::move(out), std::move(act)};
}

void attention_into_on_host(const AttentionDims& dims, const float* q, int64_t n_tokens, int64_t first_pos,
                            int64_t n_split, const __half* k_cache, const __half* v_cache, float* partials, float* out,
                            unsigned* split_counts, const ActRowsOut& act_out) {
    const AttnArgs a = attention_args(dims, q, n_tokens, &first_pos, n_split, k_cache, v_cache, partials);
    if (!attention_act_out_allowed(dims, split_counts, act_out)) {
        throw std::invalid_argument("attention: its output cannot be quantized in the kernel here");
    }
    if (split_counts != nullptr) {  // the fused kernel's blocks, in the device's grid order
        dispatch_attention_dims(dims.head_dim, [&](auto policy) {
            for (int64_t sp = 0; sp < n_split; ++sp) {
                for (int64_t t = 0; t < n_tokens; ++t) {
                    for (int64_t h = 0; h < dims.n_head; ++h) {
                        run_host_block<AttnShared>(kAttnWarps * kWarp, [&](const HostBlock<AttnShared>& block) {
                            attention_fused_block<decltype(policy)>(block, a, split_counts, out, act_out, h, t, sp);
                        });
                    }
                }
            }
        });
        return;
    }
    dispatch_attention_dims(dims.head_dim, [&](auto policy) {
        using Dims = decltype(policy);
        for (int64_t h = 0; h < dims.n_head; ++h) {
            for (int64_t t = 0; t < n_tokens; ++t) {
                for (int64_t sp = 0; sp < n_split; ++sp) {
                    run_host_block<AttnShared>(kAttnWarps * kWarp, [&](const HostBlock<AttnShared>& block) {
                        attention_partial_block<Dims>(block, a, h, t, sp);
                    });
                }
            }
        }
    });
    for (int64_t h = 0; h < dims.n_head; ++h) {
        for (int64_t t = 0; t < n_tokens; ++t) {
            run_host_block<CombineShared>(kCombineThreads, [&](const HostBlock<CombineShared>& block) {
                attention_combine_block(block, partials, dims.n_head, dims.head_dim, n_split, a.q_width, out, h, t);
            });
        }
    }
}

namespace {

// One matrix's product (or, with up_rows, its SwiGLU form) on x's n_tokens rows, by the host
// backend: the same launch cut, tiles and block code as the GPU's matmul; parts = 2: precise
// activations, quantized by the warp quantizers (quantize_activations' code).
std::vector<float> host_backend_matmul(int32_t weight_type, const uint8_t* rows, const uint8_t* up_rows,
                                       int64_t n_rows, size_t row_bytes, const float* x, int64_t n_tokens, int64_t cols,
                                       bool use_mma, int parts, const ActRowsOut& swiglu_act = {},
                                       unsigned* swiglu_counts = nullptr) {
    if (!dispatch_int8_format(weight_type, [](auto) {})) not_quantized(weight_type);
    const TypeTraits& traits = type_traits(gguf_type_of(weight_type));
    if (cols <= 0 || cols % traits.block_size != 0 || row_bytes != weight_row_bytes(gguf_type_of(weight_type), cols) ||
        (weight_type != gguf_type_of(weight_type) && grouped_type(gguf_type_of(weight_type), cols) != weight_type)) {
        throw std::invalid_argument("rows of " + std::to_string(row_bytes) + " bytes are not " + std::to_string(cols) +
                                    " elements of type " + traits.name);
    }
    size_t act_row_bytes = 0;
    const int block = traits.act_format == ActFormat::Q8_32 ? kQK32 : kQK256;
    std::vector<Aligned16> act;
    if (parts == 1) {
        act = quantized_rows(x, n_tokens, cols, block, &act_row_bytes);
    } else {
        act_row_bytes = act_rows_out(nullptr, block, cols).row_bytes;
        act.resize((n_tokens * parts * act_row_bytes + 15) / 16);
        make_host_backend()->quantize_activations(traits.act_format, x, n_tokens, cols, act.data(), parts);
    }
    MatmulInput in;
    in.x = x;
    in.n = n_tokens;
    in.cols = cols;
    in.parts = parts;
    in.use_mma = use_mma;
    (block == kQK32 ? in.act32 : in.act256) = reinterpret_cast<const uint8_t*>(act.data());
    DeviceMatrix w;
    w.data = rows;
    w.type = weight_type;
    w.rows = n_rows;
    w.cols = cols;
    w.row_bytes = row_bytes;
    std::vector<float> y(static_cast<size_t>(n_tokens * n_rows));
    const std::unique_ptr<Backend> backend = make_host_backend();
    if (up_rows != nullptr) {
        DeviceMatrix up = w;
        up.data = up_rows;
        std::vector<float> up_out(y.size());
        const bool quantized = backend->matmul_swiglu(w, up, in, y.data(), up_out.data(), swiglu_act, swiglu_counts);
        if (quantized != (swiglu_act.rows != nullptr)) throw std::logic_error("matmul_swiglu: quantized unexpectedly");
    } else {
        const MatmulTarget target{&w, y.data()};
        backend->matmul_group(&target, 1, in, false);
    }
    return y;
}

}  // namespace

std::vector<float> gemv_on_host(int32_t weight_type, const uint8_t* rows, const uint8_t* up_rows, int64_t n_rows,
                                size_t row_bytes, const float* x, int64_t n_tokens, int64_t cols, bool precise) {
    return host_backend_matmul(weight_type, rows, up_rows, n_rows, row_bytes, x, n_tokens, cols, false,
                               precise ? 2 : 1);
}

std::pair<std::vector<float>, std::vector<uint8_t>> swiglu_quantized_on_host(
    int32_t weight_type, const uint8_t* rows, const uint8_t* up_rows, int64_t n_rows, size_t row_bytes, const float* x,
    int64_t n_tokens, int64_t cols, int act_block, bool precise) {
    if ((act_block != kQK32 && act_block != kQK256) || n_rows % act_block != 0) {
        throw std::invalid_argument("the SwiGLU output is quantized in whole blocks of 32 or 256 rows");
    }
    const int parts = precise ? 2 : 1;
    std::vector<uint8_t> act(static_cast<size_t>(n_tokens * parts) * act_rows_out(nullptr, act_block, n_rows).row_bytes,
                             0);
    std::vector<unsigned> counts(static_cast<size_t>(n_rows / act_block), 0u);
    const ActRowsOut act_out = act_rows_out(act.data(), act_block, n_rows, parts);
    std::vector<float> y = host_backend_matmul(weight_type, rows, up_rows, n_rows, row_bytes, x, n_tokens, cols, false,
                                               parts, act_out, counts.data());
    for (unsigned c : counts) {
        if (c != 0) throw std::logic_error("swiglu_quantized_on_host: a chunk count was not reset");
    }
    return {std::move(y), std::move(act)};
}

std::vector<float> mma_matmul_on_host(int32_t weight_type, const uint8_t* rows, int64_t n_rows, size_t row_bytes,
                                      const float* x, int64_t n_tokens, int64_t cols, bool precise) {
    if (n_tokens < kMmaMinTokens) {
        throw std::invalid_argument("the tensor-core tiles take " + std::to_string(kMmaMinTokens) + " tokens or more");
    }
    return host_backend_matmul(weight_type, rows, nullptr, n_rows, row_bytes, x, n_tokens, cols, true, precise ? 2 : 1);
}

std::pair<int32_t, double> greedy_choice_on_host(const float* logits, int64_t n) {
    if (n <= 0 || n > INT32_MAX) throw std::invalid_argument("greedy choice over " + std::to_string(n) + " logits");
    GreedyChoice choice;
    make_host_backend()->greedy_choice(logits, n, &choice);
    return {choice.token, choice.logprob};
}

float int8_dot_on_host(int32_t weight_type, const uint8_t* row, const float* x, int64_t n) {
    float total = 0.0f;
    const bool known = dispatch_gemv_reader(weight_type, [&](auto fmt) {
        using Q = decltype(fmt);
        if (n % Q::kPiece != 0) {
            throw std::invalid_argument("row of " + std::to_string(n) + " elements is not a whole number of pieces");
        }
        const std::vector<Aligned16> buf = quantized_row(x, n, act_block<Q>());
        const typename Q::ActRow act[1] = {typename Q::ActRow(reinterpret_cast<const uint8_t*>(buf.data()), n)};
        const uint8_t* const rows[1] = {row};
        constexpr int kRowThreads = GemvLaunchShape<Q>::kThreads;  // the threads gemv_int8_kernel splits a row between
        float sums[kRowThreads];
        for (int thread = 0; thread < kRowThreads; ++thread) {
            float acc[1][1] = {{0.0f}};
            int8_lane_partial<Q, 1, 1, kRowThreads>(rows, n / Q::kPiece, thread, act, acc);
            sums[thread] = acc[0][0];
        }
        for (int warp = 0; warp < kRowThreads; warp += kWarp) {  // the butterfly of each warp: its lane 0
            float* lanes = sums + warp;
            for (int width = kWarp / 2; width > 0; width /= 2) {
                for (int lane = 0; lane < width; ++lane) lanes[lane] += lanes[lane + width];
            }
        }
        total = sums[0];
        for (int warp = kWarp; warp < kRowThreads; warp += kWarp) total += sums[warp];  // then the warps in order
    });
    if (!known) not_quantized(weight_type);
    return total;
}

}  // namespace edgellama::cuda
