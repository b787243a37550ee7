"""`edgellama serve`'s app against the real `openai` client (sync, async, streaming), on a live
uvicorn server on loopback (a free port, torn down after the module), over SmolLM2.

References: the same request through the Python API (greedy, so the text is exact); response
bodies are checked against the openai package's own pydantic types."""

import asyncio
import json
import re
import socket
import threading
import time

import numpy as np
import pytest

fastapi = pytest.importorskip("fastapi", reason="the server extra (fastapi) is not installed")
openai = pytest.importorskip("openai", reason="the openai client is not installed")
httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")

from openai.types import Completion  # noqa: E402
from openai.types.chat import ChatCompletion, ChatCompletionChunk  # noqa: E402

from edgellama import Llama  # noqa: E402
from edgellama.api import chat_prompt_ids, system_prefix_length  # noqa: E402
from edgellama.server.app import ServerConfig, create_app  # noqa: E402

MODEL = "smollm2"
KEY = "test-key-123"
CHAT = [{"role": "user", "content": "Name a colour."}]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def llm(smollm2_path):
    return Llama(smollm2_path, n_ctx=512, n_threads=2, n_parallel=4)


def serving(llm, config):
    """A live uvicorn server of create_app(llm, config) on a free loopback port, in a daemon thread:
    a generator that yields its URL and stops the server when resumed (a fixture's body)."""
    port = free_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(llm, config), host="127.0.0.1", port=port,
                                        log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        assert time.monotonic() < deadline, "the server did not start"
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def server(llm):
    yield from serving(llm, ServerConfig(MODEL, api_key=KEY, max_queue=4, max_body_bytes=64 << 10))


@pytest.fixture(scope="module")
def client(server):
    return openai.OpenAI(base_url=server + "/v1", api_key=KEY, max_retries=0)


def all_free(llm, timeout=5.0):
    """Whether every sequence is free within `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with llm._scheduler.locked():
            if all(slot.holder is None for slot in llm._scheduler.slots) and not llm._scheduler._waiting:
                return True
        time.sleep(0.02)
    return False


def test_health_and_models(server, client):
    assert httpx.get(server + "/health").json()["status"] == "ok"
    assert [m.id for m in client.models.list().data] == [MODEL]


def test_chat_completion_equals_the_python_api(llm, client, server):
    want = llm.create_chat_completion(CHAT, max_tokens=12, temperature=0)
    got = client.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=12, temperature=0)
    assert got.choices[0].message.content == want["choices"][0]["message"]["content"]
    assert got.usage.prompt_tokens == want["usage"]["prompt_tokens"]
    raw = httpx.post(server + "/v1/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                     json={"model": MODEL, "messages": CHAT, "max_completion_tokens": 12, "temperature": 0}).json()
    ChatCompletion.model_validate(raw)
    assert raw["choices"][0]["message"]["content"] == want["choices"][0]["message"]["content"]


def test_streamed_chat_with_usage_equals_the_whole_answer(llm, client):
    want = llm.create_chat_completion(CHAT, max_tokens=12, temperature=0)["choices"][0]["message"]["content"]
    chunks = list(client.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=12, temperature=0,
                                                 stream=True, stream_options={"include_usage": True}))
    for c in chunks:
        ChatCompletionChunk.model_validate(c.model_dump())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == want
    assert chunks[0].choices[0].delta.role == "assistant"
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 12
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "length"


def test_text_completion_with_n_choices_and_logprobs(llm, client):
    want = llm.create_completion("The capital of France is", max_tokens=6, temperature=0, logprobs=2)
    got = client.completions.create(model=MODEL, prompt="The capital of France is", max_tokens=6, temperature=0,
                                    n=2, logprobs=2)
    Completion.model_validate(got.model_dump())
    assert [c.index for c in got.choices] == [0, 1]
    for choice in got.choices:  # greedy: both choices are the same text
        assert choice.text == want["choices"][0]["text"]
        assert choice.logprobs.tokens == want["choices"][0]["logprobs"]["tokens"]
        np.testing.assert_allclose(choice.logprobs.token_logprobs, want["choices"][0]["logprobs"]["token_logprobs"],
                                   atol=1e-6)
    assert got.usage.completion_tokens == 12


def test_chat_logprobs_through_the_client(client):
    got = client.chat.completions.create(model=MODEL, messages=CHAT, max_tokens=4, temperature=0, logprobs=True,
                                         top_logprobs=3)
    content = got.choices[0].logprobs.content
    assert len(content) == 4 and all(len(e.top_logprobs) == 3 for e in content)
    assert all(e.top_logprobs[0].logprob >= e.logprob - 1e-6 for e in content)


def test_async_clients_at_once_each_get_their_answer_alone(llm, server):
    prompts = ["The capital of France is", "Once upon a time", "def fibonacci(n):", "Water boils at",
               "The three primary colours are", "In 1492, Columbus"]
    want = [llm.create_completion(p, max_tokens=8, temperature=0)["choices"][0]["text"] for p in prompts]

    async def main():
        aclient = openai.AsyncOpenAI(base_url=server + "/v1", api_key=KEY, max_retries=0)
        results = await asyncio.gather(*[aclient.completions.create(model=MODEL, prompt=p, max_tokens=8,
                                                                    temperature=0) for p in prompts])
        await aclient.close()
        return [r.choices[0].text for r in results]

    assert asyncio.run(main()) == want
    assert all_free(llm)


@pytest.mark.parametrize("body, status, param", [
    ({"bogus": 1}, 400, "bogus"),
    ({"temperature": -1}, 400, "temperature"),
    ({"temperature": True}, 400, "temperature"),
    ({"seed": 2**70}, 400, "seed"),
    ({"top_p": float("inf")}, 400, "top_p"),  # sent as Infinity, which Python's JSON reader accepts
    ({"max_tokens": "5"}, 400, "max_tokens"),
    ({"top_logprobs": 2}, 400, "top_logprobs"),
    ({"stop": ["a"] * 100}, 400, "stop"),
    ({"logit_bias": {"999999999": 1}}, 400, "logit_bias"),
    ({"messages": [{"role": "user", "content": 5}]}, 400, "messages"),
    ({"messages": []}, 400, "messages"),
    ({"model": "other"}, 404, "model"),
    ({"n": 0}, 400, "n"),
])
def test_bad_requests_get_an_openai_error_naming_the_parameter(server, body, status, param):
    request = {"model": MODEL, "messages": CHAT, "max_tokens": 2, **body}
    r = httpx.post(server + "/v1/chat/completions", content=json.dumps(request),
                   headers={"Authorization": f"Bearer {KEY}", "content-type": "application/json"})
    assert r.status_code == status, r.text
    error = r.json()["error"]
    assert error["param"] == param and error["message"] and error["type"]


def test_a_prompt_over_the_window_is_context_length_exceeded(client):
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model=MODEL, prompt="word " * 600, max_tokens=2)
    assert info.value.code == "context_length_exceeded"


def test_api_key_is_required_and_compared(server):
    r = httpx.get(server + "/v1/models")
    assert r.status_code == 401 and r.json()["error"]["code"] == "invalid_api_key"
    assert httpx.get(server + "/v1/models", headers={"Authorization": "Bearer wrong"}).status_code == 401
    assert httpx.get(server + "/health").status_code == 200  # health needs no key


def test_malformed_json_and_oversized_bodies(server):
    headers = {"Authorization": f"Bearer {KEY}", "content-type": "application/json"}
    r = httpx.post(server + "/v1/chat/completions", headers=headers, content=b'{"model": ')
    assert r.status_code == 400 and "JSON" in r.json()["error"]["message"]
    big = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "x" * (80 << 10)}]}).encode()
    assert httpx.post(server + "/v1/chat/completions", headers=headers, content=big).status_code == 413

    def chunked():
        for _ in range(10):
            yield b" " * (10 << 10)

    r = httpx.post(server + "/v1/chat/completions", headers=headers, content=chunked())
    assert r.status_code == 413
    assert httpx.get(server + "/nowhere").status_code == 404


def test_a_client_that_disconnects_mid_stream_frees_its_sequence(llm, server):
    request = {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 400, "temperature": 0, "stream": True}
    with httpx.stream("POST", server + "/v1/completions", json=request,
                      headers={"Authorization": f"Bearer {KEY}"}) as r:
        lines = r.iter_lines()
        assert next(line for line in lines if line.startswith("data:"))
        with llm._scheduler.locked():
            assert any(slot.holder is not None for slot in llm._scheduler.slots)
    assert all_free(llm)


def test_a_full_queue_is_503_with_retry_after(llm, server):
    """4 sequences and a queue of 4: with 8 streams held open (their clients read slowly), more get 503."""
    held = []
    try:
        for _ in range(8):
            stream = httpx.stream("POST", server + "/v1/completions", headers={"Authorization": f"Bearer {KEY}"},
                                  json={"model": MODEL, "prompt": "Once upon a time", "max_tokens": 300,
                                        "stream": True})
            held.append(stream)
            response = stream.__enter__()
            assert response.status_code == 200
        r = httpx.post(server + "/v1/completions", headers={"Authorization": f"Bearer {KEY}"},
                       json={"model": MODEL, "prompt": "Hi", "max_tokens": 1})
        assert r.status_code == 503 and r.headers["retry-after"] == "1"
        assert r.json()["error"]["code"] == "queue_full"
    finally:
        for stream in held:
            stream.__exit__(None, None, None)
    assert all_free(llm, timeout=10)


def test_embeddings_through_the_client_equal_the_python_api(llm, client, server):
    texts = ["The cat sat on the mat.", "Quarterly revenue rose."]
    want = llm.embed(texts)
    got = client.embeddings.create(model=MODEL, input=texts)  # the client asks for base64 by default
    assert [d.index for d in got.data] == [0, 1]
    np.testing.assert_allclose([d.embedding for d in got.data], want, rtol=0, atol=1e-7)
    raw = httpx.post(server + "/v1/embeddings", headers={"Authorization": f"Bearer {KEY}"},
                     json={"model": MODEL, "input": [llm.tokenize(texts[0])], "encoding_format": "float"}).json()
    np.testing.assert_allclose(raw["data"][0]["embedding"], want[0], atol=1e-7)
    bad = httpx.post(server + "/v1/embeddings", headers={"Authorization": f"Bearer {KEY}"},
                     json={"model": MODEL, "input": "x", "dimensions": 8})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "dimensions"


def test_metrics_count_requests_tokens_and_errors(server, client):
    def value(text, name):
        lines = [l for l in text.splitlines() if l.startswith(name + " ") or l.startswith(name + "{")]
        return sum(float(l.rsplit(" ", 1)[1]) for l in lines)

    before = httpx.get(server + "/metrics").text
    client.completions.create(model=MODEL, prompt="Hello", max_tokens=3, temperature=0)
    httpx.post(server + "/v1/completions", headers={"Authorization": f"Bearer {KEY}"},
               json={"model": MODEL, "prompt": "Hello", "bogus": 1})
    after = httpx.get(server + "/metrics").text
    assert value(after, "edgellama_generated_tokens_total") - value(before, "edgellama_generated_tokens_total") == 3
    assert value(after, "edgellama_prompt_tokens_total") > value(before, "edgellama_prompt_tokens_total")
    assert value(after, 'edgellama_errors_total{kind="invalid_request_error"}') == \
        value(before, 'edgellama_errors_total{kind="invalid_request_error"}') + 1
    assert 'edgellama_requests_total{endpoint="/v1/completions",status="200"}' in after
    assert value(after, "edgellama_kv_cache_capacity_tokens") == 512 * 4
    assert "edgellama_queue_depth 0.0" in after and "edgellama_time_to_first_token_seconds_count" in after


def test_structured_output_through_the_client(llm, client, server):
    """response_format as the openai client sends it (parse() builds a strict json_schema from a
    pydantic model), streamed and whole; grammar and regex as llama.cpp's server takes them."""
    pytest.importorskip("llguidance", reason="structured output needs llguidance")
    from pydantic import BaseModel, Field

    class City(BaseModel):
        name: str = Field(max_length=20)
        population: int = Field(ge=0, le=50_000_000)

    ask = [{"role": "user", "content": "Give a city as JSON."}]
    parsed = client.chat.completions.parse(model=MODEL, messages=ask, response_format=City, max_tokens=60,
                                           temperature=0)
    assert parsed.choices[0].finish_reason == "stop" and isinstance(parsed.choices[0].message.parsed, City)
    strict = {**City.model_json_schema(), "additionalProperties": False}  # as parse() sends it
    fmt = {"type": "json_schema", "json_schema": {"name": "city", "schema": strict}}
    want = llm.create_chat_completion(ask, max_tokens=60, temperature=0, response_format=fmt)
    assert parsed.choices[0].message.content == want["choices"][0]["message"]["content"]
    chunks = client.chat.completions.create(model=MODEL, messages=ask, response_format=fmt, max_tokens=60,
                                            temperature=0, stream=True)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == want["choices"][0]["message"]["content"]
    headers = {"Authorization": f"Bearer {KEY}"}
    for extra, pattern in (({"regex": "[0-9]{3}"}, "[0-9]{3}"), ({"grammar": 'root ::= "yes" | "no"'}, "yes|no")):
        r = httpx.post(server + "/v1/completions", headers=headers,
                       json={"model": MODEL, "prompt": "Answer:", "max_tokens": 10, **extra}).json()
        assert re.fullmatch(pattern, r["choices"][0]["text"]) and r["choices"][0]["finish_reason"] == "stop"
    bad = httpx.post(server + "/v1/chat/completions", headers=headers,
                     json={"model": MODEL, "messages": ask, "response_format": {
                         "type": "json_schema", "json_schema": {"name": "x", "schema": {"type": "foo"}}}})
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "response_format"
    assert all_free(llm)


def test_tool_calls_through_the_client(llm, client):
    """A forced call comes back as OpenAI tool_calls, whole and as streamed deltas (validated by
    the client's own types), and a follow-up with the tool's result renders."""
    pytest.importorskip("llguidance", reason="forced tool calls need llguidance")
    tools = [{"type": "function", "function": {
        "name": "get_weather", "description": "The weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string", "maxLength": 20}},
                       "required": ["city"], "additionalProperties": False}}}]
    ask = [{"role": "user", "content": "What is the weather in Paris?"}]
    got = client.chat.completions.create(model=MODEL, messages=ask, tools=tools, tool_choice="required",
                                         temperature=0, max_tokens=40)
    ChatCompletion.model_validate(got.model_dump())
    call = got.choices[0].message.tool_calls[0]
    assert got.choices[0].finish_reason == "tool_calls" and call.function.name == "get_weather"
    assert isinstance(json.loads(call.function.arguments)["city"], str)
    chunks = list(client.chat.completions.create(model=MODEL, messages=ask, tools=tools, tool_choice="required",
                                                 temperature=0, max_tokens=40, stream=True))
    for c in chunks:
        ChatCompletionChunk.model_validate(c.model_dump())
    deltas = [d for c in chunks for d in (c.choices[0].delta.tool_calls or [])]
    assert [d.function.name for d in deltas] == ["get_weather"]
    assert "".join(d.function.arguments for d in deltas) == call.function.arguments
    assert chunks[-1].choices[0].finish_reason == "tool_calls"
    follow_up = ask + [got.choices[0].message.model_dump(exclude_none=True),
                       {"role": "tool", "tool_call_id": call.id, "content": '{"temperature": 21}'}]
    answer = client.chat.completions.create(model=MODEL, messages=follow_up, tools=tools, max_tokens=8,
                                            temperature=0)
    assert answer.choices[0].message.content


def test_context_shift_lets_an_answer_go_past_the_window(smollm2_path):
    """With ServerConfig(context_shift=True) an answer longer than the window goes on (the
    system prompt kept); without it, the same request ends with "length" at the window."""
    small = Llama(smollm2_path, n_ctx=96, n_threads=2)
    messages = [{"role": "system", "content": "You are a storyteller."},
                {"role": "user", "content": "Tell a very long story."}]
    body = {"model": MODEL, "messages": messages, "max_tokens": 150, "temperature": 0,
            "logit_bias": {str(small.tokenizer.eos_id): -100}}
    for shift, want in ((False, None), (True, 150)):
        srv = serving(small, ServerConfig(MODEL, context_shift=shift))
        url = next(srv)
        try:
            ids = chat_prompt_ids(small, messages)
            reply = httpx.post(url + "/v1/chat/completions", json=body, timeout=120).json()
            assert reply["choices"][0]["finish_reason"] == "length"
            got = reply["usage"]["completion_tokens"]
            assert got == (want if want is not None else 96 - len(ids) + 1)
            if shift:
                n_system = system_prefix_length(small, messages, ids)
                assert small.cached_tokens[:n_system] == ids[:n_system]
        finally:
            next(srv, None)
