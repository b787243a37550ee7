// The sampling chain in C++, for apps that use the C ABI without Python. It follows
// edgellama/sampling.py (SamplingParams, Sampler) step for step, for the steps the ABI has:
//
//   1. penalties over the last penalty_last_n accepted tokens (-1: all of them, 0: none):
//      repetition (a positive logit divided by repeat_penalty, a negative one multiplied),
//      frequency (frequency_penalty x occurrences subtracted), presence (presence_penalty
//      subtracted once from every token that occurs); ids >= n_vocab in the history are ignored;
//   2. greedy: temperature 0 takes the argmax of the penalized logits (the lowest id on ties);
//   3. temperature: (logit - max) / temperature;
//   4. top-k: the k largest logits (ties: the lower id);
//   5. min-p: tokens whose probability is at least min_p x the largest;
//   6. top-p: the smallest set of most likely tokens whose probability reaches top_p (ties in
//      probability: the lower id first);
//   7. a draw from what is left, in proportion to the probabilities, with the seeded generator.
//
// Each step sees the distribution renormalised over what the previous ones kept. The vocabulary
// is touched only by O(n_vocab) passes (never sorted); the later steps work on the candidates.
// Buffers proportional to n_vocab are held by the sampler and reused, so a call allocates only
// when it sees a larger vocabulary than before.
//
// Where Python leaves a choice open, this chain fixes it: ties in top-k go to the lower ids (numpy's
// partition takes any), and a NaN anywhere in the logits is refused (Python's top-k may pass over
// one outside its candidates).
//
// Reproducibility: the draws depend only on the seed, the settings, the accepted tokens and the
// logits, on any platform, up to the last bit of the C library's expf (a draw could differ only
// if u fell within that rounding of a boundary between two tokens). The generator is xoshiro256** (Blackman and Vigna, 2018) whose
// 256-bit state is filled with four consecutive outputs of SplitMix64 started at the seed (the
// seeding its authors recommend). A uniform double in [0, 1) is the top 53 bits of one output
// times 2^-53; one draw consumes exactly one output (greedy consumes none). The candidates are
// laid out in ascending id order, so the token drawn is the first whose cumulative weight
// exceeds u x total.
//
// Errors (the C ABI maps them to status codes): std::invalid_argument whose message starts with
// the offending field ("top_p: ...", "n_vocab: ...", "logits: ..."), and ModelOutputError when
// the logits hold a NaN (or +inf when sampling: no distribution exists then), as Python's
// edgellama.errors.ModelOutputError. Logits that are all -inf leave nothing to choose: that is
// std::invalid_argument ("logits: ...").
//
// A Sampler belongs to one thread at a time.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <vector>

namespace edgellama {

// The logits hold NaN (or, when sampling, +inf): the model's weights are corrupt.
class ModelOutputError : public std::runtime_error {
public:
    using runtime_error::runtime_error;
};

// Defaults and ranges are those of Python's SamplingParams.
struct SamplerSettings {
    float temperature = 0.8f;        // finite, >= 0; 0 is greedy
    int32_t top_k = 40;              // >= 0; 0 disables
    float top_p = 0.95f;             // (0, 1]; 1 disables
    float min_p = 0.05f;             // [0, 1]; 0 disables
    float repeat_penalty = 1.0f;     // finite, > 0; 1 disables
    float frequency_penalty = 0.0f;  // finite; 0 disables (negative encourages repeats)
    float presence_penalty = 0.0f;   // finite; 0 disables
    int32_t penalty_last_n = 64;     // >= -1: the window of accepted tokens; 0 disables, -1 all
    uint64_t seed = 0;
};

// Throws std::invalid_argument naming the first field out of range.
void validate(const SamplerSettings& settings);

// xoshiro256** seeded through SplitMix64 (see above): small, fast, and fully specified, so that a
// seed gives the same draws everywhere.
class Xoshiro256StarStar {
public:
    explicit Xoshiro256StarStar(uint64_t seed) { reseed(seed); }
    void reseed(uint64_t seed);
    uint64_t next();
    double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }  // [0, 1)

private:
    uint64_t s_[4];
};

class Sampler {
public:
    explicit Sampler(const SamplerSettings& settings);  // validates

    // Chooses a token from logits[0 .. n_vocab) (not modified) and the history; does not record it.
    // std::invalid_argument for a null pointer or n_vocab outside [1, 2^31).
    int32_t sample(const float* logits, int64_t n_vocab);
    // Records a token into the penalty history (std::invalid_argument for token < 0).
    void accept(int32_t token);
    // Forgets the history and reseeds the generator with settings().seed.
    void reset();
    const SamplerSettings& settings() const { return settings_; }

private:
    const float* penalized(const float* logits, int64_t n);
    void gather_candidates(const float* x, int64_t n, float top);
    void select_top_k(const float* x, int64_t n);
    double weigh();
    struct Ranked {
        float z, w;
        int32_t pos;  // in the candidate arrays
    };
    double keep_nucleus(double total);
    size_t keep_crossing_bin(size_t count, double& need);
    Ranked run_end(size_t count, double need);
    int32_t draw(double total);

    SamplerSettings settings_;
    bool penalties_on_;
    Xoshiro256StarStar rng_;
    std::vector<int32_t> history_;  // accepted tokens (only the window's, once it is full)
    // Reused per-call buffers: the penalized logits, per-id occurrence counts (all zero between
    // calls), and the candidates: their ids (ascending), scaled logits z and weights exp(z).
    std::vector<float> penalized_;
    std::vector<int32_t> counts_;
    std::vector<int32_t> ids_;
    std::vector<float> z_;
    std::vector<float> w_;
    std::vector<int32_t> order_;  // top-k's heap of ids
    std::vector<Ranked> ranked_;  // top-p's working set
    std::vector<double> bin_mass_;  // top-p's histogram
    size_t n_cand_ = 0;
};

}  // namespace edgellama
