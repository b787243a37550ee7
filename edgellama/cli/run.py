"""`edgellama run`: continue a prompt and print the text.

The prompt is valid UTF-8 text: `-p -` reads it from standard input; undecodable bytes in either
place are refused with a one-line error (see edgellama.cli.common)."""

from __future__ import annotations

import sys
import time

from edgellama.cli.common import (add_device_argument, any_int, check_text, finite_float, log, non_negative_int,
                                  positive_int, read_stdin_text, read_text_file)
from edgellama.errors import EdgellamaError


def add_parser(sub) -> None:
    run = sub.add_parser("run", help="continue a prompt and print the text")
    run.add_argument("-p", "--prompt", required=True,
                     help="the text to continue (UTF-8); - reads it from standard input")
    run.add_argument("-m", "--model", help="GGUF file or a model name in the cache (default: SmolLM2-135M-Instruct, "
                                           "fetched on first use)")
    run.add_argument("-n", "--max-tokens", type=non_negative_int, default=64, help="tokens to generate (default 64)")
    run.add_argument("-t", "--threads", type=positive_int, default=None, help="CPU threads (default: all)")
    run.add_argument("-c", "--ctx", type=positive_int, default=None, help="context window in tokens")
    run.add_argument("--temp", type=finite_float, default=0.8, help="temperature; 0 is greedy (default 0.8)")
    run.add_argument("--top-k", type=any_int, default=40)
    run.add_argument("--top-p", type=finite_float, default=0.95)
    run.add_argument("--seed", type=any_int, default=None)
    run.add_argument("--stats", action="store_true", help="print load time and tokens/s to stderr")
    shape = run.add_mutually_exclusive_group()
    shape.add_argument("--json-schema", metavar="FILE", help="the text is JSON valid under this JSON schema")
    shape.add_argument("--grammar", metavar="FILE", help="the text follows this grammar (Lark or llama.cpp GBNF)")
    shape.add_argument("--regex", metavar="REGEX", help="the text matches this regular expression")
    add_device_argument(run)
    run.set_defaults(handler=cmd_run)


def _prompt_text(args) -> str:
    if args.prompt == "-":
        return read_stdin_text("the prompt on standard input")
    return check_text(args.prompt, "-p/--prompt")


def _structure(args) -> dict:
    """The structured-output arguments of generate() from --json-schema, --grammar and --regex,
    their files read (and a schema parsed) before the model loads."""
    import json

    if args.json_schema is not None:
        try:
            schema = json.loads(read_text_file(args.json_schema, "--json-schema"))
        except json.JSONDecodeError as exc:
            raise EdgellamaError(f"--json-schema {args.json_schema}: not JSON: {exc}") from None
        return {"response_format": {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}}
    if args.grammar is not None:
        return {"grammar": read_text_file(args.grammar, "--grammar")}
    if args.regex is not None:
        return {"regex": check_text(args.regex, "--regex")}
    return {}


def cmd_run(args) -> int:
    from edgellama.model import Llama
    from edgellama.models import resolve_model
    from edgellama.sampling import Sampler, SamplingParams

    prompt = _prompt_text(args)
    structure = _structure(args)
    # The sampler generate() builds, built once here: a bad setting is reported before the model loads.
    Sampler(SamplingParams(temperature=args.temp, top_k=args.top_k, top_p=args.top_p), args.seed)
    model_path = resolve_model(args.model, log=log)
    start = time.perf_counter()
    llm = Llama(model_path, n_ctx=args.ctx, n_threads=args.threads, device=args.device)
    load_seconds = time.perf_counter() - start
    # Every argument is checked when generate() is called, before the prompt is echoed: an error
    # is a line of its own.
    pieces = llm.generate(prompt, max_tokens=args.max_tokens, temperature=args.temp, top_k=args.top_k,
                          top_p=args.top_p, seed=args.seed, stream=True, **structure)
    sys.stdout.write(prompt)
    sys.stdout.flush()
    try:
        for piece in pieces:
            sys.stdout.write(piece)
            sys.stdout.flush()
    finally:
        # Also after an error or Ctrl-C mid-answer, so that the message starts on a line of its own.
        sys.stdout.write("\n")
        sys.stdout.flush()
    if args.stats:
        s = llm.last_stats
        log(f"load {load_seconds:.2f} s | prefill {s.prompt_tokens} tokens at {s.prefill_tokens_per_second:.1f} tok/s"
         f" | decode {s.generated_tokens} tokens at {s.decode_tokens_per_second:.1f} tok/s"
         f" | {'GPU (cuda)' if args.device == 'cuda' else f'{llm.n_threads} threads'}")
    return 0
