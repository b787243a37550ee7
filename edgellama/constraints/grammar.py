"""What a request asks its output to be, as a grammar checked against the model's vocabulary
before any token is generated.

- ``response_format={"type": "json_object"}``: any JSON object;
- ``response_format={"type": "json_schema", "json_schema": {"name", "schema", "strict"}}``: JSON
  valid under the schema (always enforced, whatever ``strict`` says);
- ``grammar=``: a Lark grammar or a llama.cpp GBNF grammar (told apart by llguidance);
- ``regex=``: a regular expression the whole output matches.

JSON is written on one line with json.dumps' separators (", " and ": "): a model cannot spend
its tokens on whitespace, and the text reads as people expect. A schema may choose otherwise
with llguidance's "x-guidance" options. An invalid schema, grammar or regex is an
InvalidArgumentError naming the argument, with llguidance's reason.
"""

from __future__ import annotations

import json
from typing import Any, Mapping, Optional

from edgellama.constraints.vocabulary import ll_tokenizer, llguidance_module
from edgellama.errors import InvalidArgumentError

JSON_LAYOUT = {"whitespace_flexible": False, "item_separator": ", ", "key_separator": ": "}
ANY_JSON_OBJECT = {"type": "object"}
_RESPONSE_FORMAT_KEYS = {"type", "json_schema"}
_JSON_SCHEMA_KEYS = {"name", "description", "schema", "strict"}


class Constraint:
    """A checked grammar for one model's vocabulary. `state()` starts one generation in it (a
    request's n choices each have their own)."""

    def __init__(self, grammar: str, tokenizer, argument: str):
        self.grammar = grammar
        self.tokenizer = tokenizer  # llguidance's LLTokenizer
        self.argument = argument    # what the user gave: named in errors

    def state(self):
        from edgellama.constraints.state import GrammarState

        return GrammarState(self)


def constraint_from(tokenizer, n_logits: int, response_format: Any = None, grammar: Any = None,
                    regex: Any = None) -> Optional[Constraint]:
    """The constraint a request asks for (None: free text), checked now. At most one of
    response_format (a JSON format), grammar and regex may be given."""
    given = [name for name, value in (("response_format", _json_format(response_format)), ("grammar", grammar),
                                      ("regex", regex)) if value is not None]
    if len(given) > 1:
        raise InvalidArgumentError(given[1], f"give one of {' and '.join(given)}, not both")
    if not given:
        return None
    llguidance = llguidance_module()
    argument = given[0]
    if argument == "response_format":
        return json_schema_constraint(tokenizer, n_logits, _json_format(response_format), "response_format")
    value = grammar if argument == "grammar" else regex
    if not isinstance(value, str) or not value.strip():
        raise InvalidArgumentError(argument, f"must be a non-empty string, got {_shown(value)}")
    try:
        text = llguidance.grammar_from("grammar" if argument == "grammar" else "regex", value)
    except ValueError as exc:
        raise InvalidArgumentError(argument, f"invalid {argument}: {exc}") from None
    return _checked(llguidance, text, tokenizer, n_logits, argument, argument)


def json_schema_constraint(tokenizer, n_logits: int, schema: Any, argument: str) -> Constraint:
    """JSON valid under `schema`, laid out on one line; an invalid schema is an
    InvalidArgumentError naming `argument` (the request's field it came from)."""
    llguidance = llguidance_module()
    try:
        text = llguidance.LLMatcher.grammar_from_json_schema(json.dumps(schema, allow_nan=False),
                                                              defaults=JSON_LAYOUT)
    except (TypeError, ValueError) as exc:
        raise InvalidArgumentError(argument, f"invalid JSON schema: {exc}") from None
    return _checked(llguidance, text, tokenizer, n_logits, argument, "JSON schema")


def _checked(llguidance, text: str, tokenizer, n_logits: int, argument: str, what: str) -> Constraint:
    lt = ll_tokenizer(tokenizer, n_logits)
    failed, messages = llguidance.LLMatcher.validate_grammar_with_warnings(text, lt)
    if failed:
        raise InvalidArgumentError(argument, f"invalid {what}: {'; '.join(messages)}")
    return Constraint(text, lt, argument)


def _json_format(response_format: Any) -> Optional[Mapping[str, Any]]:
    """The JSON schema response_format asks for; None for free text."""
    if response_format is None:
        return None
    if not isinstance(response_format, Mapping):
        raise InvalidArgumentError("response_format", f"must be a mapping like {{'type': 'json_object'}}, "
                                                      f"got {_shown(response_format)}")
    _no_unknown_keys("response_format", response_format, _RESPONSE_FORMAT_KEYS)
    kind = response_format.get("type")
    if kind == "text":
        return None
    if kind == "json_object":
        return ANY_JSON_OBJECT
    if kind != "json_schema":
        raise InvalidArgumentError("response_format", f"type must be 'text', 'json_object' or 'json_schema', "
                                                      f"got {_shown(kind)}")
    spec = response_format.get("json_schema")
    if not isinstance(spec, Mapping):
        raise InvalidArgumentError("response_format", "json_schema must be a mapping like "
                                                      "{'name': ..., 'schema': {...}}")
    _no_unknown_keys("response_format.json_schema", spec, _JSON_SCHEMA_KEYS)
    schema = spec.get("schema", ANY_JSON_OBJECT)
    if not isinstance(schema, (Mapping, bool)):
        raise InvalidArgumentError("response_format", f"json_schema.schema must be a JSON schema object, "
                                                      f"got {_shown(schema)}")
    return schema


def _no_unknown_keys(where: str, mapping: Mapping[str, Any], known) -> None:
    unknown = sorted(str(k) for k in mapping if k not in known)
    if unknown:
        raise InvalidArgumentError("response_format", f"{where} has unknown field(s) {', '.join(unknown)}")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."
