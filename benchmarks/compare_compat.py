"""edgellama.compat against llama-cpp-python itself: the same scripts, run once with each library.

llama-cpp-python lives in its own virtualenv, outside edgellama's dependencies and outside CI
(benchmarks/compare_llamacpp.py says how to build one). Run this with edgellama's python:

    python benchmarks/compare_compat.py --other-python /tmp/lcpp-venv/bin/python [-m MODEL.gguf]

1. The README script (tests/scripts/llama_cpp_python_readme.py, written against llama-cpp-python's
   documented usage) runs under both libraries, its import line the only change. Sampled texts
   differ between the libraries (different random streams), so it compares what must agree: the
   examples that ran, the response objects' key structure, finish reasons, that JSON-mode and
   tool-call outputs parse and fit their schemas, the tokens, the detokenized text and the sizes.
2. A deterministic probe: greedy completions (temperature 0) of a few prompts, compared token by
   token (the libraries round activations differently, so a late divergence on a near tie is
   possible: the table shows where each first differs), and embed()'s shape and cosine similarity.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
README_SCRIPT = ROOT / "tests" / "scripts" / "llama_cpp_python_readme.py"
OURS, THEIRS = "from edgellama.compat import Llama", "from llama_cpp import Llama"
PROMPTS = ["The capital of France is", "Q: What is 2 + 2? A:", "Once upon a time", "def fibonacci(n):"]
PROBE = f'''
import json, sys
{OURS}
llm = Llama(model_path=sys.argv[1], n_ctx=512, n_threads=2, seed=0, verbose=False)
for prompt in {PROMPTS!r}:
    out = llm(prompt, max_tokens=24, temperature=0.0, top_k=1)
    text = out["choices"][0]["text"]
    print(json.dumps({{"prompt": prompt, "text": text, "tokens": llm.tokenize(text.encode(), add_bos=False)}}))
emb = Llama(model_path=sys.argv[1], embedding=True, verbose=False).embed("Hello, world!")
print(json.dumps({{"embedding": emb}}))
'''


def run(python: str, source: str, model: str, library: str) -> list:
    """The JSON lines a script prints, run with `python` against `library` ("ours" or "theirs")."""
    if library == "theirs":
        source = source.replace(OURS, THEIRS)
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(source)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    if library == "ours":  # this checkout's edgellama, whatever the working directory
        env["PYTHONPATH"] = str(ROOT)
    out = subprocess.run([python, f.name, model], capture_output=True, text=True, timeout=1800, env=env,
                         cwd=tempfile.gettempdir())
    Path(f.name).unlink()
    if out.returncode != 0:
        raise SystemExit(f"{library} failed:\n{out.stderr[-3000:]}")
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def key_structure(value):
    """The nested keys of a response object (values dropped), for shape comparison."""
    if isinstance(value, dict):
        return {k: key_structure(v) for k, v in sorted(value.items())
                if k not in ("id", "created", "system_fingerprint")}
    if isinstance(value, list):
        return [key_structure(value[0])] if value else []
    return type(value).__name__ if value is not None else "null"


def parses(text) -> bool:
    try:
        json.loads(text)
        return True
    except (TypeError, ValueError):
        return False


def compare_readme(python_ours: str, python_theirs: str, model: str) -> None:
    source = README_SCRIPT.read_text()
    assert OURS in source
    ours = {k: v for line in run(python_ours, source, model, "ours") for k, v in line.items()}
    theirs = {k: v for line in run(python_theirs, source, model, "theirs") for k, v in line.items()}
    print("README examples (edgellama.compat | llama-cpp-python):")
    for name in theirs:
        a, b = ours.get(name), theirs[name]
        if name in ("completion", "chat", "json_mode", "json_schema_mode", "function_call"):
            same_shape = key_structure(a) == key_structure(b)
            finish = (a["choices"][0]["finish_reason"], b["choices"][0]["finish_reason"])
            extra = ""
            if name.startswith("json"):
                extra = f"; JSON parses: {parses(a['choices'][0]['message']['content'])} | " \
                        f"{parses(b['choices'][0]['message']['content'])}"
            if name == "function_call":
                calls = [x["choices"][0]["message"].get("tool_calls") or [] for x in (a, b)]
                extra = "; call arguments parse: " + " | ".join(
                    str(bool(c) and parses(c[0]["function"]["arguments"])) for c in calls)
            print(f"  {name:<18} same key structure: {same_shape}; finish {finish[0]} | {finish[1]}{extra}")
            if not same_shape:
                print(f"      ours:   {json.dumps(key_structure(a))}\n      theirs: {json.dumps(key_structure(b))}")
        elif name in ("tokens", "detokenized", "sizes"):
            print(f"  {name:<18} equal: {a == b}" + ("" if a == b else f" ({a!r} | {b!r})"))
        else:
            print(f"  {name:<18} ran in both: {a is not None}")


def compare_greedy(python_ours: str, python_theirs: str, model: str) -> None:
    ours, theirs = run(python_ours, PROBE, model, "ours"), run(python_theirs, PROBE, model, "theirs")
    print("greedy completions, 24 tokens (tokens equal before the first difference):")
    for a, b in zip(ours[:-1], theirs[:-1]):
        first = next((i for i, (x, y) in enumerate(zip(a["tokens"], b["tokens"])) if x != y),
                     min(len(a["tokens"]), len(b["tokens"])))
        print(f"  {a['prompt']!r:<30} {first:>3}/{max(len(a['tokens']), len(b['tokens']))}  "
              f"{a['text']!r} | {b['text']!r}")
    x, y = np.atleast_2d(ours[-1]["embedding"]), np.atleast_2d(theirs[-1]["embedding"])
    if x.shape != y.shape:
        print(f"embedding shapes differ: {x.shape} | {y.shape}")
        return
    cosine = (x * y).sum(axis=1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1))
    print(f"embed('Hello, world!'): shape {x.shape} in both; cosine similarity per vector, min "
          f"{cosine.min():.6f}; largest |difference| / largest |value| {np.abs(x - y).max() / np.abs(y).max():.2e}")


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--other-python", required=True, help="a python with llama-cpp-python installed")
    ap.add_argument("-m", "--model", default=None, help="GGUF file (default: the cached SmolLM2-135M-Instruct Q4_1)")
    args = ap.parse_args(argv)
    if args.model is None:
        from edgellama.models import ensure_default_model

        args.model = str(ensure_default_model())
    compare_greedy(sys.executable, args.other_python, args.model)
    compare_readme(sys.executable, args.other_python, args.model)


if __name__ == "__main__":
    main()
