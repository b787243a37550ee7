// A memory read-bandwidth probe, so decode speed can be reported as a fraction of the machine's
// roofline measured in the same run (bytes of weights per token ÷ bandwidth).
#pragma once

#include <cstddef>

namespace edgellama {

// Reads a `bytes`-sized buffer `reps` times with n_threads threads; returns the median GB/s.
double measure_read_bandwidth(int n_threads, size_t bytes, int reps);

}  // namespace edgellama
