#include "csrc/model/rope_scaling.h"

#include <algorithm>
#include <cmath>

#include "csrc/model/load_errors.h"

namespace edgellama {
namespace {

constexpr double kPi = 3.141592653589793;  // math.pi
constexpr double kTwoPow63 = 9223372036854775808.0;

// a * b rounded to a double before anything else uses it. The core is built with -O3 -march=...
// (FMA on the v3/v4 levels) and GCC contracts a * b + c into one fused multiply-add by default,
// which rounds once instead of twice; numpy rounds twice, and the divisors must match it bit for bit.
double rounded_product(double a, double b) {
    volatile double p = a * b;
    return p;
}

}  // namespace

RopeScaling RopeScaling::read(const MetadataReader& r, const std::string& arch, uint64_t context_length) {
    const std::string key = arch + ".rope.scaling.";
    const std::string_view type = r.text(key + "type").value_or("none");
    RopeScaling s;
    if (type == "linear") {
        s.kind = RopeScalingKind::Linear;
    } else if (type == "yarn") {
        s.kind = RopeScalingKind::Yarn;
    } else if (type != "none") {
        throw UnsupportedModelError("rope scaling type '" + printable(type) +
                                    "' is not supported (supported: none, linear, yarn)");
    }
    const double factor = r.real(key + "factor", {0.0, 1e6}).value_or(0.0);
    s.attn_factor = r.real(key + "attn_factor", {0.0, 1e3, true, false}).value_or(1.0);
    if (s.kind == RopeScalingKind::None) return s;  // the factor is not used: plain RoPE
    s.factor = factor == 0.0 ? 1.0 : factor;  // llama.cpp: a factor of 0 means none
    s.original_context = r.integer(key + "original_context_length", 1, UINT32_MAX).value_or(context_length);
    if (s.kind == RopeScalingKind::Yarn) s.ext_factor = r.real(key + "yarn_ext_factor", {0.0, 1.0}).value_or(1.0);
    s.beta_fast = r.real(key + "yarn_beta_fast", {0.0, 1e6, true, false}).value_or(32.0);
    s.beta_slow = r.real(key + "yarn_beta_slow", {0.0, 1e6, true, false}).value_or(1.0);
    return s;
}

double RopeScaling::magnitude() const {
    double m = attn_factor;
    if (kind == RopeScalingKind::Yarn && ext_factor != 0 && factor > 1) {
        m *= 1.0 + rounded_product(0.1, std::log(factor));
    }
    return m;
}

std::vector<double> RopeScaling::frequency_divisors(int64_t rope_dim, double rope_base) const {
    const size_t n_pairs = static_cast<size_t>(rope_dim / 2);
    if (kind == RopeScalingKind::None || factor == 1.0) return std::vector<double>(n_pairs, 1.0);
    if (kind == RopeScalingKind::Linear || ext_factor == 0) return std::vector<double>(n_pairs, factor);
    const double interpolated = 1.0 / factor;  // frequency multiplier of a fully interpolated pair

    // YaRN's correction range: the pair that turns n_rotations times over the original window.
    const double log_base = std::log(rope_base);
    auto pair_turning = [&](double n_rotations, const char* beta_key) {
        if (log_base == 0) {
            throw GgufError("metadata 'llama.rope.freq_base' = 1.0: YaRN's correction range divides by its logarithm");
        }
        const double ratio = static_cast<double>(original_context) / (n_rotations * 2 * kPi);
        const double pair = static_cast<double>(rope_dim) * std::log(ratio) / (2 * log_base);
        if (!std::isfinite(pair)) {
            throw GgufError(std::string("metadata '") + beta_key + "' = " + python_float_repr(n_rotations) +
                            ": YaRN's correction range is beyond float64 with it");
        }
        return pair;
    };
    // Below low pairs keep their frequency, above high they are fully interpolated (whole pairs).
    const double low = std::max(0.0, std::floor(pair_turning(beta_fast, "llama.rope.scaling.yarn_beta_fast")));
    const double high = std::min(static_cast<double>(rope_dim - 1),
                                 std::ceil(pair_turning(beta_slow, "llama.rope.scaling.yarn_beta_slow")));
    if (low >= kTwoPow63) {
        // numpy computes arange(n) - low in int64: a larger low is an OverflowError there.
        throw GgufError("metadata 'llama.rope.freq_base' = " + python_float_repr(rope_base) +
                        ": YaRN's correction range starts beyond int64 with it");
    }
    const int64_t low_index = static_cast<int64_t>(low);
    const double span = std::max(0.001, high - low);
    std::vector<double> divisors(n_pairs);
    for (size_t i = 0; i < n_pairs; ++i) {
        const double ramp = static_cast<double>(static_cast<int64_t>(i) - low_index) / span;
        const double extrapolated_share = rounded_product(1.0 - std::min(std::max(ramp, 0.0), 1.0), ext_factor);
        divisors[i] = 1.0 / (rounded_product(interpolated, 1.0 - extrapolated_share) + extrapolated_share);
    }
    return divisors;
}

std::vector<float> combined_rope_divisors(const RopeScaling& s, int64_t rope_dim, double rope_base,
                                          const float* rope_freqs) {
    if (!rope_freqs && (s.kind == RopeScalingKind::None || s.factor == 1.0)) return {};
    const std::vector<double> divisors = s.frequency_divisors(rope_dim, rope_base);
    std::vector<float> out(divisors.size());
    for (size_t i = 0; i < divisors.size(); ++i) {
        out[i] = static_cast<float>(rope_freqs ? divisors[i] * static_cast<double>(rope_freqs[i]) : divisors[i]);
    }
    return out;
}

}  // namespace edgellama
