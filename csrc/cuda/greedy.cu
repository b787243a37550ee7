// The greedy choice kernel (greedy_block.cuh): one block over a row of logits.
#include "csrc/cuda/greedy_block.cuh"
#include "csrc/cuda/ops.h"

namespace edgellama::cuda {

namespace {

__global__ void __launch_bounds__(kGreedyThreads)
greedy_choice_kernel(const float* __restrict__ logits, int64_t n, GreedyChoice* __restrict__ out) {
    wait_for_prior_kernels();
    __shared__ GreedyShared shared;
    greedy_choice_block(DeviceBlock<GreedyShared>{shared}, logits, n, out);
}

}  // namespace

void greedy_choice(const float* logits, int64_t n, void* out, cudaStream_t stream) {
    if (n <= 0 || n > INT32_MAX) throw CudaError("greedy_choice: a row of " + std::to_string(n) + " logits");
    launch("greedy_choice_kernel", greedy_choice_kernel, 1, kGreedyThreads, stream, logits, n,
           static_cast<GreedyChoice*>(out));
}

}  // namespace edgellama::cuda
