"""A guarded chat completion: Llama Guard checks the request before any token is evaluated and the
answer when it ends (streamed: also every `guard_every` tokens), and Code Shield scans each fenced
code block as soon as it closes and the code in tool calls. A blocked request or answer comes
back in OpenAI's shape: finish_reason "content_filter", content None, a `refusal` message, and
the verdicts in an extra `guard` field. A guard that fails blocks, and says so.
"""

from __future__ import annotations

import json
from typing import Any, Callable, Dict, Iterator, List, Mapping, Optional, Sequence

from edgellama.guard.code_blocks import CodeBlockWatcher
from edgellama.guard.llama_guard import GuardError

DEFAULT_GUARD_EVERY = 64  # tokens between checks of a streamed answer


class Guards:
    """The safeguards of one request: a LlamaGuard and/or a CodeShield (either may be None)."""

    def __init__(self, guard=None, code_shield=None, every: int = DEFAULT_GUARD_EVERY):
        self.guard, self.code_shield, self.every = guard, code_shield, every

    # --- verdicts as the response's "guard" field ---------------------------------------------
    def check_request(self, messages: Sequence[Mapping[str, Any]]) -> Optional[Dict[str, Any]]:
        """The "guard" field of a blocked request, or None when it may go on."""
        if self.guard is None or not messages or messages[-1].get("role") != "user":
            return None
        verdict = self._verdict(self.guard.check_input, messages)
        return None if verdict.get("safe") else {"input": verdict}

    def check_answer(self, messages: Sequence[Mapping[str, Any]], text: str,
                     tool_calls: Optional[List[Dict[str, Any]]] = None) -> Optional[Dict[str, Any]]:
        """The "guard" field of a blocked answer (Llama Guard, then Code Shield), or None."""
        blocked = self.scan_code(text, tool_calls)
        if blocked is not None:
            return blocked
        return self.judge_answer(messages, text, tool_calls)

    def judge_answer(self, messages: Sequence[Mapping[str, Any]], text: str,
                     tool_calls: Optional[List[Dict[str, Any]]] = None) -> Optional[Dict[str, Any]]:
        """Llama Guard's "guard" field for a blocked answer (None: safe, or no guard)."""
        if self.guard is None:
            return None
        answer = {"role": "assistant", "content": text, **({"tool_calls": tool_calls} if tool_calls else {})}
        verdict = self._verdict(self.guard.check_output, list(messages) + [answer])
        return None if verdict.get("safe") else {"output": verdict}

    def scan_code(self, text: str, tool_calls: Optional[List[Dict[str, Any]]] = None) -> Optional[Dict[str, Any]]:
        """Code Shield over the text's fenced blocks and the tool calls' string arguments."""
        if self.code_shield is None:
            return None
        watcher = CodeBlockWatcher()
        blocks = [(b.language, b.code) for b in watcher.feed(text) + watcher.finish()]
        for call in tool_calls or []:
            blocks += [(None, value) for value in _strings(call["function"].get("arguments", ""))]
        for language, code in blocks:
            blocked = self.scan_block(language, code)
            if blocked is not None:
                return blocked
        return None

    def scan_block(self, language: Optional[str], code: str) -> Optional[Dict[str, Any]]:
        verdict = self.code_shield.scan(code, language)
        if not verdict.blocked:
            return None
        return {"code_shield": {"treatment": verdict.treatment, "language": verdict.language,
                                "issues": verdict.issues, "error": verdict.error, "seconds": verdict.seconds}}

    def _verdict(self, check: Callable, messages: Sequence[Mapping[str, Any]]) -> Dict[str, Any]:
        try:
            return check(messages).as_dict()
        except GuardError as exc:  # a guard that cannot look has not cleared anything
            return {"safe": False, "error": str(exc)}


def refusal(blocked: Dict[str, Any]) -> str:
    """The refusal message of a blocked request or answer, naming why."""
    if "code_shield" in blocked:
        found = blocked["code_shield"]
        why = found["error"] or "; ".join(found["issues"][:3]) or "insecure code"
        return f"The answer was withheld: Code Shield blocked its code ({why})."
    verdict = blocked.get("input") or blocked.get("output") or {}
    what = "request" if "input" in blocked else "answer"
    if verdict.get("error"):
        return f"The {what} was blocked because the safety check failed: {verdict['error']}"
    names = ", ".join(f"{c} {n}" for c, n in zip(verdict.get("categories", []), verdict.get("category_names", [])))
    return f"The {what} was blocked by Llama Guard" + (f" ({names})." if names else ".")


def blocked_response(shape, blocked: Dict[str, Any], stats) -> Dict[str, Any]:
    """A whole response for a blocked request."""
    choice = {"index": 0, "message": {"role": "assistant", "content": None, "refusal": refusal(blocked)},
              "logprobs": None, "finish_reason": "content_filter"}
    body = shape.response([choice], [stats])
    body["guard"] = blocked
    return body


def guarded(llm, messages: Sequence[Mapping[str, Any]], guards: Guards, stream: bool, n: int, model: Optional[str],
            respond: Callable[[], Any]):
    """The chat completion `respond()` makes, guarded: the request checked first (a blocked one
    never reaches the model), then the answer(s)."""
    from edgellama.errors import InvalidArgumentError
    from edgellama.generate import GenerationStats
    from edgellama.openai_shapes import ResponseShape

    if stream and n > 1:
        raise InvalidArgumentError("n", "a guarded stream has one choice; stream=False checks each of n")
    blocked = guards.check_request(messages)
    if blocked is not None:
        shape = ResponseShape(llm.tokenizer, model or llm.model_name, chat=True)
        return iter(blocked_stream(shape, blocked)) if stream else blocked_response(shape, blocked, GenerationStats())
    response = respond()
    return guard_stream(guards, messages, response) if stream else guard_whole(guards, messages, response)


def guard_whole(guards: Guards, messages: Sequence[Mapping[str, Any]], response: Dict[str, Any]) -> Dict[str, Any]:
    """A whole response with each choice's answer checked; a blocked choice becomes a refusal."""
    for choice in response["choices"]:
        message = choice["message"]
        blocked = guards.check_answer(messages, message.get("content") or "", message.get("tool_calls"))
        if blocked is not None:
            choice["message"] = {"role": "assistant", "content": None, "refusal": refusal(blocked)}
            choice["finish_reason"] = "content_filter"
            response.setdefault("guard", {}).setdefault("choices", {})[str(choice["index"])] = blocked
    return response


class StreamGuard:
    """The checks of one streamed answer (one choice), chunk by chunk: each code block when it
    closes, Llama Guard every `every` pieces and at the end. check(chunk) returns the
    content_filter chunk that ends the stream when the answer so far is blocked, else None."""

    def __init__(self, guards: Guards, messages: Sequence[Mapping[str, Any]]):
        self.guards, self.messages = guards, list(messages)
        self._watcher = CodeBlockWatcher()
        self._text, self._pieces, self._calls = "", 0, []

    def check(self, chunk: Dict[str, Any]) -> Optional[Dict[str, Any]]:
        guards = self.guards
        choice = chunk["choices"][0] if chunk["choices"] else None
        piece = (choice or {}).get("delta", {}).get("content") or ""
        self._text += piece
        self._pieces += 1
        self._calls += _calls_of(chunk) or []
        finished = choice is not None and choice.get("finish_reason") is not None
        blocked = _scan_blocks(guards, self._watcher.feed(piece) + (self._watcher.finish() if finished else []))
        if blocked is None and finished:
            blocked = guards.scan_code("", self._calls or None)  # the code in tool calls
        if blocked is None and guards.guard is not None and (finished or self._pieces % guards.every == 0):
            blocked = guards.judge_answer(self.messages, self._text, self._calls or None)
        return None if blocked is None else _filtered_chunk(chunk, blocked)


def guard_stream(guards: Guards, messages: Sequence[Mapping[str, Any]],
                 chunks: Iterator[Dict[str, Any]]) -> Iterator[Dict[str, Any]]:
    """A streamed answer checked as it goes (StreamGuard); a block ends the stream with its
    content_filter chunk, and the generation is closed then, freeing its sequence."""
    stream_guard = StreamGuard(guards, messages)
    try:
        for chunk in chunks:
            filtered = stream_guard.check(chunk)
            if filtered is not None:
                yield filtered
                return
            yield chunk
    finally:
        close = getattr(chunks, "close", None)
        if close is not None:
            close()


def blocked_stream(shape, blocked: Dict[str, Any]) -> List[Dict[str, Any]]:
    """The chunks of a blocked request's stream: the role, then the content_filter chunk."""
    first = shape.chunk(0, None, role=True)
    return [first, _filtered_chunk({**first, "usage": {"prompt_tokens": 0, "completion_tokens": 0,
                                                       "total_tokens": 0}}, blocked)]


def _scan_blocks(guards: Guards, blocks) -> Optional[Dict[str, Any]]:
    if guards.code_shield is None:
        return None
    for block in blocks:
        blocked = guards.scan_block(block.language, block.code)
        if blocked is not None:
            return blocked
    return None


def _calls_of(chunk: Dict[str, Any]) -> Optional[List[Dict[str, Any]]]:
    calls = []
    for choice in chunk.get("choices", []):
        calls += choice.get("delta", {}).get("tool_calls") or []
    return calls or None


def _filtered_chunk(chunk: Dict[str, Any], blocked: Dict[str, Any]) -> Dict[str, Any]:
    final = {key: value for key, value in chunk.items() if key not in ("choices", "usage")}
    final["choices"] = [{"index": 0, "delta": {"refusal": refusal(blocked)}, "logprobs": None,
                         "finish_reason": "content_filter"}]
    final["guard"] = blocked
    if "usage" in chunk:
        final["usage"] = chunk["usage"]
    return final


def _strings(arguments: str) -> List[str]:
    """The string values of a tool call's JSON arguments (code a tool would run is one of them)."""
    try:
        value = json.loads(arguments)
    except ValueError:
        return [arguments]
    found: List[str] = []

    def walk(item: Any) -> None:
        if isinstance(item, str):
            found.append(item)
        elif isinstance(item, dict):
            for v in item.values():
                walk(v)
        elif isinstance(item, list):
            for v in item:
                walk(v)

    walk(value)
    return found
