"""KV cache types (f16, q8_0, q4_0): memory, quality against the f16 cache, and decode speed at long
context, side by side with llama.cpp's caches of the same types.

    python benchmarks/bench_kv_cache.py quality [--model FILE] [--contexts 2048 8192] [--chunks 4]
        [--llama-cpp-python PYTHON]
    python benchmarks/bench_kv_cache.py speed --model FILE [--contexts 2048 8192] [-t 2]
        [--rounds 7] [--llama-bench PATH] [--json OUT]

quality: perplexity over the evaluation text (edgellama.eval_text) with each quantized cache, and
    its KL divergence against the same model with an f16 cache run alongside (exact, every token
    of the vocabulary; edgellama.perplexity), in chunks of each context length: the second half of
    each chunk is scored, so the scored tokens attend 1/2 to 1 full window. Default model: the
    default SmolLM2-135M-Instruct Q4_1 (a real model: random weights say nothing about quality).
    With --llama-cpp-python (a Python with llama-cpp-python, in its own environment), llama.cpp's
    caches of the same types measured the same way on the same tokens: its q8_0 / q4_0 cache
    against its f16 cache (flash attention on, which its quantized V cache needs).
speed: one model per cache type, all in this process; each reads a prompt of each context length
    (prefill tok/s), then rounds of 32 decode steps from that context (the cache truncated back
    each round), the types interleaved round by round: medians, robust to a shared machine's
    drift. With --llama-bench, llama.cpp's decode at the same depth, file, threads and cache types
    (`-p 0 -n 32 -d CONTEXT -fa on`: llama.cpp needs flash attention for a quantized V cache, so
    every type runs with it).
memory: the cache's bytes for a full window of each context length.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import time

import numpy as np

TYPES = ("f16", "q8_0", "q4_0")
DECODE_STEPS = 32


def memory_table(config, contexts):
    from edgellama import resources

    return {t: {ctx: resources.kv_cache_bytes(config, ctx, 1, (t, t)) / 2**20 for ctx in contexts} for t in TYPES}


def quality(model, contexts, chunks, threads, llama_cpp_python=None):
    from edgellama import Llama
    from edgellama.eval_text import ensure_eval_text
    from edgellama.models import cache_dir
    from edgellama.perplexity import chunks_of, evaluate

    text = ensure_eval_text(cache_dir()).read_text(encoding="utf-8")
    rows = []
    for ctx in contexts:
        base = Llama(model, n_ctx=ctx, n_threads=threads)
        ids = base.tokenize(text, add_bos=False)
        for t in TYPES[1:]:
            llm = Llama(model, n_ctx=ctx, n_threads=threads, cache_type_k=t, cache_type_v=t)
            result = evaluate(llm, ids, ctx, chunks, base=base)
            rows.append({"context": ctx, "cache": t, **{k: result[k] for k in (
                "tokens_scored", "perplexity", "perplexity_error", "kld_mean", "kld_error", "kld_median", "kld_p99",
                "kld_max", "top1_agreement")}})
            print(json.dumps(rows[-1]), flush=True)
        if llama_cpp_python:
            pieces = chunks_of(ids, ctx, chunks)
            if base.tokenizer.add_bos and base.tokenizer.bos_id is not None:  # as scored_log_probs does
                pieces = [[base.tokenizer.bos_id] + piece[1:] for piece in pieces]
            for row in llama_cpp_quality(llama_cpp_python, model, pieces, ctx, threads):
                rows.append(row)
                print(json.dumps(row), flush=True)
        f16_ppl = evaluate(base, ids, ctx, chunks)
        rows.append({"context": ctx, "cache": "f16", "tokens_scored": f16_ppl["tokens_scored"],
                     "perplexity": f16_ppl["perplexity"], "perplexity_error": f16_ppl["perplexity_error"]})
        print(json.dumps(rows[-1]), flush=True)
    return rows


LLAMA_CPP_TYPES = {"f16": 1, "q8_0": 8, "q4_0": 2}  # ggml type ids


def llama_cpp_kld(model, pieces_file, ctx, threads):
    """Runs under llama-cpp-python's interpreter: KLD of its q8_0 and q4_0 caches against its f16
    cache, over the chunks of tokens in pieces_file; prints one JSON line per type."""
    import llama_cpp

    with open(pieces_file) as f:
        pieces = json.load(f)

    def scored(cache_type):
        llm = llama_cpp.Llama(model, n_ctx=ctx, n_batch=512, n_threads=threads, logits_all=True, flash_attn=True,
                              type_k=LLAMA_CPP_TYPES[cache_type], type_v=LLAMA_CPP_TYPES[cache_type], verbose=False)
        out = []
        for piece in pieces:
            llm.reset()
            llm.eval(piece)
            logits = np.array(llm.scores[ctx // 2 - 1:ctx - 1], dtype=np.float64)
            out.append(logits - np.logaddexp.reduce(logits, axis=1, keepdims=True))
        return np.vstack(out)

    base = scored("f16")
    for t in TYPES[1:]:
        lp = scored(t)
        kld = (np.exp(base) * (base - lp)).sum(axis=1)
        print(json.dumps({"context": ctx, "cache": t, "llama_cpp_kld_mean": float(kld.mean()),
                          "llama_cpp_kld_p99": float(np.percentile(kld, 99)),
                          "llama_cpp_top1_agreement": float((base.argmax(1) == lp.argmax(1)).mean())}), flush=True)


def llama_cpp_quality(python, model, pieces, ctx, threads):
    import tempfile

    with tempfile.NamedTemporaryFile("w", suffix=".json") as f:
        json.dump([[int(t) for t in piece] for piece in pieces], f)
        f.flush()
        out = subprocess.run([python, __file__, "_llama_cpp_kld", model, f.name, str(ctx), str(threads)],
                             capture_output=True, text=True, check=True)
    return [json.loads(line) for line in out.stdout.splitlines() if line.startswith("{")]


def llama_cpp_decode(llama_bench, model, ctx, threads, cache_type):
    out = subprocess.run([llama_bench, "-m", model, "-t", str(threads), "-p", "0", "-n", str(DECODE_STEPS),
                          "-d", str(ctx), "-r", "1", "-fa", "on", "-ctk", cache_type, "-ctv", cache_type, "-o", "json"],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)[0]["avg_ts"]


def speed(model, contexts, threads, rounds, llama_bench):
    from edgellama import Llama

    rows = []
    for ctx in contexts:
        engines = {}
        for t in TYPES:
            llm = Llama(model, n_ctx=ctx + DECODE_STEPS + 8, n_threads=threads, cache_type_k=t, cache_type_v=t)
            ids = [int(x) for x in np.random.default_rng(0).integers(10, llm.n_vocab, ctx)]
            start = time.perf_counter()
            llm.eval(ids)
            engines[t] = (llm, ctx / (time.perf_counter() - start), [])
        for _ in range(rounds):
            for t, (llm, _, rates) in engines.items():
                llm.truncate(ctx)
                start = time.perf_counter()
                for step in range(DECODE_STEPS):
                    llm.eval([100 + step])
                rates.append(DECODE_STEPS / (time.perf_counter() - start))
        f16_decode = statistics.median(engines["f16"][2])
        for t, (llm, prefill, rates) in engines.items():
            row = {"context": ctx, "cache": t, "prefill_tok_s": prefill, "decode_tok_s": statistics.median(rates),
                   "decode_vs_f16": statistics.median(rates) / f16_decode}
            if llama_bench:
                row["llama_cpp_decode_tok_s"] = llama_cpp_decode(llama_bench, model, ctx, threads, t)
                row["decode_vs_llama_cpp"] = row["decode_tok_s"] / row["llama_cpp_decode_tok_s"]
            rows.append(row)
            print(json.dumps(row), flush=True)
        del engines
    return rows


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("what", choices=("quality", "speed"))
    ap.add_argument("--model", default=None)
    ap.add_argument("--contexts", type=int, nargs="+", default=[2048, 8192])
    ap.add_argument("--chunks", type=int, default=4, help="quality: chunks per context")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=7, help="speed: decode rounds per type")
    ap.add_argument("--llama-bench", default=None, help="speed: llama.cpp's llama-bench, for the side-by-side")
    ap.add_argument("--llama-cpp-python", default=None, help="quality: a Python with llama-cpp-python")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    from edgellama import Llama
    from edgellama.models import ensure_default_model

    model = args.model or str(ensure_default_model())
    probe = Llama(model, n_ctx=16, n_threads=1)
    report = {"model": model, "threads": args.threads, "kv_mib": memory_table(probe.config, args.contexts)}
    print(json.dumps(report), flush=True)
    del probe
    if args.what == "quality":
        report["quality"] = quality(model, args.contexts, args.chunks, args.threads, args.llama_cpp_python)
    else:
        report["speed"] = speed(model, args.contexts, args.threads, args.rounds, args.llama_bench)
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)


if __name__ == "__main__":
    import sys

    if sys.argv[1:2] == ["_llama_cpp_kld"]:
        model, pieces_file, ctx, threads = sys.argv[2:6]
        llama_cpp_kld(model, pieces_file, int(ctx), int(threads))
    else:
        main()
