"""Chat templates: turn a list of messages into the prompt text a model was trained on.

The template comes from the GGUF metadata (`tokenizer.chat_template`, a Jinja2 template as Hugging
Face tokenizers ship it) and is rendered in a sandboxed Jinja2 environment: a model file is
untrusted input, and a template must not reach Python internals. Files without a template fall
back to ChatML.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, List, Mapping, Optional, Sequence

from jinja2.exceptions import TemplateError
from jinja2.sandbox import ImmutableSandboxedEnvironment

from edgellama.errors import EdgellamaError

Message = Mapping[str, Any]  # {"role": "system" | "user" | "assistant", "content": str}

CHATML_TEMPLATE = (
    "{% for message in messages %}"
    "{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}"
    "{% endfor %}"
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


class ChatTemplateError(EdgellamaError, ValueError):
    """The chat template is malformed, or it rejected the messages (raise_exception)."""


def _raise_exception(message: str):
    raise ChatTemplateError(f"chat template: {message}")


@dataclass
class ChatTemplate:
    source: str
    bos_token: str = ""
    eos_token: str = ""

    def __post_init__(self):
        env = ImmutableSandboxedEnvironment(trim_blocks=True, lstrip_blocks=True)
        env.globals["raise_exception"] = _raise_exception
        try:
            self._template = env.from_string(self.source)
        except TemplateError as exc:
            raise ChatTemplateError(f"cannot parse the chat template: {exc}") from exc

    @classmethod
    def from_tokenizer_metadata(cls, meta: Mapping[str, Any], tokenizer) -> "ChatTemplate":
        """The file's template (tokenizer.chat_template), else ChatML."""
        source = meta.get("tokenizer.chat_template") or CHATML_TEMPLATE
        bos = tokenizer.token_text(tokenizer.bos_id) if tokenizer.bos_id is not None else ""
        eos = tokenizer.token_text(tokenizer.eos_id) if tokenizer.eos_id is not None else ""
        return cls(source, bos, eos)

    def render(self, messages: Sequence[Message], add_generation_prompt: bool = True,
               tools: Optional[List[Dict[str, Any]]] = None) -> str:
        for m in messages:
            if "role" not in m or "content" not in m:
                raise ChatTemplateError(f"each message needs 'role' and 'content', got {dict(m)!r}")
        try:
            return self._template.render(messages=list(messages), add_generation_prompt=add_generation_prompt,
                                         bos_token=self.bos_token, eos_token=self.eos_token, tools=tools)
        except ChatTemplateError:
            raise
        except TemplateError as exc:
            raise ChatTemplateError(f"the chat template failed to render: {exc}") from exc
