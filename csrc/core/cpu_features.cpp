#include "csrc/core/cpu_features.h"

#if defined(__aarch64__) && defined(__linux__)
#include <sys/auxv.h>
#endif
#if defined(__aarch64__) && defined(__APPLE__)
#include <sys/sysctl.h>
#endif

namespace edgellama {

#if defined(__aarch64__)
// The Armv8.2 dot product (SDOT/UDOT): Apple M1 and later, Graviton 2 and later, Cortex-A76 and later.
static bool arm_has_dot_product() {
#if defined(__linux__)
#ifndef HWCAP_ASIMDDP
#define HWCAP_ASIMDDP (1 << 20)
#endif
    return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#elif defined(__APPLE__)
    int value = 0;
    size_t size = sizeof value;
    return sysctlbyname("hw.optional.arm.FEAT_DotProd", &value, &size, nullptr, 0) == 0 && value != 0;
#else
    return false;
#endif
}
#endif

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
    if (v3 && __builtin_cpu_supports("avxvnni")) levels.push_back("x86_64_v3_vnni");
    if (v3) levels.push_back("x86_64_v3");
    levels.push_back("x86_64");
#elif defined(__aarch64__)
    if (arm_has_dot_product()) levels.push_back("aarch64_dotprod");
    levels.push_back("generic");
#else
    levels.push_back("generic");
#endif
    return levels;
}

}  // namespace edgellama
