// RMSNorm, RoPE (with the KV-cache store), SwiGLU: the kernels and their launches (the block and
// thread code: norm_rope.cuh).
#include "csrc/cuda/act_quant.cuh"
#include "csrc/cuda/norm_rope.cuh"
#include "csrc/cuda/ops.h"

namespace edgellama::cuda {

namespace {

__global__ void __launch_bounds__(kNormThreads)
rms_norm_kernel(const float* __restrict__ x, const float* __restrict__ weight, float* __restrict__ out, int64_t n,
                float eps, uint8_t* __restrict__ act32, uint8_t* __restrict__ act256, int act_parts) {
    wait_for_prior_kernels();
    __shared__ NormShared shared;
    rms_norm_block(DeviceBlock<NormShared>{shared}, x, weight, out, n, eps, act32, act256, blockIdx.x, act_parts);
}

// One thread per (token, element pair): rope_store_pair.
__global__ void rope_store_kernel(float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
                                  int64_t n_tokens, int64_t q_width, int64_t kv_width, int64_t head_dim,
                                  int64_t n_pairs, const double* __restrict__ inv_freq,
                                  const int64_t* __restrict__ first_pos, __half* __restrict__ k_cache,
                                  __half* __restrict__ v_cache, float magnitude) {
    wait_for_prior_kernels();
    const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (idx >= n_tokens * (q_width + kv_width) / 2) return;
    rope_store_pair(idx, q, k, v, q_width, kv_width, head_dim, n_pairs, inv_freq, magnitude, *first_pos, k_cache,
                    v_cache);
}

__global__ void swiglu_kernel(float* __restrict__ gate, const float* __restrict__ up, int64_t n) {
    wait_for_prior_kernels();
    const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= n) return;
    gate[i] = silu_times(gate[i], up[i]);
}

constexpr int kThreads = 256;

}  // namespace

void rms_norm(const float* x, const float* weight, float* out, int64_t n_rows, int64_t n, float eps, void* act32,
              void* act256, int act_parts, cudaStream_t stream) {
    if (n_rows <= 0) return;
    if (act_parts != 1 && act_parts != 2) throw CudaError("rms_norm: a row is one or two int8 rows");
    if ((act32 != nullptr && n % kQK32 != 0) || (act256 != nullptr && n % kQK256 != 0)) {
        throw CudaError("rms_norm: rows of " + std::to_string(n) + " are not whole activation blocks");
    }
    launch("rms_norm_kernel", rms_norm_kernel, static_cast<unsigned>(n_rows), kNormThreads, stream, x, weight, out, n,
           eps, static_cast<uint8_t*>(act32), static_cast<uint8_t*>(act256), act_parts);
}

void rope_store(const RopeStore& r, int64_t n_tokens, cudaStream_t stream) {
    const int64_t q_width = r.n_head * r.head_dim, kv_width = r.n_head_kv * r.head_dim;
    const int64_t total = n_tokens * (q_width + kv_width) / 2;
    if (total <= 0) return;
    launch("rope_store_kernel", rope_store_kernel, ceil_div(total, kThreads), kThreads, stream, r.q, r.k, r.v, n_tokens,
           q_width, kv_width, r.head_dim, r.n_pairs, r.inv_freq, r.first_pos, r.k_cache, r.v_cache, r.magnitude);
}

void swiglu(float* gate, const float* up, int64_t n, cudaStream_t stream) {
    if (n <= 0) return;
    launch("swiglu_kernel", swiglu_kernel, ceil_div(n, kThreads), kThreads, stream, gate, up, n);
}

}  // namespace edgellama::cuda
