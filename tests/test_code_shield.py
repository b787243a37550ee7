"""Code Shield: fenced code blocks found in streamed text as each closes (blocks split across
tokens, longer fences holding shorter ones, a block left open at the end), and verdicts of Meta's
codeshield package on insecure/secure pairs when it is installed (the guard extra)."""

import pytest

from edgellama.guard import CodeBlockWatcher


def blocks_of(text, piece=3):
    watcher = CodeBlockWatcher()
    found = []
    for i in range(0, len(text), piece):
        found += [(b.language, b.code, b.closed, i) for b in watcher.feed(text[i:i + piece])]
    return found + [(b.language, b.code, b.closed, len(text)) for b in watcher.finish()]


@pytest.mark.parametrize("piece", [1, 2, 5, 1000])
def test_blocks_close_as_soon_as_their_fence_does_whatever_the_pieces(piece):
    text = "Use this:\n```python\nimport os\nos.system(cmd)\n```\nThen more text and\n~~~\nplain\n~~~\nend"
    found = blocks_of(text, piece)
    assert [(lang, code, closed) for lang, code, closed, _ in found] == [
        ("python", "import os\nos.system(cmd)", True), (None, "plain", True)]
    first_close = text.index("```\nThen") + 4  # the closing fence's newline
    assert found[0][3] <= first_close  # reported by the piece that completed its fence line


def test_longer_fences_hold_shorter_ones_and_indentation_rules():
    text = "````markdown\nExample:\n```c\nint x;\n```\n````\n    ```not a fence (4 spaces)\n```rust\nfn main() {}\n```"
    assert [(lang, code) for lang, code, _, _ in blocks_of(text)] == [
        ("markdown", "Example:\n```c\nint x;\n```"), ("rust", "fn main() {}")]


def test_an_unclosed_block_is_reported_at_the_end():
    assert [(lang, code, closed) for lang, code, closed, _ in blocks_of("Start\n```js\nlet a = 1;\nlet b")] == [
        ("js", "let a = 1;\nlet b", False)]
    assert blocks_of("no code here, just ``` inline") == []


@pytest.fixture(scope="module")
def shield():
    pytest.importorskip("codeshield.cs", reason="Code Shield needs the codeshield package (pip install "
                                                "\"edgellama[guard]\"); not installed here")
    from edgellama.guard import CodeShield

    return CodeShield()


@pytest.mark.parametrize("language, insecure, secure, treatment", [
    ("c", "char buf[64];\ngets(buf);\n", "char buf[64];\nfgets(buf, sizeof buf, stdin);\n", "block"),
    ("python", "import hashlib\ndigest = hashlib.md5(data).hexdigest()\n",
     "import hashlib\ndigest = hashlib.sha256(data).hexdigest()\n", "warn"),
    ("java", "MessageDigest md = MessageDigest.getInstance(\"MD5\");\n",
     "MessageDigest md = MessageDigest.getInstance(\"SHA-256\");\n", "warn"),
])
def test_insecure_and_secure_pairs(shield, language, insecure, secure, treatment):
    bad, good = shield.scan(insecure, language), shield.scan(secure, language)
    assert bad.treatment == treatment and bad.issues and bad.blocked == (treatment == "block")
    assert good.treatment == "ignore" and not good.blocked and not good.issues


def test_a_failing_scan_blocks_by_default(shield, monkeypatch):
    from edgellama.guard import CodeShield

    async def broken(*args, **kwargs):
        raise RuntimeError("semgrep is missing")

    monkeypatch.setattr(shield._detector, "analyze", broken)
    verdict = shield.scan("print(1)", "python")
    assert verdict.blocked and verdict.treatment == "error" and "semgrep is missing" in verdict.error
    open_shield = CodeShield(fail_closed=False)
    monkeypatch.setattr(open_shield._detector, "analyze", broken)
    assert not open_shield.scan("print(1)", "python").blocked
