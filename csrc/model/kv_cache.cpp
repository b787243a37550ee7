#include "csrc/model/kv_cache.h"

#include <stdexcept>
#include <string>

namespace edgellama {

KVCache::KVCache(int64_t n_layer, int64_t n_ctx, int64_t kv_width)
    : n_layer_(n_layer), n_ctx_(n_ctx), kv_width_(kv_width) {
    if (n_layer <= 0 || n_ctx <= 0 || kv_width <= 0) {
        throw std::invalid_argument("KV cache dimensions must be positive");
    }
    const size_t n = static_cast<size_t>(n_layer) * n_ctx * kv_width;
    // new T[] without value-initialisation: large blocks come from fresh zero pages on demand.
    keys_.reset(new uint16_t[n]);
    values_.reset(new uint16_t[n]);
}

void KVCache::truncate(int64_t n) {
    if (n < 0 || n > n_past_) {
        throw std::out_of_range("truncate(" + std::to_string(n) + ") outside [0, " +
                                std::to_string(n_past_) + "]");
    }
    n_past_ = n;
}

void KVCache::advance(int64_t n_tokens) {
    if (n_past_ + n_tokens > n_ctx_) throw std::length_error("KV cache overflow");
    n_past_ += n_tokens;
}

}  // namespace edgellama
