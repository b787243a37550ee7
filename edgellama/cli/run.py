"""`edgellama run`: continue a prompt and print the text.

The prompt is valid UTF-8 text: `-p -` reads it from standard input; undecodable bytes in either
place are refused with a one-line error (see edgellama.cli.common). `--ids 1,2,3` gives the prompt
as token ids instead; a model file without a tokenizer takes only those, and its continuation is
printed as token ids too (comma-separated, as --ids takes them)."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from typing import List

from edgellama.cli.common import (add_engine_arguments, add_device_argument, add_prompt_cache_argument, any_int,
                                  engine_options, check_text, finite_float,
                                  has_tokenizer, load_prompt_cache, log, non_negative_int, positive_int,
                                  read_stdin_text, read_text_file, save_prompt_cache)
from edgellama.errors import EdgellamaError


def add_parser(sub) -> None:
    run = sub.add_parser("run", help="continue a prompt and print the text")
    prompt = run.add_mutually_exclusive_group(required=True)
    prompt.add_argument("-p", "--prompt", help="the text to continue (UTF-8); - reads it from standard input")
    prompt.add_argument("--ids", type=token_id_list, metavar="ID,ID,...",
                        help="the prompt as token ids, e.g. 1,2,3 (for a model file without a tokenizer)")
    run.add_argument("--no-echo", action="store_true", help="print only the continuation, not the prompt")
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
    add_prompt_cache_argument(run)
    shape = run.add_mutually_exclusive_group()
    shape.add_argument("--json-schema", metavar="FILE", help="the text is JSON valid under this JSON schema")
    shape.add_argument("--grammar", metavar="FILE", help="the text follows this grammar (Lark or llama.cpp GBNF)")
    shape.add_argument("--regex", metavar="REGEX", help="the text matches this regular expression")
    add_device_argument(run)
    add_engine_arguments(run)
    run.set_defaults(handler=cmd_run)


MAX_IDS = 1 << 20  # more token ids than any context window holds is a mistake


def token_id_list(text: str) -> List[int]:
    """--ids: comma-separated non-negative integers (their range is the model's vocabulary,
    checked once it is loaded)."""
    parts = [part.strip() for part in text.split(",")]
    for part in parts:
        if not (part.isascii() and part.isdigit()):
            shown = repr(part) if part else "an empty one"
            raise argparse.ArgumentTypeError(f"wants comma-separated token ids (integers >= 0), got {shown} "
                                             f"in {text!r}")
    if len(parts) > MAX_IDS:
        raise argparse.ArgumentTypeError(f"holds {len(parts)} token ids, more than {MAX_IDS}")
    return [int(part) for part in parts]


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
    from edgellama import arguments
    from edgellama.model import Llama
    from edgellama.models import resolve_model
    from edgellama.sampling import Sampler, SamplingParams

    prompt = args.ids if args.ids is not None else _prompt_text(args)
    structure = _structure(args)
    # The sampler generate() builds, built once here: a bad setting is reported before the model loads.
    Sampler(SamplingParams(temperature=args.temp, top_k=args.top_k, top_p=args.top_p), args.seed)
    model_path = resolve_model(args.model, log=log, progress=True)
    start = time.perf_counter()
    llm = Llama(model_path, n_ctx=args.ctx, n_threads=args.threads, device=args.device, **engine_options(args))
    load_seconds = time.perf_counter() - start
    if args.ids is not None:
        arguments.token_ids("--ids", args.ids, llm.n_vocab)  # the range, named by the flag
    if args.prompt_cache is not None:
        load_prompt_cache(llm, args.prompt_cache)
    if has_tokenizer(llm):
        stats = _continue_text(llm, prompt, args, structure)
    elif args.ids is None:
        raise EdgellamaError("this file has no tokenizer; give token ids with --ids")
    elif structure:
        raise EdgellamaError("this file has no tokenizer, which --json-schema, --grammar and --regex need")
    else:
        stats = _continue_ids(llm, args)
    if args.prompt_cache is not None:
        save_prompt_cache(llm, args.prompt_cache, stats.prompt_tokens)
    if args.stats:
        log(f"load {load_seconds:.2f} s | prefill {stats.prompt_tokens} tokens at "
            f"{stats.prefill_tokens_per_second:.1f} tok/s | decode {stats.generated_tokens} tokens at "
            f"{stats.decode_tokens_per_second:.1f} tok/s"
            f" | {'GPU (cuda)' if args.device == 'cuda' else f'{llm.n_threads} threads'}")
    return 0


def _continue_text(llm, prompt, args, structure: dict):
    """Streams the continuation of prompt (text, or token ids) to stdout after the prompt's text
    (unless --no-echo); returns the generation's stats."""
    # Every argument is checked when generate() is called, before the prompt is echoed: an error
    # is a line of its own.
    pieces = llm.generate(prompt, max_tokens=args.max_tokens, temperature=args.temp, top_k=args.top_k,
                          top_p=args.top_p, seed=args.seed, stream=True, **structure)
    if not args.no_echo:
        _write(prompt if isinstance(prompt, str) else llm.detokenize(prompt))
    with _ending_line():
        for piece in pieces:
            _write(piece)
    return llm.last_stats


def _continue_ids(llm, args):
    """The continuation of --ids for a model without a tokenizer, printed as token ids. Without a
    tokenizer no end-of-turn token is known: it stops after -n tokens or a full context window."""
    from edgellama.generate import GenerationStats, common_prefix_length
    from edgellama.sampling import Sampler, SamplingParams

    sampler = Sampler(SamplingParams(temperature=args.temp, top_k=args.top_k, top_p=args.top_p), args.seed,
                      n_vocab=llm.n_vocab)
    history = list(args.ids)
    stats = GenerationStats(prompt_tokens=len(history))
    start = time.perf_counter()
    # What sequence 0 already holds of the prompt (a --prompt-cache) is not evaluated again.
    shared = min(common_prefix_length(llm.cached_tokens, history), len(history) - 1)
    llm.truncate(shared)
    logits = llm.eval(history[shared:])  # a prompt longer than the window fails here, before any output
    stats.prefill_seconds = time.perf_counter() - start
    if not args.no_echo:
        _write(",".join(map(str, history)))
    n_new = min(args.max_tokens, llm.n_ctx - len(history))
    with _ending_line():
        for i in range(n_new):
            token = sampler(logits, history)
            _write(("," if i or not args.no_echo else "") + str(token))
            history.append(token)
            stats.generated_tokens += 1
            if i + 1 < n_new:
                logits = llm.eval([token])
    stats.decode_seconds = time.perf_counter() - start - stats.prefill_seconds
    return stats


def _write(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


@contextlib.contextmanager
def _ending_line():
    """Ends the output with a newline, also after an error or Ctrl-C mid-answer, so that the
    message starts on a line of its own."""
    try:
        yield
    finally:
        _write("\n")
