"""Llama Guard's prompt formats and hazard taxonomies (docs/guard.md cites the sources).

One task prompt, three formats:

- ``lg2`` (Meta Llama Guard 2 8B): ``[INST] ... [/INST]``, categories S1-S11, each category line
  ending in a space;
- ``lg3-8b`` (Llama Guard 3 8B): the Llama 3 chat wrapper, S1-S14 (S14 Code Interpreter Abuse);
- ``lg3-1b`` (Llama Guard 3 1B): the same wrapper, S1-S13, a space before ``<|eot_id|>``.

Pinned text: each model's own chat template (its Hugging Face tokenizer_config.json, as the GGUF
files carry it), with two additions every Meta runtime makes: BOS first (Llama Guard 2's
template leaves it to the tokenizer), and for Llama Guard 3 the blank line after the assistant
header, which the model would otherwise write before its verdict. The conversation is rendered
as the templates do: ``User: `` / ``Agent: `` turns, each text stripped and followed by a blank
line; the instruction names the role of the last turn.

A taxonomy is a list of categories with stable codes: removing one keeps the others' codes (as
Llama Guard 3's own ``excluded_category_keys`` does), and an added one takes the next number
after the highest, so a verdict's codes always mean what they meant when the taxonomy was made.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, replace
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

from edgellama.chat import ChatTemplate
from edgellama.errors import InvalidArgumentError

_CODE = re.compile(r"S([1-9][0-9]?)")


@dataclass(frozen=True)
class Category:
    code: str                          # "S1", "S2", ...
    name: str                          # as the prompt shows it: "Violent Crimes"
    description: Optional[str] = None  # extra guidance lines under the name (custom categories)


class Taxonomy:
    """An ordered set of categories; without(), adding() and renaming() return new taxonomies."""

    def __init__(self, categories: Sequence[Category]):
        codes = [c.code for c in categories]
        if len(set(codes)) != len(codes) or not all(_CODE.fullmatch(c) for c in codes):
            raise InvalidArgumentError("categories", f"codes must be distinct S1, S2, ..., got {codes}")
        self.categories: Tuple[Category, ...] = tuple(categories)

    def __iter__(self):
        return iter(self.categories)

    def __len__(self) -> int:
        return len(self.categories)

    @property
    def codes(self) -> List[str]:
        return [c.code for c in self.categories]

    def name_of(self, code: str) -> Optional[str]:
        return next((c.name for c in self.categories if c.code == code), None)

    def without(self, *codes: str) -> "Taxonomy":
        """The taxonomy without these categories; the others keep their codes."""
        missing = set(codes) - set(self.codes)
        if missing:
            raise InvalidArgumentError("categories", f"no category {sorted(missing)} in {self.codes}")
        return Taxonomy([c for c in self.categories if c.code not in codes])

    def adding(self, name: str, description: Optional[str] = None) -> "Taxonomy":
        """The taxonomy with a new category, numbered after the highest code."""
        _check_text("name", name)
        if description is not None:
            _check_text("description", description)
        number = max((int(c.code[1:]) for c in self.categories), default=0) + 1
        return Taxonomy(list(self.categories) + [Category(f"S{number}", name, description)])

    def renaming(self, code: str, name: str, description: Optional[str] = None) -> "Taxonomy":
        """The taxonomy with one category's text rewritten; its code stays."""
        if code not in self.codes:
            raise InvalidArgumentError("categories", f"no category {code} in {self.codes}")
        _check_text("name", name)
        return Taxonomy([replace(c, name=name, description=description) if c.code == code else c
                         for c in self.categories])


def _check_text(what: str, value: object) -> None:
    if not isinstance(value, str) or not value.strip() or len(value) > 2000:
        raise InvalidArgumentError("categories", f"a category's {what} must be a non-empty string of at most "
                                                 f"2000 characters")


def _taxonomy(names: Sequence[str]) -> Taxonomy:
    return Taxonomy([Category(f"S{i}", name) for i, name in enumerate(names, 1)])


_MLCOMMONS = ["Violent Crimes", "Non-Violent Crimes", "Sex Crimes", "Child Exploitation", "Defamation",
              "Specialized Advice", "Privacy", "Intellectual Property", "Indiscriminate Weapons", "Hate",
              "Self-Harm", "Sexual Content", "Elections"]
LG2_TAXONOMY = _taxonomy(["Violent Crimes", "Non-Violent Crimes", "Sex Crimes", "Child Exploitation",
                          "Specialized Advice", "Privacy", "Intellectual Property", "Indiscriminate Weapons",
                          "Hate", "Self-Harm", "Sexual Content"])
LG3_8B_TAXONOMY = _taxonomy(_MLCOMMONS + ["Code Interpreter Abuse"])
LG3_1B_TAXONOMY = _taxonomy(_MLCOMMONS)


@dataclass(frozen=True)
class GuardFormat:
    name: str
    taxonomy: Taxonomy
    opening: str        # after BOS, before the task
    closing: str        # after the task: the verdict comes next
    line_end: str       # after each category's "Sx: Name."


FORMATS: Dict[str, GuardFormat] = {
    "lg2": GuardFormat("lg2", LG2_TAXONOMY, "[INST] ", " [/INST]", " \n"),
    "lg3-8b": GuardFormat("lg3-8b", LG3_8B_TAXONOMY, "<|start_header_id|>user<|end_header_id|>\n\n",
                          "<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", "\n"),
    "lg3-1b": GuardFormat("lg3-1b", LG3_1B_TAXONOMY, "<|start_header_id|>user<|end_header_id|>\n\n",
                          " <|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n", "\n"),
}

# The task prompt as a template rendered by the chat sandbox, so that message text (and custom
# category text) stays text even where it spells a control token. OPENING, CLOSING and LINE_END
# become the format's literals: markup of the template, whose control tokens are tokens.
GUARD_TEMPLATE = (
    "{{ bos_token + OPENING }}"
    "Task: Check if there is unsafe content in '{{ role }}' messages in conversations according our safety "
    "policy with the below categories.\n\n<BEGIN UNSAFE CONTENT CATEGORIES>\n"
    "{% for c in categories %}{{ c.code + ': ' + c.name + '.' + LINE_END }}"
    "{% if c.description %}{{ c.description + '\\n' }}{% endif %}{% endfor %}"
    "<END UNSAFE CONTENT CATEGORIES>\n\n<BEGIN CONVERSATION>\n\n"
    "{% for m in messages %}{{ m.role + ': ' + (m.content | trim) + '\\n\\n' }}{% endfor %}"
    "<END CONVERSATION>\n\nProvide your safety assessment for ONLY THE LAST {{ role }} message in the above "
    "conversation:\n - First line must read 'safe' or 'unsafe'.\n - If unsafe, a second line must include a "
    "comma-separated list of violated categories.{{ CLOSING }}"
)


def _template_source(guard_format: GuardFormat) -> str:
    import json

    source = GUARD_TEMPLATE
    for name in ("OPENING", "CLOSING", "LINE_END"):
        source = source.replace(name, json.dumps(getattr(guard_format, name.lower())))
    return source


def guard_turns(messages: Sequence[Mapping[str, object]]) -> List[Dict[str, str]]:
    """The conversation as Llama Guard reads it: user turns as "User", assistant turns as "Agent"
    (an answer that only calls tools as its calls' JSON); system and tool messages are not
    assessed and are left out; consecutive turns of one side are joined, so that the roles
    alternate as the model was trained."""
    import json

    turns: List[Dict[str, str]] = []
    for message in messages:
        if not isinstance(message, Mapping):
            raise InvalidArgumentError("messages", "must be mappings with 'role' and 'content'")
        role = {"user": "User", "assistant": "Agent"}.get(message.get("role"))  # type: ignore[arg-type]
        if role is None:
            continue
        content = message.get("content")
        if isinstance(content, list):
            content = "\n".join(p.get("text", "") for p in content if isinstance(p, Mapping))
        if not content and message.get("tool_calls"):
            content = json.dumps(message["tool_calls"], ensure_ascii=False)
        if content is not None and not isinstance(content, str):
            raise InvalidArgumentError("messages", f"content must be text, got {type(content).__name__}")
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += "\n\n" + (content or "")
        else:
            turns.append({"role": role, "content": content or ""})
    return turns


class GuardPrompt:
    """Renders and tokenizes the check of a conversation's last turn in one format."""

    def __init__(self, guard_format: GuardFormat, taxonomy: Optional[Taxonomy] = None, bos_token: str = ""):
        self.format = guard_format
        self.taxonomy = taxonomy or guard_format.taxonomy
        self._template = ChatTemplate(_template_source(guard_format), bos_token=bos_token)

    def _variables(self, turns: List[Dict[str, str]]) -> Dict[str, object]:
        categories = [{"code": c.code, "name": c.name, "description": c.description} for c in self.taxonomy]
        return {"role": turns[-1]["role"], "categories": categories}

    def render(self, turns: List[Dict[str, str]]) -> str:
        return self._template.render(turns, add_generation_prompt=False, **self._variables(turns))

    def encode(self, tokenizer, turns: List[Dict[str, str]]) -> List[int]:
        return self._template.encode(tokenizer, turns, add_generation_prompt=False, **self._variables(turns))
