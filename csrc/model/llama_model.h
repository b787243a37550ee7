// The llama forward step: one call evaluates a batch of tokens (a prompt prefill, or one token
// while decoding) through every layer, appends their keys/values to the KV cache and writes logits.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "csrc/core/thread_pool.h"
#include "csrc/kernels/matmul.h"
#include "csrc/model/kv_cache.h"
#include "csrc/model/llama_weights.h"
#include "csrc/model/weight_repack.h"

namespace edgellama {

class LlamaModel {
public:
    // Throws std::invalid_argument when the config and the weight shapes disagree.
    // weights_file_mapped: the weights point into a read-only file mapping, so the pages of the
    // matrices repacked at load can be dropped (see weight_repack.h).
    LlamaModel(const LlamaConfig& config, LlamaWeights weights, int64_t n_ctx, int n_threads,
               bool weights_file_mapped = false);

    // Evaluates tokens at positions n_past() .. n_past()+n_tokens-1 and appends them to the cache.
    // logits: [n_vocab] for the last token, or [n_tokens][n_vocab] when all_logits.
    // Throws std::length_error past n_ctx and std::out_of_range for a token id outside the vocab;
    // the cache is unchanged when it throws.
    void forward(const int32_t* tokens, int64_t n_tokens, float* logits, bool all_logits);

    int64_t n_past() const { return cache_.n_past(); }
    int64_t n_ctx() const { return cache_.n_ctx(); }
    int n_threads() const { return pool_.size(); }
    const LlamaConfig& config() const { return config_; }
    void truncate(int64_t n) { cache_.truncate(n); }
    void reset() { cache_.reset(); }

    // Tokens evaluated per internal batch; longer prompts are processed in chunks of this size.
    // The row-group kernels take 8 tokens per pass while a group stays in cache, so 64 loses no
    // prefill speed against 256 (1B Llama shape pp512, 2 threads: 237 vs 236 tok/s) and keeps the
    // batch scratch at a quarter (peak RSS 743 vs 766 MiB).
    static constexpr int64_t kMaxBatch = 64;

private:
    // Scratch for one batch: sized at construction, reused by every call.
    struct Scratch {
        std::vector<float> x, x_norm, q, attn_out, ffn_gate, ffn_up;  // [kMaxBatch][width]
        std::vector<float> new_keys, new_values;  // [kMaxBatch][kv width], before they go to the cache as halves
        std::vector<float> rope_cos, rope_sin;                        // [kMaxBatch][rope_dim/2]
        std::vector<float> scores;  // [n_threads][kMaxTileTokens][group][n_ctx]
        ActivationBuffer act;
        std::vector<uint8_t> embd_row;  // one token_embd row, when it is read back from row groups
    };

    void validate_shapes() const;
    // Sizes every scratch buffer for n_ctx and n_threads; std::overflow_error when one cannot exist.
    void allocate_scratch(int64_t n_ctx, int n_threads);
    void forward_batch(const int32_t* tokens, int64_t n_tokens, float* logits, bool all_logits);
    void embed(const int32_t* tokens, int64_t n_tokens);
    void attention_block(const LayerWeights& layer, int64_t layer_index, int64_t n_tokens);
    void ffn_block(const LayerWeights& layer, int64_t n_tokens);
    void output_logits(int64_t first_row, int64_t n_rows, float* logits);

    LlamaConfig config_;
    LlamaWeights weights_;
    AlignedBytes repacked_;  // row-group copies of the weights that have a row-group kernel (or null)
    std::vector<double> inv_freq_;  // [rope_dim/2] RoPE frequencies, frequency factors applied
    KVCache cache_;
    ThreadPool pool_;
    Scratch scratch_;
};

}  // namespace edgellama
