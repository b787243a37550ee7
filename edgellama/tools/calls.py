"""The model's answer read back as tool calls.

Accepted, around optional whitespace: one JSON call object, a JSON list of them, or several
separated by newlines or ";"; each may follow ``<|python_tag|>`` (Llama 3.1's marker when its
text survives) or sit inside ``<tool_call>...</tool_call>`` (Hermes-style templates). A call is
``{"name": ..., "parameters" | "arguments": {...}}`` (or the same inside ``{"function": ...}``)
naming one of the request's functions. Anything else is not a call: the answer stays content,
and nothing is raised.
"""

from __future__ import annotations

import json
import re
import uuid
from collections.abc import Mapping
from typing import Any, Dict, List, Optional, Sequence

_WRAPPER = re.compile(r"<tool_call>(.*?)</tool_call>", re.DOTALL)
_DECODER = json.JSONDecoder()
CALL_STARTS = ("{", "[", "<tool_call>", "<|python_tag|>")


def may_be_a_call(text: str) -> bool:
    """Whether an answer that begins with `text` may still turn out to be a tool call."""
    head = text.lstrip()
    return not head or any(start.startswith(head[:len(start)]) for start in CALL_STARTS)


def parse_tool_calls(text: str, names: Sequence[str]) -> Optional[List[Dict[str, Any]]]:
    """OpenAI tool_calls ({"id", "type": "function", "function": {"name", "arguments": JSON
    text}}) when the whole answer is calls of the named functions, else None."""
    body = text.strip()
    if body.startswith("<|python_tag|>"):
        body = body[len("<|python_tag|>"):]
    wrapped = _WRAPPER.findall(body)
    if wrapped:
        if _WRAPPER.sub("", body).strip():
            return None  # text outside the wrappers: an answer that mentions a call
        body = "\n".join(wrapped)
    objects = _json_values(body)
    if not objects:
        return None
    calls = []
    for value in objects:
        for obj in value if isinstance(value, list) else [value]:
            call = _call(obj, names)
            if call is None:
                return None
            calls.append(call)
    return calls or None


def _json_values(text: str) -> Optional[List[Any]]:
    """The JSON values that make up all of `text` (separated by whitespace or ";"), else None."""
    values, at = [], 0
    while True:
        while at < len(text) and (text[at].isspace() or text[at] == ";"):
            at += 1
        if at == len(text):
            return values
        try:
            value, at = _DECODER.raw_decode(text, at)
        except ValueError:
            return None
        values.append(value)


def _call(obj: Any, names: Sequence[str]) -> Optional[Dict[str, Any]]:
    if isinstance(obj, Mapping) and isinstance(obj.get("function"), Mapping):
        obj = obj["function"]
    if not isinstance(obj, Mapping) or obj.get("name") not in names:
        return None
    arguments = obj.get("parameters", obj.get("arguments", {}))
    if isinstance(arguments, str):
        try:
            arguments = json.loads(arguments)
        except ValueError:
            return None
    if not isinstance(arguments, Mapping) or set(obj) - {"name", "parameters", "arguments", "type"}:
        return None
    return {"id": "call_" + uuid.uuid4().hex[:24], "type": "function",
            "function": {"name": obj["name"], "arguments": json.dumps(arguments, ensure_ascii=False)}}
