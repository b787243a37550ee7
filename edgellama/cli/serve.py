"""`edgellama serve`: the OpenAI-compatible HTTP server (edgellama.server) over one model."""

from __future__ import annotations

import argparse
import signal

from edgellama.cli.common import add_engine_arguments, engine_options, log, positive_int
from edgellama.errors import EdgellamaError

DEFAULT_HOST = "127.0.0.1"  # loopback: other machines reach it only when --host says so
DEFAULT_PORT = 8080


def _port(text: str) -> int:
    value = positive_int(text)
    if value > 65535:
        raise argparse.ArgumentTypeError(f"must be a port number in [1, 65535], got {text}")
    return value


def _seconds(text: str) -> float:
    import math

    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"must be a positive number of seconds, got {text!r}")
    return value


def add_parser(sub) -> None:
    from edgellama.resources import MAX_PARALLEL

    p = sub.add_parser("serve", help="serve the model over an OpenAI-compatible HTTP API")
    p.add_argument("-m", "--model", help="model name, GGUF file or OWNER/REPO (default: the default model)")
    p.add_argument("--host", default=DEFAULT_HOST, help=f"address to bind (default {DEFAULT_HOST}: this machine only)")
    p.add_argument("--port", type=_port, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--parallel", type=positive_int, default=4,
                   help=f"sequences generated at once (default 4, at most {MAX_PARALLEL})")
    p.add_argument("-c", "--ctx", type=positive_int, default=None, help="context window of each sequence")
    add_engine_arguments(p)
    p.add_argument("-t", "--threads", type=positive_int, default=None, help="CPU threads (default: all)")
    p.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' on /v1 routes")
    p.add_argument("--alias", default=None, help="the model id clients ask for (default: the file's name)")
    p.add_argument("--max-queue", type=positive_int, default=None,
                   help="requests that may wait for a sequence before new ones get a 503 (default 64)")
    p.add_argument("--timeout", type=_seconds, default=None, metavar="SECONDS",
                   help="most seconds a request may take from its arrival, waiting and generating "
                        "included (default 600); a late answer is a 504, a late stream ends with an error event")
    p.add_argument("--guard", metavar="MODEL", default=None,
                   help="a Llama Guard model (name, file or OWNER/REPO): every chat's request and answer are "
                        "checked, and /v1/moderations answers")
    p.add_argument("--code-shield", action="store_true",
                   help="scan the code in every answer with Code Shield (needs the guard extra)")
    p.add_argument("--context-shift", action="store_true",
                   help="an answer that fills its context window goes on after dropping the oldest tokens past the "
                        "system prompt (default: it ends with finish_reason \"length\")")
    p.add_argument("--cors", action="append", default=None, metavar="ORIGIN",
                   help="allow browser requests from ORIGIN (repeatable; off by default)")
    p.set_defaults(handler=cmd_serve)


def cmd_serve(args) -> int:
    try:
        import uvicorn

        from edgellama.server.app import DEFAULT_MAX_QUEUE, DEFAULT_TIMEOUT_SECONDS, ServerConfig, create_app
    except ImportError as exc:
        raise EdgellamaError(f"edgellama serve needs the server extra ({exc.name} is missing): "
                             'pip install "edgellama[server]"') from None
    from edgellama.model import Llama
    from edgellama.models import resolve_model

    path = resolve_model(args.model, log=log, progress=True)
    llm = Llama(path, n_ctx=args.ctx, n_threads=args.threads, n_parallel=args.parallel, **engine_options(args))
    config = ServerConfig(args.alias or _model_id(args.model, llm), api_key=args.api_key,
                          max_queue=args.max_queue or DEFAULT_MAX_QUEUE, cors_origins=args.cors,
                          timeout=args.timeout or DEFAULT_TIMEOUT_SECONDS, context_shift=args.context_shift)
    _add_guards(config, args)
    app = create_app(llm, config)
    url = f"http://{'[' + args.host + ']' if ':' in args.host else args.host}:{args.port}"
    log(f"serving {config.model_id} ({llm.n_parallel} parallel sequences of {llm.n_ctx} tokens, "
        f"{llm.n_threads} threads) at {url}/v1")
    server = uvicorn.Server(uvicorn.Config(app, host=args.host, port=args.port, log_level="warning",
                                           timeout_graceful_shutdown=5))
    server.config.callback_notify = None
    _announce_when_ready(server, url)
    # uvicorn turns SIGINT / SIGTERM into a graceful shutdown (no new connections; in-flight
    # requests get 5 s), then raises the signal again for the handlers it found: these, so that
    # a requested stop exits with status 0 rather than as an interruption.
    previous = {sig: signal.signal(sig, lambda *_: None) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        server.run()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    log("stopped")
    return 0


def _add_guards(config, args) -> None:
    """The safeguards --guard and --code-shield ask for, loaded before the server starts."""
    if args.guard is not None:
        from edgellama.guard import LlamaGuard
        from edgellama.models import resolve_model

        guard = LlamaGuard(resolve_model(args.guard, log=log), n_threads=args.threads)
        config.guard, config.guard_id = guard, _model_id(args.guard, guard.llm)
        log(f"guarding with {config.guard_id} (Llama Guard format {guard.format.name})")
    if args.code_shield:
        from edgellama.guard import CodeShield

        config.code_shield = CodeShield()


def _model_id(spec, llm) -> str:
    """The id clients ask for: the name -m gave (a cache name), the default model's short name, or
    the file's name for a path."""
    import os

    from edgellama.models import DEFAULT_MODEL_ALIASES

    if spec is None:
        return DEFAULT_MODEL_ALIASES[0]
    return llm.model_name if os.path.exists(spec) else spec


def _announce_when_ready(server, url: str) -> None:
    """Prints the ready line once uvicorn has bound its socket (scripts wait for it)."""
    startup = server.startup

    async def startup_then_announce(sockets=None):
        await startup(sockets=sockets)
        if server.started:
            log(f"ready: {url}/v1 (Ctrl-C stops)")

    server.startup = startup_then_announce
