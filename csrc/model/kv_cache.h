// The KV cache: for every layer, the rotated keys and the values of each position, row-major
// [n_ctx][n_head_kv * head_dim], stored as IEEE half (rounded to nearest even), as llama.cpp's
// default cache: half the memory of float32, and half the bytes every decode step reads from a
// long context. Allocated once at model creation; pages are touched only as positions fill, so a
// large n_ctx costs address space, not resident memory, until used.
#pragma once

#include <cstdint>
#include <memory>

namespace edgellama {

class KVCache {
public:
    KVCache(int64_t n_layer, int64_t n_ctx, int64_t kv_width);

    int64_t n_ctx() const { return n_ctx_; }
    int64_t n_past() const { return n_past_; }
    int64_t kv_width() const { return kv_width_; }

    uint16_t* keys(int64_t layer) { return keys_.get() + layer * layer_stride(); }
    uint16_t* values(int64_t layer) { return values_.get() + layer * layer_stride(); }

    // Positions [0, n) stay valid; later ones are forgotten (a shared prefix is reused).
    void truncate(int64_t n);
    void reset() { n_past_ = 0; }
    void advance(int64_t n_tokens);

private:
    int64_t layer_stride() const { return n_ctx_ * kv_width_; }

    int64_t n_layer_, n_ctx_, kv_width_;
    int64_t n_past_ = 0;
    std::unique_ptr<uint16_t[]> keys_, values_;
};

}  // namespace edgellama
