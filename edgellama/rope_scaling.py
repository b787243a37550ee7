"""RoPE context extension read from GGUF metadata: linear position interpolation and YaRN.

Both change only two things, which is how the core receives them:
- each rotary frequency is divided by a per-pair divisor, combined with the file's own
  `rope_freqs.weight` (Llama 3.1's factors) into the one divisor vector the core reads;
- YaRN also scales the rotated queries and keys by a magnitude m (`rope_magnitude`: RoPE's cos and
  sin times m, as llama.cpp does, so the fp16 keys in the cache round the same values).

The keys and their meaning follow llama.cpp's reading of `{arch}.rope.scaling.*`:
- `type` "none" | "linear" | "yarn" (absent: none);
- `factor` (frequencies of the interpolated pairs divided by it; absent or 0: 1);
- `original_context_length` (YaRN's pre-training window; absent: `context_length`);
- `attn_factor` (multiplies the magnitude; absent: 1);
- `yarn_ext_factor` (absent: 1 for YaRN), `yarn_beta_fast` (32) and `yarn_beta_slow` (1).

YaRN (Peng et al. 2023, "YaRN: Efficient Context Window Extension"): pair i keeps its frequency
where it turns more than beta_fast times over the original window, is interpolated (divided by
factor) where it turns fewer than beta_slow times, and blends linearly between; the blend's ends
are rounded outwards to whole pairs. The magnitude is attn_factor · (1 + 0.1 ln factor) for a
factor above 1.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Optional

import numpy as np

from .errors import UnsupportedModelError
from .gguf_metadata import MetadataReader

KINDS = ("none", "linear", "yarn")


@dataclass(frozen=True)
class RopeScaling:
    kind: str = "none"
    factor: float = 1.0
    original_context: int = 0
    attn_factor: float = 1.0
    ext_factor: float = 0.0
    beta_fast: float = 32.0
    beta_slow: float = 1.0

    @classmethod
    def read(cls, reader: MetadataReader, arch: str, context_length: int) -> "RopeScaling":
        """The scaling a file's metadata states, each value checked (InvalidMetadataError naming the
        key; UnsupportedModelError for another scaling type)."""
        key = f"{arch}.rope.scaling."
        kind = reader.text(key + "type", "none")
        if kind not in KINDS:
            raise UnsupportedModelError(reader.path, f"rope scaling type '{kind}' is not supported "
                                                     f"(supported: {', '.join(KINDS)})")
        factor = reader.real(key + "factor", 0.0, low=0.0, high=1e6)
        attn_factor = reader.real(key + "attn_factor", 1.0, low=0.0, high=1e3, low_open=True)
        if kind == "none":
            return cls(attn_factor=attn_factor)
        yarn = kind == "yarn"
        return cls(
            kind=kind, factor=factor or 1.0, attn_factor=attn_factor,
            original_context=reader.integer(key + "original_context_length", context_length, low=1,
                                            high=2**32 - 1),
            ext_factor=reader.real(key + "yarn_ext_factor", 1.0 if yarn else 0.0, low=0.0, high=1.0) if yarn else 0.0,
            beta_fast=reader.real(key + "yarn_beta_fast", 32.0, low=0.0, high=1e6, low_open=True),
            beta_slow=reader.real(key + "yarn_beta_slow", 1.0, low=0.0, high=1e6, low_open=True),
        )

    @property
    def active(self) -> bool:
        """Whether this changes anything against plain RoPE."""
        return self.kind != "none" and self.factor != 1.0 or self.magnitude != 1.0

    @property
    def magnitude(self) -> float:
        """The factor on the rotated queries and keys (1 unless YaRN or attn_factor says otherwise)."""
        m = self.attn_factor
        if self.kind == "yarn" and self.ext_factor != 0 and self.factor > 1:
            m *= 1.0 + 0.1 * math.log(self.factor)
        return m

    def frequency_divisors(self, rope_dim: int, rope_base: float) -> np.ndarray:
        """float64 [rope_dim/2]: what each pair's frequency base^(-2i/rope_dim) is divided by."""
        n_pairs = rope_dim // 2
        if self.kind == "none" or self.factor == 1.0:
            return np.ones(n_pairs)
        interpolated = 1.0 / self.factor  # frequency multiplier of a fully interpolated pair
        if self.kind == "linear" or self.ext_factor == 0:
            return np.full(n_pairs, self.factor)
        low, high = self.correction_range(rope_dim, rope_base)
        ramp = (np.arange(n_pairs) - low) / max(0.001, high - low)
        extrapolated_share = (1.0 - np.clip(ramp, 0.0, 1.0)) * self.ext_factor
        return 1.0 / (interpolated * (1.0 - extrapolated_share) + extrapolated_share)

    def correction_range(self, rope_dim: int, rope_base: float) -> tuple:
        """YaRN's (low, high) pair indices: below low pairs keep their frequency, above high they
        are fully interpolated."""
        low = max(0, math.floor(self.pair_turning(rope_dim, rope_base, self.beta_fast)))
        high = min(rope_dim - 1, math.ceil(self.pair_turning(rope_dim, rope_base, self.beta_slow)))
        return low, high

    def pair_turning(self, rope_dim: int, rope_base: float, n_rotations: float) -> float:
        """The (fractional) pair index that turns n_rotations times over the original window."""
        return rope_dim * math.log(self.original_context / (n_rotations * 2 * math.pi)) / (2 * math.log(rope_base))


def combined_divisors(scaling: RopeScaling, rope_dim: int, rope_base: float,
                      rope_freqs: Optional[np.ndarray]) -> Optional[np.ndarray]:
    """float32 [rope_dim/2] divisors for the core (the file's rope_freqs times the scaling's), or
    None when neither changes a frequency."""
    if rope_freqs is None and (scaling.kind == "none" or scaling.factor == 1.0):
        return None
    divisors = scaling.frequency_divisors(rope_dim, rope_base)
    if rope_freqs is not None:
        divisors = divisors * np.asarray(rope_freqs, np.float64).reshape(-1)[:rope_dim // 2]
    return np.ascontiguousarray(divisors, np.float32)
