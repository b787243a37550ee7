// The attention kernels (the block code: attention_block.cuh) and their launch.
#include <algorithm>
#include <cmath>

#include "csrc/cuda/attention_block.cuh"
#include "csrc/cuda/common.cuh"
#include "csrc/cuda/ops.h"

namespace edgellama::cuda {

namespace {

template <class Dims>
__global__ void __launch_bounds__(kAttnWarps * kWarp) attention_partial_kernel(AttnArgs a) {
    wait_for_prior_kernels();
    __shared__ AttnShared shared;
    attention_partial_block<Dims>(DeviceBlock<AttnShared>{shared}, a, blockIdx.x, blockIdx.y, blockIdx.z);
}

template <class Dims>
__global__ void __launch_bounds__(kAttnWarps * kWarp)
attention_fused_kernel(AttnArgs a, unsigned* __restrict__ split_counts, float* out, ActRowsOut act_out) {
    wait_for_prior_kernels();
    __shared__ AttnShared shared;
    attention_fused_block<Dims>(DeviceBlock<AttnShared>{shared}, a, split_counts, out, act_out, blockIdx.x,
                                blockIdx.y, blockIdx.z);
}

__global__ void attention_combine_kernel(const float* __restrict__ partials, int64_t n_head, int64_t head_dim,
                                         int64_t n_split, int64_t q_width, float* __restrict__ out) {
    wait_for_prior_kernels();
    __shared__ CombineShared shared;
    attention_combine_block(DeviceBlock<CombineShared>{shared}, partials, n_head, head_dim, n_split, q_width, out,
                            blockIdx.x, blockIdx.y);
}

}  // namespace

bool attention_can_quantize(const AttentionDims& dims, int block) {
    if (dims.head_dim % block == 0) return true;
    return block % dims.head_dim == 0 && dims.n_head % (block / dims.head_dim) == 0;
}

int64_t attention_splits(int64_t max_pos, int64_t n_tokens) {
    const int64_t by_length = std::max<int64_t>(1, (max_pos + kMinChunk - 1) / kMinChunk);
    return std::min(by_length, std::max<int64_t>(1, kMaxSplitRows / n_tokens));
}

int64_t decode_graph_splits(int64_t max_pos) {
    int64_t bucket = kMinChunk;
    while (bucket < max_pos) bucket *= 2;
    return attention_splits(bucket, 1);
}

size_t attention_scratch_floats(const AttentionDims& dims, int64_t n_tokens) {
    return static_cast<size_t>(dims.n_head * (dims.head_dim + 2) * std::max(n_tokens, kMaxSplitRows));
}

void attention(const AttentionDims& dims, const float* q, int64_t n_tokens, const int64_t* first_pos, int64_t n_split,
               const __half* k_cache, const __half* v_cache, float* partials, float* out, unsigned* split_counts,
               const ActRowsOut& act_out, cudaStream_t stream) {
    if (n_tokens <= 0) return;
    if (n_split < 1 || n_tokens * n_split > std::max(n_tokens, kMaxSplitRows)) {
        throw CudaError("attention: " + std::to_string(n_split) + " splits exceed the scratch for " +
                        std::to_string(n_tokens) + " tokens");
    }
    const AttnArgs a = attention_args(dims, q, n_tokens, first_pos, n_split, k_cache, v_cache, partials);
    const dim3 grid(static_cast<unsigned>(dims.n_head), static_cast<unsigned>(n_tokens), static_cast<unsigned>(n_split));
    if (!attention_act_out_allowed(dims, split_counts, act_out)) {
        throw CudaError("attention: its output cannot be quantized in the kernel here");
    }
    if (split_counts != nullptr) {
        dispatch_attention_dims(dims.head_dim, [&](auto policy) {
            launch("attention_fused_kernel", attention_fused_kernel<decltype(policy)>, grid, kAttnWarps * kWarp, stream, a,
                   split_counts, out, act_out);
        });
        return;
    }
    dispatch_attention_dims(dims.head_dim, [&](auto policy) {
        launch("attention_partial_kernel", attention_partial_kernel<decltype(policy)>, grid, kAttnWarps * kWarp, stream,
               a);
    });
    launch("attention_combine_kernel", attention_combine_kernel,
           dim3(static_cast<unsigned>(dims.n_head), static_cast<unsigned>(n_tokens)), kCombineThreads, stream, partials,
           dims.n_head, dims.head_dim, n_split, a.q_width, out);
}

}  // namespace edgellama::cuda
