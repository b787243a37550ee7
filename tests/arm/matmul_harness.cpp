// The core's matmul as a plain program, so that an Arm build of the kernels can run under user-mode
// emulation on any machine (tests/test_arm.py builds it with a cross compiler and runs it in qemu).
//
//   matmul_harness levels   prints the CPU levels this CPU runs, best first, comma-separated
//   matmul_harness matmul   reads a case on stdin, writes y on stdout:
//     in:  int32 type, int32 row_groups (0/1), int32 precise activations (0/1), int64 rows, cols, n_tokens,
//          rows × the type's row bytes of GGUF rows, n_tokens × cols float32 activations
//     out: int32 1 if row groups ran, then n_tokens × rows float32 (y[t][r] = dot(row r, x[t]))
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <exception>
#include <string>
#include <vector>

#include "csrc/core/cpu_features.h"
#include "csrc/kernels/row_groups.h"
#include "csrc/kernels/type_traits.h"
#include "csrc/model/prepared_matmul.h"

namespace {

template <class T>
T read_value() {
    T v;
    if (std::fread(&v, sizeof v, 1, stdin) != 1) throw std::runtime_error("short input");
    return v;
}

template <class T>
std::vector<T> read_array(size_t n) {
    std::vector<T> v(n);
    if (n && std::fread(v.data(), sizeof(T), n, stdin) != n) throw std::runtime_error("short input");
    return v;
}

int run_matmul() {
    using namespace edgellama;
    const auto type = read_value<int32_t>();
    const bool row_groups = read_value<int32_t>() != 0 && find_row_group_kernel(type) != nullptr;
    const auto precision = read_value<int32_t>() != 0 ? ActPrecision::kPrecise : ActPrecision::kInt8;
    const auto rows = read_value<int64_t>(), cols = read_value<int64_t>(), n_tokens = read_value<int64_t>();
    const auto weights = read_array<uint8_t>(static_cast<size_t>(rows) * weight_row_bytes(type, cols));
    const auto x = read_array<float>(static_cast<size_t>(n_tokens * cols));
    PreparedMatmul matmul(type, weights.data(), rows, cols, row_groups, 2, precision);
    std::vector<float> y(static_cast<size_t>(n_tokens * rows));
    matmul.run(x.data(), n_tokens, y.data());
    const int32_t ran_row_groups = row_groups ? 1 : 0;
    std::fwrite(&ran_row_groups, sizeof ran_row_groups, 1, stdout);
    std::fwrite(y.data(), sizeof(float), y.size(), stdout);
    return 0;
}

}  // namespace

int main(int argc, char** argv) {
    const std::string mode = argc > 1 ? argv[1] : "";
    try {
        if (mode == "levels") {
            std::string line;
            for (const auto& level : edgellama::runnable_cpu_levels()) line += (line.empty() ? "" : ",") + level;
            std::printf("%s\n", line.c_str());
            return 0;
        }
        if (mode == "matmul") return run_matmul();
    } catch (const std::exception& e) {
        std::fprintf(stderr, "error: %s\n", e.what());
        return 1;
    }
    std::fprintf(stderr, "usage: matmul_harness levels|matmul\n");
    return 2;
}
