// Fused causal grouped-query attention over the fp16 KV cache (split over positions).
//
// Pass 1: a thread block per (query head, token, split of the positions); its warps take
// positions kPosPerStep at a time, each keeping an online softmax (running max, running sum,
// weighted value sum — lane i holds dims i, i+32, ...), and the block merges its warps into one partial
// (max, sum, unnormalised output). Pass 2 merges the splits of each (head, token) and divides.
// Splitting the positions gives a decode step enough blocks to fill the GPU on long contexts.
#include <algorithm>
#include <cmath>
#include <type_traits>

#include "csrc/cuda/common.cuh"
#include "csrc/cuda/ops.h"

namespace edgellama::cuda {

namespace {

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

// Which dimensions of a head a lane holds and how it reads them from an fp16 cache row.
// Any even head_dim up to 256: dims lane, lane + 32, ..., one half at a time.
struct StridedDims {
    static constexpr int kPerLane = kMaxHeadDim / kWarp;
    __device__ static int64_t dim(int lane, int i) { return lane + kWarp * i; }
    __device__ static void load(const __half* row, int lane, int64_t head_dim, float (&v)[kPerLane]) {
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
    __device__ static int64_t dim(int lane, int i) { return kVec * lane + i; }
    __device__ static void load(const __half* row, int lane, int64_t, float (&v)[kVec]) {
        using Vector = std::conditional_t<kVec == 2, uint32_t, std::conditional_t<kVec == 4, uint2, uint4>>;
        const Vector raw = *reinterpret_cast<const Vector*>(row + kVec * lane);  // aligned: rows are head_dim halves apart
        const auto* pairs = reinterpret_cast<const __half2*>(&raw);
#pragma unroll
        for (int i = 0; i < kVec / 2; ++i) {
            const float2 f = __half22float2(pairs[i]);
            v[2 * i] = f.x;
            v[2 * i + 1] = f.y;
        }
    }
};

template <class Dims>
__global__ void __launch_bounds__(kAttnWarps * kWarp) attention_partial_kernel(AttnArgs a) {
    constexpr int kPerLane = Dims::kPerLane;
    const int64_t h = blockIdx.x, t = blockIdx.y, sp = blockIdx.z;
    const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
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
#pragma unroll
        for (int u = 0; u < kPosPerStep; ++u) {
            s[u] = warp_sum(s[u]) * a.scale;
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

    __shared__ float sm_m[kAttnWarps], sm_l[kAttnWarps];
    __shared__ float sm_acc[kAttnWarps][kMaxHeadDim];
    if (lane == 0) {
        sm_m[warp] = m;
        sm_l[warp] = l;
    }
#pragma unroll
    for (int i = 0; i < kPerLane; ++i) {
        const int64_t d = Dims::dim(lane, i);
        if (d < a.head_dim) sm_acc[warp][d] = acc[i];
    }
    __syncthreads();
    float mx = -INFINITY;
#pragma unroll
    for (int w = 0; w < kAttnWarps; ++w) mx = fmaxf(mx, sm_m[w]);
    float* out = a.partials + ((t * a.n_head + h) * a.n_split + sp) * (a.head_dim + 2);
    if (mx == -INFINITY) {  // no position of this split is visible to this token
        for (int64_t d = threadIdx.x; d < a.head_dim + 2; d += blockDim.x) out[d] = d == 0 ? -INFINITY : 0.0f;
        return;
    }
    float weight[kAttnWarps];
    float total = 0.0f;
#pragma unroll
    for (int w = 0; w < kAttnWarps; ++w) {
        weight[w] = expf(sm_m[w] - mx);  // 0 for a warp that saw no position (max -inf)
        total += sm_l[w] * weight[w];
    }
    if (threadIdx.x == 0) {
        out[0] = mx;
        out[1] = total;
    }
    for (int64_t d = threadIdx.x; d < a.head_dim; d += blockDim.x) {
        float v = 0.0f;
#pragma unroll
        for (int w = 0; w < kAttnWarps; ++w) v += sm_acc[w][d] * weight[w];
        out[2 + d] = v;
    }
}

__global__ void attention_combine_kernel(const float* __restrict__ partials, int64_t n_head, int64_t head_dim,
                                         int64_t n_split, int64_t q_width, float* __restrict__ out) {
    const int64_t h = blockIdx.x, t = blockIdx.y;
    const float* part = partials + (t * n_head + h) * n_split * (head_dim + 2);
    __shared__ float weight[kMaxSplitRows];  // exp(split max - overall max); n_split <= kMaxSplitRows
    float mx = -INFINITY;
    for (int64_t s = 0; s < n_split; ++s) mx = fmaxf(mx, part[s * (head_dim + 2)]);
    for (int64_t s = threadIdx.x; s < n_split; s += blockDim.x) weight[s] = expf(part[s * (head_dim + 2)] - mx);
    __syncthreads();
    float total = 0.0f;
    for (int64_t s = 0; s < n_split; ++s) total += part[s * (head_dim + 2) + 1] * weight[s];
    const float inv = 1.0f / total;
    for (int64_t d = threadIdx.x; d < head_dim; d += blockDim.x) {
        float v = 0.0f;
        for (int64_t s = 0; s < n_split; ++s) v += part[s * (head_dim + 2) + 2 + d] * weight[s];
        out[t * q_width + h * head_dim + d] = v * inv;
    }
}

}  // namespace

int64_t attention_splits(int64_t max_pos, int64_t n_tokens) {
    const int64_t by_length = std::max<int64_t>(1, (max_pos + kMinChunk - 1) / kMinChunk);
    return std::min(by_length, std::max<int64_t>(1, kMaxSplitRows / n_tokens));
}

size_t attention_scratch_floats(const AttentionDims& dims, int64_t n_tokens) {
    return static_cast<size_t>(dims.n_head * (dims.head_dim + 2) * std::max(n_tokens, kMaxSplitRows));
}

void attention(const AttentionDims& dims, const float* q, int64_t n_tokens, const int64_t* first_pos, int64_t n_split,
               const __half* k_cache, const __half* v_cache, float* partials, float* out, cudaStream_t stream) {
    if (n_tokens <= 0) return;
    if (n_split < 1 || n_tokens * n_split > std::max(n_tokens, kMaxSplitRows)) {
        throw CudaError("attention: " + std::to_string(n_split) + " splits exceed the scratch for " +
                        std::to_string(n_tokens) + " tokens");
    }
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
    const dim3 grid(static_cast<unsigned>(dims.n_head), static_cast<unsigned>(n_tokens), static_cast<unsigned>(a.n_split));
    switch (dims.head_dim) {  // Llama's head sizes read whole rows in one vector load a lane
        case 64: attention_partial_kernel<ContiguousDims<2>><<<grid, kAttnWarps * kWarp, 0, stream>>>(a); break;
        case 128: attention_partial_kernel<ContiguousDims<4>><<<grid, kAttnWarps * kWarp, 0, stream>>>(a); break;
        case 256: attention_partial_kernel<ContiguousDims<8>><<<grid, kAttnWarps * kWarp, 0, stream>>>(a); break;
        default: attention_partial_kernel<StridedDims><<<grid, kAttnWarps * kWarp, 0, stream>>>(a); break;
    }
    check_launch("attention_partial_kernel");
    attention_combine_kernel<<<dim3(static_cast<unsigned>(dims.n_head), static_cast<unsigned>(n_tokens)), 128, 0,
                               stream>>>(partials, dims.n_head, dims.head_dim, a.n_split, a.q_width, out);
    check_launch("attention_combine_kernel");
}

}  // namespace edgellama::cuda
