"""edgellama.compat, the llama-cpp-python drop-in: a script written against llama-cpp-python's
documented README usage runs unchanged but for its import, and each call gives what edgellama's
own API gives; its constructor's options map or are refused by name."""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edgellama import Llama as NativeLlama
from edgellama.compat import Llama
from edgellama.errors import InvalidArgumentError

SCRIPT = Path(__file__).parent / "scripts" / "llama_cpp_python_readme.py"


@pytest.fixture(scope="module")
def readme_run(smollm2_path):
    pytest.importorskip("llguidance", reason="the README's JSON and function-calling examples need llguidance")
    env = dict(os.environ)
    package_root = str(Path(__import__("edgellama").__file__).resolve().parents[1])
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [package_root, env.get("PYTHONPATH")]))
    out = subprocess.run([sys.executable, str(SCRIPT), str(smollm2_path)], capture_output=True, text=True,
                         timeout=600, env=env, cwd=str(SCRIPT.parent))
    assert out.returncode == 0, out.stderr[-2000:]
    report = {}
    for line in out.stdout.splitlines():
        report.update(json.loads(line))
    return report


@pytest.fixture(scope="module")
def native(smollm2_path):
    return NativeLlama(smollm2_path, n_ctx=2048, n_threads=2)


def test_the_readme_script_runs_and_answers_like_the_native_api(readme_run, native):
    want = native.create_completion("Q: Name the planets in the solar system? A: ", max_tokens=32,
                                    stop=["Q:", "\n"], echo=True, seed=1337)
    got = readme_run["completion"]
    assert got["object"] == "text_completion"
    assert got["choices"][0]["text"] == want["choices"][0]["text"]  # the constructor's seed is the call's
    assert got["choices"][0]["text"].startswith("Q: Name the planets")
    assert "".join(readme_run["stream"]) and readme_run["chat"]["choices"][0]["message"]["role"] == "assistant"


def test_the_readme_json_and_function_calling_examples(readme_run):
    for name in ("json_mode", "json_schema_mode"):
        choice = readme_run[name]["choices"][0]
        if choice["finish_reason"] == "stop":
            assert isinstance(json.loads(choice["message"]["content"]), dict)
    schema_answer = readme_run["json_schema_mode"]["choices"][0]
    if schema_answer["finish_reason"] == "stop":
        assert isinstance(json.loads(schema_answer["message"]["content"])["team_name"], str)
    call = readme_run["function_call"]["choices"][0]["message"]["tool_calls"][0]["function"]
    arguments = json.loads(call["arguments"])
    assert call["name"] == "UserDetail" and isinstance(arguments["name"], str) and isinstance(arguments["age"], int)
    assert readme_run["function_call"]["choices"][0]["message"]["function_call"] == call  # the legacy field too


def test_the_readme_embedding_and_tokenizer_examples(readme_run, native):
    # As llama-cpp-python for a llama model (pooling NONE): one unnormalized vector per token.
    from edgellama.embeddings import hidden_states

    tokens = native.tokenize("Hello, world!")
    want = hidden_states(native, tokens)
    assert readme_run["embed"] == len(tokens)
    np.testing.assert_allclose(np.array(readme_run["embedding"]), want[:4], atol=1e-5)
    assert readme_run["tokens"] == native.tokenize("Hello, world!")  # BOS only where the vocabulary asks
    assert readme_run["detokenized"] == "Hello, world!"
    assert readme_run["sizes"][:3] == [512, native.n_vocab, native.config.n_embd]  # llama-cpp-python's default n_ctx


def test_options_map_or_are_refused_by_name(smollm2_path):
    llm = Llama(smollm2_path, n_ctx=0, use_mmap=True, flash_attn=True, verbose=False)
    assert llm.n_ctx() == NativeLlama(smollm2_path).config.context_length  # 0: the training context
    for options, named in (({"n_gpu_layers": 3}, "n_gpu_layers"), ({"rope_freq_base": 1e4}, "rope_freq_base"),
                           ({"chat_format": "mistral-7b"}, "chat_format"), ({"seed": "x"}, "seed")):
        with pytest.raises(InvalidArgumentError) as info:
            Llama(smollm2_path, verbose=False, **options)
        assert info.value.argument == named


def test_calls_refuse_what_edgellama_lacks_by_name(smollm2_path):
    llm = Llama(smollm2_path, verbose=False)
    for kwargs, named in (({"mirostat_mode": 2}, "mirostat_mode"), ({"tfs_z": 0.5}, "tfs_z"),
                          ({"logits_processor": [print]}, "logits_processor"), ({"bogus": 1}, "bogus")):
        with pytest.raises(InvalidArgumentError) as info:
            llm.create_completion("x", max_tokens=1, **kwargs)
        assert info.value.argument == named
    assert llm.create_completion("x", max_tokens=1, mirostat_mode=0, tfs_z=1.0)["choices"]  # defaults pass
    with pytest.raises(InvalidArgumentError):
        llm.tokenize("text, not bytes")
    assert llm.detokenize(llm.tokenize(b"caf\xc3\xa9")) == b"caf\xc3\xa9"


def test_max_tokens_zero_or_none_fills_the_window_and_seeds_repeat(smollm2_path):
    llm = Llama(smollm2_path, n_ctx=48, seed=7, verbose=False)
    reply = llm.create_completion("Once upon a time", max_tokens=0, logit_bias={2: float("-inf"), 0: float("-inf")})
    assert reply["choices"][0]["finish_reason"] == "length"
    assert reply["usage"]["total_tokens"] == 48 + 1  # the window full, and the last token sampled after it
    a = llm("Once upon a time", max_tokens=8)["choices"][0]["text"]
    b = llm("Once upon a time", max_tokens=8)["choices"][0]["text"]
    assert a == b  # the constructor's seed is every call's
    llm.set_seed(-1)  # random from now on
    assert len({llm("Once upon a time", max_tokens=8, temperature=1.5)["choices"][0]["text"] for _ in range(4)}) > 1


def test_from_pretrained_needs_huggingface_hub_or_downloads_through_it(smollm2_path, monkeypatch):
    hub = pytest.importorskip("huggingface_hub", reason="huggingface_hub is not installed")
    monkeypatch.setattr(hub, "list_repo_files", lambda repo: ["README.md", "model.Q4_1.gguf", "model.Q8_0.gguf"])
    monkeypatch.setattr(hub, "hf_hub_download", lambda repo, name: str(smollm2_path))
    assert Llama.from_pretrained("someone/model-GGUF", "*Q4_1.gguf", verbose=False).n_vocab() == 49152
    with pytest.raises(InvalidArgumentError, match="matches 2 files"):
        Llama.from_pretrained("someone/model-GGUF", "*.gguf", verbose=False)


@pytest.mark.parametrize("pooling, pick", [(1, lambda h: h.mean(axis=0)), (2, lambda h: h[0]), (3, lambda h: h[-1])])
def test_pooling_types_and_normalize(smollm2_path, native, pooling, pick):
    from edgellama.embeddings import hidden_states

    llm = Llama(smollm2_path, embedding=True, pooling_type=pooling, verbose=False)
    want = pick(hidden_states(native, native.tokenize("Hello, world!")).astype(np.float64))
    np.testing.assert_allclose(llm.embed("Hello, world!"), want, rtol=1e-5, atol=1e-5)
    unit = np.array(llm.embed(["Hello, world!", "Bye"], normalize=True))
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-6)
    if pooling == 1:  # mean pooling, unit length: edgellama's own embed
        np.testing.assert_allclose(unit[0], native.embed("Hello, world!")[0], atol=1e-6)
    response = llm.create_embedding(["Hello, world!", "Bye"])
    assert [d["index"] for d in response["data"]] == [0, 1] and response["usage"]["prompt_tokens"] > 2
    with pytest.raises(InvalidArgumentError, match="pooling_type"):
        Llama(smollm2_path, pooling_type=4, verbose=False)


def test_save_state_and_load_state_restore_the_cache(smollm2_path):
    llm = Llama(smollm2_path, n_ctx=256, verbose=False)
    tokens = llm.tokenize(b"The capital of France is")
    llm.eval(tokens)
    state = llm.save_state()
    assert state.n_tokens == len(tokens)
    want = llm("The capital of France is", max_tokens=6, temperature=0)["choices"][0]["text"]
    llm.reset()
    other = Llama(smollm2_path, n_ctx=256, verbose=False)
    other.load_state(state)
    assert other("The capital of France is", max_tokens=6, temperature=0)["choices"][0]["text"] == want
