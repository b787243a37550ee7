// Causal grouped-query attention over the KV cache.
#pragma once

#include <cstdint>

#include "csrc/core/thread_pool.h"
#include "csrc/kernels/kv_blocks.h"

namespace edgellama {

// A prefill attends up to this many consecutive tokens of a KV head together (the scores scratch
// holds as many rows per query head).
constexpr int kMaxTileTokens = 4;

struct AttentionShape {
    int64_t n_head;
    int64_t n_head_kv;
    int64_t head_dim;
};

// How a layer of the KV cache is stored (csrc/kernels/kv_blocks.h): the element formats of keys
// and values, and the bytes from one KV head's keys (values) to the next's.
struct KVLayout {
    CacheTypes types;
    int64_t key_head_stride;
    int64_t value_head_stride;
};

// Consecutive tokens of one sequence in a batch: rows [first_row, first_row + n_tokens) of q and
// out, at positions first_pos .. first_pos + n_tokens - 1, attending that sequence's cache.
// keys, values: the sequence's layer, KV head h at + h * the layout's head stride, positions
//               [0, first_pos + n_tokens) valid, in the layout of kv_blocks.h (key tiles, value
//               rows). Elements are widened to float32 as they are read (a quantized block's
//               codes first, its scale applied to their sums); all arithmetic is float32.
struct AttentionRun {
    int64_t first_row;
    int64_t n_tokens;
    int64_t first_pos;
    const uint8_t* keys;
    const uint8_t* values;
};

// q:   [rows][n_head*head_dim]; out: the same shape, every row of every run written.
// scores: scratch of pool.size() * kMaxTileTokens * (n_head / n_head_kv) * score_stride floats,
//         score_stride >= first_pos + n_tokens of every run
// Query head h reads KV head h / (n_head / n_head_kv): an index, never a copy. The heads of one
// group are computed together so each cached key/value row is read once per group. The work of all
// runs (run × token tile × KV head) is split across the pool in one job; a token's arithmetic does
// not depend on its run's length, the other runs or the thread count, so a sequence's outputs are
// the same bits alone or batched with others.
void attention(ThreadPool& pool, const AttentionShape& shape, const KVLayout& layout, const float* q,
               const AttentionRun* runs, int64_t n_runs, float* out, float* scores, int64_t score_stride);

}  // namespace edgellama
