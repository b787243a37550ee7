// Fused causal grouped-query attention over the fp16 KV cache (split over positions), as the code
// of one thread block, written once for any Block (DeviceBlock here; host_warp.h's HostBlock runs
// it on host threads for the tests). attention.cu launches it.
//
// Pass 1: a thread block per (query head, token, split of the positions); its warps take
// positions kPosPerStep at a time, each keeping an online softmax (running max, running sum,
// weighted value sum over the dims the lane holds), and the block merges its warps into one
// partial (max, sum, unnormalised output). Pass 2 merges the splits of each (head, token) and
// divides. Splitting the positions gives a decode step enough blocks to fill the GPU on long
// contexts. The fused form runs both passes in one kernel: the last of a (head, token)'s split
// blocks to finish merges them (attention_fused_block).
#pragma once

#include <cmath>
#include <cstdint>
#include <type_traits>

#include <cuda_fp16.h>

#include "csrc/cuda/act_quant.cuh"
#include "csrc/cuda/formats.cuh"
#include "csrc/cuda/ops.h"
#include "csrc/cuda/warp.cuh"

namespace edgellama::cuda {

constexpr int kAttnWarps = 8;  // a split of 64 positions is two steps of 4 positions a warp
constexpr int kPosPerStep = 4;     // positions a warp scores at once, so their loads overlap
constexpr int64_t kMinChunk = 64;  // positions below which a split is not worth its block
constexpr int64_t kMaxSplitRows = 128;  // n_tokens * n_split stays below max(n_tokens, this)

struct AttnArgs {
    const float* q;
    const __half* k_cache;
    const __half* v_cache;
    float* partials;
    const int64_t* first_pos;  // on the device
    int64_t n_head, head_dim, q_width, kv_width, group, n_tokens, n_split;
    float scale;
};

// The blocks' shared memory: pass 1's per-warp partials, pass 2's split weights (both, and
// whether this block merges, in the fused form).
struct CombineShared {
    float weight[kMaxSplitRows];
};
struct AttnShared : CombineShared {
    float m[kAttnWarps], l[kAttnWarps];
    float acc[kAttnWarps][kMaxHeadDim];
    bool last;
};


// Which dimensions of a head a lane holds and how it reads them from an fp16 cache row.
// Any even head_dim up to 256: dims lane, lane + 32, ..., one half at a time.
struct StridedDims {
    static constexpr int kPerLane = kMaxHeadDim / kWarp;
    EDGELLAMA_HD static int64_t dim(int lane, int i) { return lane + kWarp * i; }
    EDGELLAMA_HD static void load(const __half* row, int lane, int64_t head_dim, float (&v)[kPerLane]) {
#pragma unroll
        for (int i = 0; i < kPerLane; ++i) {
            const int64_t d = dim(lane, i);
            v[i] = d < head_dim ? __half2float(row[d]) : 0.0f;
        }
    }
};

// head_dim == 32 * kVec (64, 128, 256): dims kVec * lane .. + kVec - 1, one vector load a row, so a
// warp reads a key or value row in one coalesced instruction.
template <int kVec>
struct ContiguousDims {
    static_assert(kVec == 2 || kVec == 4 || kVec == 8, "vector loads of 4, 8 or 16 bytes");
    static constexpr int kPerLane = kVec;
    EDGELLAMA_HD static int64_t dim(int lane, int i) { return kVec * lane + i; }
    EDGELLAMA_HD static void load(const __half* row, int lane, int64_t, float (&v)[kVec]) {
        using Vector = std::conditional_t<kVec == 2, uint32_t, std::conditional_t<kVec == 4, uint2, uint4>>;
        const Vector raw = *reinterpret_cast<const Vector*>(row + kVec * lane);  // aligned: rows are head_dim halves apart
        uint32_t words[kVec / 2];
        memcpy(words, &raw, sizeof raw);  // the vector's words, without reading it through another type
#pragma unroll
        for (int i = 0; i < kVec / 2; ++i) {
            v[2 * i] = half_bits_to_float(static_cast<uint16_t>(words[i] & 0xffffu));
            v[2 * i + 1] = half_bits_to_float(static_cast<uint16_t>(words[i] >> 16));
        }
    }
};

template <class Dims, class Block>
EDGELLAMA_HD void attention_partial_block(const Block& block, const AttnArgs& a, int64_t h, int64_t t, int64_t sp) {
    constexpr int kPerLane = Dims::kPerLane;
    const int thread = block.thread();
    const int lane = thread % kWarp, warp = thread / kWarp;
    const auto warp_ops = block.warp();
    AttnShared& shared = block.shared();
    const int64_t first_pos = *a.first_pos;
    const int64_t n_pos = first_pos + t + 1;
    // Every block of a query derives the same chunk from the same position: at least kMinChunk
    // positions, so splits past the context stay empty.
    const int64_t even_chunk = (first_pos + a.n_tokens + a.n_split - 1) / a.n_split;
    const int64_t chunk = even_chunk > kMinChunk ? even_chunk : kMinChunk;
    const int64_t begin = sp * chunk, end = std::min(n_pos, begin + chunk);
    const int64_t kv_off = (h / a.group) * a.head_dim;
    const float* qh = a.q + t * a.q_width + h * a.head_dim;

    float qreg[kPerLane], acc[kPerLane];
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
        const int64_t d = Dims::dim(lane, i);
        qreg[i] = d < a.head_dim ? qh[d] : 0.0f;
        acc[i] = 0.0f;
    }
    float m = -INFINITY, l = 0.0f;
    for (int64_t pos0 = begin + warp * kPosPerStep; pos0 < end; pos0 += kAttnWarps * kPosPerStep) {
        float s[kPosPerStep];
#pragma unroll
        for (int u = 0; u < kPosPerStep; ++u) {  // the positions' key loads are all in flight at once
            s[u] = 0.0f;
            if (pos0 + u >= end) continue;  // warp-uniform
            float k[kPerLane];
            Dims::load(a.k_cache + (pos0 + u) * a.kv_width + kv_off, lane, a.head_dim, k);
#pragma unroll
            for (int i = 0; i < kPerLane; ++i) s[u] = fmaf(qreg[i], k[i], s[u]);
        }
        float m_new = m;
        warp_reduce_sum_n(warp_ops, s);
#pragma unroll
        for (int u = 0; u < kPosPerStep; ++u) {
            s[u] *= a.scale;
            if (pos0 + u < end) m_new = fmaxf(m_new, s[u]);
        }
        const float corr = expf(m - m_new);
        float p[kPosPerStep];
        l *= corr;
#pragma unroll
        for (int u = 0; u < kPosPerStep; ++u) {
            p[u] = pos0 + u < end ? expf(s[u] - m_new) : 0.0f;
            l += p[u];
        }
#pragma unroll
        for (int i = 0; i < kPerLane; ++i) acc[i] *= corr;
#pragma unroll
        for (int u = 0; u < kPosPerStep; ++u) {
            if (pos0 + u >= end) continue;
            float v[kPerLane];
            Dims::load(a.v_cache + (pos0 + u) * a.kv_width + kv_off, lane, a.head_dim, v);
#pragma unroll
            for (int i = 0; i < kPerLane; ++i) acc[i] = fmaf(p[u], v[i], acc[i]);
        }
        m = m_new;
    }

    if (lane == 0) {
        shared.m[warp] = m;
        shared.l[warp] = l;
    }
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
        const int64_t d = Dims::dim(lane, i);
        if (d < a.head_dim) shared.acc[warp][d] = acc[i];
    }
    block.sync();
    float mx = -INFINITY;
#pragma unroll
    for (int w = 0; w < kAttnWarps; ++w) mx = fmaxf(mx, shared.m[w]);
    float* out = a.partials + ((t * a.n_head + h) * a.n_split + sp) * (a.head_dim + 2);
    if (mx == -INFINITY) {  // no position of this split is visible to this token
        for (int64_t d = thread; d < a.head_dim + 2; d += block.threads()) out[d] = d == 0 ? -INFINITY : 0.0f;
        return;
    }
    float weight[kAttnWarps];
    float total = 0.0f;
#pragma unroll
    for (int w = 0; w < kAttnWarps; ++w) {
        weight[w] = expf(shared.m[w] - mx);  // 0 for a warp that saw no position (max -inf)
        total += shared.l[w] * weight[w];
    }
    if (thread == 0) {
        out[0] = mx;
        out[1] = total;
    }
    for (int64_t d = thread; d < a.head_dim; d += block.threads()) {
        float v = 0.0f;
#pragma unroll
        for (int w = 0; w < kAttnWarps; ++w) v += shared.acc[w][d] * weight[w];
        out[2 + d] = v;
    }
}

// Pass 2 for query head h, token t: merges the n_split partials (one thread block).
template <class Block>
EDGELLAMA_HD void attention_combine_block(const Block& block, const float* partials, int64_t n_head, int64_t head_dim,
                                          int64_t n_split, int64_t q_width, float* out, int64_t h, int64_t t) {
    const int thread = block.thread();
    const float* part = partials + (t * n_head + h) * n_split * (head_dim + 2);
    float* weight = block.shared().weight;  // exp(split max - overall max); n_split <= kMaxSplitRows
    float mx = -INFINITY;
    for (int64_t s = 0; s < n_split; ++s) mx = fmaxf(mx, load_cg(part + s * (head_dim + 2)));
    for (int64_t s = thread; s < n_split; s += block.threads()) {
        weight[s] = expf(load_cg(part + s * (head_dim + 2)) - mx);
    }
    block.sync();
    float total = 0.0f;
    for (int64_t s = 0; s < n_split; ++s) total += load_cg(part + s * (head_dim + 2) + 1) * weight[s];
    const float inv = 1.0f / total;
    for (int64_t d = thread; d < head_dim; d += block.threads()) {
        float v = 0.0f;
        for (int64_t s = 0; s < n_split; ++s) v += load_cg(part + s * (head_dim + 2) + 2 + d) * weight[s];
        out[t * q_width + h * head_dim + d] = v * inv;
    }
}

constexpr int kCombineThreads = 128;  // threads of a pass-2 block

// The heads whose outputs the fused form merges together, so that they quantize into whole
// activation blocks: 1, or block / head_dim when a block spans heads (Q8_256 over heads of 128).
EDGELLAMA_HD int64_t heads_per_merge(int64_t head_dim, const ActRowsOut& act) {
    return act.rows != nullptr && act.block > head_dim ? act.block / head_dim : 1;
}

// The n merged floats x (at element `first` of token t's row of cols) quantized into act's row t
// (and its residual row with precise activations), a warp a block, as quantize_activations does
// (the same lanes, so the same bits). x was written by this block's threads (synchronized since):
// plain loads, never the read-only cache.
template <class Block>
EDGELLAMA_HD void quantize_merged(const Block& block, const float* x, int64_t n, int64_t first, int64_t cols,
                                  int64_t t, const ActRowsOut& act) {
    uint8_t* row = act.token_row(t);
    for (int64_t b = block.thread() / kWarp; b < n / act.block; b += block.threads() / kWarp) {  // warp-uniform
        quantize_block_warp(block.warp(), act.block, [&](int i) { return x[b * act.block + i]; }, row, cols,
                            first / act.block + b, residual_offset(act.parts, act.row_bytes));
    }
}

// Both passes for split sp of query head h, token t: the split's partial, then, in the block that
// finishes the last split of the merge group's heads (heads_per_merge), their merges into out and,
// with act_out, their quantization. counts: one per (token, merge group), zero before the launch
// and after it.
template <class Dims, class Block>
EDGELLAMA_HD void attention_fused_block(const Block& block, const AttnArgs& a, unsigned* counts, float* out,
                                        const ActRowsOut& act_out, int64_t h, int64_t t, int64_t sp) {
    attention_partial_block<Dims>(block, a, h, t, sp);
    const int64_t group = heads_per_merge(a.head_dim, act_out);
    const int64_t g = h / group;
    const unsigned blocks = static_cast<unsigned>(a.n_split * group);  // the merge group's split blocks
    if (!last_to_finish(block, counts + t * (a.n_head / group) + g, 1u, blocks)) return;
    for (int64_t head = g * group; head < (g + 1) * group; ++head) {
        attention_combine_block(block, a.partials, a.n_head, a.head_dim, a.n_split, a.q_width, out, head, t);
        block.sync();  // the split weights are the next head's; the merged floats are read below
    }
    if (act_out.rows != nullptr) {
        const int64_t first = g * group * a.head_dim;
        quantize_merged(block, out + t * a.q_width + first, group * a.head_dim, first, a.q_width, t, act_out);
    }
}

// The arguments of pass 1 (partials: attention_scratch_floats(dims, n_tokens) floats).
inline AttnArgs attention_args(const AttentionDims& dims, const float* q, int64_t n_tokens, const int64_t* first_pos,
                               int64_t n_split, const __half* k_cache, const __half* v_cache, float* partials) {
    AttnArgs a;
    a.q = q;
    a.k_cache = k_cache;
    a.v_cache = v_cache;
    a.partials = partials;
    a.n_head = dims.n_head;
    a.head_dim = dims.head_dim;
    a.q_width = dims.n_head * dims.head_dim;
    a.kv_width = dims.n_head_kv * dims.head_dim;
    a.group = dims.n_head / dims.n_head_kv;
    a.first_pos = first_pos;
    a.n_tokens = n_tokens;
    a.n_split = n_split;
    a.scale = 1.0f / std::sqrt(static_cast<float>(dims.head_dim));
    return a;
}

// fn(Dims{}) with the lane-to-dimension policy for a head size: Llama's sizes (64, 128, 256) read
// whole rows in one vector load a lane, others one half at a time.
template <class Fn>
void dispatch_attention_dims(int64_t head_dim, Fn&& fn) {
    switch (head_dim) {
        case 64: fn(ContiguousDims<2>{}); return;
        case 128: fn(ContiguousDims<4>{}); return;
        case 256: fn(ContiguousDims<8>{}); return;
        default: fn(StridedDims{}); return;
    }
}

}  // namespace edgellama::cuda
