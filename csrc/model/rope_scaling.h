// RoPE context extension read from GGUF metadata (linear position interpolation and YaRN): the C++
// twin of edgellama/rope_scaling.py, for callers without Python. The keys, defaults, ranges, the
// per-pair frequency divisors and the magnitude are computed exactly as there (the same float64
// operations in the same order, so the float32 divisors the core receives are bit-identical).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "csrc/model/metadata_reader.h"

namespace edgellama {

enum class RopeScalingKind { None, Linear, Yarn };

struct RopeScaling {
    RopeScalingKind kind = RopeScalingKind::None;
    double factor = 1.0;
    uint64_t original_context = 0;
    double attn_factor = 1.0;
    double ext_factor = 0.0;
    double beta_fast = 32.0;
    double beta_slow = 1.0;

    // RopeScaling.read: the scaling `{arch}.rope.scaling.*` states, each value checked (GgufError
    // naming the key; UnsupportedModelError for a scaling type other than none/linear/yarn).
    static RopeScaling read(const MetadataReader& reader, const std::string& arch, uint64_t context_length);

    // The factor on the rotated queries and keys (1 unless YaRN or attn_factor says otherwise).
    double magnitude() const;

    // float64 [rope_dim/2]: what each pair's frequency base^(-2i/rope_dim) is divided by. Throws
    // GgufError for the YaRN values whose correction range is undefined (a base of exactly 1, a
    // window beyond float64): rope_scaling.py raises ZeroDivisionError / OverflowError there.
    std::vector<double> frequency_divisors(int64_t rope_dim, double rope_base) const;
};

// combined_divisors: float32 [rope_dim/2] divisors for the core (the file's rope_freqs times the
// scaling's), or an empty vector when neither changes a frequency. rope_freqs: the file's
// rope_freqs.weight as float32 (rope_dim/2 values), or nullptr.
std::vector<float> combined_rope_divisors(const RopeScaling& scaling, int64_t rope_dim, double rope_base,
                                          const float* rope_freqs);

}  // namespace edgellama
