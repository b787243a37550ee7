"""Tool calling: tools and tool_choice checked; answers read back as OpenAI tool_calls (with and
without <|python_tag|>, several calls, Hermes wrappers; malformed output stays content); streamed
as tool-call deltas that the openai package's types accept; forced calls on SmolLM2 always parse
and match the function's parameter schema."""

import json

import pytest

from edgellama import Llama
from edgellama.errors import InvalidArgumentError
from edgellama.generate import GenerationStats, TokenRecord
from edgellama.openai_shapes import ChoiceStream, ResponseShape
from edgellama.tools import parse_tool_calls, tool_use

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 24},
                                                    "unit": {"enum": ["celsius", "fahrenheit"]}},
                   "required": ["city", "unit"], "additionalProperties": False}}}
TIME = {"type": "function", "function": {
    "name": "get_time", "description": "The local time in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 24}},
                   "required": ["city"], "additionalProperties": False}}}
TOOLS = [WEATHER, TIME]
NAMES = ["get_weather", "get_time"]
ASK = [{"role": "user", "content": "What is the weather in Paris, and what time is it there?"}]


@pytest.fixture(scope="module")
def llm(smollm2_path):
    return Llama(smollm2_path, n_ctx=1024, n_threads=2)


def calls_of(text):
    calls = parse_tool_calls(text, NAMES)
    return None if calls is None else [(c["function"]["name"], json.loads(c["function"]["arguments"]))
                                       for c in calls]


@pytest.mark.parametrize("text, expected", [
    ('{"name": "get_time", "parameters": {"city": "Paris"}}', [("get_time", {"city": "Paris"})]),
    ('<|python_tag|>{"name": "get_time", "parameters": {"city": "Oslo"}}', [("get_time", {"city": "Oslo"})]),
    ('  {"name": "get_time", "arguments": "{\\"city\\": \\"Rome\\"}"}\n', [("get_time", {"city": "Rome"})]),
    ('{"name": "get_time", "parameters": {"city": "A"}}; {"name": "get_weather", "parameters": {"city": "B", '
     '"unit": "celsius"}}', [("get_time", {"city": "A"}), ("get_weather", {"city": "B", "unit": "celsius"})]),
    ('{"name": "get_time", "parameters": {"city": "A"}}\n{"name": "get_time", "parameters": {"city": "B"}}',
     [("get_time", {"city": "A"}), ("get_time", {"city": "B"})]),
    ('[{"name": "get_time", "parameters": {}}]', [("get_time", {})]),
    ('<tool_call>\n{"name": "get_time", "arguments": {"city": "Lima"}}\n</tool_call>',
     [("get_time", {"city": "Lima"})]),
    ('{"type": "function", "function": {"name": "get_time", "arguments": {"city": "Bern"}}}',
     [("get_time", {"city": "Bern"})]),
    # Not calls: kept as content.
    ('{"name": "get_time", "parameters": {"city": "A"}', None),       # cut short
    ('{"name": "launch_rockets", "parameters": {}}', None),           # not one of the tools
    ('Sure! {"name": "get_time", "parameters": {}}', None),           # prose around it
    ('{"name": "get_time", "parameters": [1, 2]}', None),             # arguments not an object
    ('{"name": "get_time", "parameters": "not json"}', None),
    ('{"answer": 42}', None),
    ('', None),
    ('<tool_call>{"name": "get_time", "arguments": {}}</tool_call> and more', None),
])
def test_answers_are_read_as_calls_or_kept_as_content(text, expected):
    assert calls_of(text) == expected


@pytest.mark.parametrize("tools, choice, named", [
    ("get_time", None, "tools"),
    ([{"type": "function"}], None, "tools"),
    ([{"type": "retrieval", "function": {"name": "x"}}], None, "tools"),
    ([{"type": "function", "function": {"name": "has space"}}], None, "tools"),
    ([{"type": "function", "function": {"name": "x", "parameters": "not a schema"}}], None, "tools"),
    ([{"type": "function", "function": {"name": "x", "colour": "red"}}], None, "tools"),
    ([TIME, TIME], None, "tools"),
    (TOOLS, "sometimes", "tool_choice"),
    (TOOLS, {"type": "function", "function": {"name": "nope"}}, "tool_choice"),
    (None, "required", "tool_choice"),
])
def test_bad_tools_and_choices_name_the_argument(tools, choice, named):
    with pytest.raises(InvalidArgumentError) as info:
        tool_use(tools, choice)
    assert info.value.argument == named


def test_an_invalid_parameter_schema_is_an_error_before_any_token(llm):
    pytest.importorskip("llguidance")
    bad = {"type": "function", "function": {"name": "f", "parameters": {"type": "object", "properties": {
        "x": {"type": "mystery"}}}}}
    with pytest.raises(InvalidArgumentError) as info:
        llm.create_chat_completion(ASK, tools=[bad], tool_choice="required", max_tokens=4)
    assert info.value.argument == "tools"
    with pytest.raises(InvalidArgumentError):
        llm.create_chat_completion(ASK, tools=TOOLS, tool_choice="required", regex="a", max_tokens=4)


@pytest.mark.parametrize("choice", ["required", {"type": "function", "function": {"name": "get_weather"}}])
def test_forced_calls_always_match_the_parameter_schema(llm, choice):
    pytest.importorskip("llguidance")
    import jsonschema

    schemas = {t["function"]["name"]: t["function"]["parameters"] for t in TOOLS}
    for temperature, seed in ((0.0, 0), (0.8, 1), (1.0, 2), (1.2, 3)):
        reply = llm.create_chat_completion(ASK, tools=TOOLS, tool_choice=choice, temperature=temperature,
                                           seed=seed, max_tokens=80)
        choice_out = reply["choices"][0]
        assert choice_out["finish_reason"] == "tool_calls", choice_out
        assert choice_out["message"]["content"] is None
        for call in choice_out["message"]["tool_calls"]:
            assert call["type"] == "function" and call["id"].startswith("call_")
            if isinstance(choice, dict):
                assert call["function"]["name"] == "get_weather"
            jsonschema.validate(json.loads(call["function"]["arguments"]), schemas[call["function"]["name"]])


def test_tool_choice_none_answers_in_words(llm):
    reply = llm.create_chat_completion(ASK, tools=TOOLS, tool_choice="none", temperature=0, max_tokens=16)
    assert reply["choices"][0]["message"]["content"] and "tool_calls" not in reply["choices"][0]["message"]
    assert "get_weather" not in llm.apply_chat_template(ASK, tools=None)


def test_a_template_without_tools_lists_them_in_a_system_message(llm):
    text = llm.apply_chat_template([{"role": "system", "content": "Be brief."}] + ASK, tools=TOOLS)
    assert text.startswith("<|im_start|>system\nBe brief.\n\n") and '"name": "get_time"' in text
    assert text.count("<|im_start|>system") == 1


def test_a_conversation_with_calls_and_results_renders_back(llm):
    pytest.importorskip("llguidance")
    first = llm.create_chat_completion(ASK, tools=TOOLS, tool_choice="required", temperature=0, max_tokens=80)
    message = first["choices"][0]["message"]
    results = [{"role": "tool", "tool_call_id": c["id"], "content": '{"ok": true}'} for c in message["tool_calls"]]
    conversation = ASK + [message] + results
    text = llm.apply_chat_template(conversation, tools=TOOLS)
    assert message["tool_calls"][0]["function"]["name"] in text.split("<|im_start|>assistant")[1]
    assert '{"ok": true}' in text
    reply = llm.create_chat_completion(conversation, tools=TOOLS, temperature=0, max_tokens=8)
    assert reply["choices"][0]["finish_reason"] in ("stop", "length", "tool_calls")


def records_of(pieces, finish="stop"):
    stats = GenerationStats(prompt_tokens=3)
    return [TokenRecord(i, piece, -0.5, finish if i == len(pieces) - 1 else None, stats, None)
            for i, piece in enumerate(pieces)]


def stream_chunks(llm, pieces, finish="stop"):
    shape = ResponseShape(llm.tokenizer, "m", chat=True, tool_names=NAMES)
    stream = ChoiceStream(shape, 0)
    chunks = stream.start()
    for record in records_of(pieces, finish):
        chunks += stream.feed(record)
    return chunks


def test_streamed_answers_become_tool_call_deltas_or_content(llm):
    from openai.types.chat import ChatCompletionChunk

    call = ['{"name": "get', '_time", "parameters": {"city": ', '"Paris"}}']
    chunks = stream_chunks(llm, call)
    for c in chunks:
        ChatCompletionChunk.model_validate(c)
    deltas = [tc for c in chunks for tc in c["choices"][0]["delta"].get("tool_calls", [])]
    assert [(d["index"], d["function"]["name"], json.loads(d["function"]["arguments"])) for d in deltas] == \
        [(0, "get_time", {"city": "Paris"})]
    assert chunks[-1]["choices"][0]["finish_reason"] == "tool_calls"

    words = stream_chunks(llm, ["Paris", " is", " sunny."])
    assert [c["choices"][0]["delta"].get("content") for c in words[1:]] == ["Paris", " is", " sunny."]
    assert len(stream_chunks(llm, ["Paris"], finish=None)) == 2  # plain text goes out at once

    looks_like_json = stream_chunks(llm, ['{"answer"', ': 42}'])  # held, then released as content
    assert "".join(c["choices"][0]["delta"].get("content") or "" for c in looks_like_json) == '{"answer": 42}'
    assert looks_like_json[-1]["choices"][0]["finish_reason"] == "stop"

    cut = stream_chunks(llm, ['{"name": "get_time", ', '"parameters": {"ci'], finish="length")
    assert cut[-1]["choices"][0]["finish_reason"] == "length"  # a cut call is content, never a call
