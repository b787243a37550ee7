// RMSNorm, RoPE (with the KV-cache store), SwiGLU.
#include "csrc/cuda/act_quant.cuh"
#include "csrc/cuda/ops.h"

namespace edgellama::cuda {

namespace {

constexpr int kNormThreads = 1024;  // a decode step normalizes one row: the whole block quantizes it
constexpr int kNormWarps = kNormThreads / kWarp;

// One block per row. The sum of squares is accumulated in double, as the CPU does;
// out[i] = (x[i] * scale) * weight[i]. When act32 / act256 are given, the normalized row is also
// quantized into those blocks (a warp per block), so the matmuls reading it need no extra pass.
__global__ void __launch_bounds__(kNormThreads)
rms_norm_kernel(const float* __restrict__ x, const float* __restrict__ weight, float* __restrict__ out, int64_t n,
                float eps, uint8_t* __restrict__ act32, uint8_t* __restrict__ act256) {
    const int64_t row = blockIdx.x;
    const float* xr = x + row * n;
    float* orow = out + row * n;
    double s = 0.0;
    for (int64_t i = threadIdx.x; i < n; i += kNormThreads) s += static_cast<double>(xr[i]) * xr[i];
    __shared__ double partial[kNormWarps];
    s = warp_sum(s);
    if (threadIdx.x % kWarp == 0) partial[threadIdx.x / kWarp] = s;
    __syncthreads();
    double total = 0.0;
#pragma unroll
    for (int w = 0; w < kNormWarps; ++w) total += partial[w];
    const float scale = static_cast<float>(1.0 / sqrt(total / static_cast<double>(n) + eps));
    const auto normed = [&](int64_t i) { return __fmul_rn(__fmul_rn(xr[i], scale), weight[i]); };

    const int lane = threadIdx.x % kWarp, warp = threadIdx.x / kWarp;
    if (act32 != nullptr) {  // floats written on the way
        uint8_t* act_row = act32 + row * (n / kQK32) * sizeof(BlockQ8Act32);
        for (int64_t b = warp; b < n / kQK32; b += kNormWarps) {
            const float v = normed(b * kQK32 + lane);
            orow[b * kQK32 + lane] = v;
            quantize_block32_warp(DeviceWarp{}, v, ActRowOut<kQK32>(act_row, n, b));
        }
    } else {
        for (int64_t i = threadIdx.x; i < n; i += kNormThreads) orow[i] = normed(i);
    }
    if (act256 != nullptr) {
        uint8_t* act_row = act256 + row * (n / kQK256) * sizeof(BlockQ8Act256);
        for (int64_t b = warp; b < n / kQK256; b += kNormWarps) {
            float v[8];
#pragma unroll
            for (int k = 0; k < 8; ++k) v[k] = normed(b * kQK256 + 32 * k + lane);
            quantize_block256_warp(DeviceWarp{}, v, ActRowOut<kQK256>(act_row, n, b));
        }
    }
}

__device__ __forceinline__ void rotate(float& a, float& b, int64_t pos, double inv_freq) {
    double s, c;
    sincos(static_cast<double>(pos) * inv_freq, &s, &c);
    const float cf = static_cast<float>(c), sf = static_cast<float>(s);
    const float x = a, y = b;
    a = x * cf - y * sf;
    b = x * sf + y * cf;
}

// One thread per (token, element pair) of the token's query row and then of its KV row: a query
// pair is rotated in place when it is a RoPE pair; a key pair is rotated likewise, then key and
// value pairs are stored as fp16 at the token's cache row.
__global__ void rope_store_kernel(float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
                                  int64_t n_tokens, int64_t q_width, int64_t kv_width, int64_t head_dim,
                                  int64_t n_pairs, const double* __restrict__ inv_freq,
                                  const int64_t* __restrict__ first_pos, __half* __restrict__ k_cache,
                                  __half* __restrict__ v_cache) {
    const int64_t idx = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    const int64_t pairs_per_token = (q_width + kv_width) / 2;
    if (idx >= n_tokens * pairs_per_token) return;
    const int64_t t = idx / pairs_per_token;
    int64_t e = 2 * (idx % pairs_per_token);
    const int64_t pos = *first_pos + t;
    const int64_t pair = (e % head_dim) / 2;  // q_width is a multiple of head_dim, so this holds for both parts
    if (e < q_width) {
        float* p = q + t * q_width + e;
        if (pair < n_pairs) rotate(p[0], p[1], pos, inv_freq[pair]);
        return;
    }
    e -= q_width;
    float a = k[t * kv_width + e], b = k[t * kv_width + e + 1];
    if (pair < n_pairs) rotate(a, b, pos, inv_freq[pair]);
    const int64_t dst = pos * kv_width + e;
    *reinterpret_cast<__half2*>(k_cache + dst) = __floats2half2_rn(a, b);
    *reinterpret_cast<__half2*>(v_cache + dst) = __floats2half2_rn(v[t * kv_width + e], v[t * kv_width + e + 1]);
}

__global__ void swiglu_kernel(float* __restrict__ gate, const float* __restrict__ up, int64_t n) {
    const int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (i >= n) return;
    gate[i] = silu_times(gate[i], up[i]);
}

constexpr int kThreads = 256;

}  // namespace

void rms_norm(const float* x, const float* weight, float* out, int64_t n_rows, int64_t n, float eps, void* act32,
              void* act256, cudaStream_t stream) {
    if (n_rows <= 0) return;
    if ((act32 != nullptr && n % kQK32 != 0) || (act256 != nullptr && n % kQK256 != 0)) {
        throw CudaError("rms_norm: rows of " + std::to_string(n) + " are not whole activation blocks");
    }
    rms_norm_kernel<<<static_cast<unsigned>(n_rows), kNormThreads, 0, stream>>>(
        x, weight, out, n, eps, static_cast<uint8_t*>(act32), static_cast<uint8_t*>(act256));
    check_launch("rms_norm_kernel");
}

void rope_store(float* q, const float* k, const float* v, int64_t n_tokens, int64_t n_head, int64_t n_head_kv,
                int64_t head_dim, int64_t n_pairs, const double* inv_freq, const int64_t* first_pos, __half* k_cache,
                __half* v_cache, cudaStream_t stream) {
    const int64_t q_width = n_head * head_dim, kv_width = n_head_kv * head_dim;
    const int64_t total = n_tokens * (q_width + kv_width) / 2;
    if (total <= 0) return;
    rope_store_kernel<<<ceil_div(total, kThreads), kThreads, 0, stream>>>(q, k, v, n_tokens, q_width, kv_width, head_dim,
                                                                         n_pairs, inv_freq, first_pos, k_cache, v_cache);
    check_launch("rope_store_kernel");
}

void swiglu(float* gate, const float* up, int64_t n, cudaStream_t stream) {
    if (n <= 0) return;
    swiglu_kernel<<<ceil_div(n, kThreads), kThreads, 0, stream>>>(gate, up, n);
    check_launch("swiglu_kernel");
}

}  // namespace edgellama::cuda
