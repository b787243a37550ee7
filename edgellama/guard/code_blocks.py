"""Fenced code blocks found in streamed text as soon as each one closes, so that an insecure block
is caught before the answer ends.

Markdown's rules, as far as a model's answer needs them: a fence is a line of 3 or more backticks
(or tildes), indented by at most 3 spaces, with an optional info string whose first word is the
language; the block ends at a line of the same character, at least as long, and nothing else. So
a ````-fenced block may hold ``` lines (an example of markdown inside markdown). Text arrives in
pieces that split lines anywhere: only whole lines are read, and the last partial line waits.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import List, Optional

_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})(.*)$")


@dataclass
class CodeBlock:
    language: Optional[str]  # the info string's first word, lower-cased; None when absent
    code: str
    closed: bool = True      # False: the text ended inside the block


class CodeBlockWatcher:
    """feed(piece) returns the blocks that piece closed; finish() the block left open, if any."""

    def __init__(self):
        self._partial = ""
        self._fence: Optional[str] = None  # the opening fence while inside a block
        self._language: Optional[str] = None
        self._lines: List[str] = []

    def feed(self, piece: str) -> List[CodeBlock]:
        self._partial += piece
        *lines, self._partial = self._partial.split("\n")
        closed = []
        for line in lines:
            block = self._line(line)
            if block is not None:
                closed.append(block)
        return closed

    def finish(self) -> List[CodeBlock]:
        """The end of the text: its last line, and a block still open (closed=False)."""
        closed = self.feed("\n") if self._partial else []
        if self._fence is not None:
            closed.append(CodeBlock(self._language, "\n".join(self._lines), closed=False))
            self._fence = None
        return closed

    def _line(self, line: str) -> Optional[CodeBlock]:
        fence = _FENCE.match(line)
        if self._fence is None:
            if fence is not None and not (fence.group(1)[0] == "`" and "`" in fence.group(2)):
                self._fence, self._lines = fence.group(1), []
                words = fence.group(2).split()
                self._language = words[0].lower() if words else None
            return None
        if fence is not None and fence.group(1)[0] == self._fence[0] and len(fence.group(1)) >= len(self._fence) \
                and not fence.group(2).strip():
            block = CodeBlock(self._language, "\n".join(self._lines))
            self._fence = None
            return block
        self._lines.append(line)
        return None
