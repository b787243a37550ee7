#include "csrc/model/token_batch.h"

#include <stdexcept>
#include <string>

namespace edgellama {

namespace {

void check_token(int32_t token, int64_t n_vocab) {
    if (token < 0 || token >= n_vocab) {
        throw std::out_of_range("token id " + std::to_string(token) + " outside the vocabulary [0, " +
                                std::to_string(n_vocab) + ")");
    }
}

void check_window(int64_t seq, int64_t n_past, int64_t n_tokens, int64_t n_ctx) {
    if (n_past + n_tokens > n_ctx) {
        throw std::length_error("context overflow: sequence " + std::to_string(seq) + " holds " +
                                std::to_string(n_past) + " positions; " + std::to_string(n_tokens) +
                                " new tokens exceed n_ctx " + std::to_string(n_ctx));
    }
}

}  // namespace

void check_sequence_tokens(const int32_t* tokens, int64_t n_tokens, int64_t n_vocab, int64_t n_past, int64_t n_ctx) {
    if (n_tokens <= 0) throw std::invalid_argument("forward needs at least one token");
    for (int64_t i = 0; i < n_tokens; ++i) check_token(tokens[i], n_vocab);
    check_window(0, n_past, n_tokens, n_ctx);
}

std::vector<SequenceRun> plan_batch(const TokenBatch& batch, int64_t n_vocab, int64_t n_seq, int64_t n_ctx,
                                    const std::function<int64_t(int32_t)>& n_past) {
    if (batch.n <= 0) throw std::invalid_argument("forward needs at least one token");
    std::vector<SequenceRun> runs;
    std::vector<bool> seen(static_cast<size_t>(n_seq), false);
    for (int64_t i = 0; i < batch.n; ++i) {
        const int32_t token = batch.tokens[i], seq = batch.seq_ids[i];
        check_token(token, n_vocab);
        if (seq < 0 || seq >= n_seq) {
            throw std::out_of_range("sequence id " + std::to_string(seq) + " outside [0, " + std::to_string(n_seq) +
                                    ")");
        }
        if (runs.empty() || runs.back().seq != seq) {
            if (seen[seq]) {
                throw std::invalid_argument("the entries of sequence " + std::to_string(seq) +
                                            " must be consecutive in the batch");
            }
            seen[seq] = true;
            runs.push_back(SequenceRun{seq, i, 0, n_past(seq)});
        }
        SequenceRun& run = runs.back();
        const int64_t expected = run.first_pos + run.n_tokens;
        if (batch.positions[i] != expected) {
            throw std::invalid_argument("sequence " + std::to_string(seq) + ": position " +
                                        std::to_string(batch.positions[i]) + " where " + std::to_string(expected) +
                                        " comes next");
        }
        run.n_tokens += 1;
    }
    for (const SequenceRun& run : runs) check_window(run.seq, run.first_pos, run.n_tokens, n_ctx);
    return runs;
}

int64_t count_logits_rows(const TokenBatch& batch) {
    int64_t rows = 0;
    for (int64_t i = 0; i < batch.n; ++i) rows += batch.want_logits[i] != 0;
    return rows;
}

}  // namespace edgellama
