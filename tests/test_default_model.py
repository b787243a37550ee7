"""Fetching the default model: checksum verified, nothing half-written left behind."""

import pytest

from edgellama import models
from edgellama.errors import ModelFetchError


def test_cached_default_model_has_the_published_checksum(smollm2_path):
    assert smollm2_path.name == models.DEFAULT_MODEL_NAME
    assert models.sha256_of(smollm2_path) == models.DEFAULT_MODEL_SHA256


def test_checksum_mismatch_raises_and_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGELLAMA_HOME", str(tmp_path))
    monkeypatch.setattr(models, "DEFAULT_MODEL_SHA256", "0" * 64)
    with pytest.raises(ModelFetchError, match="checksum mismatch"):
        models.ensure_default_model()
    assert list(tmp_path.iterdir()) == []
