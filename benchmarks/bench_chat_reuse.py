"""KV-cache prefix reuse across chat turns: tokens prefilled and prefill time of each turn, against
a cold start of the same conversation (empty cache).

    python benchmarks/bench_chat_reuse.py [-m MODEL] [-t THREADS] [--turns 4] [-n 32]
"""

from __future__ import annotations

import argparse

from edgellama import Llama
from edgellama.models import resolve_model

QUESTIONS = ["What is the capital of France?", "And what is its most famous monument?",
             "How tall is it?", "When was it built?", "Who designed it?", "Name a museum nearby."]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-m", "--model", default=None)
    ap.add_argument("-t", "--threads", type=int, default=None)
    ap.add_argument("--turns", type=int, default=4)
    ap.add_argument("-n", "--max-tokens", type=int, default=32)
    args = ap.parse_args()
    llm = Llama(resolve_model(args.model), n_ctx=2048, n_threads=args.threads)
    messages = [{"role": "system", "content": "You are a helpful assistant."}]
    print(f"{'turn':>4} {'prompt':>7} {'prefilled':>9} {'prefill ms':>10} | cold: {'prefilled':>9} {'prefill ms':>10}")
    for turn, question in enumerate(QUESTIONS[:args.turns], 1):
        messages.append({"role": "user", "content": question})
        warm = llm.create_chat_completion(messages, max_tokens=args.max_tokens, temperature=0)
        w = llm.last_stats
        messages.append(warm["choices"][0]["message"])
        # The same prompt from an empty cache.
        saved = llm.cached_tokens
        llm.reset()
        llm.create_chat_completion(messages[:-1], max_tokens=1, temperature=0)
        c = llm.last_stats
        llm.reset()
        llm.eval(saved)  # restore the warm cache for the next turn
        print(f"{turn:>4} {w.prompt_tokens:>7} {w.prompt_tokens - w.reused_tokens:>9} {w.prefill_seconds * 1e3:>10.1f} | "
              f"cold: {c.prompt_tokens - c.reused_tokens:>9} {c.prefill_seconds * 1e3:>10.1f}")


if __name__ == "__main__":
    main()
