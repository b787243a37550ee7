"""Structured output on SmolLM2: JSON schemas, grammars and regexes are valid by construction.

Every finished output ("stop") of a battery of schemas, at several seeds and temperatures, parses
and validates with jsonschema; outputs cut by max_tokens say "length". Grammar and regex outputs
are checked by an independent regex. The mask never disturbs the logits: each constrained greedy
token is the largest raw logit among the tokens an independent matcher allows, and a grammar that
allows everything gives exactly the unconstrained greedy text.
"""

import json
import re
import sys

import numpy as np
import pytest

llguidance = pytest.importorskip("llguidance", reason="structured output needs llguidance (the structured extra)")
jsonschema = pytest.importorskip("jsonschema")

from edgellama import Llama  # noqa: E402
from edgellama.api import run_records  # noqa: E402
from edgellama.sampling import Sampler, SamplingParams  # noqa: E402
from edgellama.constraints import constraint_from  # noqa: E402
from edgellama.errors import EdgellamaError, InvalidArgumentError  # noqa: E402

ASK = [{"role": "user", "content": "Describe one fictional person as JSON."}]
SETTINGS = [(0.0, 0), (0.7, 1), (1.0, 2), (1.0, 3)]  # (temperature, seed)

ADDRESS = {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20},
                                            "zip": {"type": "string", "pattern": "^[0-9]{5}$"}},
           "required": ["city", "zip"], "additionalProperties": False}
SCHEMAS = {
    "nested objects": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20},
                                                        "address": ADDRESS},
                       "required": ["name", "address"], "additionalProperties": False},
    "array bounds": {"type": "object", "properties": {"tags": {"type": "array", "minItems": 2, "maxItems": 3,
                                                               "items": {"type": "string", "maxLength": 12}}},
                     "required": ["tags"], "additionalProperties": False},
    "enum": {"type": "object", "properties": {"status": {"enum": ["active", "retired", "unknown"]},
                                              "level": {"enum": [1, 2, 3]}},
             "required": ["status", "level"], "additionalProperties": False},
    "number bounds": {"type": "object", "properties": {"age": {"type": "integer", "minimum": 18, "maximum": 99},
                                                       "score": {"type": "number", "minimum": 0, "maximum": 1}},
                      "required": ["age", "score"], "additionalProperties": False},
    "pattern and formats": {"type": "object",
                            "properties": {"id": {"type": "string", "pattern": "^[A-Z]{2}-[0-9]{3}$"},
                                           "born": {"type": "string", "format": "date"},
                                           "mail": {"type": "string", "format": "email", "maxLength": 40}},
                            "required": ["id", "born", "mail"], "additionalProperties": False},
    "anyOf and oneOf": {"type": "object",
                        "properties": {"contact": {"anyOf": [{"type": "string", "maxLength": 20}, {"type": "integer"}]},
                                       "pet": {"oneOf": [{"type": "null"}, {"enum": ["cat", "dog"]}]}},
                        "required": ["contact", "pet"], "additionalProperties": False},
    "$ref and $defs": {"$defs": {"person": {"type": "object", "properties": {"name": {"type": "string",
                                                                                     "maxLength": 15}},
                                            "required": ["name"], "additionalProperties": False}},
                       "type": "object", "properties": {"boss": {"$ref": "#/$defs/person"},
                                                        "team": {"type": "array", "maxItems": 2,
                                                                 "items": {"$ref": "#/$defs/person"}}},
                       "required": ["boss", "team"], "additionalProperties": False},
    "optional fields": {"type": "object", "properties": {"name": {"type": "string", "maxLength": 20},
                                                         "nickname": {"type": "string", "maxLength": 10},
                                                         "age": {"type": "integer", "minimum": 0, "maximum": 120}},
                        "required": ["name"], "additionalProperties": False},
}
FORMATS = jsonschema.FormatChecker()


@pytest.fixture(scope="module")
def llm(smollm2_path):
    return Llama(smollm2_path, n_ctx=512, n_threads=2, n_parallel=4)


def json_format(schema):
    return {"type": "json_schema", "json_schema": {"name": "answer", "schema": schema, "strict": True}}


@pytest.mark.parametrize("name", sorted(SCHEMAS))
def test_every_finished_output_validates_against_its_schema(llm, name):
    schema = SCHEMAS[name]
    finished = 0
    for temperature, seed in SETTINGS:
        reply = llm.create_chat_completion(ASK, max_tokens=160, temperature=temperature, seed=seed,
                                           response_format=json_format(schema))
        choice = reply["choices"][0]
        if choice["finish_reason"] == "stop":
            finished += 1
            jsonschema.validate(json.loads(choice["message"]["content"]), schema, format_checker=FORMATS)
    assert finished >= len(SETTINGS) - 1  # a sampled string may still run past max_tokens


def test_any_json_object(llm):
    for temperature, seed in SETTINGS:
        reply = llm.create_chat_completion(ASK, max_tokens=160, temperature=temperature, seed=seed,
                                           response_format={"type": "json_object"})
        choice = reply["choices"][0]
        if choice["finish_reason"] == "stop":
            assert isinstance(json.loads(choice["message"]["content"]), dict)


def test_an_output_cut_by_max_tokens_says_length(llm):
    schema = SCHEMAS["nested objects"]
    reply = llm.create_chat_completion(ASK, max_tokens=4, temperature=0, response_format=json_format(schema))
    choice = reply["choices"][0]
    assert choice["finish_reason"] == "length"
    with pytest.raises(json.JSONDecodeError):
        json.loads(choice["message"]["content"])


GRAMMARS = [
    # (grammar=..., a regex of its language)
    ('start: answer ", because " reason "."\nanswer: "yes" | "no"\nreason: /[a-z ]{1,40}/',
     r"(yes|no), because [a-z ]{1,40}\."),
    ('root ::= "(" [0-9]+ (" " ("+" | "*") " " [0-9]+){1,3} ")"',  # llama.cpp GBNF
     r"\([0-9]+( [+*] [0-9]+){1,3}\)"),
]


@pytest.mark.parametrize("grammar, language", GRAMMARS)
def test_grammar_outputs_are_in_their_language(llm, grammar, language):
    for temperature, seed in SETTINGS:
        reply = llm.create_completion("Answer:", max_tokens=60, temperature=temperature, seed=seed, grammar=grammar)
        choice = reply["choices"][0]
        if choice["finish_reason"] == "stop":
            assert re.fullmatch(language, choice["text"]), choice["text"]


@pytest.mark.parametrize("regex", [r"[0-9]{3}-[0-9]{4}", r"(red|green|blue) (car|bike)", r"[A-Z][a-z]{2,8}"])
def test_regex_outputs_match(llm, regex):
    for temperature, seed in SETTINGS:
        reply = llm.create_completion("My favourite:", max_tokens=30, temperature=temperature, seed=seed,
                                      regex=regex)
        choice = reply["choices"][0]
        assert choice["finish_reason"] == "stop"
        assert re.fullmatch(regex, choice["text"]), choice["text"]


def test_streamed_structured_output_equals_the_whole(llm):
    whole = llm.create_chat_completion(ASK, max_tokens=120, temperature=0, response_format={"type": "json_object"})
    chunks = list(llm.create_chat_completion(ASK, max_tokens=120, temperature=0, stream=True,
                                             response_format={"type": "json_object"}))
    text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks)
    assert text == whole["choices"][0]["message"]["content"]
    assert chunks[-1]["choices"][0]["finish_reason"] == whole["choices"][0]["finish_reason"]


def test_the_mask_never_disturbs_the_logits(llm):
    """Each constrained greedy token is the largest raw logit among the allowed tokens (the raw
    greedy token itself wherever the grammar allows it), the allowed set coming from a matcher
    of our own over the raw logits."""
    schema = SCHEMAS["number bounds"]
    constraint = constraint_from(llm.tokenizer, llm.n_vocab, response_format=json_format(schema))
    prompt = llm.chat_template.encode(llm.tokenizer, ASK, add_generation_prompt=True)
    records = list(run_records(llm, prompt, 60, Sampler(SamplingParams(temperature=0)), None, constraint))
    assert records[-1].finish_reason == "stop"
    tokens = [r.token for r in records]
    text = "".join(r.text for r in records)
    jsonschema.validate(json.loads(text), schema)
    matcher = llguidance.LLMatcher(constraint.tokenizer, constraint.grammar)
    bitmask = np.zeros((1, (constraint.tokenizer.vocab_size + 31) // 32), np.int32)
    llm.reset()
    logits = llm.eval(prompt)
    agreed = 0
    for token in tokens:
        matcher.unsafe_compute_mask_ptr(bitmask.ctypes.data, bitmask.nbytes)
        allowed = np.unpackbits(bitmask.view(np.uint8), bitorder="little")[:llm.n_vocab].astype(bool)
        raw_best = int(np.argmax(logits))
        assert token == int(np.flatnonzero(allowed)[np.argmax(logits[allowed])])
        if allowed[raw_best]:
            assert token == raw_best
            agreed += 1
        assert matcher.consume_token(token)
        logits = llm.eval([token])
    assert agreed > 0, text  # the model's own choice fitted the schema at some steps


def test_a_grammar_that_allows_everything_gives_the_unconstrained_greedy_text(llm):
    free = llm.create_completion("Once upon a time", max_tokens=40, temperature=0)["choices"][0]["text"]
    constrained = llm.create_completion("Once upon a time", max_tokens=40, temperature=0,
                                        regex=r"(.|\n)*")["choices"][0]["text"]
    assert constrained == free


@pytest.mark.parametrize("arguments, named", [
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "foo"}}}},
     "response_format"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "x", "schema": {"$ref": "#/nope"}}}},
     "response_format"),
    ({"response_format": {"type": "xml"}}, "response_format"),
    ({"response_format": "json"}, "response_format"),
    ({"response_format": {"type": "json_object", "extra": 1}}, "response_format"),
    ({"regex": "(ab"}, "regex"),
    ({"regex": ""}, "regex"),
    ({"grammar": "start: undefined_rule"}, "grammar"),
    ({"grammar": "root ::= (("}, "grammar"),
    ({"grammar": 5}, "grammar"),
    ({"regex": "a", "grammar": 'start: "a"'}, "regex"),
])
def test_an_invalid_constraint_is_an_error_before_any_token(llm, arguments, named):
    before = llm.last_stats
    with pytest.raises(InvalidArgumentError) as info:
        llm.create_chat_completion(ASK, max_tokens=5, **arguments)
    assert info.value.argument == named
    assert llm.last_stats is before  # nothing was generated


def test_constrained_and_free_generations_share_the_batch(llm):
    """Four parallel sequences, two constrained: each equals its answer alone."""
    import threading

    jobs = [dict(regex=r"[0-9]{4}"), dict(), dict(response_format={"type": "json_object"}), dict()]
    alone = [llm.create_completion("The year was", max_tokens=30, temperature=0, **job)["choices"][0]["text"]
             for job in jobs]
    together = [None] * len(jobs)

    def run(i):
        together[i] = llm.create_completion("The year was", max_tokens=30, temperature=0,
                                            **jobs[i])["choices"][0]["text"]

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(jobs))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert together == alone
    assert re.fullmatch(r"[0-9]{4}", alone[0])


def test_without_llguidance_the_error_says_what_to_install(llm, monkeypatch):
    monkeypatch.setitem(sys.modules, "llguidance", None)
    with pytest.raises(EdgellamaError, match=r"edgellama\[structured\]"):
        llm.create_completion("x", max_tokens=2, regex="a")
    assert llm.create_completion("x", max_tokens=2)["choices"][0]["finish_reason"]  # free text needs none
