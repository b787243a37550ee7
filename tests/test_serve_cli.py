"""`edgellama serve` as a process: it prints its URL and a ready line, answers, and stops cleanly on
SIGINT and SIGTERM (exit status 0, nothing hangs)."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

pytest.importorskip("uvicorn", reason="the server extra is not installed")
httpx = pytest.importorskip("httpx")

from test_server import free_port  # noqa: E402


@pytest.mark.parametrize("stop_signal", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_serve_starts_answers_and_stops_on_a_signal(smollm2_path, tmp_path, stop_signal):
    port = free_port()
    cmd = [sys.executable, "-m", "edgellama.cli", "serve", "-m", str(smollm2_path), "--port", str(port),
           "-t", "1", "-c", "256", "--parallel", "2"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        lines = []
        deadline = time.monotonic() + 60
        while not any(line.startswith("ready:") for line in lines):
            assert time.monotonic() < deadline and proc.poll() is None, "".join(lines)
            lines.append(proc.stdout.readline())
        assert f"http://127.0.0.1:{port}/v1" in lines[-1]
        model = httpx.get(f"http://127.0.0.1:{port}/v1/models").json()["data"][0]["id"]
        assert model == smollm2_path.name[:-5]  # a path: the file's name
        r = httpx.post(f"http://127.0.0.1:{port}/v1/completions",
                       json={"model": model, "prompt": "Hello", "max_tokens": 3, "temperature": 0}, timeout=60)
        assert r.status_code == 200 and r.json()["usage"]["completion_tokens"] == 3
        # A stream in flight when the server stops ends with an error event, then [DONE].
        with httpx.stream("POST", f"http://127.0.0.1:{port}/v1/completions", timeout=60,
                          json={"model": model, "prompt": "Once upon a time", "max_tokens": 2000,
                                "stream": True, "logit_bias": {"2": -100, "0": -100}}) as stream:
            events = (line[6:] for line in stream.iter_lines() if line.startswith("data: "))
            assert json.loads(next(events))["choices"]
            proc.send_signal(stop_signal)
            rest = list(events)
        assert rest[-1] == "[DONE]" and json.loads(rest[-2])["error"]["code"] == "server_shutdown"
        assert proc.wait(timeout=30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


@pytest.mark.parametrize("flag, value", [("--port", "70000"), ("--timeout", "0"), ("--timeout", "nan")])
def test_serve_refuses_a_bad_flag(tmp_path, flag, value):
    out = subprocess.run([sys.executable, "-m", "edgellama.cli", "serve", flag, value], capture_output=True,
                         text=True, cwd=tmp_path)  # outside the source tree: the installed package
    assert out.returncode == 2 and flag in out.stderr
