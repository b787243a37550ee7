"""The `edgellama` command line, run as a user would (a subprocess)."""

import os
import subprocess
import sys
import tempfile


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
