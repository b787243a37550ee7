#include "csrc/core/bandwidth_probe.h"

#include <sys/mman.h>

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <cstdlib>
#include <memory>
#include <new>
#include <stdexcept>
#include <vector>

#include "csrc/core/thread_pool.h"

namespace edgellama {

namespace {

// Sums 64-bit words with 8 independent accumulators: enough loads in flight to saturate memory,
// and a result the compiler cannot discard.
uint64_t read_range(const uint64_t* p, size_t n) {
    uint64_t acc[8] = {0, 0, 0, 0, 0, 0, 0, 0};
    for (size_t i = 0; i + 8 <= n; i += 8) {
        for (int j = 0; j < 8; ++j) acc[j] += p[i + j];
    }
    uint64_t total = 0;
    for (uint64_t a : acc) total += a;
    return total;
}

}  // namespace

double measure_read_bandwidth(int n_threads, size_t bytes, int reps) {
    if (bytes < (1u << 20) || reps < 1) throw std::invalid_argument("probe needs >= 1 MiB and >= 1 rep");
    // A huge-page-aligned buffer advised for transparent huge pages, as the model's repacked weights
    // are (csrc/model/weight_repack.cpp): the probe reads memory the way decode reads weights.
    constexpr size_t kHugePage = size_t(2) << 20;
    const size_t words = bytes / sizeof(uint64_t);
    const size_t rounded = (words * sizeof(uint64_t) + kHugePage - 1) / kHugePage * kHugePage;
    std::unique_ptr<uint64_t[], void (*)(uint64_t*)> buffer(static_cast<uint64_t*>(std::aligned_alloc(kHugePage, rounded)),
                                                            [](uint64_t* p) { std::free(p); });
    if (!buffer) throw std::bad_alloc();
#if defined(MADV_HUGEPAGE)
    madvise(buffer.get(), rounded, MADV_HUGEPAGE);
#endif
    ThreadPool pool(n_threads);
    // Each thread first-touches (and later reads) its own part.
    pool.run([&](int ith, int nth) {
        int64_t begin, end;
        split_range(static_cast<int64_t>(words), ith, nth, begin, end);
        for (int64_t i = begin; i < end; ++i) buffer[i] = static_cast<uint64_t>(i);
    });
    std::vector<double> rates;
    std::vector<uint64_t> sinks(n_threads);
    for (int r = 0; r < reps; ++r) {
        const auto start = std::chrono::steady_clock::now();
        pool.run([&](int ith, int nth) {
            int64_t begin, end;
            split_range(static_cast<int64_t>(words), ith, nth, begin, end);
            sinks[ith] += read_range(buffer.get() + begin, static_cast<size_t>(end - begin));
        });
        const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
        rates.push_back(static_cast<double>(words * sizeof(uint64_t)) / seconds / 1e9);
    }
    std::sort(rates.begin(), rates.end());
    volatile uint64_t keep = 0;
    for (uint64_t s : sinks) keep = keep + s;
    return rates[rates.size() / 2];
}

}  // namespace edgellama
