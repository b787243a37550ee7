// The KV cache of n_seq independent sequences (one per parallel conversation): for every sequence
// and layer, the rotated keys and the values of each position, in the element formats chosen at
// creation (csrc/kernels/kv_blocks.h): IEEE half (rounded to nearest even, as llama.cpp's default
// cache) or the q8_0 / q4_0 blocks, which take 53% / 28% of the memory, and of the bytes every
// decode step reads from a long context.
//
// Layout: sequence-major, so each sequence's region is one contiguous block that a sequence
// operation (clear, truncate, copy a prefix) touches alone:
//   sequence s, layer l, KV head h: keys at (s * n_layer + l) * n_head_kv + h times
//   key_head_stride() bytes, values likewise with value_head_stride();
//   values: one row per position;
//   keys: tiles of 16 positions, dimension-major inside a tile, so the scores of 16 positions are
//         the 16 lanes of one vector sum (no horizontal reductions) and each key tile is widened
//         once for all query heads of its group.
// n_ctx (every sequence's own window) is rounded up to whole key tiles.
// Memory: n_seq × n_layer × n_head_kv × padded n_ctx × (the key and value bytes per position),
// reserved once at model creation; pages are touched only as positions fill, so a large n_ctx or
// many sequences cost address space, not resident memory, until used.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "csrc/kernels/attention.h"

namespace edgellama {

class KVCache {
public:
    // std::invalid_argument when a quantized type cannot hold heads of head_dim elements.
    KVCache(int64_t n_layer, int64_t n_ctx, int64_t n_head_kv, int64_t head_dim, int64_t n_seq = 1,
            CacheTypes types = {});

    int64_t n_ctx() const { return n_ctx_; }
    int64_t n_seq() const { return n_seq_; }
    int64_t n_past(int64_t seq) const { return n_past_.at(check_seq(seq)); }

    static constexpr int64_t kKeyBlock = kAttentionKeyBlock;  // positions per key tile

    // A sequence's layer of keys and values, KV head h at + h * layout()'s strides (bytes).
    const uint8_t* keys(int64_t seq, int64_t layer) const { return keys_.get() + region(seq, layer) * key_head_stride(); }
    const uint8_t* values(int64_t seq, int64_t layer) const {
        return values_.get() + region(seq, layer) * value_head_stride();
    }
    KVLayout layout() const { return {types_, key_head_stride(), value_head_stride()}; }
    CacheTypes types() const { return types_; }
    // Hadamard chunk sizes of the stored keys and values (kv_blocks.h); 0 where not rotated.
    int64_t key_rotation() const { return edgellama::key_rotation(types_.keys, head_dim_); }
    int64_t value_rotation() const { return edgellama::value_rotation(types_.values, head_dim_); }
    // Bytes of one position of one layer and KV head, keys and values (a key's plain row; see read()).
    int64_t key_row_bytes() const { return row_bytes(types_.keys, head_dim_); }
    int64_t value_row_bytes() const { return row_bytes(types_.values, head_dim_); }

    // Stores the keys and values of positions first_pos .. first_pos + n_tokens - 1 of one layer of
    // one sequence, given as float rows [n_tokens][n_head_kv * head_dim] (heads side by side).
    void store(int64_t seq, int64_t layer, int64_t first_pos, int64_t n_tokens, const float* new_keys,
               const float* new_values);

    // Positions [0, n) of seq stay valid; later ones are forgotten (a shared prefix is reused).
    void truncate(int64_t seq, int64_t n);
    void clear(int64_t seq) { n_past_.at(check_seq(seq)) = 0; }
    void clear_all();
    // dst holds the first n positions of src afterwards (src unchanged); a shared prompt prefix is
    // computed once. dst == src truncates.
    void copy_prefix(int64_t src, int64_t dst, int64_t n);
    // Context shift: positions [n_keep, n_keep + n_discard) of seq are dropped and the later ones
    // move down by n_discard, each key's leading n_pairs RoPE pairs rotated by the angle whose
    // cos and sin are given per pair (RoPE of position -n_discard): the keys then hold what RoPE
    // at their new positions gives, without recomputing them (a Hadamard-turned key is turned
    // back for the RoPE and again after).
    void shift(int64_t seq, int64_t n_keep, int64_t n_discard, const float* cos_v, const float* sin_v,
               int64_t n_pairs);
    void advance(int64_t seq, int64_t n_tokens);

    // The first n positions seq holds (n <= n_past), out of the cache in the plain layout
    // [n_layer][n_head_kv][n][row bytes]: each position's row as halves or the format's GGUF
    // blocks (key_row_bytes(), value_row_bytes()), for saved state and tests; write() makes seq
    // hold n positions given so.
    void read(int64_t seq, int64_t n, uint8_t* keys_out, uint8_t* values_out) const;
    void write(int64_t seq, int64_t n, const uint8_t* keys_in, const uint8_t* values_in);

private:
    int64_t padded_ctx() const { return (n_ctx_ + kKeyBlock - 1) / kKeyBlock * kKeyBlock; }
    int64_t key_head_stride() const { return padded_ctx() / kKeyBlock * key_tile_bytes_; }
    int64_t value_head_stride() const { return padded_ctx() * value_row_bytes(); }
    // Index of (seq, layer)'s first KV head among all heads of the cache.
    int64_t region(int64_t seq, int64_t layer) const { return (seq * n_layer_ + layer) * n_head_kv_; }
    uint8_t* key_head(int64_t seq, int64_t layer, int64_t h) {
        return keys_.get() + (region(seq, layer) + h) * key_head_stride();
    }
    uint8_t* value_head(int64_t seq, int64_t layer, int64_t h) {
        return values_.get() + (region(seq, layer) + h) * value_head_stride();
    }
    const uint8_t* key_head(int64_t seq, int64_t layer, int64_t h) const {
        return keys_.get() + (region(seq, layer) + h) * key_head_stride();
    }
    const uint8_t* value_head(int64_t seq, int64_t layer, int64_t h) const {
        return values_.get() + (region(seq, layer) + h) * value_head_stride();
    }
    int64_t check_seq(int64_t seq) const;

    int64_t n_layer_, n_ctx_, n_head_kv_, head_dim_, n_seq_;
    CacheTypes types_;
    int64_t key_tile_bytes_;
    std::vector<int64_t> n_past_;  // [n_seq] positions held per sequence
    std::unique_ptr<uint8_t[]> keys_, values_;
};

}  // namespace edgellama
