// Single-thread CPU-time benchmark of the production matmul for one quantized weight type:
// the register-tiled path (WeightMatrix::tile_dot) against the row-by-row vec_dot path, same
// weights, same activations, interleaved runs, best of N per path.
//
//   cmake --build build/dev --target bench_tile_dot
//   build/dev/bench_tile_dot [type=Q4_K] [rows=4096] [cols=4096] [tokens=1,64] [reps=auto]
//
// Reports GMAC/s (rows * cols * tokens multiply-adds per second of thread CPU time, activation
// quantization included, as matmul does it) and the largest relative difference between the paths.
#include <time.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <random>
#include <sstream>
#include <string>
#include <vector>

#include "csrc/core/thread_pool.h"
#include "csrc/kernels/float_convert.h"
#include "csrc/kernels/matmul.h"
#include "csrc/model/llama_weights.h"

using namespace edgellama;

namespace {

double thread_cpu_seconds() {
    timespec ts;
    clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
    return static_cast<double>(ts.tv_sec) + 1e-9 * static_cast<double>(ts.tv_nsec);
}

int32_t type_by_name(const std::string& name) {
    for (int32_t id : supported_type_ids()) {
        if (name == type_traits(id).name) return id;
    }
    std::fprintf(stderr, "unknown type %s\n", name.c_str());
    std::exit(2);
}

// Random block bytes with sane f16 scales (random bits there would give inf / nan).
std::vector<uint8_t> random_weights(int32_t type, int64_t rows, int64_t cols, std::mt19937& rng) {
    const TypeTraits& t = type_traits(type);
    std::vector<uint8_t> data(weight_row_bytes(type, cols) * static_cast<size_t>(rows));
    std::uniform_int_distribution<int> byte(0, 255);
    for (auto& b : data) b = static_cast<uint8_t>(byte(rng));
    std::uniform_real_distribution<float> scale(1e-3f, 1e-1f);
    std::vector<size_t> f16_offsets;
    switch (static_cast<TensorType>(type)) {
        case TensorType::Q4_0: case TensorType::Q8_0: f16_offsets = {0}; break;
        case TensorType::Q4_1: case TensorType::Q4_K: case TensorType::Q5_K: f16_offsets = {0, 2}; break;
        case TensorType::Q6_K: f16_offsets = {208}; break;
        default: std::fprintf(stderr, "benchmark covers quantized types only\n"); std::exit(2);
    }
    for (size_t blk = 0; blk < data.size() / t.block_bytes; ++blk) {
        for (size_t off : f16_offsets) {
            const uint16_t h = fp32_to_fp16(scale(rng));
            std::memcpy(&data[blk * t.block_bytes + off], &h, 2);
        }
    }
    return data;
}

}  // namespace

int main(int argc, char** argv) {
    const int32_t type = type_by_name(argc > 1 ? argv[1] : "Q4_K");
    const int64_t rows = argc > 2 ? std::atoll(argv[2]) : 4096;
    const int64_t cols = argc > 3 ? std::atoll(argv[3]) : 4096;
    std::vector<int64_t> token_counts;
    {
        std::stringstream ss(argc > 4 ? argv[4] : "1,64");
        std::string item;
        while (std::getline(ss, item, ',')) token_counts.push_back(std::atoll(item.c_str()));
    }
    std::mt19937 rng(42);
    const std::vector<uint8_t> data = random_weights(type, rows, cols, rng);
    const WeightMatrix tiled = make_weight_matrix(data.data(), type, rows, cols);
    WeightMatrix by_row = tiled;
    by_row.tile_dot = nullptr;
    if (tiled.tile_dot == nullptr) std::printf("note: this build has no tiled kernel for %s\n", tiled.traits->name);

    ThreadPool pool(1);
    ActivationBuffer act;
    std::normal_distribution<float> normal;
    std::printf("%s %lld x %lld, 1 thread, thread CPU time, best of N\n", tiled.traits->name,
                static_cast<long long>(rows), static_cast<long long>(cols));
    for (int64_t n_tok : token_counts) {
        std::vector<float> x(static_cast<size_t>(n_tok * cols));
        for (auto& v : x) v = normal(rng);
        std::vector<float> y_row(static_cast<size_t>(n_tok * rows)), y_tile(y_row.size());
        const double macs = static_cast<double>(rows) * static_cast<double>(cols) * static_cast<double>(n_tok);
        const int reps = argc > 5 ? std::max(1, std::atoi(argv[5])) : std::max(5, static_cast<int>(2e10 / macs));
        double best_row = 1e30, best_tile = 1e30;
        for (int i = 0; i < reps; ++i) {
            const double t0 = thread_cpu_seconds();
            matmul(pool, act, by_row, x.data(), cols, n_tok, y_row.data(), rows);
            const double t1 = thread_cpu_seconds();
            matmul(pool, act, tiled, x.data(), cols, n_tok, y_tile.data(), rows);
            const double t2 = thread_cpu_seconds();
            best_row = std::min(best_row, t1 - t0);
            best_tile = std::min(best_tile, t2 - t1);
        }
        double max_rel = 0.0, max_abs_ref = 0.0;
        for (float v : y_row) max_abs_ref = std::max(max_abs_ref, std::fabs(static_cast<double>(v)));
        for (size_t i = 0; i < y_row.size(); ++i) {
            max_rel = std::max(max_rel, std::fabs(static_cast<double>(y_tile[i]) - y_row[i]) / max_abs_ref);
        }
        std::printf("tokens %4lld  vec_dot %7.2f GMAC/s  tiled %7.2f GMAC/s  speedup %5.2fx  (reps %d, max |diff| / max|y| %.2e)\n",
                    static_cast<long long>(n_tok), macs / best_row * 1e-9, macs / best_tile * 1e-9,
                    best_row / best_tile, reps, max_rel);
    }
    return 0;
}
