"""Code Shield: generated code scanned for insecure patterns by Meta's `codeshield` package (the
`guard` extra: its regex rules, then semgrep's, for C, C++, C#, Java, JavaScript, PHP, Python and
Rust), with a verdict per code block.

The package recommends BLOCK (an issue of error severity), WARN, or IGNORE (nothing found). On an
internal error it fails open (IGNORE); here a scan that fails blocks by default
(``fail_closed=True``) and says why, because a scanner that cannot look has not cleared the code.
"""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import List, Optional

from edgellama.errors import EdgellamaError

# Fence info strings a model writes -> the package's language names.
LANGUAGES = {
    "c": "c", "h": "c", "cpp": "cpp", "c++": "cpp", "cc": "cpp", "cxx": "cpp", "hpp": "cpp", "cs": "csharp",
    "csharp": "csharp", "c#": "csharp", "java": "java", "js": "javascript", "javascript": "javascript",
    "jsx": "javascript", "node": "javascript", "php": "php", "py": "python", "python": "python",
    "python3": "python", "rs": "rust", "rust": "rust",
}


class MissingCodeShieldError(EdgellamaError, ImportError):
    """Code Shield needs the codeshield package (the `guard` extra)."""


@dataclass
class CodeVerdict:
    """One block's scan: blocked (BLOCK, or a failed scan when failing closed), the package's
    treatment ("block", "warn", "ignore", or "error"), the issues found, and the time taken."""

    blocked: bool
    treatment: str
    language: Optional[str]
    issues: List[str] = field(default_factory=list)
    seconds: float = 0.0
    error: Optional[str] = None


class CodeShield:
    """scan(code, language) -> CodeVerdict. warn_blocks: also block code the package only warns
    about; fail_closed: a scan that fails blocks (the default)."""

    def __init__(self, fail_closed: bool = True, warn_blocks: bool = False):
        self.fail_closed = fail_closed
        self.warn_blocks = warn_blocks
        self._detector, self._languages = _package()
        self._loop = asyncio.new_event_loop()  # the package is asyncio: one private loop, one scan at a time
        self._lock = threading.Lock()

    def scan(self, code: str, language: Optional[str] = None) -> CodeVerdict:
        name = LANGUAGES.get((language or "").lower())
        started = time.perf_counter()
        try:
            with self._lock:
                issues = self._loop.run_until_complete(self._issues(code, name))
        except Exception as exc:  # noqa: BLE001 - the package's failure: the verdict says so
            return CodeVerdict(self.fail_closed, "error", name, seconds=time.perf_counter() - started,
                               error=f"Code Shield failed: {type(exc).__name__}: {exc}")
        treatment = "ignore" if not issues else (
            "block" if any(_severity(i) == "error" for i in issues) else "warn")
        return CodeVerdict(treatment == "block" or (treatment == "warn" and self.warn_blocks), treatment, name,
                           [f"{getattr(i, 'cwe_id', '')}: {getattr(i, 'description', i)}".strip(": ") for i in issues],
                           time.perf_counter() - started)

    async def _issues(self, code: str, language: Optional[str]) -> list:
        """The package's detector over one language, or every language it supports; unlike its
        scan_code, an exception propagates (so that failing closed is possible)."""
        if language is not None:
            targets = [self._languages.Language(language)]
        else:
            targets = list(self._languages.get_supported_languages())
        found = await asyncio.gather(*[self._detector.analyze(t, code, usecase=self._usecase()) for t in targets])
        return [issue for issues in found if issues for issue in issues]

    @staticmethod
    def _usecase():
        from codeshield.insecure_code_detector.usecases import UseCase

        return UseCase.CODESHIELD

    def close(self) -> None:
        self._loop.close()


def _severity(issue) -> str:
    severity = getattr(issue, "severity", "")
    return str(getattr(severity, "value", severity)).lower()


def _package():
    try:
        from codeshield.insecure_code_detector import insecure_code_detector, languages
    except ImportError:
        raise MissingCodeShieldError('Code Shield needs the codeshield package: pip install "edgellama[guard]"') \
            from None
    return insecure_code_detector, languages
