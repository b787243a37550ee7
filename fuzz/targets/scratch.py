"""Where targets that need a path write their input: a private folder on tmpfs (/dev/shm when it
exists; fuzz.run names one in EDGELLAMA_FUZZ_SCRATCH and removes it, as a fuzzing process ends
without running Python's exit handlers), one fresh file per input, removed afterwards (a model
keeps its file mapped while alive, so a file is never rewritten in place)."""

from __future__ import annotations

import itertools
import os
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

SCRATCH_ENV = "EDGELLAMA_FUZZ_SCRATCH"
_folder = None
_counter = itertools.count()


def folder() -> Path:
    global _folder
    if _folder is None and os.environ.get(SCRATCH_ENV):
        _folder = Path(os.environ[SCRATCH_ENV])  # made, and removed, by fuzz.run
        _folder.mkdir(parents=True, exist_ok=True)
    if _folder is None:
        base = "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None
        _folder = Path(tempfile.mkdtemp(prefix=f"edgellama-fuzz-{os.getpid()}-", dir=base))
        import atexit

        atexit.register(shutil.rmtree, _folder, True)
    return _folder


@contextmanager
def input_file(data: bytes, suffix: str) -> Iterator[Path]:
    path = folder() / f"input-{next(_counter)}{suffix}"
    path.write_bytes(data)
    try:
        yield path
    finally:
        path.unlink(missing_ok=True)
