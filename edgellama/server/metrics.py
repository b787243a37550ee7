"""/metrics in Prometheus' text format (prometheus_client), one registry per app:

- edgellama_requests_total{endpoint, status}: requests answered, by route and HTTP status;
- edgellama_errors_total{kind}: error responses by OpenAI error type and code;
- edgellama_prompt_tokens_total, edgellama_generated_tokens_total;
- edgellama_time_to_first_token_seconds, edgellama_decode_tokens_per_second: per generation;
- edgellama_queue_depth: requests waiting for a sequence; edgellama_sequences_busy: sequences
  generating; edgellama_kv_cache_tokens / edgellama_kv_cache_capacity_tokens: positions held in the
  KV cache, and how many it can hold.
"""

from __future__ import annotations

from typing import Iterable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

__all__ = ["CONTENT_TYPE_LATEST", "Metrics"]

from edgellama.generate import GenerationStats


class Metrics:
    def __init__(self, llm):
        self.registry = registry = CollectorRegistry()
        self.requests = Counter("edgellama_requests", "Requests answered", ["endpoint", "status"], registry=registry)
        self.errors = Counter("edgellama_errors", "Error responses by type and code", ["kind"], registry=registry)
        self.prompt_tokens = Counter("edgellama_prompt_tokens", "Prompt tokens of generations", registry=registry)
        self.generated_tokens = Counter("edgellama_generated_tokens", "Tokens generated", registry=registry)
        self.ttft = Histogram("edgellama_time_to_first_token_seconds", "Queue and prefill time of a generation",
                              buckets=(0.01, 0.03, 0.1, 0.3, 1, 3, 10, 30), registry=registry)
        self.decode_rate = Histogram("edgellama_decode_tokens_per_second", "Decode rate of a generation",
                                     buckets=(1, 3, 10, 30, 100, 300, 1000, 3000), registry=registry)
        scheduler = llm._scheduler
        Gauge("edgellama_queue_depth", "Requests waiting for a sequence",
              registry=registry).set_function(scheduler.queue_depth)
        Gauge("edgellama_sequences_busy", "Sequences held by generations",
              registry=registry).set_function(lambda: sum(s.holder is not None for s in scheduler.slots))
        Gauge("edgellama_kv_cache_tokens", "Positions held in the KV cache",
              registry=registry).set_function(lambda: sum(len(s.tokens) for s in scheduler.slots))
        Gauge("edgellama_kv_cache_capacity_tokens", "Positions the KV cache can hold",
              registry=registry).set(llm.n_ctx * llm.n_parallel)

    def generations(self, stats: Iterable[GenerationStats]) -> None:
        """Counts the generations of one answered request (its n choices share one prompt)."""
        stats = [s for s in stats if s is not None]
        if stats:
            self.prompt_tokens.inc(stats[0].prompt_tokens)
        for s in stats:
            self.generated_tokens.inc(s.generated_tokens)
            self.ttft.observe(s.queue_seconds + s.prefill_seconds)
            if s.decode_seconds > 0:
                self.decode_rate.observe(s.decode_tokens_per_second)

    def render(self) -> bytes:
        return generate_latest(self.registry)
