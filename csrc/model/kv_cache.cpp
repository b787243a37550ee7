#include "csrc/model/kv_cache.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#include "csrc/kernels/elementwise.h"
#include "csrc/model/checked_size.h"

namespace edgellama {

KVCache::KVCache(int64_t n_layer, int64_t n_ctx, int64_t n_head_kv, int64_t head_dim, int64_t n_seq,
                 CacheTypes types)
    : n_layer_(n_layer), n_ctx_(n_ctx), n_head_kv_(n_head_kv), head_dim_(head_dim), n_seq_(n_seq), types_(types) {
    if (n_layer <= 0 || n_ctx <= 0 || n_head_kv <= 0 || head_dim <= 0 || n_seq <= 0) {
        throw std::invalid_argument("KV cache dimensions must be positive");
    }
    for (CacheType type : {types.keys, types.values}) {
        if (!cache_type_fits(type, head_dim)) {
            throw std::invalid_argument(std::string("a ") + cache_type_name(type) + " KV cache needs head_dim a multiple of 32 " +
                                        "and at most " + std::to_string(kMaxQuantizedHeadDim) + "; this model's is " +
                                        std::to_string(head_dim));
        }
    }
    if (n_ctx > INT64_MAX - kKeyBlock) {  // padded_ctx() would overflow
        throw std::overflow_error("KV cache: n_ctx " + std::to_string(n_ctx) + " is too large");
    }
    key_tile_bytes_ = key_tile_bytes(types.keys, head_dim);
    // Checked once here: every stride and index below is smaller than these counts, so fits int64.
    const std::string what = "KV cache of n_ctx=" + std::to_string(n_ctx) + " for " + std::to_string(n_seq) + " sequences";
    const size_t n_keys =
        checked_count<uint8_t>(what, {n_seq, n_layer, n_head_kv, padded_ctx() / kKeyBlock, key_tile_bytes_});
    const size_t n_values = checked_count<uint8_t>(what, {n_seq, n_layer, n_head_kv, padded_ctx(), value_row_bytes()});
    n_past_.assign(static_cast<size_t>(n_seq), 0);
    // new T[] without value-initialisation: large blocks come from fresh zero pages on demand.
    keys_.reset(new uint8_t[n_keys]);
    values_.reset(new uint8_t[n_values]);
}

int64_t KVCache::check_seq(int64_t seq) const {
    if (seq < 0 || seq >= n_seq_) {
        throw std::out_of_range("sequence " + std::to_string(seq) + " outside [0, " + std::to_string(n_seq_) + ")");
    }
    return seq;
}

void KVCache::store(int64_t seq, int64_t layer, int64_t first_pos, int64_t n_tokens, const float* new_keys,
                    const float* new_values) {
    check_seq(seq);
    if (layer < 0 || layer >= n_layer_ || first_pos < 0 || n_tokens < 0 || first_pos + n_tokens > n_ctx_) {
        throw std::out_of_range("KV cache store outside its layers or positions");
    }
    const int64_t row_width = n_head_kv_ * head_dim_;
    for (int64_t t = 0; t < n_tokens; ++t) {
        const int64_t pos = first_pos + t;
        for (int64_t h = 0; h < n_head_kv_; ++h) {
            const int64_t at = t * row_width + h * head_dim_;
            store_value(types_.values, new_values + at, head_dim_,
                        value_head(seq, layer, h) + pos * value_row_bytes());
            store_key(types_.keys, new_keys + at, head_dim_,
                      key_head(seq, layer, h) + pos / kKeyBlock * key_tile_bytes_, pos % kKeyBlock);
        }
    }
}

void KVCache::truncate(int64_t seq, int64_t n) {
    const int64_t held = n_past(seq);
    if (n < 0 || n > held) {
        throw std::out_of_range("truncate(" + std::to_string(n) + ") outside [0, " + std::to_string(held) + "]");
    }
    n_past_[seq] = n;
}

void KVCache::clear_all() { std::fill(n_past_.begin(), n_past_.end(), 0); }

void KVCache::copy_prefix(int64_t src, int64_t dst, int64_t n) {
    const int64_t held = n_past(src);
    check_seq(dst);
    if (n < 0 || n > held) {
        throw std::out_of_range("copy of " + std::to_string(n) + " positions from sequence " + std::to_string(src) +
                                ", which holds " + std::to_string(held));
    }
    if (src == dst) {
        n_past_[dst] = n;
        return;
    }
    // Whole key tiles: the tail of the last one is garbage that attention never reads.
    const int64_t key_bytes = (n + kKeyBlock - 1) / kKeyBlock * key_tile_bytes_;
    const int64_t value_bytes = n * value_row_bytes();
    for (int64_t l = 0; l < n_layer_; ++l) {
        for (int64_t h = 0; h < n_head_kv_; ++h) {
            std::memcpy(key_head(dst, l, h), key_head(src, l, h), key_bytes);
            std::memcpy(value_head(dst, l, h), value_head(src, l, h), value_bytes);
        }
    }
    n_past_[dst] = n;
}

void KVCache::shift(int64_t seq, int64_t n_keep, int64_t n_discard, const float* cos_v, const float* sin_v,
                    int64_t n_pairs) {
    const int64_t held = n_past(seq);
    if (n_keep < 0 || n_discard < 1 || n_keep > held - n_discard || n_pairs < 0 || 2 * n_pairs > head_dim_) {
        throw std::out_of_range("shift of " + std::to_string(n_discard) + " positions after " + std::to_string(n_keep) +
                                " in a sequence of " + std::to_string(held));
    }
    // A quantized key is widened, rotated and quantized again (as llama.cpp shifts such a cache).
    std::vector<float> key(static_cast<size_t>(head_dim_));
    const int64_t value_bytes = value_row_bytes();
    for (int64_t l = 0; l < n_layer_; ++l) {
        for (int64_t h = 0; h < n_head_kv_; ++h) {
            uint8_t* keys = key_head(seq, l, h);
            uint8_t* values = value_head(seq, l, h);
            for (int64_t to = n_keep; to < held - n_discard; ++to) {  // upwards: reads stay ahead of writes
                const int64_t from = to + n_discard;
                load_key(types_.keys, keys + from / kKeyBlock * key_tile_bytes_, from % kKeyBlock, head_dim_, key.data());
                hadamard_rotate(key.data(), head_dim_, key_rotation());  // H·H = I: back to RoPE's pairs
                rope_apply(key.data(), 1, head_dim_, cos_v, sin_v, n_pairs);
                hadamard_rotate(key.data(), head_dim_, key_rotation());
                store_key(types_.keys, key.data(), head_dim_, keys + to / kKeyBlock * key_tile_bytes_, to % kKeyBlock);
                std::memcpy(values + to * value_bytes, values + from * value_bytes, value_bytes);
            }
        }
    }
    n_past_[seq] = held - n_discard;
}

void KVCache::read(int64_t seq, int64_t n, uint8_t* keys_out, uint8_t* values_out) const {
    const int64_t held = n_past(seq);
    if (n < 0 || n > held) {
        throw std::out_of_range("read of " + std::to_string(n) + " positions from a sequence of " + std::to_string(held));
    }
    const int64_t key_bytes = key_row_bytes(), value_bytes = value_row_bytes();
    for (int64_t l = 0; l < n_layer_; ++l) {
        for (int64_t h = 0; h < n_head_kv_; ++h) {
            const int64_t head = (l * n_head_kv_ + h) * n;
            std::memcpy(values_out + head * value_bytes, value_head(seq, l, h), n * value_bytes);
            const uint8_t* keys = key_head(seq, l, h);
            for (int64_t p = 0; p < n; ++p) {
                key_to_row(types_.keys, keys + p / kKeyBlock * key_tile_bytes_, p % kKeyBlock, head_dim_,
                           keys_out + (head + p) * key_bytes);
            }
        }
    }
}

void KVCache::write(int64_t seq, int64_t n, const uint8_t* keys_in, const uint8_t* values_in) {
    check_seq(seq);
    if (n < 0 || n > n_ctx_) {
        throw std::out_of_range("a state of " + std::to_string(n) + " positions does not fit a window of " +
                                std::to_string(n_ctx_));
    }
    const int64_t key_bytes = key_row_bytes(), value_bytes = value_row_bytes();
    for (int64_t l = 0; l < n_layer_; ++l) {
        for (int64_t h = 0; h < n_head_kv_; ++h) {
            const int64_t head = (l * n_head_kv_ + h) * n;
            std::memcpy(value_head(seq, l, h), values_in + head * value_bytes, n * value_bytes);
            uint8_t* keys = key_head(seq, l, h);
            for (int64_t p = 0; p < n; ++p) {
                key_from_row(types_.keys, keys_in + (head + p) * key_bytes, head_dim_,
                             keys + p / kKeyBlock * key_tile_bytes_, p % kKeyBlock);
            }
        }
    }
    n_past_[seq] = n;
}

void KVCache::advance(int64_t seq, int64_t n_tokens) {
    if (n_past(seq) + n_tokens > n_ctx_) throw std::length_error("KV cache overflow");
    n_past_[seq] += n_tokens;
}

}  // namespace edgellama
