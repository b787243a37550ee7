"""`edgellama chat` driven as a person would, in a pseudo-terminal, and scripted through a pipe;
`edgellama pull` / `list` and model names."""

import json
import os
import subprocess
import sys
import tempfile

import pexpect
import pytest

from edgellama.errors import ModelFetchError
from edgellama.models import DEFAULT_MODEL_NAME, pull_model, resolve_model

PROMPT = ">>> "


def default_sigint():
    """In the child: Ctrl-C as a terminal delivers it, also when this test run was started in the
    background of a script, whose jobs inherit SIGINT ignored (Python then keeps it ignored)."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def cli_env(**extra):
    env = dict(os.environ)
    if env.get("PYTHONPATH"):
        env["PYTHONPATH"] = os.pathsep.join(os.path.abspath(p) for p in env["PYTHONPATH"].split(os.pathsep))
    env.update(extra)
    return env


def run_cli(*args, stdin="", **env):
    with tempfile.TemporaryDirectory() as cwd:
        return subprocess.run([sys.executable, "-m", "edgellama.cli", *args], input=stdin, capture_output=True,
                              text=True, timeout=300, env=cli_env(**env), cwd=cwd)


@pytest.fixture
def home_with_model(tmp_path, smollm2_path):
    """An EDGELLAMA_HOME whose cache holds the real model (a link, not a copy)."""
    home = tmp_path / "home"
    home.mkdir()
    (home / DEFAULT_MODEL_NAME).symlink_to(smollm2_path)
    return home


def test_chat_in_a_terminal(smollm2_path, tmp_path):
    child = pexpect.spawn(sys.executable, ["-m", "edgellama.cli", "chat", "-m", str(smollm2_path), "-t", "2",
                                           "-c", "1024", "-n", "24", "--seed", "3"],
                          env=cli_env(), cwd=str(tmp_path), encoding="utf-8", timeout=120, dimensions=(40, 200),
                          preexec_fn=default_sigint)
    try:
        child.expect("/help for commands")
        child.expect_exact(PROMPT)

        # A question gets a streamed answer followed by its speed.
        child.sendline("What is the capital of France?")
        child.expect_exact("What is the capital of France?\r\n")  # the terminal's echo
        child.expect(r"\[(\d+) tokens, ([\d.]+) tok/s")
        answer = child.before.strip()
        assert answer and int(child.match.group(1)) > 0 and float(child.match.group(2)) > 0
        child.expect_exact(PROMPT)

        child.sendline("/set temp 0")
        child.expect_exact("[temperature = 0.0]")
        child.expect_exact(PROMPT)
        child.sendline("/set top_k many")
        child.expect("top_k needs an integer")
        child.expect_exact(PROMPT)

        # Multi-line input: a trailing backslash continues the message.
        child.sendline("Name a colour \\")
        child.expect_exact("... ")
        child.sendline("in one word.")
        child.expect(r"tok/s, prompt (\d+) \((\d+) cached\)")
        prompt_tokens, cached = int(child.match.group(1)), int(child.match.group(2))
        assert cached > 0.5 * prompt_tokens  # the first turn's keys/values were reused
        child.expect_exact(PROMPT)

        # Ctrl-C in the middle of a long answer stops it and keeps the session.
        child.sendline("/set max_tokens 2000")
        child.expect_exact(PROMPT)
        child.sendline("Write a very long story about a dragon and a knight.")
        child.expect_exact("knight.\r\n")
        child.expect(r"\w+\W+\w+")  # the answer has started to stream
        child.sendintr()
        child.expect(r"\[interrupted; (\d+) tokens")
        assert int(child.match.group(1)) < 2000
        child.expect_exact(PROMPT)

        saved = tmp_path / "conversation.json"
        child.sendline(f"/save {saved}")
        child.expect_exact("[saved 6 messages")
        child.expect_exact(PROMPT)
        data = json.loads(saved.read_text())
        assert [m["role"] for m in data["messages"]] == ["user", "assistant"] * 3
        assert data["messages"][0]["content"] == "What is the capital of France?"
        assert data["messages"][2]["content"] == "Name a colour \nin one word."
        assert data["settings"]["temperature"] == 0.0

        child.sendline("/reset")
        child.expect_exact("[conversation cleared]")
        child.expect_exact(PROMPT)
        child.sendline("/stats")
        child.expect("0 messages")
        child.expect_exact(PROMPT)
        child.sendline(f"/load {saved}")
        child.expect_exact("[loaded 6 messages")
        child.expect_exact(PROMPT)
        child.sendline("/stats")
        child.expect("6 messages")
        child.expect_exact(PROMPT)

        child.sendeof()
        child.expect(pexpect.EOF)
    finally:
        child.close()
    assert child.exitstatus == 0


def test_chat_scripted_through_a_pipe(smollm2_path, tmp_path):
    saved = tmp_path / "c.json"
    script = ("What is the capital of France?\n/set temp 0\n/system Answer in one word.\n"
              f"And of Italy?\n/save {saved}\n")
    result = run_cli("chat", "-m", str(smollm2_path), "-t", "2", "-c", "512", "-n", "12", stdin=script)
    assert result.returncode == 0, result.stderr
    assert result.stderr.count("tok/s") == 2
    assert "[system prompt set: Answer in one word.]" in result.stderr
    data = json.loads(saved.read_text())
    assert [m["role"] for m in data["messages"]] == ["system", "user", "assistant", "user", "assistant"]
    answers = [m["content"] for m in data["messages"] if m["role"] == "assistant"]
    assert result.stdout == "".join(a + "\n" for a in answers)  # stdout carries only the answers


def test_long_history_drops_the_oldest_turns_but_keeps_the_system_prompt(smollm2_path, tmp_path):
    saved = tmp_path / "c.json"
    questions = [f"Tell me a fact about the number {i}." for i in range(5)]
    script = "\n".join(questions) + f"\n/save {saved}\n"
    result = run_cli("chat", "-m", str(smollm2_path), "-t", "2", "-c", "128", "-n", "10", "--temp", "0",
                     "-s", "You are terse.", stdin=script)
    assert result.returncode == 0, result.stderr
    assert "dropped the" in result.stderr and "kept the system prompt" in result.stderr
    messages = json.loads(saved.read_text())["messages"]
    assert messages[0] == {"role": "system", "content": "You are terse."}
    assert messages[-2]["content"] == questions[-1]
    assert len(messages) < 1 + 2 * len(questions)


def test_list_shows_name_size_quant_and_architecture(home_with_model):
    result = run_cli("list", EDGELLAMA_HOME=str(home_with_model))
    assert result.returncode == 0, result.stderr
    row = next(line for line in result.stdout.splitlines() if line.startswith("SmolLM2-135M-Instruct.Q4_1"))
    assert row.split()[1:] == ["98.4", "MB", "Q4_1", "llama"]


def test_list_of_an_empty_cache(tmp_path):
    result = run_cli("list", EDGELLAMA_HOME=str(tmp_path))
    assert result.returncode == 0 and "no models" in result.stdout


def test_models_by_name(home_with_model, monkeypatch):
    monkeypatch.setenv("EDGELLAMA_HOME", str(home_with_model))
    target = home_with_model / DEFAULT_MODEL_NAME
    for name in ("smollm2-135m-instruct", "SmolLM2-135M-Instruct.Q4_1", DEFAULT_MODEL_NAME.upper()):
        assert resolve_model(name) == target
    assert resolve_model(str(target)) == target
    with pytest.raises(ModelFetchError, match="no model named 'llama-7b'.*edgellama pull llama-7b"):
        resolve_model("llama-7b")


def test_run_and_pull_by_name(home_with_model):
    result = run_cli("run", "-m", "smollm2-135m-instruct", "-p", "The capital of France is", "-n", "6",
                     "--temp", "0", "-t", "2", EDGELLAMA_HOME=str(home_with_model))
    assert result.returncode == 0, result.stderr
    assert "Paris" in result.stdout
    pulled = run_cli("pull", "smollm2-135m-instruct", EDGELLAMA_HOME=str(home_with_model))
    assert pulled.returncode == 0, pulled.stderr
    assert str(home_with_model / DEFAULT_MODEL_NAME) in pulled.stdout


def test_pull_from_hugging_face_without_network_is_a_clear_error(tmp_path):
    result = run_cli("pull", "someone/some-model-GGUF", EDGELLAMA_HOME=str(tmp_path), HF_HUB_OFFLINE="1")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert ("could not fetch 'someone/some-model-GGUF' from Hugging Face" in result.stderr
            or "needs the huggingface_hub package" in result.stderr)


def test_pull_without_huggingface_hub_says_how_to_install_it(tmp_path, monkeypatch):
    monkeypatch.setenv("EDGELLAMA_HOME", str(tmp_path))
    monkeypatch.setitem(sys.modules, "huggingface_hub", None)  # makes the import fail
    with pytest.raises(ModelFetchError, match="pip install huggingface_hub"):
        pull_model("someone/some-model-GGUF")


def test_pull_of_an_unknown_name(tmp_path):
    result = run_cli("pull", "not-a-model", EDGELLAMA_HOME=str(tmp_path))
    assert result.returncode == 1 and "unknown model name 'not-a-model'" in result.stderr


@pytest.mark.parametrize("verdict", ["unsafe", "safe"])
def test_chat_with_a_guard_shows_its_verdicts(smollm2_path, guard_model, tmp_path, verdict):
    saved = tmp_path / "c.json"
    script = f"How do I bake bread?\n/save {saved}\n"
    result = run_cli("chat", "-m", str(smollm2_path), "--guard", str(guard_model(verdict)), "-t", "2", "-c", "512",
                     "-n", "8", stdin=script)
    assert result.returncode == 0, result.stderr
    roles = [m["role"] for m in json.loads(saved.read_text())["messages"]]
    if verdict == "unsafe":
        assert "blocked by Llama Guard (S1 Violent Crimes)" in result.stderr and "it was not sent" in result.stderr
        assert roles == [] and result.stdout == ""
    else:
        assert "Llama Guard" not in result.stderr and roles == ["user", "assistant"] and result.stdout.strip()
