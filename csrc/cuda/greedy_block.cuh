// The greedy choice made on the device: the first index of a row's largest logit, and the
// log-softmax there (the log-probability a sampler reports). A greedy decode step then returns
// 16 bytes instead of the vocabulary's logits (513 KB for Llama 3), and the host skips its pass
// over them. Block code for the kernel (greedy.cu) and the tests' host execution.
#pragma once

#include <cmath>
#include <cstdint>

#include "csrc/cuda/formats.cuh"
#include "csrc/cuda/warp.cuh"

namespace edgellama::cuda {

constexpr int kGreedyThreads = 1024;
constexpr int kGreedyWarps = kGreedyThreads / kWarp;

// What a greedy step downloads.
struct GreedyChoice {
    int32_t token = 0;
    int32_t unused = 0;
    double logprob = 0.0;
};

struct GreedyShared {
    float value[kGreedyWarps];
    int32_t index[kGreedyWarps];
    double sum[kGreedyWarps];
};

// (v, i) becomes (w, j) where that is larger, or equal at a smaller index: combining in any order
// keeps the first of the largest, as numpy's argmax.
EDGELLAMA_HD void keep_first_largest(float& v, int32_t& i, float w, int32_t j) {
    if (w > v || (w == v && j < i)) {
        v = w;
        i = j;
    }
}

// The greedy choice over logits[0, n) (n < 2^31) into *out, by one block of kGreedyThreads
// threads: the first largest logit by a strided pass, the warps' butterflies and the warps in
// order; then sum_i exp(logits[i] - max) in double the same way, and log-softmax = -log(sum) at
// the largest. Every thread calls it; thread 0 writes *out.
template <class Block>
EDGELLAMA_HD void greedy_choice_block(const Block& block, const float* logits, int64_t n, GreedyChoice* out) {
    const int thread = block.thread();
    const int lane = thread % kWarp, w = thread / kWarp;
    const auto warp = block.warp();
    GreedyShared& sh = block.shared();
    float best = -INFINITY;
    int32_t best_at = INT32_MAX;
    for (int64_t i = thread; i < n; i += kGreedyThreads) keep_first_largest(best, best_at, logits[i], static_cast<int32_t>(i));
#pragma unroll
    for (int o = kWarp / 2; o > 0; o >>= 1) {
        keep_first_largest(best, best_at, warp.shfl_xor(best, o), warp.shfl_xor(best_at, o));
    }
    if (lane == 0) {
        sh.value[w] = best;
        sh.index[w] = best_at;
    }
    block.sync();
    for (int k = 0; k < kGreedyWarps; ++k) keep_first_largest(best, best_at, sh.value[k], sh.index[k]);
    if (best_at == INT32_MAX) best_at = 0;  // only NaNs: no largest
    double sum = 0.0;
    for (int64_t i = thread; i < n; i += kGreedyThreads) sum += static_cast<double>(expf(logits[i] - best));
    sum = warp_reduce_sum(warp, sum);
    if (lane == 0) sh.sum[w] = sum;
    block.sync();
    if (thread == 0) {
        double total = 0.0;
        for (int k = 0; k < kGreedyWarps; ++k) total += sh.sum[k];
        out->token = best_at;
        out->logprob = static_cast<double>(logits[best_at]) - static_cast<double>(best) - log(total);
    }
}

}  // namespace edgellama::cuda
