"""Chat templates: turn a list of messages into the prompt text a model was trained on.

The template comes from the GGUF metadata (`tokenizer.chat_template`, a Jinja2 template as Hugging
Face tokenizers ship it) and is rendered in a sandboxed Jinja2 environment: a model file is
untrusted input, and a template must not reach Python internals, nor run without bounds on time,
memory or nesting (:mod:`edgellama.chat_sandbox` holds the limits). The environment offers what
Hugging Face templates expect: the variables `messages`, `add_generation_prompt`, `bos_token`,
`eos_token` (and the other special tokens), `tools` and `documents` (None unless given), any extra keyword
(e.g. `date_string`, which Llama 3.x templates read); the functions `raise_exception` and
`strftime_now`; a `tojson` filter that keeps non-ASCII text and honours `indent`; loop controls
(`{% break %}`, `{% continue %}`); `{% generation %}` blocks; trimmed blocks.

A file without a template gets a built-in one chosen by its vocabulary: `<|eot_id|>` and
`<|python_tag|>` -> llama3.1 (Llama 3.1-3.3: a system turn with the date, tool calling),
`<|eot_id|>` alone -> llama3 (Llama 3.0), a SentencePiece (`llama`) vocabulary -> llama2 (`[INST]`),
otherwise (e.g. `<|im_start|>`) -> chatml. Each family also names the tokens that end an assistant
turn (:attr:`ChatTemplate.stop_tokens`).

Messages are mappings with a string ``role``. ``content`` is a string, None (read as ""; e.g. an
assistant turn that only calls tools), or a list of OpenAI content parts of type ``text``, whose
texts are joined with newlines; anything else is refused with :class:`ChatTemplateError`.
``tool_calls`` is a list of ``{"function": {"name": str, "arguments": ...}}``; ``arguments`` given
as OpenAI sends it, a JSON string, is parsed into the object that templates expect.
:meth:`ChatTemplate.encode` tokenizes a conversation so that only the template's own markup
becomes control tokens: a message that spells ``<|im_end|>`` gets the text, not the token
(:mod:`edgellama.chat_tokens`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Dict, FrozenSet, List, Optional, Sequence, Tuple

from edgellama.chat_sandbox import ChatTemplateError, parse_template, render_template
from edgellama.chat_tokens import control_token_cuts

__all__ = [
    "ChatTemplate", "ChatTemplateError", "BUILTIN_TEMPLATES", "FAMILY_STOP_TOKENS",
    "CHATML_TEMPLATE", "LLAMA2_TEMPLATE", "LLAMA3_TEMPLATE", "LLAMA31_TEMPLATE", "detect_family",
]

Message = Mapping[str, Any]  # {"role": "system" | "user" | "assistant" | "tool", "content": ...}

# ChatML (SmolLM2, Qwen, ...): <|im_start|>role\ncontent<|im_end|>\n per message.
CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)

# Llama 3 instruct: <|begin_of_text|>, then per message
# <|start_header_id|>role<|end_header_id|>\n\n + content (trimmed) + <|eot_id|>; the generation
# prompt opens an assistant header.
LLAMA3_TEMPLATE = (
    "{{ bos_token }}"
    "{% for message in messages %}"
    "{{ '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + (message['content'] | trim) + '<|eot_id|>' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)

# Llama 3.1 / 3.2 / 3.3 instruct with tool calling; the output is byte for byte that of Meta's
# template. A system turn always opens the prompt: "Environment: ipython" when tools are given,
# the knowledge cutoff, today's date (`date_string`, else strftime_now), and the system message.
# Tools (`tools`, or `custom_tools` in their place), each as JSON indented by 4, go in the first
# user turn (`tools_in_user_message`, default true) or else in the system turn. An assistant tool
# call is written {"name": ..., "parameters": <arguments as JSON>}, one per turn. A tool result
# goes in an ipython turn as JSON: a plain string result too, quoted, as Meta's template does.
LLAMA31_TEMPLATE = (
    "{% macro tool_specs_json(specs) %}"
    "{% for spec in specs %}{{ spec | tojson(indent=4) + '\\n\\n' }}{% endfor %}"
    "{% endmacro %}"
    "{% set tool_specs = custom_tools if custom_tools is defined else (tools if tools is defined else none) %}"
    "{% set tools_in_user_turn = tools_in_user_message if tools_in_user_message is defined else true %}"
    "{% set today = date_string if date_string is defined else strftime_now('%d %b %Y') %}"
    "{% set has_system = messages | length > 0 and messages[0].role == 'system' %}"
    "{% set turns = messages[1:] if has_system else messages %}"
    "{% set answer_format = 'Respond in the format {\"name\": function name, \"parameters\": dictionary of "
    "argument name and its value}.Do not use variables.\\n\\n' %}"
    # The system turn.
    "{{ bos_token + '<|start_header_id|>system<|end_header_id|>\\n\\n' }}"
    "{% if tool_specs is not none %}{{ 'Environment: ipython\\n' }}{% endif %}"
    "{{ 'Cutting Knowledge Date: December 2023\\nToday Date: ' + today + '\\n\\n' }}"
    "{% if tool_specs is not none and not tools_in_user_turn %}"
    "{{ 'You have access to the following functions. To call a function, please respond with JSON for a "
    "function call.' + answer_format + tool_specs_json(tool_specs) }}"
    "{% endif %}"
    "{{ (messages[0].content | trim if has_system else '') + '<|eot_id|>' }}"
    # The tools, prepended to the first turn after the system message, whatever its role.
    "{% if tool_specs is not none and tools_in_user_turn %}"
    "{% if turns | length == 0 %}"
    "{{ raise_exception(\"Cannot put tools in the first user message when there's no first user message!\") }}"
    "{% endif %}"
    "{{ '<|start_header_id|>user<|end_header_id|>\\n\\nGiven the following functions, please respond with a "
    "JSON for a function call with its proper arguments that best answers the given prompt.\\n\\n' + answer_format }}"
    "{{ tool_specs_json(tool_specs) + (turns[0].content | trim) + '<|eot_id|>' }}"
    "{% set turns = turns[1:] %}"
    "{% endif %}"
    "{% for message in turns %}"
    "{% if 'tool_calls' in message %}"
    "{% if message.tool_calls | length != 1 %}"
    "{{ raise_exception('This model only supports single tool-calls at once!') }}"
    "{% endif %}"
    "{% set call = message.tool_calls[0].function %}"
    "{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n{\"name\": \"' + call.name + '\", \"parameters\": '"
    " + call.arguments | tojson + '}<|eot_id|>' }}"
    "{% elif message.role in ('tool', 'ipython') %}"
    "{{ '<|start_header_id|>ipython<|end_header_id|>\\n\\n' + message.content | tojson + '<|eot_id|>' }}"
    "{% else %}"
    "{{ '<|start_header_id|>' + message.role + '<|end_header_id|>\\n\\n' + message.content | trim + '<|eot_id|>' }}"
    "{% endif %}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}{% endif %}"
)

# Llama 2 chat: <s>[INST] <<SYS>>\nsystem\n<</SYS>>\n\nuser [/INST] answer </s><s>[INST] user [/INST]
# Roles must alternate user/assistant after an optional system message; the prompt always ends
# ready for the answer, so add_generation_prompt changes nothing.
LLAMA2_TEMPLATE = (
    "{% if messages and messages[0]['role'] == 'system' %}"
    "{% set system = messages[0]['content'] | trim %}{% set turns = messages[1:] %}"
    "{% else %}{% set system = none %}{% set turns = messages %}{% endif %}"
    "{% for message in turns %}"
    "{% if (message['role'] == 'user') != (loop.index0 % 2 == 0) %}"
    "{{ raise_exception('Conversation roles must alternate user/assistant/user/assistant/...') }}"
    "{% endif %}"
    "{% if message['role'] == 'user' %}"
    "{% if loop.first and system is not none %}"
    "{{ bos_token + '[INST] <<SYS>>\\n' + system + '\\n<</SYS>>\\n\\n' + (message['content'] | trim) + ' [/INST]' }}"
    "{% else %}"
    "{{ bos_token + '[INST] ' + (message['content'] | trim) + ' [/INST]' }}"
    "{% endif %}"
    "{% else %}"
    "{{ ' ' + (message['content'] | trim) + ' ' + eos_token }}"
    "{% endif %}"
    "{% endfor %}"
)

BUILTIN_TEMPLATES: Mapping[str, str] = {
    "llama3.1": LLAMA31_TEMPLATE,
    "llama3": LLAMA3_TEMPLATE,
    "llama2": LLAMA2_TEMPLATE,
    "chatml": CHATML_TEMPLATE,
}

#: Token texts that end an assistant turn, per family (the vocabulary's eos is always added).
FAMILY_STOP_TOKENS: Mapping[str, Tuple[str, ...]] = {
    "llama3.1": ("<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"),
    "llama3": ("<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"),
    "llama2": ("</s>",),
    "chatml": ("<|im_end|>", "<|endoftext|>"),
}


def detect_family(tokenizer) -> str:
    """``"llama3.1"`` when the vocabulary has ``<|eot_id|>`` and ``<|python_tag|>``, ``"llama3"``
    when it has ``<|eot_id|>`` only, ``"llama2"`` for a SentencePiece (``llama``) vocabulary, else
    ``"chatml"``."""
    if tokenizer.token_id("<|eot_id|>") is not None:
        # Llama 3.1 named <|python_tag|> (tool calling); in 3.0 vocabularies that id is reserved.
        return "llama3.1" if tokenizer.token_id("<|python_tag|>") is not None else "llama3"
    if getattr(tokenizer, "model", "gpt2") == "llama" and tokenizer.token_id("<|im_start|>") is None:
        return "llama2"
    return "chatml"


@dataclass
class ChatTemplate:
    """A chat template ready to render. ``family`` names the built-in conventions it follows
    (``llama3.1``, ``llama3``, ``llama2``, ``chatml``); ``stop_tokens`` are the token texts that
    end an assistant turn; ``special_tokens`` are extra template variables (``unk_token``,
    ``pad_token``)."""

    source: str
    bos_token: str = ""
    eos_token: str = ""
    family: Optional[str] = None
    stop_tokens: Tuple[str, ...] = ()
    special_tokens: Dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        self._template = parse_template(self.source)

    @classmethod
    def builtin(cls, family: str, bos_token: str = "", eos_token: str = "") -> "ChatTemplate":
        """A built-in template: ``"llama3.1"``, ``"llama3"``, ``"llama2"`` or ``"chatml"``."""
        if family not in BUILTIN_TEMPLATES:
            raise ChatTemplateError(f"no built-in chat template {family!r}; have {', '.join(BUILTIN_TEMPLATES)}")
        stops = tuple(dict.fromkeys(FAMILY_STOP_TOKENS[family] + ((eos_token,) if eos_token else ())))
        return cls(BUILTIN_TEMPLATES[family], bos_token, eos_token, family, stops)

    @classmethod
    def from_tokenizer_metadata(cls, meta: Mapping[str, Any], tokenizer) -> "ChatTemplate":
        """The file's template (``tokenizer.chat_template``), else the built-in one for the
        vocabulary's family. Stop tokens: the family's that exist in the vocabulary, plus eos."""
        family = detect_family(tokenizer)
        bos = tokenizer.token_text(tokenizer.bos_id) if tokenizer.bos_id is not None else ""
        eos = tokenizer.token_text(tokenizer.eos_id) if tokenizer.eos_id is not None else ""
        specials = {}
        for name, tid in (("unk_token", tokenizer.unk_id), ("pad_token", tokenizer.pad_id)):
            if tid is not None:
                specials[name] = tokenizer.token_text(tid)
        candidates = FAMILY_STOP_TOKENS[family] + ((eos,) if eos else ())
        stops = tuple(t for t in dict.fromkeys(candidates) if tokenizer.token_id(t) is not None)
        source = meta.get("tokenizer.chat_template") or BUILTIN_TEMPLATES[family]
        return cls(source, bos, eos, family, stops, specials)

    def stop_ids(self, tokenizer) -> FrozenSet[int]:
        """Ids of :attr:`stop_tokens` in ``tokenizer``'s vocabulary, plus its eos/eot."""
        ids = {tokenizer.token_id(t) for t in self.stop_tokens}
        ids.update(i for i in (tokenizer.eos_id, tokenizer.eot_id) if i is not None)
        ids.discard(None)
        return frozenset(ids)  # type: ignore[arg-type]

    def render(self, messages: Sequence[Message], add_generation_prompt: bool = True,
               tools: Optional[List[Dict[str, Any]]] = None,
               documents: Optional[List[Dict[str, Any]]] = None, **variables: Any) -> str:
        """The prompt text. ``variables`` become template variables too (e.g.
        ``date_string="26 Jul 2024"`` for Llama 3.x templates).

        The text holds the messages verbatim, so a message may spell a control token; tokenize a
        conversation with :meth:`encode`, which keeps message text plain, rather than tokenizing
        this text with ``special=True``. Raises :class:`ChatTemplateError` for malformed messages
        and for every failure of the template (see :mod:`edgellama.chat_sandbox` for its limits)."""
        caller = _caller_variables(messages, tools, documents, variables)
        return self._render(caller, add_generation_prompt)

    def encode(self, tokenizer, messages: Sequence[Message], add_generation_prompt: bool = True,
               tools: Optional[List[Dict[str, Any]]] = None,
               documents: Optional[List[Dict[str, Any]]] = None, **variables: Any) -> List[int]:
        """Render and tokenize: the template's markup becomes control tokens, while the text of
        the messages (and of tools, documents and ``variables``) stays text even where it spells
        a control token such as ``<|im_end|>`` (:mod:`edgellama.chat_tokens`). When no message
        spells one, the ids are those of tokenizing :meth:`render`'s output with ``special=True``.

        The vocabulary's BOS (when its ``add_bos`` says so) is added unless the template already
        wrote it. Raises :class:`ChatTemplateError` when a message holds a control-token string
        and the template transforms message text, so that it cannot be kept plain safely."""
        caller = _caller_variables(messages, tools, documents, variables)
        prompt = self._render(caller, add_generation_prompt)
        cuts = control_token_cuts(tokenizer, prompt, caller,
                                  lambda marked: self._render(marked, add_generation_prompt))
        ids = tokenizer.encode(prompt, add_bos=False, special=True, split_special_at=cuts)
        if tokenizer.add_bos and not (ids and ids[0] == tokenizer.bos_id):
            if tokenizer.bos_id is None:
                raise ChatTemplateError("the vocabulary asks for a BOS token (add_bos) but has none")
            ids.insert(0, tokenizer.bos_id)
        return ids

    def _render(self, caller: Dict[str, Any], add_generation_prompt: bool) -> str:
        context: Dict[str, Any] = dict(self.special_tokens)
        context.update(bos_token=self.bos_token, eos_token=self.eos_token)
        context.update(caller)
        context["add_generation_prompt"] = add_generation_prompt
        return render_template(self._template, context)


# -- messages ----------------------------------------------------------------------------------


def _caller_variables(messages: Sequence[Message], tools: Any, documents: Any,
                      variables: Dict[str, Any]) -> Dict[str, Any]:
    """The template variables the caller supplies, messages checked and normalized. ``tools`` and
    ``documents`` are always defined (None when absent), as templates test ``tools is not none``."""
    caller = dict(variables)
    caller.update(tools=tools, documents=documents, messages=normalize_messages(messages))
    return caller


def normalize_messages(messages: Sequence[Message]) -> List[Dict[str, Any]]:
    """Copies of ``messages`` ready for a template: each a dict with a string ``role``; its
    ``content`` a string (None becomes "", a list of text parts their texts joined with "\\n");
    its ``tool_calls`` (when not None) a list of calls whose ``function`` has a string ``name``,
    and whose ``arguments``, when a JSON string as OpenAI sends them, are parsed into a dict.
    Other fields (``name``, ...) are passed on as they are. Raises :class:`ChatTemplateError`
    naming the message and the problem otherwise."""
    if isinstance(messages, (str, bytes, Mapping)) or not isinstance(messages, Iterable):
        raise ChatTemplateError(f"messages must be a list of {{'role', 'content'}} mappings, "
                                f"got {type(messages).__name__}")
    return [_normalize_message(i, m) for i, m in enumerate(messages)]


def _normalize_message(index: int, message: Any) -> Dict[str, Any]:
    if not isinstance(message, Mapping):
        raise ChatTemplateError(f"message {index} must be a mapping with 'role' and 'content', "
                                f"got {type(message).__name__}")
    if "role" not in message:
        raise ChatTemplateError(f"message {index} has no 'role'")
    if not isinstance(message["role"], str):
        raise ChatTemplateError(f"message {index}: 'role' must be a string, got {type(message['role']).__name__}")
    normalized = dict(message)
    if "tool_calls" in normalized and normalized["tool_calls"] is None:
        # Serialized OpenAI messages carry "tool_calls": null; templates test only for the key.
        del normalized["tool_calls"]
    if "tool_calls" in normalized:
        normalized["tool_calls"] = _tool_calls(index, normalized["tool_calls"])
    if "content" in message:
        normalized["content"] = _content_text(index, message["content"])
    elif "tool_calls" not in normalized:  # only an assistant's tool calls stand without content
        raise ChatTemplateError(f"message {index} has no 'content'")
    return normalized


def _tool_calls(index: int, calls: Any) -> List[Dict[str, Any]]:
    if not isinstance(calls, (list, tuple)):
        raise ChatTemplateError(f"message {index}: 'tool_calls' must be a list of "
                                f"{{'function': {{'name', 'arguments'}}}} mappings, got {type(calls).__name__}")
    return [_tool_call(index, j, call) for j, call in enumerate(calls)]


def _tool_call(index: int, call_index: int, call: Any) -> Dict[str, Any]:
    where = f"message {index}, tool call {call_index}"
    if not isinstance(call, Mapping):
        raise ChatTemplateError(f"{where} must be a mapping like {{'function': {{'name': ..., 'arguments': ...}}}}, "
                                f"got {type(call).__name__}")
    function = call.get("function")
    if not isinstance(function, Mapping):
        raise ChatTemplateError(f"{where}: 'function' must be a mapping with 'name' and 'arguments', "
                                f"got {type(function).__name__}")
    if not isinstance(function.get("name"), str):
        raise ChatTemplateError(f"{where}: 'function.name' must be a string, got {type(function.get('name')).__name__}")
    function = dict(function)
    if isinstance(function.get("arguments"), str):
        function["arguments"] = _arguments_object(where, function["arguments"])
    return {**call, "function": function}


_JSON_TYPE_NAMES = {list: "array", str: "string", int: "number", float: "number", bool: "boolean",
                    type(None): "null"}


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _arguments_object(where: str, text: str) -> Dict[str, Any]:
    """OpenAI sends a call's arguments as JSON text; templates expect the object (and write it
    with ``tojson``, which would otherwise quote the text as a JSON string)."""
    try:
        value = json.loads(text, parse_constant=_refuse_constant)
    except (ValueError, RecursionError) as exc:
        detail = "it nests too deeply" if isinstance(exc, RecursionError) else str(exc)[:200]
        raise ChatTemplateError(f"{where}: 'function.arguments' is not valid JSON: {detail}") from None
    if not isinstance(value, dict):
        raise ChatTemplateError(f"{where}: 'function.arguments' must be a JSON object, "
                                f"got a JSON {_JSON_TYPE_NAMES.get(type(value), type(value).__name__)}")
    return value


def _content_text(index: int, content: Any) -> str:
    if isinstance(content, str):
        return content
    if content is None:
        return ""
    if isinstance(content, (list, tuple)):
        return "\n".join(_part_text(index, j, part) for j, part in enumerate(content))
    raise ChatTemplateError(f"message {index}: 'content' must be a string, a list of text parts or "
                            f"None, got {type(content).__name__}")


def _part_text(index: int, part_index: int, part: Any) -> str:
    where = f"message {index}, content part {part_index}"
    if not isinstance(part, Mapping):
        raise ChatTemplateError(f"{where} must be a mapping like {{'type': 'text', 'text': ...}}, "
                                f"got {type(part).__name__}")
    if part.get("type") != "text":
        raise ChatTemplateError(f"{where} has type {repr(part.get('type'))[:40]}; only 'text' parts are supported")
    if not isinstance(part.get("text"), str):
        raise ChatTemplateError(f"{where}: 'text' must be a string, got {type(part.get('text')).__name__}")
    return part["text"]
