// The log-probability a sampler reports for the token it chose: log softmax of one row of logits
// at that token, over a whole vocabulary (128k entries for Llama 3) once per generated token.
#pragma once

#include <cstdint>

namespace edgellama {

// logits[token] - max - log(sum_i exp(logits[i] - max)) over logits[0, n), token in [0, n).
// Vectorized passes (the exps by fast_exp.h, within 2 ulp), the sum in float lanes over blocks of
// 256 and across blocks in double: within 1e-6 of the exact value for any row.
double log_softmax_at(const float* logits, int64_t n, int64_t token);

}  // namespace edgellama
