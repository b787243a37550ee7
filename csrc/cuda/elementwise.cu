// RMSNorm, RoPE (with the KV-cache store), SwiGLU.
#include "csrc/cuda/common.cuh"
#include "csrc/cuda/ops.h"

namespace edgellama::cuda {

namespace {

constexpr int kNormThreads = 256;

// One block per row. The sum of squares is accumulated in double, as the CPU does.
__global__ void rms_norm_kernel(const float* __restrict__ x, const float* __restrict__ weight, float* __restrict__ out,
                                int64_t n, float eps) {
    const float* xr = x + blockIdx.x * n;
    float* orow = out + blockIdx.x * n;
    double s = 0.0;
    for (int64_t i = threadIdx.x; i < n; i += kNormThreads) s += static_cast<double>(xr[i]) * xr[i];
    __shared__ double partial[kNormThreads / kWarp];
#pragma unroll
    for (int o = kWarp / 2; o > 0; o >>= 1) s += __shfl_xor_sync(0xffffffffu, s, o);
    if (threadIdx.x % kWarp == 0) partial[threadIdx.x / kWarp] = s;
    __syncthreads();
    double total = 0.0;
#pragma unroll
    for (int w = 0; w < kNormThreads / kWarp; ++w) total += partial[w];
    const float scale = static_cast<float>(1.0 / sqrt(total / static_cast<double>(n) + eps));
    for (int64_t i = threadIdx.x; i < n; i += kNormThreads) orow[i] = __fmul_rn(__fmul_rn(xr[i], scale), weight[i]);
}

__device__ __forceinline__ void rotate(float& a, float& b, int64_t pos, double inv_freq) {
    double s, c;
    sincos(static_cast<double>(pos) * inv_freq, &s, &c);
    const float cf = static_cast<float>(c), sf = static_cast<float>(s);
    const float x = a, y = b;
    a = x * cf - y * sf;
    b = x * sf + y * cf;
}

// One thread per (token, head, pair).
__global__ void rope_q_kernel(float* q, int64_t n_tokens, int64_t n_head, int64_t head_dim, int64_t n_pairs,
                              const double* __restrict__ inv_freq, const int64_t* __restrict__ first_pos) {
    const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (idx >= n_tokens * n_head * n_pairs) return;
    const int64_t i = idx % n_pairs, head = (idx / n_pairs) % n_head, t = idx / (n_pairs * n_head);
    float* p = q + (t * n_head + head) * head_dim + 2 * i;
    rotate(p[0], p[1], *first_pos + t, inv_freq[i]);
}

// One thread per (token, element pair) of a KV row: rotate the key pair when it is a RoPE pair,
// then store key and value pairs as fp16.
__global__ void rope_store_kv_kernel(const float* __restrict__ k, const float* __restrict__ v, int64_t n_tokens,
                                     int64_t kv_width, int64_t head_dim, int64_t n_pairs,
                                     const double* __restrict__ inv_freq, const int64_t* __restrict__ first_pos,
                                     __half* __restrict__ k_cache, __half* __restrict__ v_cache) {
    const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    const int64_t half_width = kv_width / 2;
    if (idx >= n_tokens * half_width) return;
    const int64_t t = idx / half_width, e = 2 * (idx % half_width);
    const int64_t pair = (e % head_dim) / 2;
    float a = k[t * kv_width + e], b = k[t * kv_width + e + 1];
    const int64_t pos = *first_pos + t;
    if (pair < n_pairs) rotate(a, b, pos, inv_freq[pair]);
    const int64_t dst = pos * kv_width + e;
    *reinterpret_cast<__half2*>(k_cache + dst) = __floats2half2_rn(a, b);
    *reinterpret_cast<__half2*>(v_cache + dst) = __floats2half2_rn(v[t * kv_width + e], v[t * kv_width + e + 1]);
}

__global__ void swiglu_kernel(float* __restrict__ gate, const float* __restrict__ up, int64_t n) {
    const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= n) return;
    const float g = gate[i];
    gate[i] = g / (1.0f + expf(-g)) * up[i];
}

constexpr int kThreads = 256;

}  // namespace

void rms_norm(const float* x, const float* weight, float* out, int64_t n_rows, int64_t n, float eps,
              cudaStream_t stream) {
    if (n_rows <= 0) return;
    rms_norm_kernel<<<static_cast<unsigned>(n_rows), kNormThreads, 0, stream>>>(x, weight, out, n, eps);
    check_launch("rms_norm_kernel");
}

void rope_q(float* q, int64_t n_tokens, int64_t n_head, int64_t head_dim, int64_t n_pairs, const double* inv_freq,
            const int64_t* first_pos, cudaStream_t stream) {
    const int64_t total = n_tokens * n_head * n_pairs;
    if (total <= 0) return;
    rope_q_kernel<<<ceil_div(total, kThreads), kThreads, 0, stream>>>(q, n_tokens, n_head, head_dim, n_pairs, inv_freq,
                                                                     first_pos);
    check_launch("rope_q_kernel");
}

void rope_store_kv(const float* k, const float* v, int64_t n_tokens, int64_t n_head_kv, int64_t head_dim,
                   int64_t n_pairs, const double* inv_freq, const int64_t* first_pos, __half* k_cache,
                   __half* v_cache, cudaStream_t stream) {
    const int64_t kv_width = n_head_kv * head_dim;
    const int64_t total = n_tokens * kv_width / 2;
    if (total <= 0) return;
    rope_store_kv_kernel<<<ceil_div(total, kThreads), kThreads, 0, stream>>>(
        k, v, n_tokens, kv_width, head_dim, n_pairs, inv_freq, first_pos, k_cache, v_cache);
    check_launch("rope_store_kv_kernel");
}

void swiglu(float* gate, const float* up, int64_t n, cudaStream_t stream) {
    if (n <= 0) return;
    swiglu_kernel<<<ceil_div(n, kThreads), kThreads, 0, stream>>>(gate, up, n);
    check_launch("swiglu_kernel");
}

}  // namespace edgellama::cuda
