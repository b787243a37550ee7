"""docs/deploy.md's Ray Serve example, on a local Ray: two replicas answer the same greedy text as
one Llama. Skipped where ray[serve] is not installed (it is not an edgellama dependency)."""

import pytest

ray = pytest.importorskip("ray", reason="ray[serve] is not installed: the Ray Serve example is not run")
serve = pytest.importorskip("ray.serve", reason="ray[serve] is not installed")
httpx = pytest.importorskip("httpx")

from edgellama import Llama  # noqa: E402
from edgellama.server.ray_serve import application  # noqa: E402


def test_ray_serve_replicas_answer_like_one_llama(smollm2_path):
    want = Llama(smollm2_path, n_ctx=256, n_threads=1).create_completion(
        "The capital of France is", max_tokens=8, temperature=0)["choices"][0]["text"]
    ray.init(num_cpus=2, include_dashboard=False)
    try:
        serve.run(application(str(smollm2_path), replicas=2, n_parallel=2, n_threads=1, n_ctx=256,
                              model_id="smollm2"), route_prefix="/")
        for _ in range(4):
            r = httpx.post("http://127.0.0.1:8000/v1/completions", timeout=120,
                           json={"model": "smollm2", "prompt": "The capital of France is", "max_tokens": 8,
                                 "temperature": 0})
            assert r.status_code == 200 and r.json()["choices"][0]["text"] == want
    finally:
        serve.shutdown()
        ray.shutdown()
