"""Speed of parallel generations (`edgellama bench --parallel 1,2,4,8,16`).

For each parallel count P, P threads each run one greedy generation on the same Llama (n_parallel
= the largest P): a prompt of n_prompt random token ids (a different one per sequence) and n_gen
generated tokens (end-of-turn tokens are banned with logit_bias so every sequence runs its full
length, as llama.cpp's llama-batched-bench decodes a fixed number of steps). Sampling and the
scheduler are included: this is what a caller of the API sees.

Reported per P, medians over `reps` repetitions:
- aggregate decode tok/s: tokens generated after every sequence had its first one, divided by the
  time from that moment to the last token (the decode phase, as llama-batched-bench's S_TG);
- per-sequence decode tok/s: the median sequence's own rate over its decode;
- time to first token: the median sequence's wait from its submission (queueing and the batched
  prefill of all P prompts included).
"""

from __future__ import annotations

import json
import statistics
import sys
import threading
import time
from dataclasses import asdict, dataclass
from typing import List, Optional, Sequence

from edgellama.child_process import run_child


@dataclass
class ParallelResult:
    model: str
    threads: int
    parallel: int
    n_prompt: int
    n_gen: int
    aggregate_tok_s: float
    aggregate_min_max: List[float]
    per_sequence_tok_s: float
    ttft_s: float
    cpu_level: str = ""


def _one_round(llm, prompts: List[List[int]], n_gen: int, ban: dict) -> tuple:
    """Runs the prompts side by side; returns (aggregate tok/s, median per-sequence tok/s, median TTFT s)."""
    firsts, lasts, stats = [0.0] * len(prompts), [0.0] * len(prompts), [None] * len(prompts)
    counts = [0] * len(prompts)
    barrier = threading.Barrier(len(prompts))
    errors = []

    def run(i: int) -> None:
        try:
            barrier.wait()
            for record in llm.stream_tokens(prompts[i], max_tokens=n_gen, temperature=0, logit_bias=ban):
                now = time.perf_counter()
                counts[i] += 1
                if counts[i] == 1:
                    firsts[i] = now
                lasts[i] = now
                stats[i] = record.stats
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(prompts))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    decode_start, decode_end = max(firsts), max(lasts)
    # Tokens each sequence produced after the last one's first token (its first record at most).
    produced = sum(max(0, counts[i] - 1) for i in range(len(prompts)))
    aggregate = produced / (decode_end - decode_start) if decode_end > decode_start else float("nan")
    per_sequence = statistics.median(s.decode_tokens_per_second for s in stats)
    ttft = statistics.median(s.queue_seconds + s.prefill_seconds for s in stats)
    return aggregate, per_sequence, ttft


def measure_parallel(model_path: str, threads: int, n_prompt: int, n_gen: int, parallel: List[int],
                     reps: int, seed: int = 0, cache_types: Sequence[str] = ("f16", "f16"),
                     activations: Optional[str] = None) -> List[ParallelResult]:
    import os

    import numpy as np

    from edgellama import _core
    from edgellama.model import Llama

    llm = Llama(model_path, n_ctx=n_prompt + n_gen + 1, n_threads=threads, n_parallel=max(parallel),
                cache_type_k=cache_types[0], cache_type_v=cache_types[1], activations=activations)
    ban = {token: float("-inf") for token in llm.tokenizer.stop_ids}
    rng = np.random.default_rng(seed)
    results = []
    # Warm up (page in the weights) within the window, also for a prompt shorter than 8 tokens.
    llm.generate(rng.integers(0, llm.n_vocab, size=min(8, n_prompt)).tolist(), max_tokens=2)
    for p in parallel:
        rounds = []
        for _ in range(reps):
            # Fresh random prompts each round: no sequence finds its prompt cached.
            prompts = [rng.integers(0, llm.n_vocab, size=n_prompt).tolist() for _ in range(p)]
            rounds.append(_one_round(llm, prompts, n_gen, ban))
        aggregate = [r[0] for r in rounds]
        results.append(ParallelResult(
            model=os.path.basename(model_path), threads=threads, parallel=p, n_prompt=n_prompt, n_gen=n_gen,
            aggregate_tok_s=statistics.median(aggregate), aggregate_min_max=[min(aggregate), max(aggregate)],
            per_sequence_tok_s=statistics.median(r[1] for r in rounds),
            ttft_s=statistics.median(r[2] for r in rounds), cpu_level=_core.LEVEL))
    return results


def run_parallel_bench(model_path: str, threads: List[int], n_prompt: int, n_gen: int, parallel: List[int],
                       reps: int, cache_types: Sequence[str] = ("f16", "f16"),
                       activations: Optional[str] = None) -> List[ParallelResult]:
    """One child process per thread count, as edgellama.bench does."""
    results = []
    for t in threads:
        out = run_child("edgellama.bench_parallel", [model_path, str(t), str(n_prompt), str(n_gen),
                                                     ",".join(map(str, parallel)), str(reps), *cache_types,
                                                     activations or "default"])
        if out.returncode != 0:
            raise RuntimeError(f"parallel benchmark with {t} threads failed: {out.stderr.strip()[-800:]}")
        results += [ParallelResult(**json.loads(line)) for line in out.stdout.strip().splitlines()]
    return results


def format_parallel_table(results: List[ParallelResult]) -> str:
    lines = [f"{'model':<34} {'thr':>3} {'par':>4} {'aggregate tok/s':>20} {'per-seq tok/s':>13} {'TTFT s':>7}"]
    for r in results:
        agg = f"{r.aggregate_tok_s:.1f} ({r.aggregate_min_max[0]:.0f}-{r.aggregate_min_max[1]:.0f})"
        lines.append(f"{r.model[:34]:<34} {r.threads:>3} {r.parallel:>4} {agg:>20} {r.per_sequence_tok_s:>13.1f} "
                     f"{r.ttft_s:>7.3f}")
    return "\n".join(lines)


def _child(argv: Optional[List[str]] = None) -> None:
    model, threads, n_prompt, n_gen, parallel, reps, cache_k, cache_v, activations = (argv or sys.argv[1:])[:9]
    for r in measure_parallel(model, int(threads), int(n_prompt), int(n_gen),
                              [int(p) for p in parallel.split(",")], int(reps), cache_types=(cache_k, cache_v),
                              activations=None if activations == "default" else activations):
        print(json.dumps(asdict(r)))


if __name__ == "__main__":
    _child()
