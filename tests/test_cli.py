"""The `edgellama` command line, run as a user would (a subprocess)."""

import json
import os
import subprocess
import sys
import tempfile

import pytest

from edgellama.cuda import cuda_status


def run_cli(*args):
    # Run outside the source tree so the installed package (with its compiled core) is imported,
    # keeping any PYTHONPATH of a developer build valid from there.
    env = dict(os.environ)
    if env.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in env["PYTHONPATH"].split(os.pathsep))
    with tempfile.TemporaryDirectory() as cwd:
        return subprocess.run([sys.executable, "-m", "edgellama.cli", *args], capture_output=True, text=True,
                              timeout=300, env=env, cwd=cwd)


def test_run_prints_a_greedy_continuation(smollm2_path):
    result = run_cli("run", "-m", str(smollm2_path), "-p", "The capital of France is", "-n", "8",
                     "--temp", "0", "-t", "2", "--stats")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("The capital of France is")
    assert "Paris" in result.stdout
    assert "tok/s" in result.stderr


def test_bad_flag_is_reported_with_usage():
    result = run_cli("run", "-p", "hi", "-n", "-3")
    assert result.returncode == 2
    assert "-n/--max-tokens" in result.stderr and "must be >= 0" in result.stderr


def test_missing_model_file_is_a_clear_error(tmp_path):
    result = run_cli("run", "-m", str(tmp_path / "nope.gguf"), "-p", "hi")
    assert result.returncode == 1
    assert "model file not found" in result.stderr
    assert "Traceback" not in result.stderr


def test_a_file_that_is_not_gguf_is_a_clear_error(tmp_path):
    bogus = tmp_path / "model.gguf"
    bogus.write_bytes(b"PK\x03\x04 definitely a zip, not a model" * 10)
    result = run_cli("run", "-m", str(bogus), "-p", "hi")
    assert result.returncode == 1
    assert "not a GGUF file" in result.stderr and str(bogus) in result.stderr


def test_no_command_prints_help():
    result = run_cli()
    assert result.returncode == 2
    assert "run" in result.stdout


# ---------------------------------------------------------------- bench and --device

def _tiny_model(tmp_path):
    from tiny_models import write_tiny_llama

    return str(write_tiny_llama(tmp_path / "tiny.gguf", weight_type="Q4_0", n_embd=128, n_ff=256))


def test_bench_reports_speed_and_roofline_as_json(tmp_path):
    result = run_cli("bench", "-m", _tiny_model(tmp_path), "-p", "16", "-n", "8", "-r", "2", "-t", "1", "--json")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 1
    r = rows[0]
    assert r["device"] == "cpu" and r["threads"] == 1 and r["n_prompt"] == 16 and r["n_gen"] == 8
    assert r["prefill_tok_s"] > 0 and r["decode_tok_s"] > 0 and r["bandwidth_gb_s"] > 0
    assert r["prefill_min_max"][0] <= r["prefill_tok_s"] <= r["prefill_min_max"][1]
    assert 0 < r["roofline_fraction"] == pytest.approx(r["decode_tok_s"] * r["bytes_per_token"] / (r["bandwidth_gb_s"] * 1e9))


def test_unknown_device_is_a_usage_error(tmp_path):
    for command in (["run", "-p", "hi"], ["chat"], ["bench"]):
        result = run_cli(*command, "--device", "tpu")
        assert result.returncode == 2, command
        assert "--device" in result.stderr and "invalid choice" in result.stderr


@pytest.mark.skipif(cuda_status()[0], reason="a CUDA GPU is visible: the no-GPU error cannot be provoked here")
def test_device_cuda_without_a_gpu_is_a_clear_error(tmp_path):
    model = _tiny_model(tmp_path)
    for command in (["run", "-m", model, "-p", "hi", "-n", "2"], ["bench", "-m", model, "-p", "8", "-n", "2"]):
        result = run_cli(*command, "--device", "cuda")
        assert result.returncode == 1, (command, result.stderr)
        assert "cuda" in result.stderr.lower() and "Traceback" not in result.stderr


@pytest.mark.skipif(not cuda_status()[0], reason="needs a CUDA GPU")
def test_device_cuda_runs_and_benches_on_the_gpu(tmp_path):
    model = _tiny_model(tmp_path)
    result = run_cli("run", "-m", model, "-p", "hi", "-n", "4", "--temp", "0", "--stats", "--device", "cuda")
    assert result.returncode == 0, result.stderr
    assert "GPU (cuda)" in result.stderr
    result = run_cli("bench", "-m", model, "-p", "16", "-n", "8", "-r", "1", "--json", "--device", "cuda")
    assert result.returncode == 0, result.stderr
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert len(rows) == 1 and rows[0]["device"] != "cpu" and rows[0]["decode_tok_s"] > 0


def test_run_with_a_json_schema_a_grammar_or_a_regex(smollm2_path, tmp_path):
    pytest.importorskip("llguidance", reason="structured output needs llguidance")
    import re

    import jsonschema

    schema = {"type": "object", "properties": {"colour": {"enum": ["red", "green"]},
                                               "n": {"type": "integer", "minimum": 1, "maximum": 9}},
              "required": ["colour", "n"], "additionalProperties": False}
    (tmp_path / "schema.json").write_text(json.dumps(schema))
    (tmp_path / "yes_no.gbnf").write_text('root ::= "yes" | "no"\n')
    common = ("run", "-m", str(smollm2_path), "-p", "Answer: ", "-n", "40", "--temp", "0", "-t", "2")
    out = run_cli(*common, "--json-schema", str(tmp_path / "schema.json"))
    assert out.returncode == 0, out.stderr
    jsonschema.validate(json.loads(out.stdout[len("Answer: "):]), schema)
    out = run_cli(*common, "--grammar", str(tmp_path / "yes_no.gbnf"))
    assert out.returncode == 0 and out.stdout.strip() in ("Answer: yes", "Answer: no"), out.stderr
    out = run_cli(*common, "--regex", "[0-9]{3}")
    assert out.returncode == 0 and re.fullmatch(r"Answer: [0-9]{3}\n", out.stdout), out.stderr


@pytest.mark.parametrize("flag, value, message", [
    ("--regex", "(ab", "unclosed group"),
    ("--json-schema", "missing.json", "cannot read"),
    ("--json-schema", "bad.json", "not JSON"),
])
def test_run_refuses_a_bad_constraint_before_echoing_anything(smollm2_path, tmp_path, flag, value, message):
    pytest.importorskip("llguidance", reason="structured output needs llguidance")
    (tmp_path / "bad.json").write_text("{bad")
    out = run_cli("run", "-m", str(smollm2_path), "-p", "Answer: ", "-n", "4", flag,
                  str(tmp_path / value) if value.endswith(".json") else value)
    assert out.returncode == 1 and message in out.stderr and flag.strip("-").split("-")[0] in out.stderr
    assert out.stdout == "" and "Traceback" not in out.stderr


def test_cache_type_flags_reach_the_model_and_bench_reports_the_cache(smollm2_path):
    result = run_cli("run", "-m", str(smollm2_path), "-p", "The capital of France is", "-n", "6", "--temp", "0",
                     "-t", "2", "-ctk", "q8_0", "--cache-type-v", "q4_0")
    assert result.returncode == 0, result.stderr
    from edgellama import Llama

    llm = Llama(smollm2_path, n_ctx=64, n_threads=2, cache_type_k="q8_0", cache_type_v="q4_0")
    expected = llm.create_completion("The capital of France is", max_tokens=6, temperature=0)["choices"][0]["text"]
    assert result.stdout.rstrip("\n") == "The capital of France is" + expected
    bench = run_cli("bench", "-m", str(smollm2_path), "-p", "16", "-n", "4", "-r", "1", "-t", "1", "--json",
                    "-ctk", "q8_0", "-ctv", "q8_0")
    assert bench.returncode == 0, bench.stderr
    report = json.loads(bench.stdout.strip().splitlines()[-1])
    assert report["cache_types"] == ["q8_0", "q8_0"]
    # 30 layers, 3 KV heads, 32 positions (20 rounded up to whole tiles of 16), 64 dims at 34/32 bytes, K and V
    assert report["kv_cache_mib"] * 2**20 == 2 * 30 * 3 * 32 * 64 * 34 // 32
    bad = run_cli("run", "-m", str(smollm2_path), "-p", "hi", "-ctv", "q5_0")
    assert bad.returncode == 2 and "invalid choice: 'q5_0'" in bad.stderr


def test_activations_flag_reaches_the_model_and_bench_reports_it(smollm2_path):
    prompt = "The three primary colours are"
    result = run_cli("run", "-m", str(smollm2_path), "-p", prompt, "-n", "12", "--temp", "0", "-t", "2",
                     "--activations", "int8")
    assert result.returncode == 0, result.stderr
    from edgellama import Llama

    llm = Llama(smollm2_path, n_ctx=64, n_threads=2, activations="int8")
    expected = llm.create_completion(prompt, max_tokens=12, temperature=0)["choices"][0]["text"]
    assert result.stdout.rstrip("\n") == prompt + expected
    for flag, reported in ((["--activations", "int8"], "int8"), ([], "precise")):
        bench = run_cli("bench", "-m", str(smollm2_path), "-p", "8", "-n", "2", "-r", "1", "-t", "1", "--json", *flag)
        assert bench.returncode == 0, bench.stderr
        assert json.loads(bench.stdout.strip().splitlines()[-1])["activations"] == reported
    bad = run_cli("run", "-m", str(smollm2_path), "-p", "hi", "--activations", "fp8")
    assert bad.returncode == 2 and "invalid choice: 'fp8'" in bad.stderr
