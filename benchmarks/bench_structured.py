"""Structured output: validity, mask cost per token, and decode speed with and without a constraint.

    python benchmarks/bench_structured.py [--model SMOLLM2.gguf] [--big LLAMA-1B.gguf]
        [--llama3-tokenizer DIR] [-t 2] [--seeds 8] [--tokens 96] [-r 5]
        [--only validity|mask|decode]

1. Validity: the schema battery of tests/test_structured_output.py on the model, at --seeds seeds
   at temperatures 0.7 and 1.0 plus greedy: outputs, finished ("stop"), valid (parse and validate
   with jsonschema, formats checked). Every finished output must be valid.
2. Mask cost: llguidance's mask per token, median and p95 microseconds, on the model's vocabulary
   and on the Llama 3 vocabulary (a Hugging Face tokenizer folder), for a JSON-schema grammar and
   a free-text grammar, walking a valid text token by token; plus the cost of applying the mask
   to the logits.
3. Decode speed: tokens/s of the decode phase (GenerationStats) for --tokens tokens, free text
   against a free-text grammar and against a JSON schema, on each model; median of -r runs,
   interleaved. End-of-turn tokens are banned so that every run decodes the same count.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from edgellama import Llama
from edgellama.constraints import constraint_from
from edgellama.models import cache_dir, ensure_default_model

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from test_structured_output import ASK, SCHEMAS  # noqa: E402  (the battery the tests check)

PERSON = SCHEMAS["nested objects"]
PERSON_TEXT = '{"name": "Ada Lovelace", "address": {"city": "London", "zip": "12345"}}'
FREE_TEXT_GRAMMAR = r"[^\n]{0,2000}"
FREE_TEXT = "Once upon a time there was a small village by the sea, where the fishermen sang every morning."


def json_format(schema):
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema}}


def validity(llm: Llama, seeds: int) -> dict:
    import jsonschema

    formats = jsonschema.FormatChecker()
    counts = {"outputs": 0, "finished": 0, "valid": 0}
    settings = [(0.0, 0)] + [(t, s) for t in (0.7, 1.0) for s in range(seeds)]
    for schema in SCHEMAS.values():
        for temperature, seed in settings:
            choice = llm.create_chat_completion(ASK, max_tokens=160, temperature=temperature, seed=seed,
                                                response_format=json_format(schema))["choices"][0]
            counts["outputs"] += 1
            if choice["finish_reason"] != "stop":
                continue
            counts["finished"] += 1
            try:
                jsonschema.validate(json.loads(choice["message"]["content"]), schema, format_checker=formats)
                counts["valid"] += 1
            except (ValueError, jsonschema.ValidationError) as exc:
                print(f"INVALID: {choice['message']['content']!r}: {exc}", file=sys.stderr)
    return counts


def mask_cost(tokenizer, n_logits: int, kwargs: dict, text: str) -> dict:
    """Microseconds per token to compute the mask and to apply it, walking `text`'s tokens."""
    constraint = constraint_from(tokenizer, n_logits, **kwargs)
    ids = tokenizer.encode(text, add_bos=False)
    fill, apply = [], []
    logits = np.zeros(n_logits, np.float32)
    for _ in range(5):
        state = constraint.state()
        state.close()  # the first mask is timed below, not on the pool
        for token in ids:
            start = time.perf_counter()
            state._fill()
            fill.append(time.perf_counter() - start)
            start = time.perf_counter()
            state.mask(logits)
            apply.append(time.perf_counter() - start)
            if state._matcher.consume_token(token) is False or state._matcher.is_stopped():
                break
    return {"fill_us_median": 1e6 * statistics.median(fill), "fill_us_p95": 1e6 * np.percentile(fill, 95),
            "apply_us_median": 1e6 * statistics.median(apply), "tokens": len(fill) // 5}


def decode_rates(llm: Llama, tokens: int, reps: int) -> dict:
    bias = {t: float("-inf") for t in llm.tokenizer.stop_ids}
    prompt = llm.chat_template.encode(llm.tokenizer, ASK, add_generation_prompt=True)
    cases = {"free text": {}, "free-text grammar": {"regex": FREE_TEXT_GRAMMAR},
             "JSON schema": {"response_format": json_format({"type": "object", "properties": {
                 "story": {"type": "string"}}, "required": ["story"]})}}
    rates = {name: [] for name in cases}
    for _ in range(reps):
        for name, kwargs in cases.items():
            reply = llm.create_completion(prompt, max_tokens=tokens, temperature=0.7, seed=1, logit_bias=bias,
                                          **kwargs)
            stats = llm.last_stats
            assert reply["usage"]["completion_tokens"] == stats.generated_tokens
            rates[name].append((stats.generated_tokens - 1) / stats.decode_seconds)
    base = statistics.median(rates["free text"])
    return {name: {"tok_s": round(statistics.median(r), 1), "vs_free": round(statistics.median(r) / base, 3),
                   "tokens": tokens} for name, r in rates.items()}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=None, help="GGUF file (default: the default model, SmolLM2)")
    ap.add_argument("--big", default=None, help="a second GGUF file for decode speed (e.g. the 1B shape)")
    ap.add_argument("--llama3-tokenizer", default=str(cache_dir() / "llama3.2-tokenizer"),
                    help="Hugging Face tokenizer folder with the Llama 3 vocabulary")
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--seeds", type=int, default=8)
    ap.add_argument("--tokens", type=int, default=96)
    ap.add_argument("-r", "--reps", type=int, default=5)
    ap.add_argument("--only", choices=("validity", "mask", "decode"), default=None, help="run one part")
    args = ap.parse_args()
    wanted = lambda part: args.only in (None, part)  # noqa: E731

    llm = Llama(args.model or ensure_default_model(), n_threads=args.threads, n_ctx=1024)
    report = {}
    if wanted("validity"):
        report["validity"] = validity(llm, args.seeds)
        print(json.dumps(report), flush=True)
    vocabularies = {f"{llm.model_name} ({llm.n_vocab})": (llm.tokenizer, llm.n_vocab)}
    if Path(args.llama3_tokenizer, "tokenizer.json").is_file():
        from edgellama.tokenizer import Tokenizer
        from edgellama.tokenizer_convert import tokenizer_metadata_from_hf

        llama3 = Tokenizer.from_metadata(tokenizer_metadata_from_hf(args.llama3_tokenizer))
        vocabularies[f"Llama 3 ({llama3.n_vocab})"] = (llama3, llama3.n_vocab)
    report["mask_cost"] = {} if not wanted("mask") else {
        f"{vocab} / {grammar}": mask_cost(tok, n, kwargs, text)
        for vocab, (tok, n) in vocabularies.items()
        for grammar, kwargs, text in (("JSON schema", {"response_format": json_format(PERSON)}, PERSON_TEXT),
                                      ("free text", {"regex": FREE_TEXT_GRAMMAR}, FREE_TEXT))}
    print(json.dumps(report["mask_cost"]), flush=True)
    if not wanted("decode"):
        return
    report["decode"] = {llm.model_name: decode_rates(llm, args.tokens, args.reps)}
    if args.big:
        big = Llama(args.big, n_threads=args.threads, n_ctx=1024)
        report["decode"][big.model_name] = decode_rates(big, args.tokens, args.reps)
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
