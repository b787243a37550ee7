// A thread block's rows of a quantized matmul (the int8 GEMV of decode, and of prefill tiles up to
// kGemmTile tokens): groups of warps take a few rows each and share their pieces (int8_dot.cuh:
// int8_lane_partial), then the group's threads are summed (GemvShape). Written once for any Block
// (warp.cuh): the kernels (gemv_kernel.cuh) pass DeviceBlock, the host backend HostBlock; the
// float GEMV is warp code (DeviceWarp / HostWarp).
#pragma once

#include <cstddef>
#include <cstdint>
#include <type_traits>

#include "csrc/cuda/act_quant.cuh"
#include "csrc/cuda/common.cuh"
#include "csrc/cuda/int8_dot.cuh"
#include "csrc/cuda/norm_rope.cuh"
#include "csrc/cuda/row_segments.cuh"
#include "csrc/cuda/warp.cuh"

namespace edgellama::cuda {

constexpr int kGemvWarps = 4;  // warps per thread block of the GEMV kernels

// How a GEMV block's warps share its rows: groups of kSplit warps (kThreads threads) each take
// kRows rows (every activation load serves them all) and split those rows' pieces between them.
// Splitting a row over several warps shortens each warp's chain of dependent loads (a long row's
// latency) and puts more rows' loads in flight at once; the warps' sums meet in shared memory.
template <int kSplitWarps, int kGroupRows>
struct GemvShape {
    static constexpr int kSplit = kSplitWarps;
    static constexpr int kRows = kGroupRows;
    static constexpr int kThreads = kSplit * kWarp;
    static constexpr int kRowsPerBlock = kGemvWarps / kSplit * kRows;
    static_assert(kGemvWarps % kSplit == 0, "a block holds whole row groups");
};

// The shape of the int8 GEMV launches of reader Q (the no-GPU reference, int8_dot_on_host, follows
// it): the fastest on the Llama-3-8B matrices of an H100 (scripts/gpu_check.sh, "GEMV block
// shapes"; 4 warps x 2 rows for the types not measured there).
template <class Q>
struct GemvLaunchShapeOf {
    using type = GemvShape<4, 2>;
};
template <>
struct GemvLaunchShapeOf<Int8Q4_0> {
    using type = GemvShape<2, 1>;
};
template <>
struct GemvLaunchShapeOf<Int8Q8_0> {
    using type = GemvShape<4, 1>;
};
template <>
struct GemvLaunchShapeOf<Int8KQuantWide<BlockQ4_K, false>> {
    using type = GemvShape<1, 2>;
};
// Grouped Q4_0 / Q8_0 (a lane a block) and Q6_K (two lanes a half super-block): not yet
// measured; a warp a row group gives a lane four pieces of a 4096-wide row (Q6_K: two).
template <class Grouped, bool kNibbles>
struct GemvLaunchShapeOf<Int8Block32Wide<Grouped, kNibbles>> {
    using type = GemvShape<1, 2>;
};
template <>
struct GemvLaunchShapeOf<Int8Q6_KGroupedWide> {
    using type = GemvShape<1, 2>;
};
template <class Q>
using GemvLaunchShape = typename GemvLaunchShapeOf<Q>::type;

// A block's warp sums of up to R rows x NT tokens, for the group's first thread to add up; and
// whether the block finished a chunk of rows to quantize (quantize_finished_chunk).
template <int R, int NT>
struct GemvShared {
    float partial[kGemvWarps][R][NT];
    bool last;
};

// The int8 rows of the input in the format of Q's activations; throws if they were not prepared.
template <class Q>
inline const uint8_t* activation_blocks(const MatmulInput& in, size_t* row_bytes) {
    constexpr bool k32 = std::is_same_v<typename Q::ActRow, ActRow32>;
    *row_bytes = act_row_bytes(k32 ? ActFormat::Q8_32 : ActFormat::Q8_256, in.cols);
    const uint8_t* blocks = k32 ? in.act32 : in.act256;
    if (blocks == nullptr) throw CudaError("matmul: the input was not quantized for this weight's activation format");
    return blocks;
}

// Adds acc over the threads of the calling thread's row group: each warp's butterfly, then the
// group's warps in order (warp 0's sum + warp 1's + ...). Returns true on the one thread that
// then holds the sums, the group's first. Every thread of the block calls it.
template <class Shape, int R, int NT, class Block>
EDGELLAMA_HD bool sum_over_row_group(const Block& block, float (&acc)[R][NT]) {
    const auto warp = block.warp();
#pragma unroll
    for (int r = 0; r < R; ++r) warp_reduce_sum_n(warp, acc[r]);
    if constexpr (Shape::kSplit == 1) {
        return warp.lane() == 0;
    } else {
        auto& partial = block.shared().partial;
        const int w = block.thread() / kWarp;
        if (warp.lane() == 0) {
#pragma unroll
            for (int r = 0; r < R; ++r) {
#pragma unroll
                for (int t = 0; t < NT; ++t) partial[w][r][t] = acc[r][t];
            }
        }
        block.sync();
        const bool first = block.thread() % Shape::kThreads == 0;
        if (first) {
#pragma unroll
            for (int s = 1; s < Shape::kSplit; ++s) {
#pragma unroll
                for (int r = 0; r < R; ++r) {
#pragma unroll
                    for (int t = 0; t < NT; ++t) acc[r][t] += partial[w + s][r][t];
                }
            }
        }
        block.sync();  // read before the block's next rows (host execution) overwrite them
        return first;
    }
}

// Stores (or adds) a row's sums of the tile's tokens at out + t * ld. With precise activations
// (parts = 2) the tile's n_tok rows are n_tok / 2 tokens' (blocks, residual) pairs: token t's
// output is acc[2t] + acc[2t + 1], in that order, as the CPU adds its two dots.
template <int NT>
EDGELLAMA_HD void store_row_sums(const float (&acc)[NT], int n_tok, float* out, int64_t ld, bool accumulate,
                                 int parts = 1) {
    if constexpr (NT % 2 == 0) {
        if (parts == 2) {
#pragma unroll
            for (int t = 0; t < NT / 2; ++t) {
                if (2 * t < n_tok) {
                    const float v = add_rn(acc[2 * t], acc[2 * t + 1]);
                    out[t * ld] = accumulate ? out[t * ld] + v : v;
                }
            }
            return;
        }
    }
#pragma unroll
    for (int t = 0; t < NT; ++t) {
        if (t < n_tok) out[t * ld] = accumulate ? out[t * ld] + acc[t] : acc[t];
    }
}

// Activation rows of the tile (the last one repeated past n_tok, so loads stay in bounds).
template <class ActRow, int NT>
EDGELLAMA_HD void tile_rows(const uint8_t* act, size_t act_row_bytes, int64_t cols, int n_tok, ActRow (&rows)[NT]) {
#pragma unroll
    for (int t = 0; t < NT; ++t) {
        rows[t] = ActRow(act + static_cast<size_t>(t < n_tok ? t : n_tok - 1) * act_row_bytes, cols);
    }
}

// A block's rows, block_first .. block_first + Shape::kRowsPerBlock - 1 of the launch (those below
// the total), dotted with the tile's n_tok activation rows (parts = 2: n_tok / 2 tokens' pairs of
// rows, store_row_sums). Every thread of the block calls it.
template <class Q, int NT, class Shape, class Block>
EDGELLAMA_HD void gemv_int8_rows(const Block& block, const RowSegments& seg, size_t row_bytes, int64_t cols,
                                 const uint8_t* act, size_t act_row_bytes, int n_tok, bool accumulate,
                                 int64_t block_first, int parts = 1) {
    constexpr int R = Shape::kRows;
    const int64_t total = seg.total_rows();
    const int64_t first = block_first + block.thread() / Shape::kThreads * R;
    SegmentRow where[R];
    const uint8_t* rows[R];
#pragma unroll
    for (int i = 0; i < R; ++i) {  // a row past the end re-reads the last one, unstored
        where[i] = locate_row(seg, first + i < total ? first + i : total - 1);
        rows[i] = where[i].w + static_cast<size_t>(where[i].row) * row_bytes;
    }
    typename Q::ActRow at[NT] = {};
    tile_rows<typename Q::ActRow, NT>(act, act_row_bytes, cols, n_tok, at);
    float acc[R][NT] = {};
    if (first < total) {
        int8_lane_partial<Q, NT, R, Shape::kThreads>(rows, cols / Q::kPiece, block.thread() % Shape::kThreads, at, acc);
    }
    if (!sum_over_row_group<Shape>(block, acc)) return;
#pragma unroll
    for (int i = 0; i < R; ++i) {
        if (first + i < total) {
            store_row_sums<NT>(acc[i], n_tok, where[i].y + where[i].row, where[i].ld, accumulate, parts);
        }
    }
}

// Row `row` of the launch (float weights: F32/F16/BF16) dotted with the tile's float rows x[t]
// (ldx apart): lanes stride over the row's pieces, each weight decoded once and multiplied into
// every token, then the warp sums the lanes.
template <class Fmt, int NT, class Warp>
EDGELLAMA_HD void gemv_float_row(const Warp& warp, const RowSegments& seg, size_t row_bytes, int64_t n_pieces,
                                 const float* x, int64_t ldx, int n_tok, bool accumulate, int64_t row) {
    const SegmentRow r = locate_row(seg, row);
    const uint8_t* wr = r.w + static_cast<size_t>(r.row) * row_bytes;
    const float* xt[NT];
#pragma unroll
    for (int t = 0; t < NT; ++t) xt[t] = x + static_cast<int64_t>(t < n_tok ? t : n_tok - 1) * ldx;
    float acc[NT];
#pragma unroll
    for (int t = 0; t < NT; ++t) acc[t] = 0.0f;
    for (int64_t p = warp.lane(); p < n_pieces; p += kWarp) {
        const int64_t base = p * Fmt::kPiece;
        Fmt::visit(wr, p, [&](int i, float wv) {
#pragma unroll
            for (int t = 0; t < NT; ++t) acc[t] = fmaf(wv, load_ro(xt[t] + base + i), acc[t]);
        });
    }
    warp_reduce_sum_n(warp, acc);
    if (warp.lane() == 0) store_row_sums<NT>(acc, n_tok, r.y + r.row, r.ld, accumulate);
}

// The rows of a launch of total_rows that the block starting at block_first computes.
template <class Shape>
EDGELLAMA_HD int rows_of_block(int64_t total_rows, int64_t block_first) {
    const int64_t left = total_rows - block_first;
    return static_cast<int>(left < Shape::kRowsPerBlock ? left : Shape::kRowsPerBlock);
}

// After the block stored its `rows` outputs from block_first on (of n_rows a token, y[t * n_rows
// + r]): counts them on the chunk of act.block rows they lie in, and if they complete it, this
// block quantizes the chunk's n_tok token rows into act (a warp a token, as quantize_activations:
// the same bytes; with act.parts = 2 also their residual rows) and resets the count. Every thread
// of the block calls it.
template <class Block>
EDGELLAMA_HD void quantize_finished_chunk(const Block& block, const float* y, int64_t n_rows, int n_tok,
                                          int64_t block_first, int rows, const ActRowsOut& act, unsigned* counts) {
    const int64_t chunk = block_first / act.block;
    if (!last_to_finish(block, counts + chunk, static_cast<unsigned>(rows), static_cast<unsigned>(act.block))) return;
    const auto warp = block.warp();
    const int lane = warp.lane();
    for (int t = block.thread() / kWarp; t < n_tok; t += block.threads() / kWarp) {  // warp-uniform
        const float* x = y + t * n_rows + chunk * act.block;
        uint8_t* out = act.token_row(t);
        const size_t residual = residual_offset(act.parts, act.row_bytes);
        if (act.block == kQK32) {
            quantize_block32_warp(warp, load_cg(x + lane), ActRowOut<kQK32>(out, n_rows, chunk, residual));
        } else {
            float v[8];
#pragma unroll
            for (int k = 0; k < 8; ++k) v[k] = load_cg(x + 32 * k + lane);
            quantize_block256_warp(warp, v, ActRowOut<kQK256>(out, n_rows, chunk, residual));
        }
    }
}

// seg: {gate, up} with the same rows; output row t of y[0] = silu(gate · x_t) * (up · x_t), as
// swiglu(), for the block's rows block_first .. block_first + Shape::kRowsPerBlock - 1 (each
// group's gate rows and the same up rows computed together); with act_out.rows, also quantized
// into act_out chunk by chunk (quantize_finished_chunk; n_rows a multiple of act_out.block).
// parts = 2 (precise activations): the n_tok rows are n_tok / 2 tokens' pairs, each product the
// sum of its pair (store_row_sums) before the SwiGLU; act_out then has act_out.parts = 2 too.
// Every thread of the block calls it.
template <class Q, int NT, class Shape, class Block>
EDGELLAMA_HD void gemv_int8_swiglu_rows(const Block& block, const RowSegments& seg, size_t row_bytes, int64_t cols,
                                        const uint8_t* act, size_t act_row_bytes, int n_tok, int64_t block_first,
                                        const ActRowsOut& act_out, unsigned* chunk_counts, int parts = 1) {
    static_assert(kQK32 % Shape::kRowsPerBlock == 0, "a block's rows lie in one chunk of activation rows");
    constexpr int R = Shape::kRows;
    const int64_t n_rows = seg.rows[0];
    const int64_t first = block_first + block.thread() / Shape::kThreads * R;
    const uint8_t* rows[2 * R];  // gate rows, then the same up rows
#pragma unroll
    for (int i = 0; i < R; ++i) {
        const int64_t r = first + i < n_rows ? first + i : n_rows - 1;
        rows[i] = seg.w[0] + static_cast<size_t>(r) * row_bytes;
        rows[R + i] = seg.w[1] + static_cast<size_t>(r) * row_bytes;
    }
    typename Q::ActRow at[NT] = {};
    tile_rows<typename Q::ActRow, NT>(act, act_row_bytes, cols, n_tok, at);
    float acc[2 * R][NT] = {};
    if (first < n_rows) {
        int8_lane_partial<Q, NT, 2 * R, Shape::kThreads>(rows, cols / Q::kPiece, block.thread() % Shape::kThreads, at,
                                                         acc);
    }
    if (sum_over_row_group<Shape>(block, acc)) {
#pragma unroll
        for (int i = 0; i < R; ++i) {
#pragma unroll
            for (int t = 0; t < NT; ++t) {
                if (t >= n_tok || first + i >= n_rows) continue;
                if (parts == 1) {
                    seg.y[0][t * n_rows + first + i] = silu_times(acc[i][t], acc[R + i][t]);
                } else if (t % 2 == 0 && t + 1 < NT) {  // t + 1 < NT: always, with parts = 2 (NT even)
                    seg.y[0][t / 2 * n_rows + first + i] =
                        silu_times(add_rn(acc[i][t], acc[i][t + 1]), add_rn(acc[R + i][t], acc[R + i][t + 1]));
                }
            }
        }
    }
    if (act_out.rows != nullptr) {
        quantize_finished_chunk(block, seg.y[0], n_rows, n_tok / parts, block_first,
                                rows_of_block<Shape>(n_rows, block_first), act_out, chunk_counts);
    }
}

// The RoPE work a finished head of a Q/K/V launch carries (matmul_qkv_rope): query head h
// (head_dim rows of wq: its count is h), or KV head g (head_dim rows of wk and the same of wv,
// counted together at n_head + g: one thread rotates a key pair and stores it with its value pair).
struct QkvHead {
    int64_t count = 0;       // index of its count
    unsigned rows = 0;       // the rows that complete it
    int64_t first_pair = 0;  // its first element pair in rope_store_pair's numbering of a token's pairs
};
EDGELLAMA_HD QkvHead qkv_head_of(const SegmentRow& where, const RopeStore& rope) {
    const int64_t head = where.row / rope.head_dim;
    const unsigned head_rows = static_cast<unsigned>(rope.head_dim);
    if (where.y == rope.q) return QkvHead{head, head_rows, head * rope.head_dim / 2};
    const int64_t q_width = rope.n_head * rope.head_dim;
    return QkvHead{rope.n_head + head, 2 * head_rows, (q_width + head * rope.head_dim) / 2};
}

// A block's rows of a one-token Q/K/V launch (rows of one head: Shape::kRowsPerBlock divides
// head_dim), then, if they complete their head, that head's RoPE and cache store by this block:
// rope_store_pair for each of its pairs, reading what other blocks wrote through the L2.
// Every thread of the block calls it.
template <class Q, class Shape, class Block>
EDGELLAMA_HD void gemv_int8_rope_rows(const Block& block, const RowSegments& seg, size_t row_bytes, int64_t cols,
                                      const uint8_t* act, size_t act_row_bytes, int64_t block_first,
                                      const RopeStore& rope, unsigned* head_counts) {
    gemv_int8_rows<Q, 1, Shape>(block, seg, row_bytes, cols, act, act_row_bytes, 1, false, block_first);
    const unsigned rows = static_cast<unsigned>(rows_of_block<Shape>(seg.total_rows(), block_first));
    const QkvHead head = qkv_head_of(locate_row(seg, block_first), rope);
    if (!last_to_finish(block, head_counts + head.count, rows, head.rows)) return;
    const int64_t q_width = rope.n_head * rope.head_dim, kv_width = rope.n_head_kv * rope.head_dim;
    const int64_t first_pos = *rope.first_pos;
    for (int64_t p = block.thread(); p < rope.head_dim / 2; p += block.threads()) {
        rope_store_pair(head.first_pair + p, rope.q, rope.k, rope.v, q_width, kv_width, rope.head_dim, rope.n_pairs,
                        rope.inv_freq, rope.magnitude, first_pos, rope.k_cache, rope.v_cache, L2Load{});
    }
}

// Whether matmul_qkv_rope applies: one token of int8 activations (its one-token kernel has no
// room for precise activations' two rows: those take the separate GEMV and rope_store), outputs
// rope's q, k and v, and every matrix of a quantized type whose GEMV blocks' rows lie in one head.
inline bool qkv_rope_fusable(const MatmulTarget (&qkv)[3], const MatmulInput& in, const RopeStore& rope) {
    if (in.n != 1 || in.parts != 1 || qkv[0].y != rope.q || qkv[1].y != rope.k || qkv[2].y != rope.v ||
        rope.head_dim <= 0) {
        return false;
    }
    for (const MatmulTarget& target : qkv) {
        int rows_per_block = 0;
        dispatch_gemv_reader(target.w->type,
                             [&](auto fmt) { rows_per_block = GemvLaunchShape<decltype(fmt)>::kRowsPerBlock; });
        if (rows_per_block == 0 || rope.head_dim % rows_per_block != 0) return false;
    }
    return true;
}

}  // namespace edgellama::cuda
