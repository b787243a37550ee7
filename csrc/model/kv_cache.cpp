#include "csrc/model/kv_cache.h"

#include <algorithm>
#include <cstdint>
#include <cstring>
#include <stdexcept>
#include <string>

#include "csrc/kernels/elementwise.h"
#include "csrc/kernels/float_convert.h"
#include "csrc/model/checked_size.h"

namespace edgellama {

KVCache::KVCache(int64_t n_layer, int64_t n_ctx, int64_t n_head_kv, int64_t head_dim, int64_t n_seq)
    : n_layer_(n_layer), n_ctx_(n_ctx), n_head_kv_(n_head_kv), head_dim_(head_dim), n_seq_(n_seq) {
    if (n_layer <= 0 || n_ctx <= 0 || n_head_kv <= 0 || head_dim <= 0 || n_seq <= 0) {
        throw std::invalid_argument("KV cache dimensions must be positive");
    }
    if (n_ctx > INT64_MAX - kKeyBlock) {  // padded_ctx() would overflow
        throw std::overflow_error("KV cache: n_ctx " + std::to_string(n_ctx) + " is too large");
    }
    // Checked once here: every stride and index below is smaller than this count, so fits int64.
    const size_t n = checked_count<uint16_t>(
        "KV cache of n_ctx=" + std::to_string(n_ctx) + " for " + std::to_string(n_seq) + " sequences",
        {n_seq, n_layer, n_head_kv, padded_ctx(), head_dim});
    n_past_.assign(static_cast<size_t>(n_seq), 0);
    // new T[] without value-initialisation: large blocks come from fresh zero pages on demand.
    keys_.reset(new uint16_t[n]);
    values_.reset(new uint16_t[n]);
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
            const float* key = new_keys + t * row_width + h * head_dim_;
            const int64_t head = region(seq, layer) + h * head_stride();
            float_to_half_row(new_values + t * row_width + h * head_dim_, values_.get() + head + pos * head_dim_,
                              head_dim_);
            uint16_t* block = keys_.get() + head + pos / kKeyBlock * kKeyBlock * head_dim_;
            for (int64_t d = 0; d < head_dim_; ++d) block[d * kKeyBlock + pos % kKeyBlock] = fp32_to_fp16(key[d]);
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
    // Whole key blocks: the tail of the last one is garbage that attention never reads.
    const int64_t key_halves = (n + kKeyBlock - 1) / kKeyBlock * kKeyBlock * head_dim_;
    const int64_t value_halves = n * head_dim_;
    for (int64_t l = 0; l < n_layer_; ++l) {
        for (int64_t h = 0; h < n_head_kv_; ++h) {
            const int64_t from = region(src, l) + h * head_stride(), to = region(dst, l) + h * head_stride();
            std::memcpy(keys_.get() + to, keys_.get() + from, sizeof(uint16_t) * key_halves);
            std::memcpy(values_.get() + to, values_.get() + from, sizeof(uint16_t) * value_halves);
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
    std::vector<float> key(static_cast<size_t>(head_dim_));
    for (int64_t l = 0; l < n_layer_; ++l) {
        for (int64_t h = 0; h < n_head_kv_; ++h) {
            const int64_t head = region(seq, l) + h * head_stride();
            uint16_t* keys = keys_.get() + head;
            uint16_t* values = values_.get() + head;
            for (int64_t to = n_keep; to < held - n_discard; ++to) {  // upwards: reads stay ahead of writes
                const int64_t from = to + n_discard;
                const uint16_t* src = keys + from / kKeyBlock * kKeyBlock * head_dim_ + from % kKeyBlock;
                uint16_t* dst = keys + to / kKeyBlock * kKeyBlock * head_dim_ + to % kKeyBlock;
                for (int64_t d = 0; d < head_dim_; ++d) key[d] = fp16_to_fp32(src[d * kKeyBlock]);
                rope_apply(key.data(), 1, head_dim_, cos_v, sin_v, n_pairs);
                for (int64_t d = 0; d < head_dim_; ++d) dst[d * kKeyBlock] = fp32_to_fp16(key[d]);
                std::memcpy(values + to * head_dim_, values + from * head_dim_, sizeof(uint16_t) * head_dim_);
            }
        }
    }
    n_past_[seq] = held - n_discard;
}

void KVCache::read(int64_t seq, uint16_t* keys_out, uint16_t* values_out) const {
    const int64_t n = n_past(seq);
    for (int64_t l = 0; l < n_layer_; ++l) {
        for (int64_t h = 0; h < n_head_kv_; ++h) {
            const int64_t head = region(seq, l) + h * head_stride();
            const int64_t out = (l * n_head_kv_ + h) * n * head_dim_;
            std::memcpy(values_out + out, values_.get() + head, sizeof(uint16_t) * n * head_dim_);
            for (int64_t p = 0; p < n; ++p) {
                const uint16_t* block = keys_.get() + head + p / kKeyBlock * kKeyBlock * head_dim_ + p % kKeyBlock;
                for (int64_t d = 0; d < head_dim_; ++d) keys_out[out + p * head_dim_ + d] = block[d * kKeyBlock];
            }
        }
    }
}

void KVCache::write(int64_t seq, int64_t n, const uint16_t* keys_in, const uint16_t* values_in) {
    check_seq(seq);
    if (n < 0 || n > n_ctx_) {
        throw std::out_of_range("a state of " + std::to_string(n) + " positions does not fit a window of " +
                                std::to_string(n_ctx_));
    }
    for (int64_t l = 0; l < n_layer_; ++l) {
        for (int64_t h = 0; h < n_head_kv_; ++h) {
            const int64_t head = region(seq, l) + h * head_stride();
            const int64_t in = (l * n_head_kv_ + h) * n * head_dim_;
            std::memcpy(values_.get() + head, values_in + in, sizeof(uint16_t) * n * head_dim_);
            for (int64_t p = 0; p < n; ++p) {
                uint16_t* block = keys_.get() + head + p / kKeyBlock * kKeyBlock * head_dim_ + p % kKeyBlock;
                for (int64_t d = 0; d < head_dim_; ++d) block[d * kKeyBlock] = keys_in[in + p * head_dim_ + d];
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
