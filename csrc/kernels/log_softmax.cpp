#include "csrc/kernels/log_softmax.h"

#include <cmath>

#include "csrc/kernels/fast_exp.h"

namespace edgellama {

namespace {

float max_of(const float* x, int64_t n) {
    float m = -INFINITY;
#pragma omp simd reduction(max : m)
    for (int64_t i = 0; i < n; ++i) m = x[i] > m ? x[i] : m;
    return m;
}

// sum_i exp(x[i] - shift), float lanes within a block (a few dozen additions each), blocks in double.
double sum_of_exps(const float* x, int64_t n, float shift) {
    constexpr int64_t kBlock = 256;
    double total = 0.0;
    for (int64_t start = 0; start < n; start += kBlock) {
        const int64_t end = start + kBlock < n ? start + kBlock : n;
        float block = 0.0f;
#pragma omp simd reduction(+ : block)
        for (int64_t i = start; i < end; ++i) block += exp_approx(x[i] - shift);
        total += block;
    }
    return total;
}

}  // namespace

double log_softmax_at(const float* logits, int64_t n, int64_t token) {
    const float m = max_of(logits, n);
    return static_cast<double>(logits[token]) - m - std::log(sum_of_exps(logits, n, m));
}

}  // namespace edgellama
