"""Progress of long operations (downloads, quantizing) for a person watching.

On a terminal: one tqdm bar on stderr, redrawn in place. Anywhere else (a pipe, a log file) a
bar's carriage returns would fill the log with half-drawn lines, so the bar is off and a plain
line goes through `log` at every tenth of the way instead. The library's functions show nothing
unless their caller asks (progress=False by default); the command line asks.
"""

from __future__ import annotations

import sys
import time
from typing import Callable, Optional

Log = Callable[[str], None]
STEPS = 10  # plain lines per operation when stderr is not a terminal


def stderr_is_terminal() -> bool:
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except ValueError:  # stderr was closed
        return False


class Progress:
    """Counts the work done out of `total` units (bytes, weights). Call update(n) after each
    piece and close() at the end (or use a with block). enabled=False shows nothing."""

    def __init__(self, total: Optional[int], description: str, log: Optional[Log], enabled: bool = True,
                 unit: str = "B"):
        self._total, self._done, self._description = total, 0, description
        self._log = log if enabled else None
        self._next_step = 1
        self._start = time.perf_counter()
        self._bar = None
        if enabled and stderr_is_terminal():
            from tqdm import tqdm

            # leave=False: the caller's summary line takes the finished bar's place.
            self._bar = tqdm(total=total, desc=description, unit=unit, unit_scale=True,
                             unit_divisor=1024 if unit == "B" else 1000, file=sys.stderr, dynamic_ncols=True,
                             leave=False)

    def update(self, n: int, note: Optional[str] = None) -> None:
        """n more units done; note (e.g. the current tensor) is shown beside the bar."""
        self._done += n
        if self._bar is not None:
            if note is not None:
                self._bar.set_postfix_str(note, refresh=False)
            self._bar.update(n)
            return
        if self._log is None or not self._total:
            return
        step = self._done * STEPS // self._total
        if self._next_step <= step < STEPS:  # 100% is the caller's summary line
            self._log(f"{self._description}: {step * 100 // STEPS}% ({time.perf_counter() - self._start:.0f} s)")
            self._next_step = step + 1

    def set_total(self, total: int) -> None:
        """The total, once it is known (e.g. after the first piece)."""
        if self._total != total:
            self._total = total
            if self._bar is not None:
                self._bar.total = total
                self._bar.refresh()

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None

    def __enter__(self) -> "Progress":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
