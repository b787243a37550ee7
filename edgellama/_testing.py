"""Hooks into the compiled core that only tests and benchmarks use, at the level `_core` chose.

Each CPU level's build has, next to edgellama._core_<level> (what the package uses), a module
edgellama._testing_<level> with single kernels (dequantize_row, vec_dot, matmul, PreparedMatmul,
exp_approx, swiglu, ...), the codecs one row at a time (dequantize_any), the native GGUF reader
(read_gguf) and the bare tokenizer merge loops. Importing this module imports the one of the level
`edgellama._core` runs (EDGELLAMA_CPU applies alike) and re-exports its contents; `load_level(level)`
gives another runnable level's, for tests that compare levels. Nothing in the package imports it.
"""

from __future__ import annotations

import importlib

from edgellama import _core

LEVEL = _core.LEVEL


def load_level(level: str):
    """The test module of one level (for tests and benchmarks comparing levels)."""
    runnable = _core.runnable_levels()
    if level not in runnable:
        raise ImportError(f"level {level!r} is not runnable here (choices: {', '.join(runnable)})")
    return importlib.import_module(f"edgellama._testing_{level}")


_module = load_level(LEVEL)
globals().update({name: getattr(_module, name) for name in dir(_module) if not name.startswith("__")})
