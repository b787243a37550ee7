"""The server under load, on SmolLM2: 64 concurrent streaming clients and 8 whole-response clients
(some disconnecting mid-stream), a queue overflowing into 503s, and a client that never reads its
stream. Every completed greedy answer must equal the same request answered alone."""

import asyncio
import json
import socket
import time

import pytest

pytest.importorskip("fastapi", reason="the server extra (fastapi) is not installed")
httpx = pytest.importorskip("httpx")
uvicorn = pytest.importorskip("uvicorn")

import test_server  # noqa: E402  (its live-server fixture body and sequence check)
from edgellama import Llama  # noqa: E402
from edgellama.server.app import ServerConfig  # noqa: E402

MODEL = "smollm2"
PROMPTS = ["The capital of France is", "Once upon a time", "def fibonacci(n):", "Water boils at",
           "The three primary colours are", "In 1492, Columbus", "My favourite food is", "The best way to learn is"]
N_TOKENS = 12


@pytest.fixture(scope="module")
def llm(smollm2_path):
    return Llama(smollm2_path, n_ctx=256, n_threads=2, n_parallel=8)


@pytest.fixture(scope="module")
def reference(llm):
    return {p: llm.create_completion(p, max_tokens=N_TOKENS, temperature=0)["choices"][0] for p in PROMPTS}


@pytest.fixture
def served(llm, request):
    yield from test_server.serving(llm, ServerConfig(MODEL, **getattr(request, "param", {})))


def all_free(llm):
    return test_server.all_free(llm, timeout=10.0)


async def stream_one(client, url, prompt, disconnect_after=None):
    """(text, finish_reason, usage) of a streamed completion; None when it disconnected on purpose."""
    body = {"model": MODEL, "prompt": prompt, "max_tokens": N_TOKENS, "temperature": 0, "stream": True,
            "stream_options": {"include_usage": True}}
    text, finish, usage, events = "", None, None, 0
    async with client.stream("POST", url + "/v1/completions", json=body) as r:
        assert r.status_code == 200
        async for line in r.aiter_lines():
            if not line.startswith("data: "):
                continue
            data = line[len("data: "):]
            if data == "[DONE]":
                break
            chunk = json.loads(data)
            assert "error" not in chunk, chunk
            events += 1
            if disconnect_after is not None and events >= disconnect_after:
                return None  # leaving the block closes the connection mid-stream
            if chunk["choices"]:
                text += chunk["choices"][0]["text"]
                finish = chunk["choices"][0]["finish_reason"] or finish
            else:
                usage = chunk["usage"]
    return text, finish, usage


@pytest.mark.parametrize("served", [dict(max_queue=256)], indirect=True)
def test_64_streams_and_8_whole_answers_at_once_each_equal_their_answer_alone(llm, reference, served):
    async def main():
        limits = httpx.Limits(max_connections=128, max_keepalive_connections=0)
        async with httpx.AsyncClient(timeout=300, limits=limits) as client:
            streams = [stream_one(client, served, PROMPTS[i % 8], disconnect_after=2 if i % 16 == 5 else None)
                       for i in range(64)]
            whole = [client.post(served + "/v1/completions", json={"model": MODEL, "prompt": p,
                                                                   "max_tokens": N_TOKENS, "temperature": 0})
                     for p in PROMPTS]
            start = time.perf_counter()
            results = await asyncio.gather(*streams, *whole)
            return results, time.perf_counter() - start

    results, elapsed = asyncio.run(main())
    streamed, answered = results[:64], results[64:]
    tokens = 0
    for i, result in enumerate(streamed):
        if i % 16 == 5:
            assert result is None
            continue
        text, finish, usage = result
        want = reference[PROMPTS[i % 8]]
        assert (text, finish) == (want["text"], want["finish_reason"]), i
        assert usage["completion_tokens"] <= N_TOKENS and usage["total_tokens"] == \
            usage["prompt_tokens"] + usage["completion_tokens"]
        tokens += usage["completion_tokens"]
    for p, response in zip(PROMPTS, answered):
        assert response.status_code == 200
        assert response.json()["choices"][0]["text"] == reference[p]["text"]
    assert all_free(llm)
    print(f"load: 60 streams + 8 whole answers completed, 4 disconnected; {tokens} streamed tokens "
          f"in {elapsed:.1f} s")


@pytest.mark.parametrize("served", [dict(max_queue=2)], indirect=True)
def test_requests_over_the_queue_limit_get_503_and_the_rest_complete(llm, reference, served):
    async def main():
        async with httpx.AsyncClient(timeout=300) as client:
            body = lambda p: {"model": MODEL, "prompt": p, "max_tokens": N_TOKENS, "temperature": 0}  # noqa: E731
            return await asyncio.gather(*[client.post(served + "/v1/completions", json=body(PROMPTS[i % 8]))
                                          for i in range(40)])

    responses = asyncio.run(main())
    statuses = [r.status_code for r in responses]
    assert set(statuses) <= {200, 503} and statuses.count(503) > 0 and statuses.count(200) >= 8
    for i, r in enumerate(responses):
        if r.status_code == 503:
            assert r.headers["retry-after"] == "1" and r.json()["error"]["code"] == "queue_full"
        else:
            assert r.json()["choices"][0]["text"] == reference[PROMPTS[i % 8]]["text"]
    assert all_free(llm)


@pytest.mark.parametrize("served", [dict(max_queue=64)], indirect=True)
def test_a_client_that_never_reads_its_stream_blocks_nobody(llm, reference, served):
    host, port = served.rsplit("//", 1)[1].split(":")
    body = json.dumps({"model": MODEL, "prompt": "Once upon a time", "max_tokens": 200, "stream": True}).encode()
    silent = socket.create_connection((host, int(port)))
    silent.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    silent.sendall(b"POST /v1/completions HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                   b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
    try:
        time.sleep(0.5)
        start = time.perf_counter()
        for p in PROMPTS[:4]:
            r = httpx.post(served + "/v1/completions", json={"model": MODEL, "prompt": p, "max_tokens": N_TOKENS,
                                                              "temperature": 0}, timeout=60)
            assert r.json()["choices"][0]["text"] == reference[p]["text"]
        assert time.perf_counter() - start < 30
    finally:
        silent.close()
    assert all_free(llm)
