"""Activation precision (Llama(activations="precise" | "int8")): how close each path's logits are
to exact arithmetic on the same weights, and what it costs, side by side with llama.cpp on the same
file.

    python benchmarks/bench_activations.py fidelity --model FILE [--base BASE.gguf] [--reference]
        [--chunks 2] [--ctx 256] [--llama-cpp-python PYTHON]
    python benchmarks/bench_activations.py speed --model FILE [-t 1 2] [--rounds 7] [--llama-bench PATH]

fidelity: teacher-forced logits over `--chunks` windows of `--ctx` tokens of the evaluation text
    (edgellama.eval_text), the second half of each window scored. With --reference: the logit RMS
    and worst difference against the float64 forward of the same dequantized weights
    (tests/reference.py; it needs 8 bytes per weight of memory). With --base (the F16/F32 file the
    model was quantized from, run by edgellama with float activations): KL divergence and top-1
    agreement against it. With --llama-cpp-python (a Python with llama-cpp-python in its own
    environment): llama.cpp's logits on the same tokens (logits_all), measured the same way.
speed: one model per path in this process, prefill of a 128-token prompt then 32 decode steps,
    the paths interleaved round by round (medians, robust to a shared machine's drift). With
    --llama-bench, llama.cpp's pp128 / tg32 on the same file and threads, one llama-bench run per
    round between ours (medians), so that a slow spell of the machine weighs on both sides.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

PATHS = ("int8", "precise")
PROMPT, DECODE_STEPS = 128, 32


def windows(model, ctx, n_chunks):
    from edgellama import Llama
    from edgellama.eval_text import ensure_eval_text
    from edgellama.models import cache_dir
    from edgellama.perplexity import chunks_of

    text = ensure_eval_text(cache_dir()).read_text(encoding="utf-8")
    ids = Llama(model, n_ctx=ctx, n_threads=1).tokenize(text, add_bos=False)
    return [[int(t) for t in c] for c in chunks_of(ids, ctx, n_chunks)]


def scored_logits(llm, chunk):
    """float64 logits of the positions that predict the window's second half (as edgellama.perplexity)."""
    tokens = list(chunk)
    if llm.tokenizer.add_bos and llm.tokenizer.bos_id is not None:
        tokens[0] = llm.tokenizer.bos_id
    llm.reset()
    logits = np.asarray(llm.eval(tokens[:-1], all_logits=True), np.float64)
    return logits[len(tokens) // 2 - 1:], tokens


def log_softmax(x):
    return x - np.logaddexp.reduce(x, axis=-1, keepdims=True)


def compare(logits, exact=None, base_lp=None):
    row = {}
    if exact is not None:
        diff = logits - exact
        row.update(rms_vs_float64=float(np.sqrt(np.mean(diff ** 2))), max_vs_float64=float(np.abs(diff).max()),
                   top1_vs_float64=float(np.mean(logits.argmax(1) == exact.argmax(1))))
    if base_lp is not None:
        lp = log_softmax(logits)
        kld = np.maximum(0.0, (np.exp(base_lp) * (base_lp - lp)).sum(axis=1))
        row.update(kld_mean=float(kld.mean()), kld_p99=float(np.percentile(kld, 99)),
                   top1_vs_base=float(np.mean(lp.argmax(1) == base_lp.argmax(1))))
    return row


def fidelity(model, base, reference, n_chunks, ctx, threads, llama_cpp_python):
    from edgellama import Llama

    chunks = windows(model, ctx, n_chunks)
    outputs, tokens = {p: [] for p in PATHS}, []
    for path in PATHS:
        llm = Llama(model, n_ctx=ctx, n_threads=threads, activations=path)
        for chunk in chunks:
            logits, toks = scored_logits(llm, chunk)
            outputs[path].append(logits)
            if path == PATHS[0]:
                tokens.append(toks)
        del llm
    if llama_cpp_python:
        outputs["llama.cpp"] = llama_cpp_logits(llama_cpp_python, model, tokens, ctx, threads)
    exact = base_lp = None
    if reference:
        sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))
        from reference import load_reference

        ref = load_reference(model)
        exact = np.vstack([ref.logits(t[:-1])[len(t) // 2 - 1:] for t in tokens])
        del ref
    if base:
        b = Llama(base, n_ctx=ctx, n_threads=threads)
        base_lp = np.vstack([log_softmax(scored_logits(b, c)[0]) for c in chunks])
    rows = []
    for path, logits in outputs.items():
        row = {"model": Path(model).name, "path": path, "positions": int(sum(len(x) for x in logits)),
               **compare(np.vstack(logits), exact, base_lp)}
        rows.append(row)
        print(json.dumps(row), flush=True)
    return rows


def llama_cpp_logits(python, model, tokens, ctx, threads):
    with tempfile.TemporaryDirectory() as tmp:
        pieces = Path(tmp) / "tokens.json"
        pieces.write_text(json.dumps(tokens))
        subprocess.run([python, __file__, "_llama_cpp_logits", model, str(pieces), str(ctx), str(threads)],
                       check=True)
        return [np.load(Path(tmp) / f"{i}.npy") for i in range(len(tokens))]


def _llama_cpp_logits(model, pieces_file, ctx, threads):
    """Runs under llama-cpp-python's interpreter: each token list's scored logits to i.npy beside it."""
    import llama_cpp

    pieces = json.loads(Path(pieces_file).read_text())
    llm = llama_cpp.Llama(model, n_ctx=int(ctx), n_batch=512, n_threads=int(threads), logits_all=True, verbose=False)
    for i, tokens in enumerate(pieces):
        llm.reset()
        llm.eval(tokens[:-1])
        scores = np.array(llm.scores[:len(tokens) - 1], dtype=np.float64)
        np.save(Path(pieces_file).parent / f"{i}.npy", scores[len(tokens) // 2 - 1:])


def llama_bench(path, model, threads):
    """llama.cpp's (prefill, decode) tokens/s, one repetition."""
    out = subprocess.run([path, "-m", model, "-t", str(threads), "-p", str(PROMPT), "-n", str(DECODE_STEPS),
                          "-r", "1", "-o", "json"], capture_output=True, text=True, check=True)
    rates = {("prefill" if r["n_prompt"] else "decode"): r["avg_ts"] for r in json.loads(out.stdout)}
    return rates["prefill"], rates["decode"]


def speed(model, threads, rounds, llama_bench_path):
    from edgellama import Llama

    rows = []
    for t in threads:
        engines = {p: Llama(model, n_ctx=PROMPT + DECODE_STEPS, n_threads=t, activations=p) for p in PATHS}
        rng = np.random.default_rng(0)
        prompt = [int(x) for x in rng.integers(10, 1000, PROMPT)]
        rates = {p: ([], []) for p in PATHS}
        lcpp_rates = ([], [])
        for _ in range(rounds):
            for p, llm in engines.items():
                llm.reset()
                start = time.perf_counter()
                llm.eval(prompt)
                mid = time.perf_counter()
                for step in range(DECODE_STEPS):
                    llm.eval([100 + step])
                end = time.perf_counter()
                rates[p][0].append(PROMPT / (mid - start))
                rates[p][1].append(DECODE_STEPS / (end - mid))
            if llama_bench_path:
                for side, rate in zip(lcpp_rates, llama_bench(llama_bench_path, model, t)):
                    side.append(rate)
        del engines
        lcpp = [statistics.median(side) for side in lcpp_rates] if llama_bench_path else None
        for p in PATHS:
            row = {"model": Path(model).name, "threads": t, "path": p,
                   "prefill_tok_s": statistics.median(rates[p][0]), "decode_tok_s": statistics.median(rates[p][1])}
            row["decode_vs_int8"] = row["decode_tok_s"] / statistics.median(rates["int8"][1])
            row["prefill_vs_int8"] = row["prefill_tok_s"] / statistics.median(rates["int8"][0])
            if lcpp:
                row.update(llama_cpp_prefill_tok_s=lcpp[0], llama_cpp_decode_tok_s=lcpp[1],
                           decode_vs_llama_cpp=row["decode_tok_s"] / lcpp[1],
                           prefill_vs_llama_cpp=row["prefill_tok_s"] / lcpp[0])
            rows.append(row)
            print(json.dumps(row), flush=True)
    return rows


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if argv and argv[0] == "_llama_cpp_logits":
        return _llama_cpp_logits(*argv[1:5])
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = ap.add_subparsers(dest="what", required=True)
    f = sub.add_parser("fidelity")
    f.add_argument("--model", required=True)
    f.add_argument("--base", default=None)
    f.add_argument("--reference", action="store_true")
    f.add_argument("--chunks", type=int, default=2)
    f.add_argument("--ctx", type=int, default=256)
    f.add_argument("-t", "--threads", type=int, default=2)
    f.add_argument("--llama-cpp-python", default=None)
    s = sub.add_parser("speed")
    s.add_argument("--model", required=True)
    s.add_argument("-t", "--threads", type=int, nargs="+", default=[1, 2])
    s.add_argument("--rounds", type=int, default=7)
    s.add_argument("--llama-bench", default=None)
    args = ap.parse_args(argv)
    if args.what == "fidelity":
        fidelity(args.model, args.base, args.reference, args.chunks, args.ctx, args.threads, args.llama_cpp_python)
    else:
        speed(args.model, args.threads, args.rounds, args.llama_bench)


if __name__ == "__main__":
    main()
