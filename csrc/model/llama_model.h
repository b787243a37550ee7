// The llama forward step: one call evaluates a batch of tokens through every layer, appends their
// keys/values to the KV cache and writes logits. The model holds n_seq independent sequences
// (KVCache); a batch may hold decode tokens of many of them and prefill chunks of others: every
// weight matrix is read once for the whole batch, attention runs per sequence over its own cache.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "csrc/core/thread_pool.h"
#include "csrc/kernels/matmul.h"
#include "csrc/model/kv_cache.h"
#include "csrc/model/llama_weights.h"
#include "csrc/model/token_batch.h"
#include "csrc/model/weight_repack.h"

namespace edgellama {

class LlamaModel {
public:
    // Throws std::invalid_argument when the config and the weight shapes disagree.
    // weights_file_mapped: the weights point into a read-only file mapping, so the pages of the
    // matrices repacked at load can be dropped (see weight_repack.h).
    // n_ctx: every sequence's window; n_seq: how many sequences the cache holds; cache_types: its
    // element formats (see KVCache); activations: how every matmul rounds its input (ActPrecision).
    LlamaModel(const LlamaConfig& config, LlamaWeights weights, int64_t n_ctx, int n_threads,
               bool weights_file_mapped = false, int64_t n_seq = 1, CacheTypes cache_types = {},
               ActPrecision activations = ActPrecision::kInt8);

    // Evaluates a batch (see TokenBatch for its rules) and appends every entry to its sequence's
    // cache. logits: [rows][n_vocab], one row per entry that wants logits, in entry order.
    // Throws (std::invalid_argument, std::out_of_range, std::length_error) before anything is
    // evaluated; the cache is unchanged then.
    void forward_batch(const TokenBatch& batch, float* logits);

    // The same evaluation, but what the entries that ask get is the final hidden state: the last
    // layer's output after the output RMSNorm, [rows][n_embd] (embeddings are pooled from it).
    void forward_hidden(const TokenBatch& batch, float* hidden);

    // Sequence 0 alone: tokens at positions n_past() .. n_past()+n_tokens-1.
    // logits: [n_vocab] for the last token, or [n_tokens][n_vocab] when all_logits.
    void forward(const int32_t* tokens, int64_t n_tokens, float* logits, bool all_logits);

    int64_t n_past(int64_t seq = 0) const { return cache_.n_past(seq); }
    int64_t n_ctx() const { return cache_.n_ctx(); }
    int64_t n_seq() const { return cache_.n_seq(); }
    int n_threads() const { return pool_.size(); }
    const LlamaConfig& config() const { return config_; }
    ActPrecision activations() const { return scratch_.act.precision(); }
    void truncate(int64_t n) { cache_.truncate(0, n); }
    void reset() { cache_.clear(0); }
    // Context shift of one sequence (KVCache::shift): positions [n_keep, n_keep + n_discard) are
    // dropped, the later keys rotated to their new positions.
    void seq_shift(int64_t seq, int64_t n_keep, int64_t n_discard);
    KVCache& cache() { return cache_; }  // the sequence operations (clear, truncate, copy_prefix)

    // Tokens evaluated per internal batch; longer prompts are processed in chunks of this size.
    // The row-group kernels take 8 tokens per pass while a group stays in cache, so 64 loses no
    // prefill speed against 256 (1B Llama shape pp512, 2 threads: 237 vs 236 tok/s) and keeps the
    // batch scratch at a quarter (peak RSS 743 vs 766 MiB).
    static constexpr int64_t kMaxBatch = 64;

private:
    // Scratch for one batch: sized at construction, reused by every call.
    struct Scratch {
        std::vector<float> x, x_norm, q, attn_out, ffn_gate, ffn_up;  // [kMaxBatch][width]
        std::vector<float> new_keys, new_values;  // [kMaxBatch][kv width], before they go to the cache
        std::vector<float> rope_cos, rope_sin;                        // [kMaxBatch][rope_dim/2]
        std::vector<float> scores;  // [n_threads][kMaxTileTokens][group][n_ctx]
        ActivationBuffer act;
        std::vector<uint8_t> embd_row;  // one token_embd row, when it is read back from row groups
    };

    // Sizes every scratch buffer for n_ctx and n_threads; std::overflow_error when one cannot exist.
    void allocate_scratch(int64_t n_ctx, int n_threads);
    // Entries [first, first + n_tokens) of a checked batch (n_tokens <= kMaxBatch), whose runs
    // (entry indices relative to first) are `runs`; writes the rows that want logits.
    enum class Output { kLogits, kHidden };
    void evaluate(const TokenBatch& batch, float* out, Output output);
    void step(const TokenBatch& batch, int64_t first, int64_t n_tokens, const std::vector<SequenceRun>& runs,
              float* out, Output output);
    void embed(const int32_t* tokens, int64_t n_tokens);
    void attention_block(const LayerWeights& layer, int64_t layer_index, int64_t n_tokens,
                         const std::vector<SequenceRun>& runs);
    void ffn_block(const LayerWeights& layer, int64_t n_tokens);
    // The listed rows of x after the output RMSNorm into x_norm's first rows; then their logits.
    void output_norm(const std::vector<int64_t>& rows);
    void output_logits(const std::vector<int64_t>& rows, float* logits);

    LlamaConfig config_;
    LlamaWeights weights_;
    AlignedBytes repacked_;  // row-group copies of the weights that have a row-group kernel (or null)
    std::vector<double> inv_freq_;  // [rope_dim/2] RoPE frequencies, frequency factors applied
    KVCache cache_;
    ThreadPool pool_;
    Scratch scratch_;
    std::vector<AttentionRun> attention_runs_;  // reused by every step
    std::vector<int64_t> logits_rows_;
};

}  // namespace edgellama
