// Causal grouped-query attention over the KV cache.
#pragma once

#include <cstdint>

#include "csrc/core/thread_pool.h"

namespace edgellama {

constexpr int64_t kAttentionKeyBlock = 16;
// A prefill attends up to this many consecutive tokens of a KV head together (the scores scratch
// holds as many rows per query head).
constexpr int kMaxTileTokens = 4;

struct AttentionShape {
    int64_t n_head;
    int64_t n_head_kv;
    int64_t head_dim;
};

// Consecutive tokens of one sequence in a batch: rows [first_row, first_row + n_tokens) of q and
// out, at positions first_pos .. first_pos + n_tokens - 1, attending that sequence's cache.
// keys, values: the sequence's layer of IEEE halves (widened to float32 as they are read; all
//               arithmetic is float32), KV head h at + h * kv_head_stride, positions
//               [0, first_pos + n_tokens) valid: values one head_dim row per position; keys in
//               blocks of kAttentionKeyBlock positions, element (p, d) of a head at
//               (p / 16) * 16 * head_dim + d * 16 + p % 16
struct AttentionRun {
    int64_t first_row;
    int64_t n_tokens;
    int64_t first_pos;
    const uint16_t* keys;
    const uint16_t* values;
};

// q:   [rows][n_head*head_dim]; out: the same shape, every row of every run written.
// scores: scratch of pool.size() * kMaxTileTokens * (n_head / n_head_kv) * score_stride floats,
//         score_stride >= first_pos + n_tokens of every run
// Query head h reads KV head h / (n_head / n_head_kv): an index, never a copy. The heads of one
// group are computed together so each cached key/value row is read once per group. The work of all
// runs (run × token tile × KV head) is split across the pool in one job; a token's arithmetic does
// not depend on its run's length, the other runs or the thread count, so a sequence's outputs are
// the same bits alone or batched with others.
void attention(ThreadPool& pool, const AttentionShape& shape, const float* q, const AttentionRun* runs,
               int64_t n_runs, int64_t kv_head_stride, float* out, float* scores, int64_t score_stride);

// One run: tokens [0, n_tokens) at positions first_pos ...
void attention(ThreadPool& pool, const AttentionShape& shape, const float* q, int64_t n_tokens,
               int64_t first_pos, const uint16_t* keys, const uint16_t* values, int64_t kv_head_stride, float* out,
               float* scores, int64_t score_stride);

}  // namespace edgellama
