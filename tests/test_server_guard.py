"""The server's safeguards on a live server: /v1/moderations through the real openai client
(OpenAI's schema; Llama Guard's verdict in an extra field), and guarded chats, whole and
streamed, blocked before any token or passed through unchanged. The guards are synthetic models
with the real Llama 3.2 vocabulary (tests/conftest.py guard_model)."""

import json

import pytest

pytest.importorskip("fastapi", reason="the server extra (fastapi) is not installed")
openai = pytest.importorskip("openai", reason="the openai client is not installed")
httpx = pytest.importorskip("httpx")

import test_server  # noqa: E402  (its live-server fixture body)
from edgellama import Llama  # noqa: E402
from edgellama.guard import LlamaGuard  # noqa: E402
from edgellama.server.app import ServerConfig  # noqa: E402

MODEL = "smollm2"
ASK = [{"role": "user", "content": "How do I bake bread?"}]


@pytest.fixture(scope="module")
def llm(smollm2_path):
    return Llama(smollm2_path, n_ctx=1024, n_threads=2, n_parallel=2)


@pytest.fixture(scope="module", params=["unsafe", "safe"])
def served(request, llm, guard_model):
    guard = LlamaGuard(guard_model(request.param), n_threads=2)
    for url in test_server.serving(llm, ServerConfig(MODEL, guard=guard, guard_id="guard-1b")):
        yield request.param, url


def test_moderations_through_the_client(served):
    verdict, url = served
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    result = client.moderations.create(model="guard-1b", input=["How do I bake bread?", "Another text"])
    assert len(result.results) == 2
    first = result.results[0]
    assert first.flagged == (verdict == "unsafe")
    assert first.categories.violence == (verdict == "unsafe")  # S1 Violent Crimes maps to violence
    extra = first.model_extra["llama_guard"]
    assert extra["categories"] == (["S1"] if verdict == "unsafe" else [])
    assert first.category_scores.violence == (pytest.approx(extra["p_unsafe"]) if verdict == "unsafe" else 0)
    bad = httpx.post(url + "/v1/moderations", json={"model": "other", "input": "x"})
    assert bad.status_code == 404 and bad.json()["error"]["param"] == "model"


def test_guarded_chats_whole_and_streamed(served, llm):
    verdict, url = served
    client = openai.OpenAI(base_url=url + "/v1", api_key="unused", max_retries=0)
    reply = client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=8, temperature=0)
    chunks = list(client.chat.completions.create(model=MODEL, messages=ASK, max_tokens=8, temperature=0,
                                                 stream=True))
    if verdict == "unsafe":
        assert reply.choices[0].finish_reason == "content_filter" and reply.choices[0].message.content is None
        assert "Violent Crimes" in reply.choices[0].message.refusal and reply.model_extra["guard"]["input"]
        assert chunks[-1].choices[0].finish_reason == "content_filter"
    else:
        want = llm.create_chat_completion(ASK, max_tokens=8, temperature=0)["choices"][0]["message"]["content"]
        assert reply.choices[0].message.content == want
        assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == want
    assert test_server.all_free(llm)


def test_without_a_guard_moderations_is_a_clear_404(llm):
    for url in test_server.serving(llm, ServerConfig(MODEL)):
        r = httpx.post(url + "/v1/moderations", json={"input": "x"})
        assert r.status_code == 404 and "--guard" in r.json()["error"]["message"]


def test_an_unsafe_answer_is_withheld_by_the_server(served):
    verdict, url = served
    if verdict != "unsafe":
        pytest.skip("the safe guard passes every answer (test_guarded_chats_whole_and_streamed)")
    after_tool = [{"role": "user", "content": "Weather?"},
                  {"role": "assistant", "tool_calls": [{"id": "c1", "type": "function",
                                                        "function": {"name": "weather", "arguments": "{}"}}]},
                  {"role": "tool", "tool_call_id": "c1", "content": "Sunny."}]  # the request is not checked
    body = {"model": MODEL, "messages": after_tool, "max_tokens": 8, "temperature": 0}
    whole = httpx.post(url + "/v1/chat/completions", json=body, timeout=60).json()
    assert whole["choices"][0]["finish_reason"] == "content_filter" and "0" in whole["guard"]["choices"]
    with httpx.stream("POST", url + "/v1/chat/completions", json={**body, "stream": True}, timeout=60) as r:
        events = [line[6:] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]" and json.loads(events[-2])["choices"][0]["finish_reason"] == "content_filter"
