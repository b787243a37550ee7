"""The fuzz targets. Each module has `setup() -> one_input(data: bytes)` (expensive preparation
happens once), MAX_LEN (libFuzzer's -max_len), TIMEOUT (seconds per input before it counts as a
hang) and optionally `custom_mutator(data, max_size, seed)`.

Targets import edgellama lazily, inside setup(), so that fuzz.run can import them under atheris's
coverage instrumentation.
"""

from __future__ import annotations

import importlib
from types import ModuleType

TARGETS = ("gguf", "safetensors", "tokenizer", "chat")


def load(name: str) -> ModuleType:
    if name not in TARGETS:
        raise SystemExit(f"unknown fuzz target {name!r}; choose from {', '.join(TARGETS)}")
    return importlib.import_module(f"fuzz.targets.{name}")
