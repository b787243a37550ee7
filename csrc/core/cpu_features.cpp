#include "csrc/core/cpu_features.h"

namespace edgellama {

std::vector<std::string> runnable_cpu_levels() {
    std::vector<std::string> levels;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    // __builtin_cpu_supports also checks that the OS saves the wide registers (XCR0), not just
    // that the CPU has the instructions.
    __builtin_cpu_init();
    const bool v3 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") &&
                    __builtin_cpu_supports("f16c") && __builtin_cpu_supports("bmi2");
    const bool v4 = v3 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                    __builtin_cpu_supports("avx512cd") && __builtin_cpu_supports("avx512dq") &&
                    __builtin_cpu_supports("avx512vl");
    if (v4 && __builtin_cpu_supports("avx512vnni")) levels.push_back("x86_64_v4");
    if (v3) levels.push_back("x86_64_v3");
    levels.push_back("x86_64");
#else
    levels.push_back("generic");
#endif
    return levels;
}

}  // namespace edgellama
