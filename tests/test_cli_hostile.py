"""The command line under hostile input: every flag's bad values, undecodable text in arguments and
on stdin, errors in the middle of an answer, /set and /load of wrong settings and broken chat files,
and quantize output paths that cannot take the file. The rule: a usage error (status 2) or one line
`edgellama: error: ...` naming the problem (status 1), never a traceback; a chat session survives
every failing command with its messages and settings unchanged."""

import copy
import io
import json
import os
import subprocess
import sys
import tempfile
from types import SimpleNamespace

import pytest

from edgellama.cli import main
from edgellama.cli.chat import DEFAULT_SETTINGS, MAX_CHAT_FILE_BYTES, ChatSession
from edgellama.errors import EdgellamaError, QuantizeError
from edgellama.tokenizer import TokenizerError
from tiny_models import write_tiny_llama

HUGE = "4611686018427387904"  # 2**62


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> str:
    return str(write_tiny_llama(tmp_path_factory.mktemp("model") / "tiny.gguf"))


def run_main(capsys, *argv):
    """main() in this process: (exit status, stdout, stderr). Any exception other than argparse's
    SystemExit escapes and fails the test, as a traceback would."""
    try:
        status = main(list(argv))
    except SystemExit as exc:
        status = exc.code
    out, err = capsys.readouterr()
    return status, out, err


def assert_one_line_error(err: str, *fragments: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("edgellama: error: "), err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, err)


def run_cli(*args, stdin=b""):
    """The command in a subprocess, as a user runs it (args may hold undecodable bytes)."""
    env = dict(os.environ)
    if env.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in env["PYTHONPATH"].split(os.pathsep))
    with tempfile.TemporaryDirectory() as cwd:
        result = subprocess.run([sys.executable, "-m", "edgellama.cli", *args], input=stdin, capture_output=True,
                                timeout=120, env=env, cwd=cwd)
    out, err = (result.stdout.decode("utf-8", "replace"), result.stderr.decode("utf-8", "replace"))
    assert "Traceback" not in out + err, err
    return result.returncode, out, err


# --- flags --------------------------------------------------------------------------------------

USAGE_ERRORS = [  # (command, its flags) -> argparse's usage error naming the flag
    ("run", ["-n", "-1"], "-n/--max-tokens"), ("run", ["-n", "abc"], "-n/--max-tokens"),
    ("run", ["-n", HUGE], "-n/--max-tokens"), ("run", ["-t", "0"], "-t/--threads"),
    ("run", ["-t", "abc"], "-t/--threads"), ("run", ["-t", HUGE], "-t/--threads"),
    ("run", ["-c", "0"], "-c/--ctx"), ("run", ["-c", "-5"], "-c/--ctx"), ("run", ["-c", HUGE], "-c/--ctx"),
    ("run", ["--temp", "nan"], "--temp"), ("run", ["--temp", "inf"], "--temp"), ("run", ["--temp", "-inf"], "--temp"),
    ("run", ["--temp", "1e999"], "--temp"), ("run", ["--temp", "hot"], "--temp"),
    ("run", ["--top-p", "nan"], "--top-p"), ("run", ["--top-k", "1.5"], "--top-k"),
    ("run", ["--top-k", "many"], "--top-k"), ("run", ["--seed", "abc"], "--seed"), ("run", ["--seed", "1.5"], "--seed"),
    ("run", ["--device", "tpu"], "--device"),
    ("chat", ["-n", "0"], "-n/--max-tokens"), ("chat", ["-n", HUGE], "-n/--max-tokens"),
    ("chat", ["--min-p", "nan"], "--min-p"), ("chat", ["--repeat-penalty", "inf"], "--repeat-penalty"),
    ("chat", ["--top-p", "inf"], "--top-p"), ("chat", ["--seed", "x"], "--seed"), ("chat", ["-t", "0"], "-t/--threads"),
    ("chat", ["-c", HUGE], "-c/--ctx"),
    ("bench", ["-p", "0"], "-p/--prompt-tokens"), ("bench", ["-p", HUGE], "-p/--prompt-tokens"),
    ("bench", ["-n", "0"], "-n/--gen-tokens"), ("bench", ["-r", "0"], "-r/--reps"), ("bench", ["-r", "1001"], "-r/--reps"),
    ("bench", ["-r", HUGE], "-r/--reps"), ("bench", ["-t", "0"], "-t/--threads"), ("bench", ["-t", "1,abc"], "-t/--threads"),
    ("bench", ["-t", ","], "-t/--threads"), ("bench", ["-t", "-1"], "-t/--threads"),
    ("quantize", ["-t", "0"], "-t/--threads"), ("quantize", ["-t", HUGE], "-t/--threads"),
    ("quantize", ["-t", "1025"], "-t/--threads"), ("quantize", ["--seed", "-5"], "--seed"),
    ("quantize", ["--seed", str(2**64)], "--seed"), ("quantize", ["--type", "Q9_9"], "--type"),
]


def _base_args(command, tiny, tmp_path):
    return {"run": ["-m", tiny, "-p", "hi"], "chat": ["-m", tiny], "bench": ["-m", tiny],
            "quantize": [tiny, str(tmp_path / "out.gguf"), "--type", "Q8_0"]}[command]


@pytest.mark.parametrize("command, flags, flag", USAGE_ERRORS)
def test_bad_flag_values_are_usage_errors(capsys, tiny, tmp_path, command, flags, flag):
    status, out, err = run_main(capsys, command, *_base_args(command, tiny, tmp_path), *flags)
    assert status == 2 and out == ""
    assert f"error: argument {flag}" in err.strip().splitlines()[-1], err


SETTING_ERRORS = [  # values of the right type that the API's own rules refuse -> one line naming it
    ("run", ["--temp", "-1"], "temperature"), ("run", ["--top-p", "5"], "top_p"), ("run", ["--top-p", "0"], "top_p"),
    ("run", ["--top-k", "-5"], "top_k"), ("run", ["--seed", "-5"], "seed"), ("run", ["--seed", str(2**64)], "seed"),
    ("chat", ["--min-p", "2"], "min_p"), ("chat", ["--repeat-penalty", "0"], "repeat_penalty"),
    ("chat", ["--seed", "-1"], "seed"), ("chat", ["--top-p", "5"], "top_p"), ("chat", ["--temp", "-1"], "temperature"),
    ("run", ["-t", "100000"], "n_threads"),
]


@pytest.mark.parametrize("command, flags, name", SETTING_ERRORS)
def test_setting_flags_out_of_range_are_one_line_errors(capsys, tiny, tmp_path, command, flags, name):
    status, out, err = run_main(capsys, command, *_base_args(command, tiny, tmp_path), *flags)
    assert status == 1
    assert out == ""  # reported before anything is printed (run used to echo the prompt first)
    assert_one_line_error(err, name)


def test_other_commands_refuse_bad_arguments_in_one_line(capsys, tiny, tmp_path):
    status, _, err = run_main(capsys, "pull")
    assert status == 2 and "name" in err
    status, _, err = run_main(capsys, "list", "extra")
    assert status == 2 and "unrecognized arguments: extra" in err
    status, _, err = run_main(capsys, "pull", "")
    assert status == 1
    assert_one_line_error(err, "unknown model name")
    status, _, err = run_main(capsys, "bench", "-m", str(tmp_path / "missing.gguf"), "-t", "1")
    assert status == 1  # used to be a traceback from the measurement process, and another from bench
    assert_one_line_error(err, "missing.gguf")


def test_bench_failure_in_its_measurement_process_is_one_line(tiny):
    status, out, err = run_cli("bench", "-m", tiny, "-p", "4", "-n", "2", "-r", "1", "-t", "100000")
    assert status == 1 and out == ""
    assert_one_line_error(err, "n_threads", "100000")


# --- undecodable text ---------------------------------------------------------------------------

def test_prompt_that_is_not_utf8_is_refused(capsys, tiny):
    status, out, err = run_main(capsys, "run", "-m", tiny, "-p", "a\udcff")  # how Python passes b"a\xff"
    assert status == 1 and out == ""
    assert_one_line_error(err, "-p/--prompt", "not valid UTF-8", "0xff")
    status, out, err = run_main(capsys, "run", "-m", tiny, "-p", "a\ud800")
    assert status == 1 and out == ""
    assert_one_line_error(err, "-p/--prompt", "U+D800")
    status, _, err = run_main(capsys, "chat", "-m", tiny, "-s", "\udcfe")
    assert status == 1
    assert_one_line_error(err, "-s/--system", "0xfe")


def test_prompt_bytes_from_a_real_command_line(tiny):
    status, out, err = run_cli("run", "-m", tiny, "-n", "2", "-p", b"caf\xe9")  # Latin-1, not UTF-8
    assert status == 1 and out == ""
    assert_one_line_error(err, "-p/--prompt", "not valid UTF-8", "0xe9")


def test_prompt_from_stdin(tiny):
    status, out, err = run_cli("run", "-m", tiny, "-n", "2", "--temp", "0", "-p", "-", stdin="Hello\n".encode())
    assert status == 0, err
    assert out.startswith("Hello\n")
    status, out, err = run_cli("run", "-m", tiny, "-n", "2", "-p", "-", stdin=b"ab\xff\xfec")
    assert status == 1 and out == ""
    assert_one_line_error(err, "standard input", "not valid UTF-8", "0xff", "offset 2")


def test_chat_reports_a_binary_input_line_and_goes_on(tiny, tmp_path):
    saved = tmp_path / "c.json"
    script = b"\xff\xfe\x00binary\n/system caf\xe9\nHello\n/save " + str(saved).encode() + b"\n"
    status, out, err = run_cli("chat", "-m", tiny, "-n", "2", "--temp", "0", stdin=script)
    assert status == 0, err
    errors = [line for line in err.splitlines() if line.startswith("error:")]
    assert len(errors) == 2 and all("not valid UTF-8" in e and "not sent" in e for e in errors), err
    assert "0xff" in errors[0] and "0xe9" in errors[1]
    messages = json.loads(saved.read_text())["messages"]
    assert [m["role"] for m in messages] == ["user", "assistant"] and messages[0]["content"] == "Hello"


# --- errors and Ctrl-C while an answer streams --------------------------------------------------

def _generate_then(failure):
    def generate(self, prompt, **kwargs):
        yield " one"
        yield " two"
        raise failure
    return generate


def test_error_mid_answer_is_one_line_after_the_text(capsys, monkeypatch, tiny):
    monkeypatch.setattr("edgellama.model.Llama.generate",
                        _generate_then(TokenizerError("cannot encode\nthe text: a lone surrogate")))
    status, out, err = run_main(capsys, "run", "-m", tiny, "-p", "hi")
    assert status == 1
    assert out == "hi one two\n"  # the message starts on a line of its own
    assert_one_line_error(err, "cannot encode the text: a lone surrogate")


def test_ctrl_c_mid_answer_is_clean(capsys, monkeypatch, tiny):
    monkeypatch.setattr("edgellama.model.Llama.generate", _generate_then(KeyboardInterrupt()))
    status, out, err = run_main(capsys, "run", "-m", tiny, "-p", "hi")
    assert status == 130 and out == "hi one two\n" and err == "edgellama: interrupted\n"


def test_closed_stdout_ends_quietly(capsys, monkeypatch, tiny):
    monkeypatch.setattr("edgellama.model.Llama.generate", _generate_then(BrokenPipeError(32, "Broken pipe")))
    status, _, err = run_main(capsys, "run", "-m", tiny, "-p", "hi")
    assert status == 141 and err == ""


def test_chat_answer_that_fails_midway_keeps_the_session(monkeypatch, tiny, tmp_path, capsys):
    import edgellama.api

    real_run_records = edgellama.api.run_records
    calls = []

    def run_records(llm, ids, *args, **kwargs):
        calls.append(ids)
        if len(calls) == 1:
            def failing():
                yield SimpleNamespace(text="half an ans")
                raise EdgellamaError("the device failed")
            return failing()
        return real_run_records(llm, ids, *args, **kwargs)

    monkeypatch.setattr(edgellama.api, "run_records", run_records)
    saved = tmp_path / "c.json"
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(f"First\nSecond\n/save {saved}\n".encode())))
    status, out, err = run_main(capsys, "chat", "-m", tiny, "-n", "2", "--temp", "0")
    assert status == 0, err
    assert out.startswith("half an ans\n")
    assert "error: the device failed" in err
    messages = json.loads(saved.read_text())["messages"]
    assert [m["content"] for m in messages if m["role"] == "user"] == ["Second"]  # no half turn left


# --- /set and /load -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def llm(tiny):
    from edgellama.model import Llama

    return Llama(tiny, n_ctx=256, n_threads=1)


@pytest.fixture
def session(llm):
    notes = []
    s = ChatSession(llm, system="Be brief.", settings={"temperature": 0.3, "seed": 7}, out=io.StringIO(),
                    notice=notes.append)
    s.messages += [{"role": "user", "content": "Hi"}, {"role": "assistant", "content": "Hello!"}]
    s.notes = notes
    return s


def _state(session):
    return copy.deepcopy(session.messages), dict(session.settings)


def assert_refused(session, line, *fragments):
    before = _state(session)
    assert session.command(line) is True  # the session goes on
    note = session.notes[-1]
    assert note.startswith("error: ") and "\n" not in note, note
    assert "failed unexpectedly" not in note, note
    for fragment in fragments:
        assert fragment in note, (fragment, note)
    assert _state(session) == before


@pytest.mark.parametrize("name, value, named", [
    ("seed", "-5", "seed"), ("seed", str(2**64), "seed"), ("seed", "1.5", "seed"), ("temp", "nan", "temperature"),
    ("temp", "inf", "temperature"), ("temp", "-1", "temperature"), ("temp", "hot", "temperature"),
    ("top_k", "1.5", "top_k"), ("top_k", "-5", "top_k"), ("top_p", "5", "top_p"), ("top_p", "0", "top_p"),
    ("max_tokens", "0", "max_tokens"), ("max_tokens", "-1", "max_tokens"), ("min_p", "2", "min_p"),
    ("repeat", "0", "repeat_penalty"), ("last_n", "-2", "penalty_last_n"), ("typical", "nan", "typical_p"),
    ("freq", "1e999", "frequency_penalty"), ("bogus", "1", "bogus"),
])
def test_set_refuses_bad_values_and_changes_nothing(session, name, value, named):
    assert_refused(session, f"/set {name} {value}", named)


def test_set_accepts_the_edges_of_each_range(session):
    for line, key, value in [("/set seed 18446744073709551615", "seed", 2**64 - 1), ("/set seed none", "seed", None),
                             ("/set temp 0", "temperature", 0.0), ("/set top_p 1", "top_p", 1.0),
                             ("/set max_tokens none", "max_tokens", None), ("/set last_n -1", "penalty_last_n", -1)]:
        assert session.command(line) and session.settings[key] == value, session.notes[-1]
    assert_refused(session, "/set temp", "usage")


def _chat_file(path, settings=None, messages=None, **top):
    data = {"format": "edgellama-chat/1", "model": "m", "settings": settings if settings is not None else {},
            "messages": messages if messages is not None else [{"role": "user", "content": "x"}]}
    data.update(top)
    path.write_text(json.dumps(data))  # NaN and Infinity are written as JSON's common extension
    return path


@pytest.mark.parametrize("key, value", [
    ("temperature", "abc"), ("max_tokens", "5"), ("top_k", 1.5), ("top_k", None), ("temperature", None),
    ("top_p", [0.5]), ("top_k", True), ("temperature", float("nan")), ("temperature", float("inf")),
    ("min_p", {"a": 1}), ("seed", -5), ("seed", 2**64), ("seed", 1.0), ("seed", "7"), ("max_tokens", 0),
    ("max_tokens", False), ("repeat_penalty", 0), ("penalty_last_n", -2), ("frequency_penalty", 10**400),
    ("bogus", 1),
])
def test_load_refuses_a_wrong_setting_and_changes_nothing(session, tmp_path, key, value):
    path = _chat_file(tmp_path / "c.json", settings={"temperature": 0.9, key: value})
    assert_refused(session, f"/load {path}", key, "nothing was loaded")


@pytest.mark.parametrize("change, named", [
    ({"messages": [{"role": "user", "content": None}]}, "message 1"),
    ({"messages": [{"role": "user", "content": 5}]}, "message 1"),
    ({"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]}, "message 1"),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "tool", "content": "y"}]}, "message 2"),
    ({"messages": [{"role": None, "content": "y"}]}, "role"),
    ({"messages": [{"role": ["user"], "content": "y"}]}, "role"),
    ({"messages": [{"role": "user", "content": "x"}, {"role": "system", "content": "y"}]}, "system"),
    ({"messages": ["hello"]}, "message 1"),
    ({"messages": {"role": "user"}}, "no conversation"),
    ({"messages": [{"role": "user", "content": "a\ud800b"}]}, "U+D800"),
    ({"messages": [{"role": "user", "content": "a\udcffb"}]}, "message 1"),
    ({"settings": [1, 2]}, "settings"),
    ({"format": "other/9"}, "format"),
])
def test_load_refuses_hostile_messages_and_changes_nothing(session, tmp_path, change, named):
    path = _chat_file(tmp_path / "c.json", **change)
    assert_refused(session, f"/load {path}", named)


def test_load_refuses_files_that_are_no_chat(session, tmp_path):
    path = tmp_path / "f.json"
    for content, named in [(b"{not json", "not JSON"), (b'"\xff\xfe"', "not UTF-8"),
                           (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"), (b"null", "no conversation")]:
        path.write_bytes(content)
        assert_refused(session, f"/load {path}", named)
    with open(path, "wb") as f:
        f.truncate(MAX_CHAT_FILE_BYTES + 1)  # sparse: instant to write
    assert_refused(session, f"/load {path}", "MiB")
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert_refused(session, f"/load {fifo}", "not a regular file")  # must not block on open
    assert_refused(session, f"/load {tmp_path}", "not a regular file")
    assert_refused(session, f"/load {tmp_path / 'missing.json'}", "No such file")


def test_save_refuses_a_folder_or_device_and_load_restores_a_save(session, tmp_path):
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    assert_refused(session, f"/save {fifo}", "not a regular file")
    assert fifo.exists() and not fifo.is_file()  # not replaced by the chat file
    assert_refused(session, f"/save {tmp_path}", "not a regular file")
    path = tmp_path / "ok.json"
    before = _state(session)
    assert session.command(f"/save {path}") and session.command("/reset") and session.command("/set temp 1.5")
    assert _state(session) != before
    assert session.command(f"/load {path}") and session.notes[-1].startswith("[loaded 3 messages")
    assert _state(session) == before


def test_unexpected_failure_in_a_command_keeps_the_session(session, monkeypatch):
    monkeypatch.setattr(session, "stats_text", lambda: 1 / 0)
    before = _state(session)
    assert session.command("/stats") is True
    assert session.notes[-1].startswith("error: /stats failed unexpectedly: ZeroDivisionError")
    assert _state(session) == before


def test_session_refuses_bad_settings_when_made(llm):
    for settings in ({"seed": -5}, {"top_k": "5"}, {"max_tokens": 0}, {"temperature": float("nan")}):
        with pytest.raises(ValueError, match=next(iter(settings))):
            ChatSession(llm, settings=settings)
    assert ChatSession(llm).settings == DEFAULT_SETTINGS


# --- quantize output paths ----------------------------------------------------------------------

@pytest.fixture
def source_that_must_not_be_read(monkeypatch):
    """The check must come before any work: reading the input fails the test."""
    def never(*args, **kwargs):
        raise AssertionError("the input was read before the output path was checked")
    monkeypatch.setattr("edgellama.quantize.open_source", never)


def test_quantize_refuses_output_paths_before_any_work(tmp_path, tiny, source_that_must_not_be_read, monkeypatch):
    from edgellama.quantize import quantize

    folder = tmp_path / "out"
    folder.mkdir()
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    cases = [(folder, "is a folder"), (tmp_path / "missing" / "o.gguf", "does not exist"),
             (tmp_path / "f.txt" / "o.gguf", "is a file"), (fifo, "not a regular file")]
    (tmp_path / "f.txt").write_text("x")
    for out, message in cases:
        with pytest.raises(QuantizeError, match=message):
            quantize(tiny, out, "Q8_0")
    assert list(folder.iterdir()) == [] and not (tmp_path / "missing").exists()
    monkeypatch.setattr("edgellama.quantize.os.access", lambda path, mode: False)  # as root, access always works
    with pytest.raises(QuantizeError, match="cannot write into"):
        quantize(tiny, tmp_path / "o.gguf", "Q8_0")
    with pytest.raises(QuantizeError, match="refusing to overwrite"):
        quantize(tiny, tiny, "Q8_0")


def test_quantize_into_an_existing_folder_is_one_line(tmp_path, tiny):
    folder = tmp_path / "out"
    folder.mkdir()
    status, _, err = run_cli("quantize", tiny, str(folder), "--type", "Q8_0", "-q")
    assert status == 1
    assert_one_line_error(err, "is a folder", str(folder / "model.gguf"))
    assert list(folder.iterdir()) == [] and list(tmp_path.iterdir()) == [folder]  # no partial file anywhere
    status, _, err = run_cli("quantize", "--synthetic", "smollm2-135m", str(folder), "--type", "Q8_0")
    assert status == 1
    assert_one_line_error(err, "is a folder")
