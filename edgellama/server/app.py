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
from edgellama.api import chat_prompt_ids, system_prefix_length
from edgellama.sampling import Sampler, SamplingParams
from edgellama.tools import tool_use
from edgellama.guard.chat import Guards
from edgellama.server import generation, guarding, responses
from edgellama.server.errors import APIError, api_error, install_handlers, queue_full
from edgellama.server.metrics import CONTENT_TYPE_LATEST, Metrics
from edgellama.server.schemas import ChatCompletionRequest, CompletionRequest, EmbeddingRequest, ModerationRequest

MAX_BODY_BYTES = 8 << 20  # a request body beyond this is a 413
KNOWN_PATHS = ("/health", "/metrics", "/v1/models", "/v1/chat/completions", "/v1/completions", "/v1/embeddings",
               "/v1/moderations")
DEFAULT_MAX_QUEUE = 64    # requests waiting for a sequence before new ones get a 503
DEFAULT_TIMEOUT_SECONDS = 600.0  # a request's time from arrival to its last byte
SHUTDOWN_GRACE_SECONDS = 2.0  # a stream's time to send its error event when the server stops


class ServerConfig:
    """The model's public id, the API key (None: none needed), queue and body limits, CORS origins,
    and the timeout: the most seconds a request may take from its arrival, reading its body,
    waiting for a sequence and generating included (a body late past it is a 408; an answer late
    past it a 504, or an error event once its stream has started; its sequences are freed).
    guard / code_shield: the safeguards of every chat (edgellama.guard); guard_id: the guard
    model's id in /v1/moderations. context_shift: an answer that fills its window goes on after a
    context shift (keeping a chat's system prompt, a completion's BOS) instead of ending with
    finish_reason "length"."""

    def __init__(self, model_id: str, api_key: Optional[str] = None, max_queue: int = DEFAULT_MAX_QUEUE,
                 max_body_bytes: int = MAX_BODY_BYTES, cors_origins: Optional[List[str]] = None,
                 timeout: float = DEFAULT_TIMEOUT_SECONDS, guard=None, code_shield=None,
                 guard_id: Optional[str] = None, context_shift: bool = False):
        self.model_id = model_id
        self.api_key = api_key
        self.max_queue = max_queue
        self.max_body_bytes = max_body_bytes
        self.cors_origins = cors_origins or []
        self.timeout = timeout
        self.guard = guard              # a LlamaGuard: guarded chats and /v1/moderations
        self.code_shield = code_shield  # a CodeShield: the code in answers scanned
        self.guard_id = guard_id or "llama-guard"
        self.context_shift = context_shift


def create_app(llm, config: ServerConfig) -> FastAPI:
    app = FastAPI(title="edgellama", summary="OpenAI-compatible API of a local model", docs_url=None,
                  redoc_url=None)
    metrics = Metrics(llm)
    admission = Admission(llm.n_parallel + config.max_queue)
    install_handlers(app, lambda error: metrics.errors.labels(error.kind).inc())
    app.add_middleware(BodyLimit, limit=config.max_body_bytes, timeout=config.timeout)
    app.add_middleware(RequestCounter, metrics=metrics)
    if config.cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=config.cors_origins, allow_methods=["*"],
                           allow_headers=["*"])
    authorized = _authorization(config.api_key)
    created = int(time.time())
    guards = Guards(config.guard, config.code_shield) if config.guard or config.code_shield else None
    schema = app.openapi
    app.openapi = lambda: app.openapi_schema or responses.finish_schema(schema(), config.model_id)

    @app.get("/health", response_model=responses.Health)
    async def health() -> Dict[str, Any]:
        return {"status": "ok", "model": config.model_id}

    @app.get("/metrics", response_class=Response,
             responses={200: {"content": {CONTENT_TYPE_LATEST: {"schema": {"type": "string"}}},
                              "description": "the counters, in Prometheus' text format"}})
    async def prometheus() -> Response:
        return Response(metrics.render(), media_type=CONTENT_TYPE_LATEST)

    @app.get("/v1/models", dependencies=[Depends(authorized)], response_model=responses.ModelList,
             responses=responses.error_responses(401))
    async def models() -> Dict[str, Any]:
        return {"object": "list", "data": [{"id": config.model_id, "object": "model", "created": created,
                                            "owned_by": "edgellama"}]}

    @app.post("/v1/chat/completions", dependencies=[Depends(authorized)], response_model=None,
              responses=responses.generation_responses(responses.ChatCompletion, "chat.completion.chunk"))
    async def chat_completions(body: ChatCompletionRequest, request: Request):
        _check_model(config, body.model)
        tools = _call(lambda: tool_use(**body.tool_settings()))
        messages = [m.model_dump(exclude_unset=True) for m in body.messages]
        ids = _call(chat_prompt_ids, llm, messages, tools)
        top = (body.top_logprobs or 0) if body.logprobs else None
        if body.top_logprobs is not None and not body.logprobs:
            raise APIError(400, "top_logprobs needs logprobs: true", param="top_logprobs")
        max_tokens = body.max_completion_tokens if body.max_completion_tokens is not None else body.max_tokens
        if guards is not None:
            blocked = await guarding.check_request(guards, messages)
            if blocked is not None:
                return guarding.blocked_reply(llm, config.model_id, bool(body.stream), blocked)
        return await _respond(llm, config, metrics, admission, body, ids, max_tokens, top, chat=True,
                              deadline=_deadline(request, config), tools=tools,
                              guarded=(guards, messages) if guards is not None else None)

    @app.post("/v1/completions", dependencies=[Depends(authorized)], response_model=None,
              responses=responses.generation_responses(responses.Completion, "text_completion"))
    async def completions(body: CompletionRequest, request: Request):
        _check_model(config, body.model)
        ids = _prompt_ids(llm, body.prompt)
        max_tokens = body.max_tokens if body.max_tokens is not None else 16  # OpenAI's default
        return await _respond(llm, config, metrics, admission, body, ids, max_tokens, body.logprobs, chat=False,
                              deadline=_deadline(request, config), tools=None)

    @app.post("/v1/moderations", dependencies=[Depends(authorized)], response_model=None,
              responses={200: {"model": responses.ModerationList, "description": "one result per input"},
                         **responses.error_responses(400, 401, 404, 408, 413, 500)})
    async def moderations(body: ModerationRequest):
        if config.guard is None:
            raise APIError(404, "this server has no moderation model; start it with --guard MODEL",
                           code="model_not_found")
        if body.model is not None and body.model != config.guard_id:
            raise APIError(404, f"model {body.model!r} is not served here; the moderation model is "
                                f"{config.guard_id!r}", param="model", code="model_not_found")
        inputs = [body.input] if isinstance(body.input, str) else body.input
        try:
            return JSONResponse(await guarding.moderations(config.guard, inputs, config.guard_id))
        except Exception as exc:  # noqa: BLE001
            raise api_error(exc) from exc

    @app.post("/v1/embeddings", dependencies=[Depends(authorized)], response_model=None,
              responses={200: {"model": responses.EmbeddingList, "description": "one embedding per input"},
                         **responses.error_responses(400, 401, 404, 408, 413, 500, 503)})
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
        return JSONResponse(response)

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


def _plan(llm, config: ServerConfig, body, ids: List[int], max_tokens, top, chat: bool, tools,
          constraint) -> generation.Plan:
    from edgellama.openai_shapes import ResponseShape

    n = body.n or 1
    seeds = _call(arguments.choice_seeds, body.seed, n)  # choice i samples with seed + i
    params = _call(lambda: SamplingParams(**body.sampling_settings()))
    samplers = [_call(Sampler, params, seed, llm.n_vocab) for seed in seeds]
    _call(arguments.max_tokens, max_tokens)
    _call(arguments.stop_strings, body.stop)
    generation.check_fits(llm, ids, "messages" if chat else "prompt")
    include_usage = bool(body.stream_options and body.stream_options.include_usage)
    if body.stream_options is not None and not body.stream:
        raise APIError(400, "stream_options needs stream: true", param="stream_options")
    shape = ResponseShape(llm.tokenizer, config.model_id, chat, logprobs=top is not None,
                          tool_names=tools.names if tools is not None and tools.parses_calls else None)
    keep = None
    if config.context_shift:
        system = (system_prefix_length(llm, [m.model_dump(exclude_unset=True) for m in body.messages], ids)
                  if chat else None)
        keep = _call(llm._context_keep, True, ids, system)
    return generation.Plan(ids, max_tokens, samplers, body.stop, top, shape, include_usage, constraint=constraint,
                           keep=keep)


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
                   chat: bool, deadline: float, tools, guarded=None):
    # A schema or grammar is compiled in a worker thread: a large one must not stall other streams.
    constraint = await asyncio.get_running_loop().run_in_executor(
        None, lambda: _call(lambda: llm._constraint(**body.constraint_settings(), tools=tools)))
    plan = _plan(llm, config, body, ids, max_tokens, top, chat, tools, constraint)
    guards, messages = guarded if guarded is not None else (None, None)
    plan.on_finished = metrics.generations
    n = len(plan.samplers)
    admission.enter(n)  # the event loop's thread only: no lock needed
    if not body.stream:
        try:
            response = await asyncio.wait_for(generation.complete(llm, plan), _left(deadline))
            if guards is not None:
                response = await guarding.check_whole(guards, messages, response)
            return JSONResponse(response)
        except asyncio.TimeoutError:
            raise _timed_out(config) from None
        except Exception as exc:  # noqa: BLE001
            raise api_error(exc) from exc
        finally:
            admission.leave(n)
    checks = guarding.stream_guard(guards, messages, n)
    left = []

    def done() -> None:  # once, whether the stream ends, fails, or is never started and collected
        if not left:
            left.append(True)
            admission.leave(n)

    stopping = anyio.Event()  # set by sse-starlette when the server shuts down
    events = _events(generation.stream(llm, plan), metrics, done, stopping, deadline, config, checks)
    weakref.finalize(events, done)
    return EventSourceResponse(events, ping=15, shutdown_event=stopping, shutdown_grace_period=SHUTDOWN_GRACE_SECONDS)


async def _events(chunks, metrics: Metrics, done, stopping, deadline: float, config: ServerConfig, checks=None):
    """The stream's events; a failure after the start, the deadline passing, or the server
    shutting down, ends it with an error event (then [DONE]) so that clients can tell it from a
    complete answer. checks: None or the StreamGuard of a guarded chat, whose content_filter
    chunk ends a blocked answer."""
    try:
        while True:
            try:
                chunk = await asyncio.wait_for(chunks.__anext__(), _left(deadline))
            except StopAsyncIteration:
                break
            except asyncio.TimeoutError:
                raise _timed_out(config) from None
            if stopping.is_set():
                raise APIError(503, "the server is shutting down; the answer is incomplete", type_="server_error",
                               code="server_shutdown")
            filtered = await guarding.in_worker(checks.check, chunk) if checks is not None else None
            yield {"data": json.dumps(filtered or chunk, ensure_ascii=False)}
            if filtered is not None:
                break
    except Exception as exc:  # noqa: BLE001 - the stream has started: the error goes in an event
        error = api_error(exc)
        metrics.errors.labels(error.kind).inc()
        yield {"data": json.dumps(error.body(), ensure_ascii=False)}
    finally:
        await chunks.aclose()  # frees the sequences now, also when cut short
        done()
    yield {"data": "[DONE]"}


def _deadline(request: Request, config: ServerConfig) -> float:
    """When the request's time is up (time.monotonic), counted from its arrival (BodyLimit)."""
    return request.scope.get("edgellama.arrived", time.monotonic()) + config.timeout


def _left(deadline: float) -> float:
    return max(0.0, deadline - time.monotonic())


def _timed_out(config: ServerConfig) -> APIError:
    return APIError(504, f"the answer took longer than the server's timeout of {config.timeout:g} s; "
                         "ask for fewer tokens or retry when the server is less busy", type_="server_error",
                    code="timeout")


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
    """ASGI middleware: notes the request's arrival (the start of its timeout); 413 for a request
    body over `limit` bytes, by its Content-Length or, for a chunked body, as soon as the bytes
    received pass the limit (nothing more is read); 408 for a body still incomplete after
    `timeout` seconds (a client that stalls cannot hold a connection's worker)."""

    def __init__(self, app, limit: int, timeout: float):
        self.app, self.limit, self.timeout = app, limit, timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        scope["edgellama.arrived"] = arrived = time.monotonic()
        headers = dict(scope.get("headers") or [])
        length = headers.get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.limit):
            return await self._refuse(scope, receive, send)
        received, complete = 0, False

        async def counted():
            nonlocal received, complete
            if complete:  # the body is in: what comes now is the client's disconnect, whenever it comes
                return await receive()
            try:
                message = await asyncio.wait_for(receive(), _left(arrived + self.timeout))
            except asyncio.TimeoutError:  # FastAPI passes an HTTPException on to the handlers
                raise HTTPException(408, f"the request body did not arrive within {self.timeout:g} s") from None
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                complete = not message.get("more_body", False)
                if received > self.limit:
                    raise HTTPException(413, f"the request body exceeds {self.limit} bytes")
            return message

        await self.app(scope, counted, send)

    async def _refuse(self, scope, receive, send):
        response = APIError(413, f"the request body exceeds {self.limit} bytes", code="body_too_large").response()
        await response(scope, receive, send)
