"""The server's --timeout on a live server over SmolLM2: a request's time counts from its arrival.
A body that stalls is a 408; a whole answer that runs late is a 504 (code timeout); a stream that
runs late ends with an error event and [DONE]. Every case frees its sequences."""

import json
import socket
import time

import pytest

pytest.importorskip("fastapi", reason="the server extra (fastapi) is not installed")
httpx = pytest.importorskip("httpx")
pytest.importorskip("uvicorn")

import test_server  # noqa: E402  (its live-server fixture body and sequence check)
from edgellama import Llama  # noqa: E402
from edgellama.server.app import ServerConfig  # noqa: E402

MODEL = "smollm2"
TIMEOUT = 1.0


@pytest.fixture(scope="module")
def llm(smollm2_path):
    return Llama(smollm2_path, n_ctx=1024, n_threads=2, n_parallel=2)


@pytest.fixture(scope="module")
def server(llm):
    yield from test_server.serving(llm, ServerConfig(MODEL, timeout=TIMEOUT))


def endless(llm, **extra):
    """A completion request that cannot stop early: every stop token is banned; 1000 tokens take
    SmolLM2 several seconds, well past TIMEOUT."""
    bias = {str(t): -100 for t in llm.tokenizer.stop_ids}
    return {"model": MODEL, "prompt": "Once upon a time", "max_tokens": 1000, "temperature": 0,
            "logit_bias": bias, **extra}


def test_a_late_answer_is_a_504_and_frees_its_sequences(llm, server):
    started = time.monotonic()
    r = httpx.post(server + "/v1/completions", json=endless(llm, n=2), timeout=30)
    assert r.status_code == 504, r.text
    assert r.json()["error"]["code"] == "timeout"
    assert time.monotonic() - started < TIMEOUT + 2
    assert test_server.all_free(llm)


def test_a_late_stream_ends_with_a_timeout_event(llm, server):
    with httpx.stream("POST", server + "/v1/completions", json=endless(llm, stream=True), timeout=30) as r:
        events = [line[len("data: "):] for line in r.iter_lines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]"
    assert json.loads(events[-2])["error"]["code"] == "timeout"
    assert any("choices" in json.loads(e) for e in events[:-2])  # it streamed before the deadline
    assert test_server.all_free(llm)


def test_a_body_that_stalls_is_a_408(server):
    host, port = server[len("http://"):].split(":")
    with socket.create_connection((host, int(port)), timeout=10) as s:
        s.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 100\r\n\r\n{\"model\": ")
        started = time.monotonic()
        reply = s.recv(4096).decode()
    assert reply.startswith("HTTP/1.1 408"), reply
    assert time.monotonic() - started < TIMEOUT + 2


def test_a_quick_answer_is_unaffected(llm, server):
    r = httpx.post(server + "/v1/completions", json={"model": MODEL, "prompt": "Hello", "max_tokens": 4,
                                                     "temperature": 0}, timeout=30)
    assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 4
