// The KV cache of n_seq independent sequences (one per parallel conversation): for every sequence
// and layer, the rotated keys and the values of each position, stored as IEEE half (rounded to
// nearest even), as llama.cpp's default cache: half the memory of float32, and half the bytes every
// decode step reads from a long context.
//
// Layout: sequence-major, so each sequence's region is one contiguous block that a sequence
// operation (clear, truncate, copy a prefix) touches alone:
//   sequence s, layer l, KV head h: at (s * n_layer + l) * n_head_kv + h times head_stride()
//   values [n_ctx][head_dim]: one row per position;
//   keys   [n_ctx / 16][head_dim][16]: blocks of 16 positions, dimension-major inside a block, so
//          the scores of 16 positions are the 16 lanes of one vector sum (no horizontal
//          reductions) and each key block is widened once for all query heads of its group.
// n_ctx (every sequence's own window) is rounded up to whole key blocks.
// Memory: 2 (keys, values) × 2 bytes × n_seq × n_layer × n_head_kv × padded n_ctx × head_dim,
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
    KVCache(int64_t n_layer, int64_t n_ctx, int64_t n_head_kv, int64_t head_dim, int64_t n_seq = 1);

    int64_t n_ctx() const { return n_ctx_; }
    int64_t n_seq() const { return n_seq_; }
    int64_t n_past(int64_t seq) const { return n_past_.at(check_seq(seq)); }

    static constexpr int64_t kKeyBlock = kAttentionKeyBlock;  // positions per key block

    // A sequence's layer of keys and values, KV head h at + h * head_stride(); see the layout above.
    const uint16_t* keys(int64_t seq, int64_t layer) const { return keys_.get() + region(seq, layer); }
    const uint16_t* values(int64_t seq, int64_t layer) const { return values_.get() + region(seq, layer); }
    int64_t head_stride() const { return padded_ctx() * head_dim_; }

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
    // at their new positions gives, without recomputing them.
    void shift(int64_t seq, int64_t n_keep, int64_t n_discard, const float* cos_v, const float* sin_v,
               int64_t n_pairs);
    void advance(int64_t seq, int64_t n_tokens);

    // The positions seq holds, out of the cache as halves in the plain layout
    // [n_layer][n_head_kv][n_past][head_dim] (keys and values alike), for saved state and tests;
    // write() makes seq hold n positions given so.
    void read(int64_t seq, uint16_t* keys_out, uint16_t* values_out) const;
    void write(int64_t seq, int64_t n, const uint16_t* keys_in, const uint16_t* values_in);

private:
    int64_t padded_ctx() const { return (n_ctx_ + kKeyBlock - 1) / kKeyBlock * kKeyBlock; }
    int64_t layer_stride() const { return n_head_kv_ * head_stride(); }
    int64_t region(int64_t seq, int64_t layer) const { return (seq * n_layer_ + layer) * layer_stride(); }
    int64_t check_seq(int64_t seq) const;

    int64_t n_layer_, n_ctx_, n_head_kv_, head_dim_, n_seq_;
    std::vector<int64_t> n_past_;  // [n_seq] positions held per sequence
    std::unique_ptr<uint16_t[]> keys_, values_;
};

}  // namespace edgellama
