"""Side-by-side speed of edgellama and llama.cpp (through llama-cpp-python) on the same GGUF file.

llama-cpp-python must live in its own virtualenv (it compiles its own copy of the runtime; keep it
out of edgellama's environment and out of CI), e.g.:

    python -m venv /tmp/lcpp-venv
    /tmp/lcpp-venv/bin/pip install numpy cmake ninja scikit-build-core
    CMAKE_ARGS="-DGGML_NATIVE=ON" /tmp/lcpp-venv/bin/pip install --no-build-isolation llama-cpp-python

then:

    python benchmarks/compare_llamacpp.py --other-python /tmp/lcpp-venv/bin/python -m MODEL.gguf -t 1,2 -p 128 -n 64 -r 3

Both sides evaluate the same random token ids (prefill in one call, then single-token decode steps;
no sampling), with the same thread count, in fresh processes, interleaved round after round so
machine noise hits both alike. Prints each side's median and the ratio ours/theirs.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile

OTHER_SIDE = r'''
import json, sys, time
import numpy as np
from llama_cpp import Llama
model, threads, n_prompt, n_gen = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
llm = Llama(model_path=model, n_ctx=n_prompt + n_gen, n_threads=threads, n_threads_batch=threads,
            n_batch=n_prompt, n_ubatch=n_prompt, verbose=False)
rng = np.random.default_rng(0)
prompt = rng.integers(0, llm.n_vocab(), size=n_prompt).tolist()
decode_ids = rng.integers(0, llm.n_vocab(), size=n_gen).tolist()
llm.eval(prompt[:8])
llm.reset()
t0 = time.perf_counter(); llm.eval(prompt); t1 = time.perf_counter()
for tok in decode_ids:
    llm.eval([tok])
t2 = time.perf_counter()
print(json.dumps({"prefill_tok_s": n_prompt / (t1 - t0), "decode_tok_s": n_gen / (t2 - t1)}))
'''


def run_json(cmd):
    out = subprocess.run(cmd, capture_output=True, text=True)
    if out.returncode != 0:
        raise RuntimeError(f"{cmd[0]} failed: {out.stderr.strip()[-1000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--other-python", required=True, help="python of the virtualenv with llama-cpp-python")
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("-t", "--threads", default="1,2")
    ap.add_argument("-p", "--prompt-tokens", type=int, default=128)
    ap.add_argument("-n", "--gen-tokens", type=int, default=64)
    ap.add_argument("-r", "--rounds", type=int, default=3)
    args = ap.parse_args()
    with tempfile.NamedTemporaryFile("w", suffix=".py", delete=False) as f:
        f.write(OTHER_SIDE)
        other_script = f.name
    print(f"model {args.model}  pp{args.prompt_tokens}  tg{args.gen_tokens}  rounds {args.rounds}")
    print(f"{'thr':>3} {'test':>6} {'edgellama':>10} {'llama.cpp':>10} {'ratio':>6}  {'roofline (ours)':>15}")
    for threads in [int(t) for t in args.threads.split(",")]:
        ours, theirs, roof = {"pp": [], "tg": []}, {"pp": [], "tg": []}, []
        for _ in range(args.rounds):
            a = run_json([sys.executable, "-m", "edgellama.bench", args.model, str(threads),
                          str(args.prompt_tokens), str(args.gen_tokens), "1"])
            b = run_json([args.other_python, other_script, args.model, str(threads),
                          str(args.prompt_tokens), str(args.gen_tokens)])
            ours["pp"].append(a["prefill_tok_s"]); ours["tg"].append(a["decode_tok_s"])
            theirs["pp"].append(b["prefill_tok_s"]); theirs["tg"].append(b["decode_tok_s"])
            roof.append(a["roofline_fraction"])
        for test in ("pp", "tg"):
            o, t = statistics.median(ours[test]), statistics.median(theirs[test])
            extra = f"{statistics.median(roof):>15.0%}" if test == "tg" else ""
            print(f"{threads:>3} {test + str(args.prompt_tokens if test == 'pp' else args.gen_tokens):>6} "
                  f"{o:>10.1f} {t:>10.1f} {o / t:>6.2f}  {extra}")


if __name__ == "__main__":
    main()
