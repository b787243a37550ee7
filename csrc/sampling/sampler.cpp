// The sampling chain: see sampler.h for the steps, their semantics and the generator.
// IEEE arithmetic is assumed (no -ffast-math): the NaN checks and the -inf handling rely on it.
#include "csrc/sampling/sampler.h"

#include <algorithm>
#include <cfloat>
#include <cmath>
#include <cstdio>
#include <limits>
#include <string>

namespace edgellama {

namespace {

constexpr float kInf = std::numeric_limits<float>::infinity();
// Top-p sorts its working set once it is this small; larger sets are halved by selection first.
constexpr size_t kSortBelow = 64;
// Larger top-p sets are first narrowed by a histogram of kBins bins.
constexpr size_t kHistogramAbove = 2048;
constexpr size_t kBins = 2048;

[[noreturn]] void invalid(const char* field, const std::string& problem) {
    throw std::invalid_argument(std::string(field) + ": " + problem);
}

std::string shown(double value) {
    char text[32];
    std::snprintf(text, sizeof text, "%.9g", value);
    return text;
}

void check_real(const char* field, float value, const char* wanted, bool in_range) {
    if (!std::isfinite(value) || !in_range) {
        invalid(field, std::string("must be a finite number") + wanted + ", got " + shown(value));
    }
}

// a * b rounded once to float, as numpy's float32 product: the double product of two floats is
// exact, and rounding it before the caller's subtraction keeps the compiler from fusing the two
// into one multiply-add (whose single rounding would differ from Python's in the last bit).
float product(float a, float b) {
    return static_cast<float>(static_cast<double>(a) * static_cast<double>(b));
}

// The penalties of sampling.py's adjusted_logits, in its float32 operation order.
float penalize(float v, int32_t count, const SamplerSettings& s) {
    if (s.repeat_penalty != 1.0f) {
        v = v > 0.0f ? v / s.repeat_penalty : product(v, s.repeat_penalty);
    }
    v = v - product(static_cast<float>(count), s.frequency_penalty);
    return v - s.presence_penalty;
}

[[noreturn]] void nothing_to_choose() {
    invalid("logits", "every logit is -inf: nothing is left to choose");
}

[[noreturn]] void model_output(const char* what) {
    throw ModelOutputError(std::string("a logit is ") + what +
                           ": the model's weights hold NaN or infinite values");
}

// numpy's argmax: the first largest entry. Any NaN is the model's fault, as in Python (whose
// argmax returns the first NaN, which it then refuses).
int32_t greedy(const float* x, int64_t n) {
    int64_t best = 0;
    for (int64_t i = 0; i < n; ++i) {
        if (std::isnan(x[i])) model_output("NaN");
        if (x[i] > x[best]) best = i;
    }
    if (x[best] == -kInf) nothing_to_choose();
    return static_cast<int32_t>(best);
}

// The largest logit; NaN anywhere or +inf (no distribution exists) is ModelOutputError. Eight
// independent lanes, so that the compiler can keep them in one SIMD register (a single running
// maximum is a serial chain it may not reorder).
float checked_max(const float* x, int64_t n) {
    constexpr int kLanes = 8;
    float lane[kLanes];
    int32_t nan[kLanes] = {};
    std::fill(lane, lane + kLanes, -kInf);
    int64_t i = 0;
    for (; i + kLanes <= n; i += kLanes) {
        for (int l = 0; l < kLanes; ++l) {
            lane[l] = x[i + l] > lane[l] ? x[i + l] : lane[l];
            nan[l] |= x[i + l] != x[i + l];
        }
    }
    for (; i < n; ++i) {
        lane[0] = x[i] > lane[0] ? x[i] : lane[0];
        nan[0] |= x[i] != x[i];
    }
    float top = -kInf;
    for (int l = 0; l < kLanes; ++l) {
        if (nan[l]) model_output("NaN");
        top = std::max(top, lane[l]);
    }
    if (top == -kInf) nothing_to_choose();
    if (top == kInf) model_output("inf");
    return top;
}

uint64_t splitmix64(uint64_t& state) {
    uint64_t z = (state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

}  // namespace

void validate(const SamplerSettings& s) {
    check_real("temperature", s.temperature, " >= 0", s.temperature >= 0.0f);
    if (s.top_k < 0) invalid("top_k", "must be an integer >= 0, got " + std::to_string(s.top_k));
    check_real("top_p", s.top_p, " > 0 and <= 1", s.top_p > 0.0f && s.top_p <= 1.0f);
    check_real("min_p", s.min_p, " >= 0 and <= 1", s.min_p >= 0.0f && s.min_p <= 1.0f);
    check_real("repeat_penalty", s.repeat_penalty, " > 0", s.repeat_penalty > 0.0f);
    check_real("frequency_penalty", s.frequency_penalty, "", true);
    check_real("presence_penalty", s.presence_penalty, "", true);
    if (s.penalty_last_n < -1) {
        invalid("penalty_last_n", "must be an integer >= -1, got " + std::to_string(s.penalty_last_n));
    }
}

void Xoshiro256StarStar::reseed(uint64_t seed) {
    uint64_t state = seed;
    for (uint64_t& word : s_) word = splitmix64(state);  // never all zero: SplitMix64 is a bijection
}

uint64_t Xoshiro256StarStar::next() {
    const uint64_t result = rotl(s_[1] * 5, 7) * 9;
    const uint64_t t = s_[1] << 17;
    s_[2] ^= s_[0];
    s_[3] ^= s_[1];
    s_[1] ^= s_[2];
    s_[0] ^= s_[3];
    s_[2] ^= t;
    s_[3] = rotl(s_[3], 45);
    return result;
}

Sampler::Sampler(const SamplerSettings& settings)
    : settings_((validate(settings), settings)),
      penalties_on_(settings.penalty_last_n != 0 &&
                    (settings.repeat_penalty != 1.0f || settings.frequency_penalty != 0.0f ||
                     settings.presence_penalty != 0.0f)),
      rng_(settings.seed) {}

void Sampler::accept(int32_t token) {
    if (token < 0) invalid("token", "must be a token id >= 0, got " + std::to_string(token));
    if (!penalties_on_) return;  // nothing reads the history
    history_.push_back(token);
    // A window of N keeps at most 2N tokens: dropping the older half now and then is O(1) a token.
    const size_t window = settings_.penalty_last_n > 0 ? static_cast<size_t>(settings_.penalty_last_n) : 0;
    if (window > 0 && history_.size() >= 2 * window) {
        history_.erase(history_.begin(), history_.end() - static_cast<std::ptrdiff_t>(window));
    }
}

void Sampler::reset() {
    history_.clear();
    rng_.reseed(settings_.seed);
}

// The logits after the penalties: a copy in penalized_, or the caller's array when none apply.
// Occurrences are counted in counts_ (indexed by id), which is left all zero again.
const float* Sampler::penalized(const float* logits, int64_t n) {
    if (!penalties_on_ || history_.empty()) return logits;
    const size_t window = settings_.penalty_last_n < 0 ? history_.size()
                          : std::min(history_.size(), static_cast<size_t>(settings_.penalty_last_n));
    const auto first = history_.end() - static_cast<std::ptrdiff_t>(window);
    const size_t size = static_cast<size_t>(n);
    if (penalized_.size() < size) penalized_.resize(size);
    if (counts_.size() < size) counts_.resize(size, 0);
    std::copy(logits, logits + n, penalized_.begin());
    for (auto it = first; it != history_.end(); ++it) {
        if (*it < n) ++counts_[static_cast<size_t>(*it)];
    }
    for (auto it = first; it != history_.end(); ++it) {
        if (*it >= n) continue;
        int32_t& count = counts_[static_cast<size_t>(*it)];
        if (count == 0) continue;  // this id was already penalized
        penalized_[static_cast<size_t>(*it)] = penalize(penalized_[static_cast<size_t>(*it)], count, settings_);
        count = 0;
    }
    return penalized_.data();
}

// The k largest logits' ids (ties: the lower id) into ids_, ascending. One pass with a heap of k
// whose top is the worst kept: scanning ids upward, a tie never displaces a kept (lower) id, and
// on typical logits only ~k log(n/k) entries ever enter the heap.
void Sampler::select_top_k(const float* x, int64_t n) {
    const size_t k = static_cast<size_t>(settings_.top_k);
    auto worse_last = [x](int32_t a, int32_t b) { return x[a] > x[b] || (x[a] == x[b] && a < b); };
    order_.clear();
    for (int32_t i = 0; i < static_cast<int32_t>(k); ++i) order_.push_back(i);
    std::make_heap(order_.begin(), order_.end(), worse_last);
    float worst = x[order_.front()];
    for (int64_t i = static_cast<int64_t>(k); i < n; ++i) {
        if (!(x[i] > worst)) continue;
        std::pop_heap(order_.begin(), order_.end(), worse_last);
        order_.back() = static_cast<int32_t>(i);
        std::push_heap(order_.begin(), order_.end(), worse_last);
        worst = x[order_.front()];
    }
    std::copy(order_.begin(), order_.end(), ids_.begin());
    std::sort(ids_.begin(), ids_.begin() + static_cast<std::ptrdiff_t>(k));
    n_cand_ = k;
}

// The candidates after top-k, temperature and min-p: ids_ (ascending) and their scaled logits
// z_ = (x - top) / temperature, so the largest is 0 however small the temperature.
void Sampler::gather_candidates(const float* x, int64_t n, float top) {
    const size_t size = static_cast<size_t>(n);
    if (ids_.size() < size) {
        ids_.resize(size);
        z_.resize(size);
        w_.resize(size);
        order_.reserve(size);
        ranked_.resize(size);
        bin_mass_.resize(kBins);
    }
    const bool narrowed = settings_.top_k > 0 && settings_.top_k < n;
    if (narrowed) {
        select_top_k(x, n);
    } else {
        n_cand_ = size;
    }
    // As Python: 1/temperature capped at float's largest, then the float32 product.
    const float scale = static_cast<float>(std::min(1.0 / static_cast<double>(settings_.temperature),
                                                    static_cast<double>(FLT_MAX)));
    // min-p: p_i >= min_p * p_max  <=>  z_i >= log(min_p). Without it, -inf (banned or, at a tiny
    // temperature, hopeless) tokens still leave: they have no weight.
    const float floor = settings_.min_p > 0.0f ? static_cast<float>(std::log(static_cast<double>(settings_.min_p)))
                                               : -kInf;
    const bool strict = !(settings_.min_p > 0.0f);
    size_t kept = 0;
    for (size_t j = 0; j < n_cand_; ++j) {
        const int32_t id = narrowed ? ids_[j] : static_cast<int32_t>(j);
        const float z = (x[id] - top) * scale;
        if (strict ? z > floor : z >= floor) {
            ids_[kept] = id;
            z_[kept] = z;
            ++kept;
        }
    }
    n_cand_ = kept;  // >= 1: the top has z = 0
}

// w_ = exp(z_) and their sum (in eight lanes: one running sum would be a chain of dependent adds).
double Sampler::weigh() {
    constexpr size_t kLanes = 8;
    double lane[kLanes] = {};
    size_t j = 0;
    for (; j + kLanes <= n_cand_; j += kLanes) {
        for (size_t l = 0; l < kLanes; ++l) {
            w_[j + l] = std::exp(z_[j + l]);
            lane[l] += w_[j + l];
        }
    }
    for (; j < n_cand_; ++j) {
        w_[j] = std::exp(z_[j]);
        lane[0] += w_[j];
    }
    double total = 0.0;
    for (double part : lane) total += part;
    return total;
}

// top-p keeps the shortest run of candidates in order of decreasing z (ties: the lower id first)
// whose weight reaches top_p of the total. The run is found without sorting the candidates:
//   1. tokens lighter than (1 - top_p) / m of the total cannot be needed (all of them together
//      weigh less than 1 - top_p), so only the others enter the working set ranked_;
//   2. a large set is binned by z (a weighted histogram): the bins above the one where the
//      cumulative weight crosses the target are in whole, and only the crossing bin stays;
//   3. what stays is halved by selection (nth_element) until the run's end lies in a part small
//      enough to sort.
// The kept total is returned; the candidates are compacted to the run, still in id order.
double Sampler::keep_nucleus(double total) {
    const double top_p = settings_.top_p;
    double need = top_p * (1.0 - 1e-12) * total;  // reaching top_p exactly must not take one more
    const float light = static_cast<float>((1.0 - top_p) / static_cast<double>(n_cand_) * total);
    size_t count = 0;
    for (size_t j = 0; j < n_cand_; ++j) {  // branch-free: about as many are dropped as kept
        ranked_[count] = {z_[j], w_[j], static_cast<int32_t>(j)};
        count += w_[j] >= light ? size_t{1} : size_t{0};
    }
    if (count > kHistogramAbove) count = keep_crossing_bin(count, need);
    const Ranked edge = run_end(count, need);
    // Every candidate ordered up to the run's end is in: compacted in place, in id order, without
    // a branch (a nucleus is often about half the candidates, and unpredictable).
    size_t kept = 0;
    double kept_total = 0.0;
    for (size_t j = 0; j < n_cand_; ++j) {
        const bool in = z_[j] > edge.z || (z_[j] == edge.z && static_cast<int32_t>(j) <= edge.pos);
        ids_[kept] = ids_[j];
        z_[kept] = z_[j];
        w_[kept] = w_[j];
        kept_total += in ? static_cast<double>(w_[j]) : 0.0;
        kept += in ? size_t{1} : size_t{0};
    }
    n_cand_ = kept;
    return kept_total;
}

// Step 2 above, on ranked_[0, count): bins of equal width in z between the set's lowest z and 0
// (its largest: the top token always passes step 1). Binning is monotone in z, so a higher bin
// holds only tokens ordered before every token of a lower one. Returns the crossing bin's size
// (its tokens moved to the front of ranked_) and takes the higher bins' weight off need.
size_t Sampler::keep_crossing_bin(size_t count, double& need) {
    float low = 0.0f;
    for (size_t j = 0; j < count; ++j) low = std::min(low, ranked_[j].z);
    if (!(low < 0.0f)) return count;  // all tied at the top: nothing to bin
    // In double: the set's span may be a few float ulps (a huge temperature), whose reciprocal
    // times kBins would overflow a float.
    const double scale = static_cast<double>(kBins) / -static_cast<double>(low);
    auto bin = [low, scale](float z) {
        return std::min(static_cast<size_t>(static_cast<double>(z - low) * scale), kBins - 1);
    };
    std::fill(bin_mass_.begin(), bin_mass_.end(), 0.0);
    for (size_t j = 0; j < count; ++j) bin_mass_[bin(ranked_[j].z)] += ranked_[j].w;
    size_t crossing = 0;  // rounding may leave the target out of reach: then the lowest bin
    double above = 0.0;
    for (size_t b = kBins; b-- > 0;) {
        if (above + bin_mass_[b] >= need) {
            crossing = b;
            break;
        }
        above += bin_mass_[b];
    }
    need -= above;
    size_t kept = 0;
    for (size_t j = 0; j < count; ++j) {
        if (bin(ranked_[j].z) == crossing) ranked_[kept++] = ranked_[j];
    }
    return kept;
}

// Step 3 above: the last token of the run within ranked_[0, count), where need is the weight the
// run must still reach. If rounding leaves it out of reach, the last of the set.
Sampler::Ranked Sampler::run_end(size_t count, double need) {
    auto before = [](const Ranked& a, const Ranked& b) { return a.z > b.z || (a.z == b.z && a.pos < b.pos); };
    const auto at = [this](size_t j) { return ranked_.begin() + static_cast<std::ptrdiff_t>(j); };
    size_t lo = 0, hi = count;
    while (hi - lo > kSortBelow) {
        const size_t mid = lo + (hi - lo) / 2;
        std::nth_element(at(lo), at(mid), at(hi), before);
        double mass = 0.0;
        for (size_t j = lo; j < mid; ++j) mass += ranked_[j].w;
        if (mass >= need) {
            hi = mid;  // the run ends inside [lo, mid)
        } else {
            need -= mass;  // all of [lo, mid) is in
            lo = mid;
        }
    }
    std::sort(at(lo), at(hi), before);
    double run = 0.0;
    for (size_t j = lo; j < hi; ++j) {
        run += ranked_[j].w;
        if (run >= need) return ranked_[j];
    }
    return ranked_[hi - 1];
}

// The first candidate whose cumulative weight exceeds u * total (numpy's searchsorted, side right).
int32_t Sampler::draw(double total) {
    const double target = rng_.uniform() * total;
    double run = 0.0;
    for (size_t j = 0; j < n_cand_; ++j) {
        run += w_[j];
        if (run > target) return ids_[j];
    }
    return ids_[n_cand_ - 1];
}

int32_t Sampler::sample(const float* logits, int64_t n_vocab) {
    if (logits == nullptr) invalid("logits", "must not be null");
    if (n_vocab < 1 || n_vocab > std::numeric_limits<int32_t>::max()) {
        invalid("n_vocab", "must be in [1, 2^31), got " + std::to_string(n_vocab));
    }
    const float* x = penalized(logits, n_vocab);
    if (settings_.temperature == 0.0f) return greedy(x, n_vocab);
    gather_candidates(x, n_vocab, checked_max(x, n_vocab));
    double total = weigh();
    if (settings_.top_p < 1.0f && n_cand_ > 1) total = keep_nucleus(total);
    return draw(total);
}

}  // namespace edgellama
