"""The response bodies the server sends, as pydantic models: they document every route's answers in
the app's OpenAPI schema (/openapi.json), which clients and tests/test_server_schema.py check the
live responses against. The bodies themselves are built by edgellama.openai_shapes and
edgellama.embeddings; these models describe them and are not used to build them.
"""

from __future__ import annotations

from typing import Any, Dict, List, Literal, Optional, Union

from pydantic import BaseModel

FinishReason = Literal["stop", "length", "tool_calls", "content_filter"]


class ErrorDetail(BaseModel):
    message: str
    type: str
    param: Optional[str] = None
    code: Optional[str] = None


class ErrorResponse(BaseModel):
    """OpenAI's error object."""

    error: ErrorDetail


class Health(BaseModel):
    status: Literal["ok"]
    model: str


class ModelCard(BaseModel):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"]
    data: List[ModelCard]


class Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class TopLogprob(BaseModel):
    token: str
    logprob: float
    bytes: List[int]


class TokenLogprob(TopLogprob):
    top_logprobs: List[TopLogprob]


class ChatLogprobs(BaseModel):
    content: List[TokenLogprob]


class FunctionCall(BaseModel):
    name: str
    arguments: str  # JSON text


class ToolCall(BaseModel):
    id: str
    type: Literal["function"]
    function: FunctionCall


class AssistantMessage(BaseModel):
    role: Literal["assistant"]
    content: Optional[str]  # None when the answer is tool calls, or withheld
    tool_calls: Optional[List[ToolCall]] = None
    refusal: Optional[str] = None  # why a guarded answer was withheld


class ChatChoice(BaseModel):
    index: int
    message: AssistantMessage
    logprobs: Optional[ChatLogprobs] = None
    finish_reason: FinishReason


class ChatCompletion(BaseModel):
    """A whole chat answer (a stream sends chat.completion.chunk events instead)."""

    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: List[ChatChoice]
    usage: Usage
    guard: Optional[Dict[str, Any]] = None  # the verdicts of a guarded chat that blocked something


class TextLogprobs(BaseModel):
    tokens: List[str]
    token_logprobs: List[float]
    top_logprobs: List[Dict[str, float]]
    text_offset: List[int]


class TextChoice(BaseModel):
    index: int
    text: str
    logprobs: Optional[TextLogprobs] = None
    finish_reason: FinishReason


class Completion(BaseModel):
    id: str
    object: Literal["text_completion"]
    created: int
    model: str
    choices: List[TextChoice]
    usage: Usage


class ModerationResult(BaseModel):
    flagged: bool
    categories: Dict[str, bool]
    category_scores: Dict[str, float]
    category_applied_input_types: Dict[str, List[str]]
    llama_guard: Dict[str, Any]  # the verdict: safe, categories (codes and names), p_unsafe, ...


class ModerationList(BaseModel):
    id: str
    model: str
    results: List[ModerationResult]


class Embedding(BaseModel):
    object: Literal["embedding"]
    embedding: Union[List[float], str]  # floats, or base64 of little-endian float32
    index: int


class EmbeddingUsage(BaseModel):
    prompt_tokens: int
    total_tokens: int


class EmbeddingList(BaseModel):
    object: Literal["list"]
    data: List[Embedding]
    model: str
    usage: EmbeddingUsage


# One server-sent event: its data is a JSON chunk, an error object, or the final [DONE].
SSE_EVENT = {"type": "object", "required": ["data"],
             "properties": {"data": {"type": "string"}, "event": {"type": "string"}, "id": {"type": "string"}}}

_ERRORS = {
    400: "a malformed request: invalid JSON, a wrong type, an unknown parameter, a value out of range, "
         "a prompt over the window (code context_length_exceeded)",
    401: "a missing or wrong API key",
    404: "an unknown model (code model_not_found) or path",
    408: "the request body did not arrive within the server's --timeout",
    413: "the request body is over the server's limit",
    500: "the model failed while answering",
    503: "every sequence is busy and the queue is full (code queue_full; see Retry-After), or the "
         "server is stopping",
    504: "the answer took longer than the server's --timeout (code timeout)",
}


def error_responses(*statuses: int) -> Dict[Union[int, str], Dict[str, Any]]:
    """The `responses=` entries of a route for the error statuses it can answer with."""
    return {status: {"model": ErrorResponse, "description": _ERRORS[status]} for status in statuses}


def generation_responses(model: type, chunk_object: str) -> Dict[Union[int, str], Dict[str, Any]]:
    """A generating route's answers: the JSON body, or with stream: true server-sent events of
    `chunk_object` chunks ending with ``data: [DONE]``; and its errors."""
    ok = {"model": model, "description": f"the answer; with stream: true, server-sent events of {chunk_object} "
                                         "chunks ending with data: [DONE]",
          "content": {"text/event-stream": {"schema": SSE_EVENT}}}
    return {200: ok, **error_responses(400, 401, 404, 408, 413, 500, 503, 504)}


def finish_schema(schema: Dict[str, Any], model_id: str) -> Dict[str, Any]:
    """The app's OpenAPI schema as this server answers: `model` names the one model it serves,
    and FastAPI's default 422 answers are gone (every validation error here is a 400 with
    OpenAI's error object)."""
    for path in schema.get("paths", {}).values():
        for operation in path.values():
            operation.get("responses", {}).pop("422", None)
    components = schema.get("components", {}).get("schemas", {})
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    for component in components.values():
        model = component.get("properties", {}).get("model")
        if model is not None and "model" in component.get("required", ()):
            model["enum"] = [model_id]
    return schema
