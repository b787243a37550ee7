"""The oracle every fuzz target shares: an input may be rejected only with an EdgellamaError.

Crashes (signals, sanitizer reports) and hangs (libFuzzer's per-input -timeout) are caught by
libFuzzer itself; this module judges Python exceptions. An exception outside the documented
family is a finding. In the default mode it propagates, so libFuzzer stops, prints the traceback
and writes the reproducer (crash-<sha1>). With keep_going (the long campaign) each distinct finding
(exception type + innermost frame) is saved once under the findings folder and fuzzing goes on.

The oracle also counts executions and writes them, with the target's own counters, to a small
JSON file about once a second, so that a campaign can report executions even for a run that
ended in a crash.
"""

from __future__ import annotations

import hashlib
import json
import time
import traceback
from pathlib import Path
from typing import Callable, Dict, Optional

from edgellama.errors import EdgellamaError


class Finding(AssertionError):
    """An invariant a target checks itself was violated (beyond "no foreign exception")."""


def signature(exc: BaseException) -> str:
    """Type and innermost frame of an exception: what tells two findings apart."""
    frames = traceback.extract_tb(exc.__traceback__)
    if not frames:
        return type(exc).__name__
    last = frames[-1]
    return f"{type(exc).__name__} at {Path(last.filename).name}:{last.name}:{last.lineno}"


class Oracle:
    def __init__(self, target: str, one_input: Callable[[bytes], None], *, keep_going: bool = False,
                 findings_dir: Optional[Path] = None, stats_path: Optional[Path] = None,
                 counters: Optional[Dict[str, int]] = None):
        self.target = target
        self.one_input = one_input
        self.keep_going = keep_going
        self.findings_dir = findings_dir
        self.stats_path = stats_path
        self.counters = counters if counters is not None else {}
        self.executions = 0
        self.findings: Dict[str, int] = {}
        self._last_write = 0.0

    def __call__(self, data: bytes) -> None:
        self.executions += 1
        try:
            self.one_input(data)
        except EdgellamaError:
            pass  # the documented way to reject an input
        except (KeyboardInterrupt, SystemExit):
            raise
        except BaseException as exc:  # noqa: BLE001 - everything else is a finding
            if not self.keep_going:
                raise
            self._record(data, exc)
        finally:
            now = time.monotonic()
            if self.stats_path is not None and now - self._last_write >= 1.0:
                self._last_write = now
                self.write_stats()

    def _record(self, data: bytes, exc: BaseException) -> None:
        sig = signature(exc)
        first = sig not in self.findings
        self.findings[sig] = self.findings.get(sig, 0) + 1
        if first and self.findings_dir is not None:
            self.findings_dir.mkdir(parents=True, exist_ok=True)
            stem = f"{self.target}-{hashlib.sha1(sig.encode()).hexdigest()[:12]}"
            (self.findings_dir / f"{stem}.bin").write_bytes(data)
            text = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
            (self.findings_dir / f"{stem}.txt").write_text(f"{sig}\n\n{text}")
        self.write_stats()

    def write_stats(self) -> None:
        if self.stats_path is None:
            return
        stats = {"target": self.target, "executions": self.executions, "findings": self.findings,
                 "counters": dict(self.counters)}
        partial = self.stats_path.with_suffix(".partial")
        partial.write_text(json.dumps(stats, indent=1))
        partial.replace(self.stats_path)
