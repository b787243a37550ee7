// Row-wise ops of the llama block: RMSNorm, rotary position embedding, SwiGLU.
#pragma once

#include <cstdint>

namespace edgellama {

// out[i] = x[i] / sqrt(mean(x²) + eps) * weight[i]; out may alias x.
void rms_norm(const float* x, const float* weight, float* out, int64_t n, float eps);

// Angles of one position: cos/sin[i] of pos * inv_freq[i] for the rope_dim/2 rotated pairs, times
// magnitude (YaRN's scale of the rotated vectors; 1 for plain RoPE).
void rope_angles(int64_t pos, const double* inv_freq, int64_t n_pairs, float* cos_out, float* sin_out,
                 float magnitude = 1.0f);

// Rotates adjacent pairs (x[2i], x[2i+1]) of each of n_heads heads (head_dim apart) in place;
// only the first n_pairs pairs of a head rotate (the GGUF llama convention).
void rope_apply(float* x, int64_t n_heads, int64_t head_dim, const float* cos_v, const float* sin_v,
                int64_t n_pairs);

// gate[i] = silu(gate[i]) * up[i]
void swiglu(float* gate, const float* up, int64_t n);

// dst[i] = src[i] as IEEE half, rounded to nearest even (the KV cache's storage).
void float_to_half_row(const float* src, uint16_t* dst, int64_t n);
// dst[i] = src[i] widened from IEEE half (exact).
void half_to_float_row(const uint16_t* src, float* dst, int64_t n);

}  // namespace edgellama
