"""`edgellama run`: continue a prompt and print the text."""

from __future__ import annotations

import sys
import time

from edgellama.cli.common import add_device_argument, log, non_negative_int, positive_int


def add_parser(sub) -> None:
    run = sub.add_parser("run", help="continue a prompt and print the text")
    run.add_argument("-p", "--prompt", required=True, help="the text to continue")
    run.add_argument("-m", "--model", help="GGUF file or a model name in the cache (default: SmolLM2-135M-Instruct, "
                                           "fetched on first use)")
    run.add_argument("-n", "--max-tokens", type=non_negative_int, default=64, help="tokens to generate (default 64)")
    run.add_argument("-t", "--threads", type=positive_int, default=None, help="CPU threads (default: all)")
    run.add_argument("-c", "--ctx", type=positive_int, default=None, help="context window in tokens")
    run.add_argument("--temp", type=float, default=0.8, help="temperature; 0 is greedy (default 0.8)")
    run.add_argument("--top-k", type=int, default=40)
    run.add_argument("--top-p", type=float, default=0.95)
    run.add_argument("--seed", type=int, default=None)
    run.add_argument("--stats", action="store_true", help="print load time and tokens/s to stderr")
    add_device_argument(run)
    run.set_defaults(handler=cmd_run)


def cmd_run(args) -> int:
    from edgellama.model import Llama
    from edgellama.models import resolve_model

    model_path = resolve_model(args.model, log=log)
    start = time.perf_counter()
    llm = Llama(model_path, n_ctx=args.ctx, n_threads=args.threads, device=args.device)
    load_seconds = time.perf_counter() - start
    sys.stdout.write(args.prompt)
    sys.stdout.flush()
    for piece in llm.generate(args.prompt, max_tokens=args.max_tokens, temperature=args.temp,
                              top_k=args.top_k, top_p=args.top_p, seed=args.seed, stream=True):
        sys.stdout.write(piece)
        sys.stdout.flush()
    sys.stdout.write("\n")
    if args.stats:
        s = llm.last_stats
        log(f"load {load_seconds:.2f} s | prefill {s.prompt_tokens} tokens at {s.prefill_tokens_per_second:.1f} tok/s"
         f" | decode {s.generated_tokens} tokens at {s.decode_tokens_per_second:.1f} tok/s"
         f" | {'GPU (cuda)' if args.device == 'cuda' else f'{llm.n_threads} threads'}")
    return 0
