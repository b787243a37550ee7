// Which of the core's instruction-set levels (see CMakeLists.txt) this machine can run.
// Compiled for the baseline only, so it is safe to call before any level's module is loaded.
#pragma once

#include <string>
#include <vector>

namespace edgellama {

// Level names this CPU and OS support, best first; always ends with the baseline level
// ("x86_64" on x86-64, "generic" elsewhere). "native" is not listed: a native build only ever
// runs where it was compiled.
std::vector<std::string> runnable_cpu_levels();

}  // namespace edgellama
