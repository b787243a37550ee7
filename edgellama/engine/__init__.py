"""Concurrent generation: many sequences share one model's forward steps.

- :mod:`.request`: one generation (its prompt, sampler, stop strings, statistics and records).
- :mod:`.scheduler`: continuous batching over the model's sequence slots.
- :mod:`.backends`: the batched-step interface of the CPU core, and the single-sequence adapter
  the CUDA engine runs behind.
"""

from edgellama.engine.request import GenerationRequest
from edgellama.engine.scheduler import Scheduler

__all__ = ["GenerationRequest", "Scheduler"]
