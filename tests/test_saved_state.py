"""Saved state (Llama.save_state / load_state, save_session / load_session; edgellama/session.py)
and `--prompt-cache` in `edgellama run` and `edgellama chat`: a state restores the very cache it
came from (the same logits, bit for bit), belongs to one model, and a foreign, corrupt or cut file
is a StateError that changes nothing."""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile

import numpy as np
import pytest

from edgellama import Llama
from edgellama.errors import StateError
from edgellama.session import MAGIC, LlamaState, read_session
from tiny_models import write_tiny_llama

IDS = [1, 17, 250, 3, 99, 42, 7, 211, 64, 5, 200, 18]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    root = tmp_path_factory.mktemp("state")
    return {"a": write_tiny_llama(root / "a.gguf", weight_type="Q8_0"),
            "b": write_tiny_llama(root / "b.gguf", weight_type="Q8_0", seed=1),
            "a_copy": write_tiny_llama(root / "a_copy.gguf", weight_type="Q8_0")}


def test_state_in_memory_restores_the_same_logits(files):
    llm = Llama(files["a"], n_ctx=64)
    llm.eval(IDS)
    state = llm.save_state()
    assert state.tokens == tuple(IDS) and state.keys.shape == (2, 2, len(IDS), 16) and state.keys.dtype == np.uint16
    want = llm.eval([9, 10], all_logits=True)
    other = Llama(files["a"], n_ctx=64, n_parallel=2)
    other.eval([5, 6, 7])
    other.load_state(state)
    assert other.cached_tokens == IDS
    np.testing.assert_array_equal(other.eval([9, 10], all_logits=True), want)


def test_a_generation_reuses_a_loaded_state(files):
    llm = Llama(files["a"], n_ctx=64)
    llm.eval(IDS)
    state = llm.save_state(n_tokens=8)
    assert state.tokens == tuple(IDS[:8])
    fresh = Llama(files["a"], n_ctx=64)
    fresh.load_state(state)
    got = fresh.generate(IDS, max_tokens=6, temperature=0)
    assert fresh.last_stats.reused_tokens == 8
    assert got == Llama(files["a"], n_ctx=64).generate(IDS, max_tokens=6, temperature=0)


def test_session_file_round_trip_and_identity(files, tmp_path):
    llm = Llama(files["a"], n_ctx=64)
    llm.eval(IDS)
    path = tmp_path / "s.session"
    llm.save_session(path)
    assert path.read_bytes().startswith(MAGIC)
    assert list(tmp_path.iterdir()) == [path]  # no temporary file left
    same_weights = Llama(files["a_copy"], n_ctx=64)  # another file, the same model: the same identity
    same_weights.load_session(path)
    np.testing.assert_array_equal(same_weights.eval([3]), llm.eval([3]))
    with pytest.raises(StateError, match="another model"):
        Llama(files["b"], n_ctx=64).load_session(path)
    with pytest.raises(StateError, match="n_ctx"):
        Llama(files["a"], n_ctx=8).load_session(path)


def test_version_1_files_of_an_f16_cache_still_load(files, tmp_path):
    llm = Llama(files["a"], n_ctx=64)
    llm.eval(IDS)
    path = tmp_path / "s.session"
    llm.save_session(path)
    data = path.read_bytes()
    header_end = data.index(b"\n", len(MAGIC))
    header = json.loads(data[len(MAGIC):header_end])
    assert header["version"] == 2 and header["cache_types"] == ["f16", "f16"]
    old = {"version": 1, "model": header["model"], "n_tokens": header["n_tokens"], "shape": header["key_shape"],
           "sha256": header["sha256"]}
    path.write_bytes(MAGIC + json.dumps(old).encode() + data[header_end:])
    fresh = Llama(files["a"], n_ctx=64)
    fresh.load_session(path)
    np.testing.assert_array_equal(fresh.eval([3]), llm.eval([3]))


def damaged(path, how):
    data = bytearray(path.read_bytes())
    header_end = data.index(b"\n", len(MAGIC))
    if how == "magic":
        data[:4] = b"GGUF"
    elif how == "cut":
        del data[-10:]
    elif how == "flipped":
        data[-1] ^= 0x40
    elif how == "version":
        header = json.loads(data[len(MAGIC):header_end])
        header["version"] = 99
        data[len(MAGIC):header_end] = json.dumps(header).encode()
    elif how == "header":
        data[len(MAGIC):header_end] = b"{not json"
    elif how == "shape":
        header = json.loads(data[len(MAGIC):header_end])
        header["key_shape"] = [2, 2, -1, 16]
        data[len(MAGIC):header_end] = json.dumps(header).encode()
    elif how == "cache type":
        header = json.loads(data[len(MAGIC):header_end])
        header["cache_types"] = ["q9_0", "f16"]
        data[len(MAGIC):header_end] = json.dumps(header).encode()
    elif how == "no header end":
        data[len(MAGIC):] = b"x" * 5000
    return bytes(data)


@pytest.mark.parametrize("how, message", [("magic", "not an edgellama session"), ("cut", "cut short"),
                                          ("flipped", "checksum"), ("version", "version 99"),
                                          ("header", "not JSON"), ("shape", "malformed"),
                                          ("cache type", "malformed"),
                                          ("no header end", "header")])
def test_damaged_session_files_are_refused_and_change_nothing(files, tmp_path, how, message):
    llm = Llama(files["a"], n_ctx=64)
    llm.eval(IDS)
    good = tmp_path / "good"
    llm.save_session(good)
    bad = tmp_path / "bad"
    bad.write_bytes(damaged(good, how))
    target = Llama(files["a"], n_ctx=64)
    target.eval([4, 5])
    with pytest.raises(StateError, match=message):
        target.load_session(bad)
    assert target.cached_tokens == [4, 5]


def test_wrong_states_are_refused(files):
    llm = Llama(files["a"], n_ctx=64)
    with pytest.raises(StateError, match="LlamaState"):
        llm.load_state({"tokens": [1]})
    state = Llama(files["a"], n_ctx=64).save_state()
    bad = LlamaState(state.model, (1, 2), np.zeros((2, 2, 3, 16), np.uint16), np.zeros((2, 2, 3, 16), np.uint16))
    with pytest.raises(StateError, match="shape"):
        llm.load_state(bad)
    with pytest.raises(FileNotFoundError):
        read_session("/nonexistent/session")


def run_cli(*args, **kw):
    """The command in a subprocess outside the source tree (which lacks the built modules), as a user runs it."""
    with tempfile.TemporaryDirectory() as cwd:
        return subprocess.run([sys.executable, "-m", "edgellama", *args], capture_output=True, text=True, timeout=120,
                              cwd=cwd, **kw)


def test_run_prompt_cache_is_written_then_reused(files, tmp_path):
    cache = tmp_path / "prompt.cache"
    common = ["run", "-m", str(files["a"]), "--ids", ",".join(map(str, IDS)), "-n", "4", "--temp", "0",
              "--prompt-cache", str(cache), "--stats"]
    first = run_cli(*common)
    assert first.returncode == 0, first.stderr
    assert read_session(cache).tokens == tuple(IDS)
    second = run_cli(*common)
    assert second.returncode == 0, second.stderr
    assert second.stdout == first.stdout
    other = run_cli("run", "-m", str(files["b"]), "--ids", "1,2,3", "-n", "1", "--prompt-cache", str(cache))
    assert other.returncode == 0 and "not using the prompt cache" in other.stderr


def test_chat_prompt_cache_keeps_the_system_prompt_across_processes(files, tmp_path):
    cache = tmp_path / "chat.cache"
    args = ["chat", "-m", str(files["a"]), "-s", "You are a helpful assistant with a long system prompt.",
            "-n", "4", "--temp", "0", "--prompt-cache", str(cache)]
    first = run_cli(*args, input="hello there\n")
    assert first.returncode == 0, first.stderr
    assert "(0 cached)" in first.stderr and cache.is_file()
    held = read_session(cache).n_tokens
    second = run_cli(*args, input="something else\n")
    assert second.returncode == 0, second.stderr
    assert f"({held} cached)" in second.stderr
