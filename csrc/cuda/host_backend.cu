// The forward step's host backend (backend.h), for tests on machines without a GPU: host memory,
// and every operation run by the kernels' own warp and block code on host fibers
// (host_warp.h), cut into launches, tiles and warps as the device launches cut them. Only the
// launch wrappers themselves and the graphs are not exercised. Slow: tiny models only.
#include <cstring>
#include <vector>

#include "csrc/cuda/act_quant.cuh"
#include "csrc/cuda/attention_block.cuh"
#include "csrc/cuda/backend.h"
#include "csrc/cuda/gemv_rows.cuh"
#include "csrc/cuda/greedy_block.cuh"
#include "csrc/cuda/host_decode.h"
#include "csrc/cuda/host_warp.h"
#include "csrc/cuda/mma_tiles.cuh"
#include "csrc/cuda/norm_rope.cuh"
#include "csrc/cuda/row_segments.cuh"

namespace edgellama::cuda {

namespace {

// Long prefills of quantized weights take the tensor-core tiles (as mma_applies, sm_80 assumed).
bool host_mma_applies(int32_t type, const MatmulInput& in) {
    return in.use_mma && in.n >= kMmaMinTokens && dispatch_int8_format(type, [](auto) {});
}

// One launch of the GEMV kernels: tiles of kGemmTile activation rows (tokens, or with precise
// activations two rows a token), blocks of Shape's rows.
// rows_of_block(block, tile start, tile size, NT constant, first row) runs one block's code.
template <class Shape, int kSharedRows, class RowsOfBlock>
void gemv_blocks(int64_t total_rows, int64_t n_act_rows, int parts, RowsOfBlock&& rows_of_block) {
    using Shared = GemvShared<kSharedRows, kGemmTile>;  // room for every tile width
    run_host_block<Shared>(kGemvWarps * kWarp, [&](const HostBlock<Shared>& block) {
        for_each_tile(n_act_rows, [&](int64_t start, int tile, auto nt) {
            for (int64_t first = 0; first < total_rows; first += Shape::kRowsPerBlock) {
                rows_of_block(block, start, tile, nt, first);
            }
        }, parts);
    });
}

template <class Q>
void gemv_launch(const RowSegments& seg, size_t row_bytes, const MatmulInput& in, bool accumulate) {
    size_t act_bytes = 0;
    const uint8_t* act = activation_blocks<Q>(in, &act_bytes);
    using Shape = GemvLaunchShape<Q>;
    gemv_blocks<Shape, Shape::kRows>(seg.total_rows(), in.n * in.parts, in.parts, [&](const auto& block,
                                                                                      int64_t start, int tile,
                                                                                      auto nt, int64_t first) {
        gemv_int8_rows<Q, decltype(nt)::value, Shape>(block, at_token(seg, start / in.parts), row_bytes, in.cols,
                                                      act + start * act_bytes, act_bytes, tile, accumulate, first,
                                                      in.parts);
    });
}

// One launch of the tensor-core tiles: a warp per 32 rows x (8 * tiles) tokens.
template <class Q>
void mma_launch(const RowSegments& seg, size_t row_bytes, const MatmulInput& in, bool accumulate) {
    size_t act_bytes = 0;
    const uint8_t* act = activation_blocks<Q>(in, &act_bytes);
    const int64_t act_rows = in.n * in.parts;
    const MmaProduct m{seg, row_bytes, in.cols, act, act_bytes, act_rows, accumulate, in.parts};
    for (int64_t row0 = 0; row0 < seg.total_rows(); row0 += 16 * kMmaRowTiles) {
        for (int64_t tok0 = 0; tok0 < act_rows; tok0 += 8 * mma_token_tiles<Q>()) {
            run_host_warp([&](const HostWarp& warp) { mma_tile<Q>(warp, m, row0, tok0); });
        }
    }
}

// One launch of the float GEMV (F32/F16/BF16 weights): tiles of kGemmTile tokens, a warp a row.
void float_launch(const DeviceMatrix& first, const RowSegments& seg, const MatmulInput& in, bool accumulate) {
    const bool known = dispatch_format(first.type, [&](auto fmt) {
        using Fmt = decltype(fmt);
        run_host_warp([&](const HostWarp& warp) {
            for_each_tile(in.n, [&](int64_t start, int tile, auto nt) {
                const RowSegments s = at_token(seg, start);
                for (int64_t row = 0; row < seg.total_rows(); ++row) {
                    gemv_float_row<Fmt, decltype(nt)::value>(warp, s, first.row_bytes, in.cols / Fmt::kPiece,
                                                             in.x + start * in.cols, in.cols, tile, accumulate, row);
                }
            });
        });
    });
    if (!known) throw CudaError("matmul: unsupported weight type " + std::to_string(first.type));
}

class HostBackend final : public Backend {
public:
    void allocate(DeviceBuffer& buffer, size_t bytes, const std::string& what) override {
        buffer.allocate_host(bytes, what);
    }
    void to_device(void* dst, const void* src, size_t bytes, const char*) override { std::memcpy(dst, src, bytes); }
    void to_host(void* dst, const void* src, size_t bytes, const char*) override { std::memcpy(dst, src, bytes); }
    void synchronize() override {}
    void decode_step(int64_t, const std::function<void()>& enqueue) override { enqueue(); }

    void dequantize_rows(const DeviceMatrix& w, const int32_t* ids, int64_t n, float* out) override {
        const bool known = dispatch_format(w.type, [&](auto fmt) {
            using Fmt = decltype(fmt);
            for (int64_t t = 0; t < n; ++t) {
                const uint8_t* row = w.data + static_cast<size_t>(ids[t]) * w.row_bytes;
                for (int64_t p = 0; p < w.cols / Fmt::kPiece; ++p) {
                    float* dst = out + t * w.cols + p * Fmt::kPiece;
                    Fmt::visit(row, p, [&](int i, float v) { dst[i] = v; });
                }
            }
        });
        if (!known) throw CudaError("dequantize_rows: unsupported weight type " + std::to_string(w.type));
    }

    void rms_norm(const float* x, const float* weight, float* out, int64_t n_rows, int64_t n, float eps, void* act32,
                  void* act256, int act_parts) override {
        rms_norm_on_host(x, weight, out, n_rows, n, eps, static_cast<uint8_t*>(act32), static_cast<uint8_t*>(act256),
                         act_parts);
    }

    void quantize_activations(ActFormat format, const float* x, int64_t n_rows, int64_t cols, void* out,
                              int parts) override {
        const size_t row_bytes = act_row_bytes(format, cols);
        for (int64_t r = 0; r < n_rows; ++r) {
            quantize_act_row_on_host(format == ActFormat::Q8_32 ? kQK32 : kQK256, x + r * cols, cols,
                                     static_cast<uint8_t*>(out) + r * parts * row_bytes, parts);
        }
    }

    void matmul_group(const MatmulTarget* targets, int count, const MatmulInput& in, bool accumulate) override {
        for_each_launch_group(targets, count, in.cols, [&](const DeviceMatrix& first, const RowSegments& seg) {
            const bool quantized = host_mma_applies(first.type, in)
                                       ? dispatch_int8_format(first.type, [&](auto fmt) {
                                             mma_launch<decltype(fmt)>(seg, first.row_bytes, in, accumulate);
                                         })
                                       : dispatch_gemv_reader(first.type, [&](auto fmt) {
                                             gemv_launch<decltype(fmt)>(seg, first.row_bytes, in, accumulate);
                                         });
            if (!quantized) float_launch(first, seg, in, accumulate);
        });
    }

    bool matmul_swiglu(const DeviceMatrix& w_gate, const DeviceMatrix& w_up, const MatmulInput& in, float* gate,
                       float* up, const ActRowsOut& act_out, unsigned* chunk_counts) override {
        if (!host_mma_applies(w_gate.type, in) && swiglu_fusable(w_gate, w_up, in.cols)) {
            const RowSegments seg = swiglu_segments(w_gate, w_up, gate);
            const ActRowsOut quantized = swiglu_act_out(w_gate, act_out, chunk_counts, in.parts);
            const bool fused = dispatch_gemv_reader(w_gate.type, [&](auto fmt) {
                using Q = decltype(fmt);
                size_t act_bytes = 0;
                const uint8_t* act = activation_blocks<Q>(in, &act_bytes);
                using Shape = GemvLaunchShape<Q>;
                gemv_blocks<Shape, 2 * Shape::kRows>(w_gate.rows, in.n * in.parts, in.parts, [&](const auto& block,
                                                                                                  int64_t start,
                                                                                                  int tile, auto nt,
                                                                                                  int64_t first) {
                    const int64_t token = start / in.parts;
                    RowSegments s = seg;
                    s.y[0] += token * w_gate.rows;
                    gemv_int8_swiglu_rows<Q, decltype(nt)::value, Shape>(block, s, w_gate.row_bytes, in.cols,
                                                                         act + start * act_bytes, act_bytes, tile,
                                                                         first, at_token(quantized, token),
                                                                         chunk_counts, in.parts);
                });
            });
            if (fused) return quantized.rows != nullptr;
        }
        const MatmulTarget both[2] = {{&w_gate, gate}, {&w_up, up}};
        matmul_group(both, 2, in, false);
        for (int64_t i = 0; i < in.n * w_gate.rows; ++i) gate[i] = silu_times(gate[i], up[i]);
        return false;
    }

    void rope_store(const RopeStore& r, int64_t n_tokens) override {
        rope_store_on_host(r.q, r.k, r.v, n_tokens, r.n_head, r.n_head_kv, r.head_dim, r.n_pairs, r.inv_freq,
                           *r.first_pos, r.k_cache, r.v_cache, r.magnitude);
    }

    bool matmul_qkv_rope(const MatmulTarget (&qkv)[3], const MatmulInput& in, const RopeStore& rope,
                         unsigned* head_counts) override {
        if (head_counts == nullptr || !qkv_rope_fusable(qkv, in, rope)) return false;
        for_each_launch_group(qkv, 3, in.cols, [&](const DeviceMatrix& first, const RowSegments& seg) {
            dispatch_gemv_reader(first.type, [&](auto fmt) {
                using Q = decltype(fmt);
                using Shape = GemvLaunchShape<Q>;
                size_t act_bytes = 0;
                const uint8_t* act = activation_blocks<Q>(in, &act_bytes);
                gemv_blocks<Shape, Shape::kRows>(seg.total_rows(), 1, 1, [&](const auto& block, int64_t, int, auto nt,
                                                                        int64_t first_row) {
                    if constexpr (decltype(nt)::value == 1) {
                        gemv_int8_rope_rows<Q, Shape>(block, seg, first.row_bytes, in.cols, act, act_bytes, first_row,
                                                      rope, head_counts);
                    }
                });
            });
        });
        return true;
    }

    void greedy_choice(const float* logits, int64_t n, void* out) override {
        run_host_block<GreedyShared>(kGreedyThreads, [&](const HostBlock<GreedyShared>& block) {
            greedy_choice_block(block, logits, n, static_cast<GreedyChoice*>(out));
        });
    }

    void attention(const AttentionDims& dims, const float* q, int64_t n_tokens, const int64_t* first_pos,
                   int64_t n_split, const __half* k_cache, const __half* v_cache, float* partials, float* out,
                   unsigned* split_counts, const ActRowsOut& act_out) override {
        attention_into_on_host(dims, q, n_tokens, *first_pos, n_split, k_cache, v_cache, partials, out, split_counts,
                               act_out);
    }
};

}  // namespace

std::unique_ptr<Backend> make_host_backend() { return std::make_unique<HostBackend>(); }

}  // namespace edgellama::cuda
