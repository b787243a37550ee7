// Block and thread code of RMSNorm (with its fused quantization) and of RoPE with the KV-cache
// store, written once for the kernels (elementwise.cu) and the tests' host execution.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include <cuda_fp16.h>

#include "csrc/cuda/act_quant.cuh"
#include "csrc/cuda/warp.cuh"

namespace edgellama::cuda {

constexpr int kNormThreads = 1024;  // a decode step normalizes one row: the whole block quantizes it
constexpr int kNormWarps = kNormThreads / kWarp;

struct NormShared {
    double partial[kNormWarps];
};

// RMSNorm of one row, as one thread block of kNormThreads threads. The sum of squares is
// accumulated in double, as the CPU does; out[i] = (x[i] * scale) * weight[i]. When act32 /
// act256 are given, the normalized row is also quantized into those rows (a warp per block), so
// the matmuls reading it need no extra pass: act_parts rows a row (2: precise activations, the
// blocks and their residual).
template <class Block>
EDGELLAMA_HD void rms_norm_block(const Block& block, const float* x, const float* weight, float* out, int64_t n,
                                 float eps, uint8_t* act32, uint8_t* act256, int64_t row, int act_parts = 1) {
    const int thread = block.thread();
    const auto warp_ops = block.warp();
    const float* xr = x + row * n;
    float* orow = out + row * n;
    double s = 0.0;
    for (int64_t i = thread; i < n; i += kNormThreads) s += static_cast<double>(xr[i]) * xr[i];
    s = warp_reduce_sum(warp_ops, s);
    if (thread % kWarp == 0) block.shared().partial[thread / kWarp] = s;
    block.sync();
    double total = 0.0;
#pragma unroll
    for (int w = 0; w < kNormWarps; ++w) total += block.shared().partial[w];
    const float scale = static_cast<float>(1.0 / sqrt(total / static_cast<double>(n) + eps));
    const auto normed = [&](int64_t i) { return mul_rn(mul_rn(xr[i], scale), weight[i]); };

    const int lane = thread % kWarp, warp = thread / kWarp;
    if (act32 != nullptr) {  // floats written on the way
        const size_t row_bytes = (n / kQK32) * sizeof(BlockQ8Act32);
        uint8_t* act_row = act32 + row * act_parts * row_bytes;
        for (int64_t b = warp; b < n / kQK32; b += kNormWarps) {
            const float v = normed(b * kQK32 + lane);
            orow[b * kQK32 + lane] = v;
            quantize_block32_warp(warp_ops, v, ActRowOut<kQK32>(act_row, n, b, residual_offset(act_parts, row_bytes)));
        }
    } else {
        for (int64_t i = thread; i < n; i += kNormThreads) orow[i] = normed(i);
    }
    if (act256 != nullptr) {
        const size_t row_bytes = (n / kQK256) * sizeof(BlockQ8Act256);
        uint8_t* act_row = act256 + row * act_parts * row_bytes;
        for (int64_t b = warp; b < n / kQK256; b += kNormWarps) {
            float v[8];
#pragma unroll
            for (int k = 0; k < 8; ++k) v[k] = normed(b * kQK256 + 32 * k + lane);
            quantize_block256_warp(warp_ops, v,
                                   ActRowOut<kQK256>(act_row, n, b, residual_offset(act_parts, row_bytes)));
        }
    }
}

EDGELLAMA_HD void rotate(float& a, float& b, int64_t pos, double inv_freq, float magnitude) {
    double s, c;
    sincos(static_cast<double>(pos) * inv_freq, &s, &c);
    const float cf = static_cast<float>(c) * magnitude, sf = static_cast<float>(s) * magnitude;
    const float x = a, y = b;
    a = x * cf - y * sf;
    b = x * sf + y * cf;
}

// Element pair idx of the RoPE-and-store pass (one thread each): pairs of the token's query row,
// then of its KV row. A query pair is rotated in place when it is a RoPE pair; a key pair is rotated
// likewise, then key and value pairs are stored as fp16 at the token's cache row. `load` reads q,
// k and v (L2Load where other blocks of the same kernel wrote them).
template <class Load = PlainLoad>
EDGELLAMA_HD void rope_store_pair(int64_t idx, float* q, const float* k, const float* v, int64_t q_width,
                                  int64_t kv_width, int64_t head_dim, int64_t n_pairs, const double* inv_freq,
                                  float magnitude, int64_t first_pos, __half* k_cache, __half* v_cache,
                                  Load load = {}) {
    const int64_t pairs_per_token = (q_width + kv_width) / 2;
    const int64_t t = idx / pairs_per_token;
    int64_t e = 2 * (idx % pairs_per_token);
    const int64_t pos = first_pos + t;
    const int64_t pair = (e % head_dim) / 2;  // q_width is a multiple of head_dim, so this holds for both parts
    if (e < q_width) {
        float* p = q + t * q_width + e;
        if (pair < n_pairs) {
            float a = load(p), b = load(p + 1);
            rotate(a, b, pos, inv_freq[pair], magnitude);
            p[0] = a;
            p[1] = b;
        }
        return;
    }
    e -= q_width;
    const float* kp = k + t * kv_width + e;
    const float* vp = v + t * kv_width + e;
    float a = load(kp), b = load(kp + 1);
    if (pair < n_pairs) rotate(a, b, pos, inv_freq[pair], magnitude);
    const int64_t dst = pos * kv_width + e;
    const __half2 kh = __floats2half2_rn(a, b), vh = __floats2half2_rn(load(vp), load(vp + 1));
    memcpy(k_cache + dst, &kh, sizeof kh);  // one 4-byte store, without writing halves through another type
    memcpy(v_cache + dst, &vh, sizeof vh);
}

}  // namespace edgellama::cuda
