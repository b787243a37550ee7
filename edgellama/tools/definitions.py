"""The `tools` and `tool_choice` of a chat completion, checked, and what follows from them: the
tools the template renders, the messages a template without tool support needs, and the JSON
schema of a call when the choice forces one.

A call is the JSON object Llama 3.1/3.2 are trained to answer with:
``{"name": function name, "parameters": {argument: value, ...}}``.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any, Dict, List, Optional

from edgellama.errors import InvalidArgumentError

MAX_TOOLS = 128
_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")  # OpenAI's rule for function names
_TOOL_KEYS = {"type", "function"}
_FUNCTION_KEYS = {"name", "description", "parameters", "strict"}
ANY_ARGUMENTS = {"type": "object"}

# For templates that know nothing of tools: how the model learns about them (a system message).
TOOLS_PREAMBLE = (
    "You can call the functions below. To call one, answer with only a JSON object of the form "
    '{"name": function name, "parameters": {argument name: value}} and nothing else; '
    "otherwise answer as usual.\n\n")


class ToolUse:
    """Checked tools (OpenAI's list of {"type": "function", "function": {...}}) and the choice:
    "auto", "none", "required", or the name of the function that must be called."""

    def __init__(self, tools: List[Dict[str, Any]], choice: str):
        self.tools = tools
        self.choice = choice
        self.names = [t["function"]["name"] for t in tools]

    @property
    def parses_calls(self) -> bool:
        """Whether the answer is read for tool calls (not with tool_choice "none")."""
        return self.choice != "none"

    def template_tools(self) -> Optional[List[Dict[str, Any]]]:
        """The tools the template renders (none when calls are off)."""
        return self.tools if self.parses_calls else None

    def call_schema(self) -> Optional[Dict[str, Any]]:
        """The JSON schema every answer must follow: one call of the named function, or of any
        function with "required"; None when the model may answer freely."""
        if self.choice in ("auto", "none"):
            return None
        tools = self.tools if self.choice == "required" else [t for t in self.tools
                                                               if t["function"]["name"] == self.choice]
        calls = [_call_schema(t["function"]) for t in tools]
        return calls[0] if len(calls) == 1 else {"anyOf": calls}

    def plain_messages(self, messages: Sequence[Mapping[str, Any]]) -> List[Dict[str, Any]]:
        """The conversation for a template without tool support: the tools listed in a system
        message, earlier calls written as the JSON the model answers with."""
        listing = TOOLS_PREAMBLE + "\n\n".join(json.dumps(t, indent=4, ensure_ascii=False) for t in self.tools)
        out = calls_as_text(messages)
        if not self.parses_calls:
            return out
        if out and out[0].get("role") == "system" and isinstance(out[0].get("content"), str):
            out[0] = {**out[0], "content": out[0]["content"] + "\n\n" + listing}
        else:
            out.insert(0, {"role": "system", "content": listing})
        return out


def _call_schema(function: Mapping[str, Any]) -> Dict[str, Any]:
    return {"type": "object", "properties": {"name": {"const": function["name"]},
                                             "parameters": function.get("parameters", ANY_ARGUMENTS)},
            "required": ["name", "parameters"], "additionalProperties": False}


def calls_as_text(messages: Sequence[Mapping[str, Any]]) -> List[Dict[str, Any]]:
    """The messages with each assistant's tool calls written as the JSON call text (for a
    template that knows nothing of tool calls)."""
    return [_call_as_text(m) if isinstance(m, Mapping) else m for m in messages]


def _call_as_text(message: Mapping[str, Any]) -> Dict[str, Any]:
    calls = message.get("tool_calls")
    if not calls or not isinstance(calls, list):
        return dict(message)
    written = []
    for call in calls:
        function = call.get("function", {}) if isinstance(call, Mapping) else {}
        arguments = function.get("arguments", {})
        if isinstance(arguments, str):
            try:
                arguments = json.loads(arguments)
            except ValueError:
                pass
        written.append(json.dumps({"name": function.get("name"), "parameters": arguments}, ensure_ascii=False))
    plain = {k: v for k, v in message.items() if k != "tool_calls"}
    plain["content"] = ((message.get("content") or "") + "\n".join(written)).strip()
    return plain


def tool_use(tools: Any, tool_choice: Any) -> Optional[ToolUse]:
    """The checked ToolUse of a request (None without tools); InvalidArgumentError naming tools or
    tool_choice otherwise."""
    if tools is None or (isinstance(tools, Sequence) and not isinstance(tools, (str, bytes)) and not tools):
        if tool_choice not in (None, "none", "auto"):
            raise InvalidArgumentError("tool_choice", "needs tools")
        return None
    checked = _check_tools(tools)
    return ToolUse(checked, _check_choice(tool_choice, [t["function"]["name"] for t in checked]))


def _check_tools(tools: Any) -> List[Dict[str, Any]]:
    if isinstance(tools, (str, bytes, Mapping)) or not isinstance(tools, Sequence):
        raise InvalidArgumentError("tools", f"must be a list of {{'type': 'function', 'function': {{...}}}}, "
                                            f"got {type(tools).__name__}")
    if len(tools) > MAX_TOOLS:
        raise InvalidArgumentError("tools", f"at most {MAX_TOOLS} tools, got {len(tools)}")
    checked, seen = [], set()
    for i, tool in enumerate(tools):
        where = f"tool {i}"
        if not isinstance(tool, Mapping) or tool.get("type") != "function" or not isinstance(tool.get("function"),
                                                                                              Mapping):
            raise InvalidArgumentError("tools", f"{where} must be {{'type': 'function', 'function': {{...}}}}")
        _no_unknown(where, tool, _TOOL_KEYS)
        function = tool["function"]
        _no_unknown(f"{where}.function", function, _FUNCTION_KEYS)
        name = function.get("name")
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise InvalidArgumentError("tools", f"{where}: the function name must be 1 to 64 letters, digits, "
                                                f"_ or -, got {name!r:.60}")
        if name in seen:
            raise InvalidArgumentError("tools", f"{where}: two functions are named {name!r}")
        seen.add(name)
        if not isinstance(function.get("description", ""), str):
            raise InvalidArgumentError("tools", f"{where}: description must be a string")
        if not isinstance(function.get("parameters", {}), Mapping):
            raise InvalidArgumentError("tools", f"{where}: parameters must be a JSON schema object")
        try:
            json.dumps(function, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise InvalidArgumentError("tools", f"{where} is not JSON: {exc}") from None
        checked.append({"type": "function", "function": copy.deepcopy(dict(function))})
    return checked


def _check_choice(choice: Any, names: List[str]) -> str:
    if choice is None:
        return "auto"
    if choice in ("auto", "none", "required"):
        return choice
    if isinstance(choice, Mapping) and choice.get("type") == "function" and isinstance(choice.get("function"),
                                                                                        Mapping):
        name = choice["function"].get("name")
        if name in names:
            return name
        raise InvalidArgumentError("tool_choice", f"names {name!r:.60}, which is not among the tools "
                                                  f"({', '.join(names)})")
    raise InvalidArgumentError("tool_choice", "must be 'auto', 'none', 'required' or "
                                              "{'type': 'function', 'function': {'name': ...}}")


def _no_unknown(where: str, mapping: Mapping[str, Any], known) -> None:
    unknown = sorted(str(k) for k in mapping if k not in known)
    if unknown:
        raise InvalidArgumentError("tools", f"{where} has unknown field(s) {', '.join(unknown)}")
