"""Every failure as OpenAI's error object, ``{"error": {"message", "type", "param", "code"}}``, with
the status a client can act on; never a traceback, never a 5xx for a bad request.

- 400 ``invalid_request_error``: malformed JSON, a wrong type, an unknown parameter (``param``
  names it), a value out of range, a chat the template refuses; code ``context_length_exceeded``
  for a prompt that does not fit the window;
- 401 for a missing or wrong API key; 404 for an unknown model or path; 413 for a body over the
  limit; 503 with Retry-After when the queue is full;
- 500 ``server_error`` when the model itself fails (NaN weights) or anything unexpected happens
  (the message says so without internals).
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Dict, List, Optional

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from edgellama.chat_sandbox import ChatTemplateError
from edgellama.errors import ContextOverflowError, EdgellamaError, InvalidArgumentError, ModelBusyError

log = logging.getLogger("edgellama.server")

RETRY_AFTER_SECONDS = 1


class APIError(Exception):
    """An error response: HTTP status, message, OpenAI error type, the parameter at fault, a code."""

    def __init__(self, status: int, message: str, type_: str = "invalid_request_error",
                 param: Optional[str] = None, code: Optional[str] = None, headers: Optional[Dict[str, str]] = None):
        super().__init__(message)
        self.status, self.message, self.type, self.param, self.code = status, message, type_, param, code
        self.headers = headers

    def body(self) -> Dict[str, Any]:
        return {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}

    @property
    def kind(self) -> str:
        return f"{self.type}:{self.code}" if self.code else self.type

    def response(self) -> JSONResponse:
        return JSONResponse(self.body(), status_code=self.status, headers=self.headers)


def api_error(exc: BaseException) -> APIError:
    """The APIError for an exception raised while serving a request."""
    if isinstance(exc, APIError):
        return exc
    if isinstance(exc, ContextOverflowError):
        return APIError(400, str(exc), code="context_length_exceeded")
    if isinstance(exc, InvalidArgumentError):
        return APIError(400, str(exc), param=exc.argument)
    if isinstance(exc, ChatTemplateError):
        return APIError(400, f"the messages cannot be rendered with the model's chat template: {exc}",
                        param="messages")
    if isinstance(exc, ModelBusyError):
        return queue_full(str(exc))
    if isinstance(exc, EdgellamaError):
        return APIError(500, str(exc), type_="server_error")
    log.exception("unexpected error while serving a request")
    return APIError(500, "internal error while serving the request (see the server's log)", type_="server_error")


def queue_full(message: str) -> APIError:
    return APIError(503, message, type_="server_error", code="queue_full",
                    headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


def _validation_error(exc: RequestValidationError) -> APIError:
    errors = exc.errors()
    first = _most_telling(errors) if errors else {}
    param = _param(first)  # the request's parameter (deeper parts name pydantic's types)
    kind = first.get("type", "")
    if kind == "json_invalid":
        return APIError(400, "the request body is not valid JSON")
    if kind == "extra_forbidden":
        return APIError(400, f"unknown or unsupported parameter: {param}", param=param)
    if kind == "missing":
        if param is None:
            return APIError(400, "the request has no body; send a JSON object")
        return APIError(400, f"missing required parameter: {param}", param=param)
    return APIError(400, f"{param or 'body'}: {first.get('msg', 'invalid value')}", param=param)


def _param(error: Dict[str, Any]) -> Optional[str]:
    loc = [str(part) for part in error.get("loc", ()) if part != "body"]
    return loc[0] if loc else None


def _most_telling(errors: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Of the errors about the first parameter at fault (one per alternative a union type
    allows), the one that says most: a broken rule rather than a wrong type, from the
    alternative that got deepest into the value. [-1] as a prompt is a negative token id, not
    'not a string'."""
    param = _param(errors[0])
    same = [e for e in errors if _param(e) == param]
    return min(same, key=lambda e: (e.get("type", "").endswith("_type"), -len(e.get("loc", ()))))


def install_handlers(app: FastAPI, count: Callable[[APIError], None]) -> None:
    """Handlers that answer every failure with its APIError; count(error) records each (metrics)."""

    def respond(error: APIError) -> JSONResponse:
        count(error)
        return error.response()

    @app.exception_handler(RequestValidationError)
    async def on_validation(_: Request, exc: RequestValidationError) -> JSONResponse:
        return respond(_validation_error(exc))

    @app.exception_handler(StarletteHTTPException)
    async def on_http(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        return respond(APIError(exc.status_code, str(exc.detail), headers=getattr(exc, "headers", None)))

    @app.exception_handler(APIError)
    async def on_api(_: Request, exc: APIError) -> JSONResponse:
        return respond(exc)

    @app.exception_handler(Exception)
    async def on_any(_: Request, exc: Exception) -> JSONResponse:
        return respond(api_error(exc))
