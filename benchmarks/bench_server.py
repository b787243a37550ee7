"""Serving speed side by side: `edgellama serve` against llama.cpp's `llama-server`, on the same GGUF
file, threads and parallel sequences, driven by the same streaming clients.

    python benchmarks/bench_server.py -m MODEL.gguf --llama-server /tmp/lcpp/build/bin/llama-server \\
        -t 2 --parallel 8 --clients 1,8,32 -p 128 -n 64

For each client count C, C clients at once each stream one /v1/completions request (a prompt of
p random token ids, different for each client, n generated tokens with the end-of-text tokens banned through
logit_bias so every answer has its full length, greedy). Reported per server and C: aggregate
tok/s (all generated tokens over the wall time of the round) and time to first token, p50 and
p95 over the clients (from sending the request to the first chunk with text). Rounds alternate
between the servers; the figures are medians over the rounds. llama-server gets -c = parallel ×
(p + n + 64), which it splits into one window per slot; edgellama gets that window per sequence.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import socket
import statistics
import subprocess
import sys
import time

import httpx

FIRST_ID = 1000  # prompt ids are drawn above the special and byte tokens of the vocabularies at hand


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def vocabulary(model: str):
    """(n_vocab, the end-of-turn token ids) of a model file."""
    from edgellama.gguf_loader import load_gguf
    from edgellama.tokenizer import Tokenizer

    gguf = load_gguf(model)
    return gguf.config.n_vocab, sorted(Tokenizer.from_metadata(gguf.tokenizer_metadata).stop_ids)


def start(cmd, url: str, log_path: str) -> subprocess.Popen:
    proc = subprocess.Popen(cmd, stdout=open(log_path, "w"), stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc
        except httpx.HTTPError:
            pass
        if proc.poll() is not None:
            raise RuntimeError(f"{cmd[0]} exited; see {log_path}")
        time.sleep(0.5)
    proc.kill()
    raise RuntimeError(f"{cmd[0]} did not become healthy; see {log_path}")


async def one_client(client, url: str, model: str, prompt: str, n_gen: int, bias) -> tuple:
    body = {"model": model, "prompt": prompt, "max_tokens": n_gen, "temperature": 0, "stream": True,
            "logit_bias": bias, "stream_options": {"include_usage": True}}
    sent = time.perf_counter()
    first, chunks, tokens = None, 0, None
    async with client.stream("POST", url + "/v1/completions", json=body) as r:
        r.raise_for_status()
        async for line in r.aiter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if chunk.get("usage"):
                tokens = chunk["usage"]["completion_tokens"]
            if chunk.get("choices") and chunk["choices"][0].get("text"):
                chunks += 1
                if first is None:
                    first = time.perf_counter() - sent
    return first, tokens if tokens is not None else chunks


async def round_of(url: str, model: str, clients: int, n_prompt: int, n_gen: int, bias, rng, n_vocab: int) -> dict:
    prompts = [[rng.randrange(FIRST_ID, n_vocab) for _ in range(n_prompt)] for _ in range(clients)]
    limits = httpx.Limits(max_connections=clients + 4)
    async with httpx.AsyncClient(timeout=600, limits=limits) as client:
        start = time.perf_counter()
        results = await asyncio.gather(*[one_client(client, url, model, p, n_gen, bias) for p in prompts])
        wall = time.perf_counter() - start
    ttft = sorted(r[0] for r in results if r[0] is not None)
    return {"tok_s": sum(r[1] for r in results) / wall, "ttft_p50": ttft[len(ttft) // 2],
            "ttft_p95": ttft[min(len(ttft) - 1, int(round(0.95 * (len(ttft) - 1))))]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("-m", "--model", required=True)
    ap.add_argument("--llama-server", required=True, help="path of llama.cpp's llama-server")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--parallel", type=int, default=8)
    ap.add_argument("--clients", default="1,8,32")
    ap.add_argument("-p", "--prompt-tokens", type=int, default=128)
    ap.add_argument("-n", "--gen-tokens", type=int, default=64)
    ap.add_argument("-r", "--rounds", type=int, default=3)
    args = ap.parse_args()
    clients = [int(c) for c in args.clients.split(",")]
    window = args.prompt_tokens + args.gen_tokens + 64
    n_vocab, stops = vocabulary(args.model)
    bias = {str(t): -100 for t in stops}
    ours_port, theirs_port = free_port(), free_port()
    servers = {
        "edgellama": ([sys.executable, "-m", "edgellama.cli", "serve", "-m", args.model, "--port", str(ours_port),
                       "-t", str(args.threads), "--parallel", str(args.parallel), "-c", str(window),
                       "--max-queue", "1024", "--alias", "bench"], f"http://127.0.0.1:{ours_port}"),
        "llama-server": ([args.llama_server, "-m", args.model, "--host", "127.0.0.1", "--port", str(theirs_port),
                          "-t", str(args.threads), "-tb", str(args.threads), "--parallel", str(args.parallel),
                          "-c", str(window * args.parallel), "--no-webui", "--log-disable"],
                         f"http://127.0.0.1:{theirs_port}"),
    }
    procs = {}
    try:
        for name, (cmd, url) in servers.items():
            procs[name] = start(cmd, url, f"/tmp/bench_server_{name}.log")
        rng = random.Random(0)
        figures = {(name, c): [] for name in servers for c in clients}
        for name, (_, url) in servers.items():  # warm up: page in the weights
            asyncio.run(round_of(url, "bench", 1, 8, 4, bias, rng, n_vocab))
        for _ in range(args.rounds):
            for c in clients:
                for name, (_, url) in servers.items():
                    figures[(name, c)].append(asyncio.run(round_of(url, "bench", c, args.prompt_tokens,
                                                                   args.gen_tokens, bias, rng, n_vocab)))
    finally:
        for proc in procs.values():
            proc.terminate()
            proc.wait(30)
    print(f"{os.path.basename(args.model)}: {args.threads} threads, --parallel {args.parallel}, prompt "
          f"{args.prompt_tokens} tokens, {args.gen_tokens} generated, medians of {args.rounds} rounds")
    print(f"{'clients':>7} {'server':<13} {'tok/s':>8} {'TTFT p50 s':>11} {'TTFT p95 s':>11}")
    for c in clients:
        for name in servers:
            rounds = figures[(name, c)]
            med = {k: statistics.median(r[k] for r in rounds) for k in ("tok_s", "ttft_p50", "ttft_p95")}
            print(f"{c:>7} {name:<13} {med['tok_s']:>8.1f} {med['ttft_p50']:>11.3f} {med['ttft_p95']:>11.3f}")
        ours = statistics.median(r["tok_s"] for r in figures[("edgellama", c)])
        theirs = statistics.median(r["tok_s"] for r in figures[("llama-server", c)])
        print(f"{'':>7} {'ratio':<13} {ours / theirs:>8.2f}")


if __name__ == "__main__":
    main()
