"""edgellama's compiled core, in the build for the best instruction-set level this CPU runs.

The C++ core is compiled once per level (x86_64, x86_64_v3 with AVX2, x86_64_v3_vnni adding AVX-VNNI,
x86_64_v4 with AVX-512 VNNI;
on aarch64 `generic` and aarch64_dotprod with the Armv8.2 dot product; `generic` elsewhere; `native`
for a -march=native developer build) into edgellama._core_<level>.
Importing this module imports the best level that was built and that this CPU and OS support, and
re-exports its contents, so `from edgellama import _core` is all the rest of the package needs.

EDGELLAMA_CPU=<level> picks a lower level instead (to compare, or to work around a problem);
naming one this CPU cannot run, or one not built, raises ImportError naming the choices.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
from typing import List

from edgellama import _cpu_features

ENV_VAR = "EDGELLAMA_CPU"


def built_levels() -> List[str]:
    """Levels whose module this installation has."""
    names = [n for n in _cpu_features.BUILT_LEVELS.split(",") if n]
    return [n for n in names if importlib.util.find_spec(f"edgellama._core_{n}") is not None]


def runnable_levels() -> List[str]:
    """Built levels this CPU can run, best first."""
    built = built_levels()
    if "native" in built:  # built on and for this very machine
        return ["native"]
    return [n for n in _cpu_features.runnable_levels() if n in built]


def select_level(requested: str | None = None) -> str:
    requested = os.environ.get(ENV_VAR) if requested is None else requested
    runnable = runnable_levels()
    if requested:
        if requested not in runnable:
            raise ImportError(f"{ENV_VAR}={requested!r} is not a level this CPU can run in this build "
                              f"(choices: {', '.join(runnable) or 'none'}; built: {', '.join(built_levels())})")
        return requested
    if not runnable:
        raise ImportError(f"no edgellama core this CPU can run (built: {', '.join(built_levels()) or 'none'})")
    return runnable[0]


def load_level(level: str):
    """The core module of one level (for tests and benchmarks comparing levels)."""
    if level not in runnable_levels():
        raise ImportError(f"level {level!r} is not runnable here (choices: {', '.join(runnable_levels())})")
    return importlib.import_module(f"edgellama._core_{level}")


LEVEL = select_level()
_module = load_level(LEVEL)
globals().update({name: getattr(_module, name) for name in dir(_module) if not name.startswith("__")})
