"""The server's app as a Ray Serve deployment, for users who already run Ray (docs/deploy.md).

    from ray import serve
    from edgellama.server.ray_serve import application
    serve.run(application("/models/SmolLM2-135M-Instruct.Q4_1.gguf", replicas=2, n_parallel=4, n_threads=4))

Each replica loads the model and serves the same OpenAI-compatible routes as `edgellama serve`;
Ray's proxy spreads requests across them. Nothing is shared between replicas: a conversation is
its messages, and a replica's prefix cache only speeds up the follow-ups that reach it.
"""

from __future__ import annotations

from typing import Optional


def application(model_path: str, replicas: int = 1, n_parallel: int = 4, n_threads: Optional[int] = None,
                n_ctx: Optional[int] = None, model_id: Optional[str] = None, api_key: Optional[str] = None,
                cpus_per_replica: Optional[float] = None):
    """A bound Ray Serve application (ray.serve.Application) of `replicas` replicas; each reserves
    cpus_per_replica CPUs (default n_threads, else 1)."""
    from ray import serve

    def build_app():  # evaluated on each replica (Ray's ingress builder)
        from edgellama.model import Llama
        from edgellama.server.app import ServerConfig, create_app

        llm = Llama(model_path, n_ctx=n_ctx, n_threads=n_threads, n_parallel=n_parallel)
        return create_app(llm, ServerConfig(model_id or llm.model_name, api_key=api_key))

    options = {"num_cpus": cpus_per_replica if cpus_per_replica is not None else (n_threads or 1)}
    deployment = serve.deployment(name="edgellama", num_replicas=replicas,
                                  ray_actor_options=options)(serve.ingress(build_app)())
    return deployment.bind()
