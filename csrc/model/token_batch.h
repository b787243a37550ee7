// A forward call's batch: entry i evaluates token tokens[i] of sequence seq_ids[i] at position
// positions[i]; want_logits[i] != 0 asks for that entry's logits (rows in entry order). This is the
// contract every backend's step shares, checked here once before anything is evaluated:
//   - each sequence's entries form one contiguous run, in position order, continuing that
//     sequence's cache (the first at its n_past), and ending inside its window n_ctx;
//   - tokens lie in the vocabulary and sequence ids in [0, n_seq).
// A batch may mix one decode token of many sequences with prefill chunks of others.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

namespace edgellama {

struct TokenBatch {
    const int32_t* tokens = nullptr;
    const int32_t* seq_ids = nullptr;
    const int64_t* positions = nullptr;
    const uint8_t* want_logits = nullptr;
    int64_t n = 0;
};

// Consecutive entries [first, first + n_tokens) of one sequence, at positions first_pos ...
struct SequenceRun {
    int32_t seq;
    int64_t first;
    int64_t n_tokens;
    int64_t first_pos;
};

// The batch's runs, in entry order. Throws std::invalid_argument (shape of the batch),
// std::out_of_range (a token or sequence id) or std::length_error (past n_ctx); nothing is changed
// then. n_past(seq) gives the positions a sequence holds before the call.
std::vector<SequenceRun> plan_batch(const TokenBatch& batch, int64_t n_vocab, int64_t n_seq, int64_t n_ctx,
                                   const std::function<int64_t(int32_t)>& n_past);

// The same checks for an engine that holds one sequence: n_tokens tokens after n_past cached ones.
void check_sequence_tokens(const int32_t* tokens, int64_t n_tokens, int64_t n_vocab, int64_t n_past, int64_t n_ctx);

// How many entries want logits: the rows of the logits output.
int64_t count_logits_rows(const TokenBatch& batch);

}  // namespace edgellama
