// The KV cache: for every layer, the rotated keys and the values of each position, stored as IEEE
// half (rounded to nearest even), as llama.cpp's default cache: half the memory of float32, and
// half the bytes every decode step reads from a long context. Each KV head's positions are
// contiguous, so attention streams one head's keys and values front to back:
//   values [n_head_kv][n_ctx][head_dim]: one row per position;
//   keys   [n_head_kv][n_ctx / 16][head_dim][16]: blocks of 16 positions, dimension-major inside a
//          block, so the scores of 16 positions are the 16 lanes of one vector sum (no horizontal
//          reductions) and each key block is widened once for all query heads of its group.
// n_ctx is rounded up to whole key blocks. Allocated once at model creation; pages are touched only as positions fill, so a
// large n_ctx costs address space, not resident memory, until used.
#pragma once

#include <cstdint>
#include <memory>

#include "csrc/kernels/attention.h"

namespace edgellama {

class KVCache {
public:
    KVCache(int64_t n_layer, int64_t n_ctx, int64_t n_head_kv, int64_t head_dim);

    int64_t n_ctx() const { return n_ctx_; }
    int64_t n_past() const { return n_past_; }

    static constexpr int64_t kKeyBlock = kAttentionKeyBlock;  // positions per key block

    // A layer's keys and values, KV head h at + h * head_stride(); see the layout above.
    const uint16_t* keys(int64_t layer) const { return keys_.get() + layer * layer_stride(); }
    const uint16_t* values(int64_t layer) const { return values_.get() + layer * layer_stride(); }
    int64_t head_stride() const { return padded_ctx() * head_dim_; }

    // Stores the keys and values of positions first_pos .. first_pos + n_tokens - 1 of one layer,
    // given as float rows [n_tokens][n_head_kv * head_dim] (heads side by side), as halves.
    void store(int64_t layer, int64_t first_pos, int64_t n_tokens, const float* new_keys, const float* new_values);

    // Positions [0, n) stay valid; later ones are forgotten (a shared prefix is reused).
    void truncate(int64_t n);
    void reset() { n_past_ = 0; }
    void advance(int64_t n_tokens);

private:
    int64_t padded_ctx() const { return (n_ctx_ + kKeyBlock - 1) / kKeyBlock * kKeyBlock; }
    int64_t layer_stride() const { return n_head_kv_ * head_stride(); }

    int64_t n_layer_, n_ctx_, n_head_kv_, head_dim_;
    int64_t n_past_ = 0;
    std::unique_ptr<uint16_t[]> keys_, values_;
};

}  // namespace edgellama
