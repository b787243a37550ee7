"""Chat templates: turn a list of messages into the prompt text a model was trained on.

The template comes from the GGUF metadata (`tokenizer.chat_template`, a Jinja2 template as Hugging
Face tokenizers ship it) and is rendered in a sandboxed Jinja2 environment: a model file is
untrusted input, and a template must not reach Python internals. The environment offers what
Hugging Face templates expect: the variables `messages`, `add_generation_prompt`, `bos_token`,
`eos_token` (and the other special tokens), `tools` and `documents` (None unless given), any extra keyword
(e.g. `date_string`, which Llama 3.x templates read); the functions `raise_exception` and
`strftime_now`; a `tojson` filter that keeps non-ASCII text and honours `indent`; loop controls
(`{% break %}`, `{% continue %}`); `{% generation %}` blocks; trimmed blocks.

A file without a template gets a built-in one chosen by its vocabulary: `<|eot_id|>` -> llama3,
a SentencePiece (`llama`) vocabulary -> llama2 (`[INST]`), otherwise (e.g. `<|im_start|>`) ->
chatml. Each family also names the tokens that end an assistant turn (:attr:`ChatTemplate.stop_tokens`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Dict, FrozenSet, List, Mapping, Optional, Sequence, Tuple

from jinja2 import nodes
from jinja2.exceptions import TemplateError
from jinja2.ext import Extension, loopcontrols
from jinja2.sandbox import ImmutableSandboxedEnvironment

from edgellama.errors import EdgellamaError

__all__ = [
    "ChatTemplate", "ChatTemplateError", "BUILTIN_TEMPLATES", "FAMILY_STOP_TOKENS",
    "CHATML_TEMPLATE", "LLAMA2_TEMPLATE", "LLAMA3_TEMPLATE", "detect_family",
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
    "llama3": LLAMA3_TEMPLATE,
    "llama2": LLAMA2_TEMPLATE,
    "chatml": CHATML_TEMPLATE,
}

#: Token texts that end an assistant turn, per family (the vocabulary's eos is always added).
FAMILY_STOP_TOKENS: Mapping[str, Tuple[str, ...]] = {
    "llama3": ("<|eot_id|>", "<|eom_id|>", "<|end_of_text|>"),
    "llama2": ("</s>",),
    "chatml": ("<|im_end|>", "<|endoftext|>"),
}


class ChatTemplateError(EdgellamaError, ValueError):
    """The chat template is malformed, or it rejected the messages (raise_exception)."""


def _raise_exception(message: str):
    raise ChatTemplateError(f"chat template: {message}")


def _strftime_now(fmt: str) -> str:
    return datetime.now().strftime(fmt)


def _tojson(value: Any, ensure_ascii: bool = False, indent: Optional[int] = None,
            separators: Optional[Tuple[str, str]] = None, sort_keys: bool = False) -> str:
    # Plain JSON, as Hugging Face renders it (Jinja's own filter HTML-escapes <, >, & and ').
    return json.dumps(value, ensure_ascii=ensure_ascii, indent=indent, separators=separators,
                      sort_keys=sort_keys)


class _GenerationBlock(Extension):
    """``{% generation %}...{% endgeneration %}`` marks the assistant's part in training templates;
    for rendering it is transparent."""

    tags = {"generation"}

    def parse(self, parser):
        lineno = next(parser.stream).lineno
        body = parser.parse_statements(("name:endgeneration",), drop_needle=True)
        return nodes.Scope(body, lineno=lineno)


def _environment() -> ImmutableSandboxedEnvironment:
    env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True,
                                        extensions=[loopcontrols, _GenerationBlock])
    env.filters["tojson"] = _tojson
    env.globals["raise_exception"] = _raise_exception
    env.globals["strftime_now"] = _strftime_now
    return env


def detect_family(tokenizer) -> str:
    """``"llama3"`` when the vocabulary has ``<|eot_id|>``, ``"llama2"`` for a SentencePiece
    (``llama``) vocabulary, else ``"chatml"``."""
    if tokenizer.token_id("<|eot_id|>") is not None:
        return "llama3"
    if getattr(tokenizer, "model", "gpt2") == "llama" and tokenizer.token_id("<|im_start|>") is None:
        return "llama2"
    return "chatml"


@dataclass
class ChatTemplate:
    """A chat template ready to render. ``family`` names the built-in conventions it follows
    (``llama3``, ``llama2``, ``chatml``); ``stop_tokens`` are the token texts that end an
    assistant turn; ``special_tokens`` are extra template variables (``unk_token``, ``pad_token``)."""

    source: str
    bos_token: str = ""
    eos_token: str = ""
    family: Optional[str] = None
    stop_tokens: Tuple[str, ...] = ()
    special_tokens: Dict[str, str] = field(default_factory=dict)

    def __post_init__(self):
        try:
            self._template = _environment().from_string(self.source)
        except TemplateError as exc:
            raise ChatTemplateError(f"cannot parse the chat template: {exc}") from exc

    @classmethod
    def builtin(cls, family: str, bos_token: str = "", eos_token: str = "") -> "ChatTemplate":
        """A built-in template: ``"llama3"``, ``"llama2"`` or ``"chatml"``."""
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
        return cls(str(source), bos, eos, family, stops, specials)

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
        ``date_string="26 Jul 2024"`` for Llama 3.x templates)."""
        for m in messages:
            if not isinstance(m, Mapping) or "role" not in m:
                raise ChatTemplateError(f"each message needs a 'role', got {m!r}")
        context: Dict[str, Any] = dict(self.special_tokens)
        context.update(bos_token=self.bos_token, eos_token=self.eos_token)
        # Always defined (None when absent), as templates test `tools is not none`.
        context.update(tools=tools, documents=documents)
        context.update(variables)
        try:
            return self._template.render(messages=list(messages), add_generation_prompt=add_generation_prompt,
                                         **context)
        except ChatTemplateError:
            raise
        except TemplateError as exc:
            raise ChatTemplateError(f"the chat template failed to render: {exc}") from exc

    def encode(self, tokenizer, messages: Sequence[Message], add_generation_prompt: bool = True,
               **kwargs: Any) -> List[int]:
        """Render and tokenize (``special=True``: the template's control tokens are real). BOS
        is added only when the rendered text does not already start with it."""
        text = self.render(messages, add_generation_prompt=add_generation_prompt, **kwargs)
        starts_with_bos = bool(self.bos_token) and text.startswith(self.bos_token)
        add_bos = False if starts_with_bos else None
        return tokenizer.encode(text, add_bos=add_bos, special=True)
