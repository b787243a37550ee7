// The KV cache: for every layer, the rotated keys and the values of each position, laid out
// [n_head_kv][n_ctx][head_dim] (each KV head's positions contiguous, so attention streams one
// head's keys and values front to back instead of one 2 * head_dim-byte row every n_head_kv rows),
// stored as IEEE half (rounded to nearest even), as llama.cpp's default cache: half the memory of
// float32, and half the bytes every decode step reads from a long context. Allocated once at model creation; pages are touched only as positions fill, so a
// large n_ctx costs address space, not resident memory, until used.
#pragma once

#include <cstdint>
#include <memory>

namespace edgellama {

class KVCache {
public:
    KVCache(int64_t n_layer, int64_t n_ctx, int64_t n_head_kv, int64_t head_dim);

    int64_t n_ctx() const { return n_ctx_; }
    int64_t n_past() const { return n_past_; }

    // A layer's keys (values): KV head h's row of position p at + h * head_stride() + p * head_dim.
    const uint16_t* keys(int64_t layer) const { return keys_.get() + layer * layer_stride(); }
    const uint16_t* values(int64_t layer) const { return values_.get() + layer * layer_stride(); }
    int64_t head_stride() const { return n_ctx_ * head_dim_; }

    // Stores the keys and values of positions first_pos .. first_pos + n_tokens - 1 of one layer,
    // given as float rows [n_tokens][n_head_kv * head_dim] (heads side by side), as halves.
    void store(int64_t layer, int64_t first_pos, int64_t n_tokens, const float* new_keys, const float* new_values);

    // Positions [0, n) stay valid; later ones are forgotten (a shared prefix is reused).
    void truncate(int64_t n);
    void reset() { n_past_ = 0; }
    void advance(int64_t n_tokens);

private:
    int64_t layer_stride() const { return n_head_kv_ * head_stride(); }

    int64_t n_layer_, n_ctx_, n_head_kv_, head_dim_;
    int64_t n_past_ = 0;
    std::unique_ptr<uint16_t[]> keys_, values_;
};

}  // namespace edgellama
