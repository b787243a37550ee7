// The KV cache's element formats, and how one KV head's keys and values are laid out in them.
//
//   f16   IEEE half per element (the default; as llama.cpp's default cache).
//   q8_0  GGUF Q8_0 blocks along head_dim: 32 elements share one fp16 scale d, value = d * q with
//         q an int8 code; 34 bytes per 32 elements (53% of f16).
//   q4_0  GGUF Q4_0 blocks along head_dim: value = d * (q - 8) with q a 4-bit code; 18 bytes per
//         32 elements (28% of f16).
// A quantized element is rounded from the float32 key or value exactly as the format's reference
// quantizer (quantize/codecs.h) rounds a row, so a cache holds what llama.cpp's cache of that type
// holds; only the arrangement of the bytes differs.
//
// Values: one row per position, the format's own blocks (GGUF layout) one after another.
// Keys: tiles of kAttentionKeyBlock (16) positions, dimension-major inside a tile, so attention
//       widens one dimension of 16 positions into one vector lane per position:
//   f16   [head_dim][16] halves
//   q8_0  codes [head_dim][16] int8, then scales [head_dim / 32][16] fp16
//   q4_0  codes [head_dim][8] bytes (byte j: position j in the low nibble, j + 8 in the high),
//         then scales [head_dim / 32][16] fp16
// A key's plain row (saved state) is the values' layout: halves, or the format's GGUF blocks.
//
// Rotation: a quantized cache holds keys and values turned by an orthonormal Walsh-Hadamard
// matrix H (Sylvester's, scaled by 1/sqrt(n); H·H = I), as llama.cpp's caches do: the few large
// channels of keys and values are spread over all elements of a block, so one outlier no longer
// coarsens its block's step. Queries are turned by the same H (q·k = Hq·Hk) and the attention
// output is turned back (Σ p·Hv = H Σ p·v). Keys turn in chunks of the largest power of two that
// divides head_dim, values in chunks of 64; only where head_dim is a multiple of 64.
#pragma once

#include <cstdint>
#include <string>

namespace edgellama {

// Positions per key tile: attention's 16 score lanes.
constexpr int64_t kAttentionKeyBlock = 16;

enum class CacheType : int32_t { kF16 = 0, kQ8_0 = 1, kQ4_0 = 2 };

struct CacheTypes {
    CacheType keys = CacheType::kF16;
    CacheType values = CacheType::kF16;
};

// "f16", "q8_0", "q4_0" and back; std::invalid_argument for another name.
CacheType cache_type_from_name(const std::string& name);
const char* cache_type_name(CacheType type);

// Whether a head of head_dim elements can be held in `type` (quantized: whole blocks of 32, and
// at most kMaxQuantizedHeadDim elements).
constexpr int64_t kMaxQuantizedHeadDim = 1024;
bool cache_type_fits(CacheType type, int64_t head_dim);

// Bytes of one head's key tile (kAttentionKeyBlock positions).
int64_t key_tile_bytes(CacheType type, int64_t head_dim);
// Bytes of one head's row at one position: a value row, and a key's plain row.
int64_t row_bytes(CacheType type, int64_t head_dim);

// One head's key (head_dim floats) as position `slot` of a key tile; other positions unchanged.
void store_key(CacheType type, const float* key, int64_t head_dim, uint8_t* tile, int64_t slot);
// Position `slot` of a key tile as head_dim floats.
void load_key(CacheType type, const uint8_t* tile, int64_t slot, int64_t head_dim, float* key);
// A whole key tile as floats [head_dim][16] (the portable attention path).
void widen_key_tile(CacheType type, const uint8_t* tile, int64_t head_dim, float* out);
// Position `slot` of a key tile as its plain row, and back (saved state).
void key_to_row(CacheType type, const uint8_t* tile, int64_t slot, int64_t head_dim, uint8_t* row);
void key_from_row(CacheType type, const uint8_t* row, int64_t head_dim, uint8_t* tile, int64_t slot);

// Elements per Hadamard chunk of a cache's keys and values (see above); 0: not rotated.
int64_t key_rotation(CacheType type, int64_t head_dim);
int64_t value_rotation(CacheType type, int64_t head_dim);
// x[0, n) := H x chunk by chunk (n a multiple of size, size a power of two); size 0: unchanged.
void hadamard_rotate(float* x, int64_t n, int64_t size);

// One head's value (head_dim floats) as a row, and a row as floats.
void store_value(CacheType type, const float* value, int64_t head_dim, uint8_t* row);
void widen_value_row(CacheType type, const uint8_t* row, int64_t head_dim, float* out);

}  // namespace edgellama
