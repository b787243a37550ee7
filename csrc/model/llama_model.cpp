#include "csrc/model/llama_model.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "csrc/kernels/attention.h"
#include "csrc/kernels/elementwise.h"
#include "csrc/model/checked_size.h"

namespace edgellama {

namespace {

void add_in_place(float* x, const float* delta, int64_t n) {
    for (int64_t i = 0; i < n; ++i) x[i] += delta[i];
}

}  // namespace

LlamaModel::LlamaModel(const LlamaConfig& config, LlamaWeights weights, int64_t n_ctx, int n_threads,
                       bool weights_file_mapped, int64_t n_seq, CacheTypes cache_types, ActPrecision activations)
    : config_(config),
      weights_(std::move(weights)),
      cache_(config.n_layer, n_ctx, config.n_head_kv, config.head_dim, n_seq, cache_types),
      pool_(n_threads) {
    validate_llama_shapes(config_, weights_);
    scratch_.act = ActivationBuffer(activations);
    allocate_scratch(n_ctx, n_threads);  // before the repack: an impossible size fails at once
    repacked_ = repack_row_groups(pool_, weights_, weights_file_mapped);
    scratch_.embd_row.resize(weights_.token_embd.row_bytes);
    const int64_t n_pairs = config_.rope_dim / 2;
    inv_freq_.resize(n_pairs);
    for (int64_t i = 0; i < n_pairs; ++i) {
        double freq = std::pow(static_cast<double>(config_.rope_base),
                               -2.0 * static_cast<double>(i) / static_cast<double>(config_.rope_dim));
        if (weights_.rope_freqs) freq /= weights_.rope_freqs[i];
        inv_freq_[i] = freq;
    }
}

void LlamaModel::allocate_scratch(int64_t n_ctx, int n_threads) {
    const LlamaConfig& c = config_;
    const int64_t batch = std::min(kMaxBatch, n_ctx);
    const auto floats = [](const char* what, std::initializer_list<int64_t> counts) {
        return checked_count<float>(std::string("scratch ") + what, counts);
    };
    scratch_.x.resize(floats("x", {batch, c.n_embd}));
    scratch_.x_norm.resize(floats("x_norm", {batch, std::max(c.n_embd, c.n_head * c.head_dim)}));
    scratch_.q.resize(floats("q", {batch, c.n_head, c.head_dim}));
    scratch_.attn_out.resize(floats("attn_out", {batch, c.n_head, c.head_dim}));
    scratch_.new_keys.resize(floats("new keys", {batch, c.n_head_kv, c.head_dim}));
    scratch_.new_values.resize(floats("new values", {batch, c.n_head_kv, c.head_dim}));
    scratch_.ffn_gate.resize(floats("ffn_gate", {batch, c.n_ff}));
    scratch_.ffn_up.resize(floats("ffn_up", {batch, c.n_ff}));
    scratch_.rope_cos.resize(floats("rope", {batch, c.rope_dim / 2}));
    scratch_.rope_sin.resize(floats("rope", {batch, c.rope_dim / 2}));
    // Every thread's tile of query rows against up to n_ctx positions; attention indexes it in
    // int64, which the check keeps from wrapping.
    scratch_.scores.resize(floats("attention scores", {n_threads, kMaxTileTokens, c.n_head / c.n_head_kv, n_ctx}));
}

void LlamaModel::forward(const int32_t* tokens, int64_t n_tokens, float* logits, bool all_logits) {
    if (n_tokens <= 0) throw std::invalid_argument("forward needs at least one token");
    const std::vector<int32_t> seq_ids(static_cast<size_t>(n_tokens), 0);
    std::vector<int64_t> positions(static_cast<size_t>(n_tokens));
    std::vector<uint8_t> want(static_cast<size_t>(n_tokens), all_logits ? 1 : 0);
    for (int64_t i = 0; i < n_tokens; ++i) positions[i] = n_past() + i;
    want.back() = 1;
    forward_batch(TokenBatch{tokens, seq_ids.data(), positions.data(), want.data(), n_tokens}, logits);
}

void LlamaModel::forward_batch(const TokenBatch& batch, float* logits) { evaluate(batch, logits, Output::kLogits); }

void LlamaModel::forward_hidden(const TokenBatch& batch, float* hidden) { evaluate(batch, hidden, Output::kHidden); }

void LlamaModel::evaluate(const TokenBatch& batch, float* out, Output output) {
    const std::vector<SequenceRun> runs = plan_batch(batch, config_.n_vocab, cache_.n_seq(), cache_.n_ctx(),
                                                     [this](int32_t seq) { return cache_.n_past(seq); });
    const int64_t max_batch = static_cast<int64_t>(scratch_.x.size()) / config_.n_embd;
    // Chunks of at most max_batch entries; a run crossing a chunk boundary continues in the next
    // chunk from the positions the previous one stored.
    std::vector<SequenceRun> chunk_runs;
    size_t next_run = 0;
    int64_t run_done = 0;  // entries of runs[next_run] already evaluated
    for (int64_t start = 0; start < batch.n; start += max_batch) {
        const int64_t n = std::min(max_batch, batch.n - start);
        chunk_runs.clear();
        while (next_run < runs.size() && runs[next_run].first + run_done < start + n) {
            const SequenceRun& run = runs[next_run];
            const int64_t take = std::min(run.n_tokens - run_done, start + n - (run.first + run_done));
            chunk_runs.push_back(SequenceRun{run.seq, run.first + run_done - start, take,
                                             cache_.n_past(run.seq)});
            run_done += take;
            if (run_done == run.n_tokens) {
                ++next_run;
                run_done = 0;
            }
        }
        step(batch, start, n, chunk_runs, out, output);
        const int64_t row_width = output == Output::kLogits ? config_.n_vocab : config_.n_embd;
        if (out != nullptr) {
            for (int64_t i = start; i < start + n; ++i) out += (batch.want_logits[i] != 0) * row_width;
        }
    }
}

void LlamaModel::seq_shift(int64_t seq, int64_t n_keep, int64_t n_discard) {
    // RoPE of position -n_discard: composed with a key's rotation at position p it gives the
    // rotation at p - n_discard. Magnitude 1: the keys already carry YaRN's scale.
    const int64_t n_pairs = config_.rope_dim / 2;
    std::vector<float> cos_v(static_cast<size_t>(n_pairs)), sin_v(static_cast<size_t>(n_pairs));
    rope_angles(-n_discard, inv_freq_.data(), n_pairs, cos_v.data(), sin_v.data());
    cache_.shift(seq, n_keep, n_discard, cos_v.data(), sin_v.data(), n_pairs);
}

void LlamaModel::step(const TokenBatch& batch, int64_t first, int64_t n_tokens, const std::vector<SequenceRun>& runs,
                      float* out, Output output) {
    const int64_t n_pairs = config_.rope_dim / 2;
    embed(batch.tokens + first, n_tokens);
    for (int64_t t = 0; t < n_tokens; ++t) {
        rope_angles(batch.positions[first + t], inv_freq_.data(), n_pairs, &scratch_.rope_cos[t * n_pairs],
                    &scratch_.rope_sin[t * n_pairs], config_.rope_magnitude);
    }
    for (int64_t l = 0; l < config_.n_layer; ++l) {
        attention_block(weights_.layers[l], l, n_tokens, runs);
        ffn_block(weights_.layers[l], n_tokens);
    }
    for (const SequenceRun& run : runs) cache_.advance(run.seq, run.n_tokens);
    logits_rows_.clear();
    for (int64_t t = 0; t < n_tokens; ++t) {
        if (batch.want_logits[first + t]) logits_rows_.push_back(t);
    }
    if (logits_rows_.empty()) return;
    if (output == Output::kLogits) {
        output_logits(logits_rows_, out);
        return;
    }
    output_norm(logits_rows_);
    std::copy(scratch_.x_norm.begin(), scratch_.x_norm.begin() + logits_rows_.size() * config_.n_embd, out);
}

void LlamaModel::embed(const int32_t* tokens, int64_t n_tokens) {
    const WeightMatrix& e = weights_.token_embd;
    for (int64_t t = 0; t < n_tokens; ++t) {
        const uint8_t* row = e.row(tokens[t]);
        if (e.groups != nullptr) {
            e.group_kernel->unpack_row(e.cols, e.groups + (tokens[t] / kGroupRows) * e.group_bytes,
                                       tokens[t] % kGroupRows, scratch_.embd_row.data());
            row = scratch_.embd_row.data();
        }
        e.traits->dequantize_row(row, &scratch_.x[t * config_.n_embd], config_.n_embd);
    }
}

void LlamaModel::attention_block(const LayerWeights& layer, int64_t layer_index, int64_t n_tokens,
                                 const std::vector<SequenceRun>& runs) {
    const LlamaConfig& c = config_;
    const int64_t q_width = c.n_head * c.head_dim, kv_width = c.n_head_kv * c.head_dim;
    const int64_t n_pairs = c.rope_dim / 2;
    float* x = scratch_.x.data();
    float* x_norm = scratch_.x_norm.data();
    for (int64_t t = 0; t < n_tokens; ++t) {
        rms_norm(x + t * c.n_embd, layer.attn_norm, x_norm + t * c.n_embd, c.n_embd, c.rms_eps);
    }
    float* new_keys = scratch_.new_keys.data();
    float* new_values = scratch_.new_values.data();
    const MatmulTarget qkv[] = {{&layer.wq, scratch_.q.data(), q_width},
                                {&layer.wk, new_keys, kv_width},
                                {&layer.wv, new_values, kv_width}};
    matmul_shared_input(pool_, scratch_.act, qkv, 3, x_norm, c.n_embd, n_tokens);
    // RoPE in float32, then the new keys and values go into this layer's cache rows (halves or blocks).
    for (int64_t t = 0; t < n_tokens; ++t) {
        const float* cos_v = &scratch_.rope_cos[t * n_pairs];
        const float* sin_v = &scratch_.rope_sin[t * n_pairs];
        rope_apply(&scratch_.q[t * q_width], c.n_head, c.head_dim, cos_v, sin_v, n_pairs);
        rope_apply(new_keys + t * kv_width, c.n_head_kv, c.head_dim, cos_v, sin_v, n_pairs);
    }
    // A quantized cache holds Hadamard-turned keys and values (kv_blocks.h): queries turn alike.
    hadamard_rotate(scratch_.q.data(), n_tokens * q_width, cache_.key_rotation());
    hadamard_rotate(new_keys, n_tokens * kv_width, cache_.key_rotation());
    hadamard_rotate(new_values, n_tokens * kv_width, cache_.value_rotation());

    attention_runs_.clear();
    for (const SequenceRun& run : runs) {
        cache_.store(run.seq, layer_index, run.first_pos, run.n_tokens, new_keys + run.first * kv_width,
                     new_values + run.first * kv_width);
        attention_runs_.push_back(AttentionRun{run.first, run.n_tokens, run.first_pos,
                                               cache_.keys(run.seq, layer_index), cache_.values(run.seq, layer_index)});
    }
    attention(pool_, AttentionShape{c.n_head, c.n_head_kv, c.head_dim}, cache_.layout(), scratch_.q.data(),
              attention_runs_.data(), static_cast<int64_t>(attention_runs_.size()), scratch_.attn_out.data(),
              scratch_.scores.data(), cache_.n_ctx());
    hadamard_rotate(scratch_.attn_out.data(), n_tokens * q_width, cache_.value_rotation());  // back from H·v
    // x_norm is free again: it receives the projection before the residual add.
    matmul(pool_, scratch_.act, layer.wo, scratch_.attn_out.data(), q_width, n_tokens, x_norm, c.n_embd);
    add_in_place(x, x_norm, n_tokens * c.n_embd);
}

void LlamaModel::ffn_block(const LayerWeights& layer, int64_t n_tokens) {
    const LlamaConfig& c = config_;
    float* x = scratch_.x.data();
    float* x_norm = scratch_.x_norm.data();
    for (int64_t t = 0; t < n_tokens; ++t) {
        rms_norm(x + t * c.n_embd, layer.ffn_norm, x_norm + t * c.n_embd, c.n_embd, c.rms_eps);
    }
    const MatmulTarget gate_up[] = {{&layer.w_gate, scratch_.ffn_gate.data(), c.n_ff},
                                    {&layer.w_up, scratch_.ffn_up.data(), c.n_ff}};
    matmul_shared_input(pool_, scratch_.act, gate_up, 2, x_norm, c.n_embd, n_tokens);
    swiglu(scratch_.ffn_gate.data(), scratch_.ffn_up.data(), n_tokens * c.n_ff);
    matmul(pool_, scratch_.act, layer.w_down, scratch_.ffn_gate.data(), c.n_ff, n_tokens, x_norm, c.n_embd);
    add_in_place(x, x_norm, n_tokens * c.n_embd);
}

void LlamaModel::output_norm(const std::vector<int64_t>& rows) {
    const LlamaConfig& c = config_;
    for (size_t r = 0; r < rows.size(); ++r) {
        rms_norm(&scratch_.x[rows[r] * c.n_embd], weights_.output_norm, &scratch_.x_norm[r * c.n_embd], c.n_embd,
                 c.rms_eps);
    }
}

void LlamaModel::output_logits(const std::vector<int64_t>& rows, float* logits) {
    const LlamaConfig& c = config_;
    output_norm(rows);
    matmul(pool_, scratch_.act, weights_.output, scratch_.x_norm.data(), c.n_embd, static_cast<int64_t>(rows.size()),
           logits, c.n_vocab);
}

}  // namespace edgellama
