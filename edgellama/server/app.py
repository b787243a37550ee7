"""The OpenAI-compatible HTTP app over one shared Llama (FastAPI; served by uvicorn in
edgellama.cli.serve). Routes: /health, /metrics (Prometheus), /v1/models, /v1/chat/completions,
/v1/completions, /v1/embeddings.

Concurrent requests run as parallel sequences of the Llama (its n_parallel) and queue beyond it, up
to `max_queue` waiting requests; more get a 503 with Retry-After. Streamed responses are
server-sent events ending with ``data: [DONE]``; a client that disconnects closes its generations,
which frees their sequences within a step.
"""

from __future__ import annotations

import asyncio
import base64
import hmac
import json
import time
import weakref
from typing import Any, Dict, List, Optional

import anyio
import numpy as np
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import JSONResponse, Response
from sse_starlette.sse import EventSourceResponse

from edgellama import arguments
from edgellama.api import chat_prompt_ids
from edgellama.sampling import Sampler, SamplingParams
from edgellama.server import generation
from edgellama.server.errors import APIError, api_error, install_handlers, queue_full
from edgellama.server.metrics import CONTENT_TYPE_LATEST, Metrics
from edgellama.server.schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest

MAX_BODY_BYTES = 8 << 20  # a request body beyond this is a 413
KNOWN_PATHS = ("/health", "/metrics", "/v1/models", "/v1/chat/completions", "/v1/completions", "/v1/embeddings")
DEFAULT_MAX_QUEUE = 64    # requests waiting for a sequence before new ones get a 503
SHUTDOWN_GRACE_SECONDS = 2.0  # a stream's time to send its error event when the server stops


class ServerConfig:
    """The model's public id, the API key (None: none needed), queue and body limits, CORS origins."""

    def __init__(self, model_id: str, api_key: Optional[str] = None, max_queue: int = DEFAULT_MAX_QUEUE,
                 max_body_bytes: int = MAX_BODY_BYTES, cors_origins: Optional[List[str]] = None):
        self.model_id = model_id
        self.api_key = api_key
        self.max_queue = max_queue
        self.max_body_bytes = max_body_bytes
        self.cors_origins = cors_origins or []


def create_app(llm, config: ServerConfig) -> FastAPI:
    app = FastAPI(title="edgellama", summary="OpenAI-compatible API of a local model", docs_url=None,
                  redoc_url=None)
    metrics = Metrics(llm)
    admission = Admission(llm.n_parallel + config.max_queue)
    install_handlers(app, lambda error: metrics.errors.labels(error.kind).inc())
    app.add_middleware(BodyLimit, limit=config.max_body_bytes)
    app.add_middleware(RequestCounter, metrics=metrics)
    if config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=config.cors_origins, allow_methods=["*"],
                           allow_headers=["*"])
    authorized = _authorization(config.api_key)
    created = int(time.time())

    @app.get("/health")
    async def health() -> Dict[str, Any]:
        return {"status": "ok", "model": config.model_id}

    @app.get("/metrics")
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models", dependencies=[Depends(authorized)])
    async def models() -> Dict[str, Any]:
        return {"object": "list", "data": [{"id": config.model_id, "object": "model", "created": created,
                                            "owned_by": "edgellama"}]}

    @app.post("/v1/chat/completions", dependencies=[Depends(authorized)])
    async def chat_completions(body: ChatCompletionRequest):
        _check_model(config, body.model)
        ids = _call(chat_prompt_ids, llm, body.messages)
        top = (body.top_logprobs or 0) if body.logprobs else None
        if body.top_logprobs is not None and not body.logprobs:
            raise APIError(400, "top_logprobs needs logprobs: true", param="top_logprobs")
        max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        return await _respond(llm, config, metrics, admission, body, ids, max_tokens, top, chat=True)

    @app.post("/v1/completions", dependencies=[Depends(authorized)])
    async def completions(body: CompletionRequest):
        _check_model(config, body.model)
        ids = _prompt_ids(llm, body.prompt)
        max_tokens = body.max_tokens if body.max_tokens is not None else 16  # OpenAI's default
        return await _respond(llm, config, metrics, admission, body, ids, max_tokens, body.logprobs, chat=False)

    @app.post("/v1/embeddings", dependencies=[Depends(authorized)])
    async def embeddings(body: EmbeddingRequest):
        from edgellama.embeddings import embedding_response

        _check_model(config, body.model)
        loop = asyncio.get_running_loop()
        try:  # evaluated in a worker thread: the event loop keeps serving the streams
            response = await loop.run_in_executor(None, embedding_response, llm, body.input, config.model_id)
        except Exception as exc:  # noqa: BLE001
            raise api_error(exc) from exc
        if body.encoding_format == "base64":  # little-endian float32, as OpenAI sends them
            for item in response["data"]:
                item["embedding"] = base64.b64encode(np.asarray(item["embedding"], "<f4").tobytes()).decode()
        return response

    return app


def _call(function, *args):
    try:
        return function(*args)
    except Exception as exc:  # noqa: BLE001 - every failure becomes an OpenAI error object
        raise api_error(exc) from exc


def _check_model(config: ServerConfig, model: str) -> None:
    if model != config.model_id:
        raise APIError(404, f"model {model!r} is not served here; this server serves {config.model_id!r}",
                       param="model", code="model_not_found")


def _prompt_ids(llm, prompt) -> List[int]:
    """A text prompt is tokenized (its text never becomes control tokens); a list of ints is
    token ids; a list holds one prompt (several would be several completions: not supported)."""
    if isinstance(prompt, list) and prompt and isinstance(prompt[0], str):
        if len(prompt) != 1:
            raise APIError(400, "prompt: one prompt per request (a list of one string)", param="prompt")
        prompt = prompt[0]
    if isinstance(prompt, str):
        return _call(llm.tokenize, prompt)
    return _call(arguments.token_ids, "prompt", prompt, llm.n_vocab).tolist()


def _plan(llm, config: ServerConfig, body, ids: List[int], max_tokens, top, chat: bool) -> generation.Plan:
    from edgellama.openai_shapes import ResponseShape

    n = body.n or 1
    seed = _call(arguments.seed, body.seed)  # choice i samples with seed + i: n different answers
    seeds = [None if seed is None else (seed + i) % 2**64 for i in range(n)]
    params = _call(lambda: SamplingParams(**body.sampling_settings()))
    samplers = [_call(Sampler, params, seed, llm.n_vocab) for seed in seeds]
    _call(arguments.max_tokens, max_tokens)
    _call(arguments.stop_strings, body.stop)
    generation.check_fits(llm, ids, "messages" if chat else "prompt")
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    if body.stream_options is not None and not body.stream:
        raise APIError(400, "stream_options needs stream: true", param="stream_options")
    shape = ResponseShape(llm.tokenizer, config.model_id, chat, logprobs=top is not None)
    return generation.Plan(ids, max_tokens, samplers, body.stop, top, shape, include_usage)


class Admission:
    """Choices in flight (generating or waiting for a sequence): a request whose choices would
    take them past the sequences plus `max_queue` is refused with a 503 before anything starts."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.in_flight = 0

    def enter(self, n: int) -> None:
        if self.in_flight + n > self.capacity:
            raise queue_full(f"the server is busy: {self.in_flight} generations are running or waiting "
                             f"(sequences plus --max-queue: {self.capacity}); retry shortly")
        self.in_flight += n

    def leave(self, n: int) -> None:
        self.in_flight -= n


async def _respond(llm, config: ServerConfig, metrics: Metrics, admission: Admission, body, ids, max_tokens, top,
                   chat: bool):
    plan = _plan(llm, config, body, ids, max_tokens, top, chat)
    plan.on_finished = metrics.generations
    n = len(plan.samplers)
    admission.enter(n)  # the event loop's thread only: no lock needed
    if not body.stream:
        try:
            return JSONResponse(await generation.complete(llm, plan))
        except Exception as exc:  # noqa: BLE001
            raise api_error(exc) from exc
        finally:
            admission.leave(n)
    left = []

    def done() -> None:  # once, whether the stream ends, fails, or is never started and collected
        if not left:
            left.append(True)
            admission.leave(n)

    stopping = anyio.Event()  # set by sse-starlette when the server shuts down
    events = _events(llm, plan, metrics, done, stopping)
    weakref.finalize(events, done)
    return EventSourceResponse(events, ping=15, shutdown_event=stopping, shutdown_grace_period=SHUTDOWN_GRACE_SECONDS)


async def _events(llm, plan: generation.Plan, metrics: Metrics, done, stopping):
    """The stream's events; a failure after the start, or the server shutting down, ends it with
    an error event (then [DONE]) so that clients can tell it from a complete answer."""
    chunks = generation.stream(llm, plan)
    try:
        async for chunk in chunks:
            if stopping.is_set():
                error = APIError(503, "the server is shutting down; the answer is incomplete", type_="server_error",
                                 code="server_shutdown")
                yield {"data": json.dumps(error.body())}
                break
            yield {"data": json.dumps(chunk, ensure_ascii=False)}
    except Exception as exc:  # noqa: BLE001 - the stream has started: the error goes in an event
        error = api_error(exc)
        metrics.errors.labels(error.kind).inc()
        yield {"data": json.dumps(error.body(), ensure_ascii=False)}
    finally:
        await chunks.aclose()  # frees the sequences now, also when cut short
        done()
    yield {"data": "[DONE]"}


def _authorization(api_key: Optional[str]):
    expected = None if api_key is None else f"Bearer {api_key}".encode()

    async def check(request: Request) -> None:
        if expected is None:
            return
        given = request.headers.get("authorization", "").encode()
        if not hmac.compare_digest(given, expected):  # constant time
            raise APIError(401, "missing or wrong API key (Authorization: Bearer KEY)", type_="authentication_error",
                           code="invalid_api_key")

    return check


class RequestCounter:
    """ASGI middleware: counts answered requests by route and status (Metrics.requests)."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        endpoint = path if path in KNOWN_PATHS else "other"

        async def counted_send(message):
            if message["type"] == "http.response.start":
                self.metrics.requests.labels(endpoint, str(message["status"])).inc()
            await send(message)

        await self.app(scope, receive, counted_send)


class BodyLimit:
    """ASGI middleware: 413 for a request body over `limit` bytes, by its Content-Length or, for a
    chunked body, as soon as the bytes received pass the limit (nothing more is read)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await self._refuse(scope, receive, send)
        received = 0

        async def counted():
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.limit:  # FastAPI passes an HTTPException on to the handlers
                    raise HTTPException(413, f"the request body exceeds {self.limit} bytes")
            return message

        await self.app(scope, counted, send)

    async def _refuse(self, scope, receive, send):
        response = APIError(413, f"the request body exceeds {self.limit} bytes", code="body_too_large").response()
        await response(scope, receive, send)
