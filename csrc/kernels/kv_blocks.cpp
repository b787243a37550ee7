#include "csrc/kernels/kv_blocks.h"

#include <cmath>
#include <cstring>
#include <stdexcept>

#include "csrc/kernels/elementwise.h"
#include "csrc/formats/float_convert.h"
#include "csrc/formats/block_formats.h"
#include "quantize/codecs.h"

namespace edgellama {

namespace {

constexpr int64_t kTile = kAttentionKeyBlock;
constexpr int64_t kMaxBlocks = kMaxQuantizedHeadDim / kQK32;

int64_t code_bytes(CacheType type, int64_t head_dim) {
    return type == CacheType::kQ8_0 ? head_dim * kTile : head_dim * kTile / 2;
}

// The fp16 scales of a quantized tile: block b of position slot at [b * 16 + slot].
uint16_t* tile_scales(CacheType type, uint8_t* tile, int64_t head_dim) {
    return reinterpret_cast<uint16_t*>(tile + code_bytes(type, head_dim));
}
const uint16_t* tile_scales(CacheType type, const uint8_t* tile, int64_t head_dim) {
    return reinterpret_cast<const uint16_t*>(tile + code_bytes(type, head_dim));
}

// The code of dimension d at position slot: the int8 (q8_0) or the 4-bit code minus 8 (q4_0).
int tile_code(CacheType type, const uint8_t* tile, int64_t d, int64_t slot) {
    if (type == CacheType::kQ8_0) return static_cast<int8_t>(tile[d * kTile + slot]);
    const uint8_t byte = tile[d * (kTile / 2) + slot % (kTile / 2)];
    return (slot < kTile / 2 ? byte & 0x0f : byte >> 4) - 8;
}

void set_tile_code(CacheType type, uint8_t* tile, int64_t d, int64_t slot, int code) {
    if (type == CacheType::kQ8_0) {
        tile[d * kTile + slot] = static_cast<uint8_t>(static_cast<int8_t>(code));
        return;
    }
    uint8_t& byte = tile[d * (kTile / 2) + slot % (kTile / 2)];
    const auto nibble = static_cast<uint8_t>(code + 8);
    byte = slot < kTile / 2 ? static_cast<uint8_t>((byte & 0xf0) | nibble)
                            : static_cast<uint8_t>((byte & 0x0f) | (nibble << 4));
}

// Element i of a block of the plain row, as its code (q4_0: minus 8).
int row_code(CacheType type, const uint8_t* row, int64_t i) {
    if (type == CacheType::kQ8_0) return reinterpret_cast<const BlockQ8_0*>(row)[i / kQK32].qs[i % kQK32];
    const BlockQ4_0& block = reinterpret_cast<const BlockQ4_0*>(row)[i / kQK32];
    const int j = static_cast<int>(i % kQK32);
    return (j < kQK32 / 2 ? block.qs[j] & 0x0f : block.qs[j - kQK32 / 2] >> 4) - 8;
}
uint16_t row_scale(CacheType type, const uint8_t* row, int64_t b) {
    return type == CacheType::kQ8_0 ? reinterpret_cast<const BlockQ8_0*>(row)[b].d
                                    : reinterpret_cast<const BlockQ4_0*>(row)[b].d;
}

void quantize_row(CacheType type, const float* x, int64_t n, uint8_t* row) {
    if (type == CacheType::kQ8_0) {
        quantize::quantize_row_q8_0(x, row, n);
    } else {
        quantize::quantize_row_q4_0(x, row, n);
    }
}

uint16_t* halves(uint8_t* p) { return reinterpret_cast<uint16_t*>(p); }
const uint16_t* halves(const uint8_t* p) { return reinterpret_cast<const uint16_t*>(p); }

}  // namespace

CacheType cache_type_from_name(const std::string& name) {
    if (name == "f16") return CacheType::kF16;
    if (name == "q8_0") return CacheType::kQ8_0;
    if (name == "q4_0") return CacheType::kQ4_0;
    throw std::invalid_argument("unknown KV cache type '" + name + "' (expected f16, q8_0 or q4_0)");
}

const char* cache_type_name(CacheType type) {
    switch (type) {
        case CacheType::kF16: return "f16";
        case CacheType::kQ8_0: return "q8_0";
        case CacheType::kQ4_0: return "q4_0";
    }
    return "?";
}

bool cache_type_fits(CacheType type, int64_t head_dim) {
    return type == CacheType::kF16 || (head_dim % kQK32 == 0 && head_dim <= kMaxQuantizedHeadDim);
}

int64_t key_tile_bytes(CacheType type, int64_t head_dim) {
    if (type == CacheType::kF16) return head_dim * kTile * 2;
    return code_bytes(type, head_dim) + head_dim / kQK32 * kTile * 2;
}

int64_t row_bytes(CacheType type, int64_t head_dim) {
    switch (type) {
        case CacheType::kF16: return head_dim * 2;
        case CacheType::kQ8_0: return head_dim / kQK32 * static_cast<int64_t>(sizeof(BlockQ8_0));
        case CacheType::kQ4_0: return head_dim / kQK32 * static_cast<int64_t>(sizeof(BlockQ4_0));
    }
    return 0;
}

void key_from_row(CacheType type, const uint8_t* row, int64_t head_dim, uint8_t* tile, int64_t slot) {
    if (type == CacheType::kF16) {
        for (int64_t d = 0; d < head_dim; ++d) halves(tile)[d * kTile + slot] = halves(row)[d];
        return;
    }
    for (int64_t d = 0; d < head_dim; ++d) set_tile_code(type, tile, d, slot, row_code(type, row, d));
    for (int64_t b = 0; b < head_dim / kQK32; ++b) tile_scales(type, tile, head_dim)[b * kTile + slot] = row_scale(type, row, b);
}

void key_to_row(CacheType type, const uint8_t* tile, int64_t slot, int64_t head_dim, uint8_t* row) {
    if (type == CacheType::kF16) {
        for (int64_t d = 0; d < head_dim; ++d) halves(row)[d] = halves(tile)[d * kTile + slot];
        return;
    }
    const uint16_t* scales = tile_scales(type, tile, head_dim);
    for (int64_t b = 0; b < head_dim / kQK32; ++b) {
        if (type == CacheType::kQ8_0) {
            BlockQ8_0& block = reinterpret_cast<BlockQ8_0*>(row)[b];
            block.d = scales[b * kTile + slot];
            for (int i = 0; i < kQK32; ++i) block.qs[i] = static_cast<int8_t>(tile_code(type, tile, b * kQK32 + i, slot));
        } else {
            BlockQ4_0& block = reinterpret_cast<BlockQ4_0*>(row)[b];
            block.d = scales[b * kTile + slot];
            for (int j = 0; j < kQK32 / 2; ++j) {
                const int lo = tile_code(type, tile, b * kQK32 + j, slot) + 8;
                const int hi = tile_code(type, tile, b * kQK32 + j + kQK32 / 2, slot) + 8;
                block.qs[j] = static_cast<uint8_t>(lo | (hi << 4));
            }
        }
    }
}

void store_key(CacheType type, const float* key, int64_t head_dim, uint8_t* tile, int64_t slot) {
    if (type == CacheType::kF16) {
        for (int64_t d = 0; d < head_dim; ++d) halves(tile)[d * kTile + slot] = fp32_to_fp16(key[d]);
        return;
    }
    uint8_t row[kMaxBlocks * sizeof(BlockQ8_0)];
    quantize_row(type, key, head_dim, row);
    key_from_row(type, row, head_dim, tile, slot);
}

void load_key(CacheType type, const uint8_t* tile, int64_t slot, int64_t head_dim, float* key) {
    if (type == CacheType::kF16) {
        for (int64_t d = 0; d < head_dim; ++d) key[d] = fp16_to_fp32(halves(tile)[d * kTile + slot]);
        return;
    }
    const uint16_t* scales = tile_scales(type, tile, head_dim);
    for (int64_t d = 0; d < head_dim; ++d) {
        key[d] = fp16_to_fp32(scales[d / kQK32 * kTile + slot]) * static_cast<float>(tile_code(type, tile, d, slot));
    }
}

void widen_key_tile(CacheType type, const uint8_t* tile, int64_t head_dim, float* out) {
    if (type == CacheType::kF16) {
        half_to_float_row(halves(tile), out, head_dim * kTile);
        return;
    }
    const uint16_t* scales = tile_scales(type, tile, head_dim);
    for (int64_t d = 0; d < head_dim; ++d) {
        for (int64_t p = 0; p < kTile; ++p) {
            out[d * kTile + p] =
                fp16_to_fp32(scales[d / kQK32 * kTile + p]) * static_cast<float>(tile_code(type, tile, d, p));
        }
    }
}

int64_t key_rotation(CacheType type, int64_t head_dim) {
    if (type == CacheType::kF16 || head_dim % 64 != 0) return 0;
    int64_t size = 64;
    while (head_dim % (2 * size) == 0) size *= 2;
    return size;
}

int64_t value_rotation(CacheType type, int64_t head_dim) {
    return type == CacheType::kF16 || head_dim % 64 != 0 ? 0 : 64;
}

void hadamard_rotate(float* x, int64_t n, int64_t size) {
    if (size == 0) return;
    const float norm = 1.0f / std::sqrt(static_cast<float>(size));
    for (float* chunk = x; chunk < x + n; chunk += size) {
        for (int64_t half = 1; half < size; half *= 2) {  // the fast transform: log2(size) butterflies
            for (int64_t i = 0; i < size; i += 2 * half) {
                for (int64_t j = i; j < i + half; ++j) {
                    const float a = chunk[j], b = chunk[j + half];
                    chunk[j] = a + b;
                    chunk[j + half] = a - b;
                }
            }
        }
        for (int64_t i = 0; i < size; ++i) chunk[i] *= norm;
    }
}

void store_value(CacheType type, const float* value, int64_t head_dim, uint8_t* row) {
    if (type == CacheType::kF16) {
        float_to_half_row(value, halves(row), head_dim);
    } else {
        quantize_row(type, value, head_dim, row);
    }
}

void widen_value_row(CacheType type, const uint8_t* row, int64_t head_dim, float* out) {
    if (type == CacheType::kF16) {
        half_to_float_row(halves(row), out, head_dim);
        return;
    }
    for (int64_t i = 0; i < head_dim; ++i) {
        out[i] = fp16_to_fp32(row_scale(type, row, i / kQK32)) * static_cast<float>(row_code(type, row, i));
    }
}

}  // namespace edgellama
