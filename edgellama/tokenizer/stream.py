"""Incremental detokenizing for generation: text only once its UTF-8 is complete."""

from __future__ import annotations

import codecs

from edgellama.tokenizer.tokenizer import Tokenizer


class StreamDecoder:
    """Incremental detokenizer for generation.

    ``push(id)`` returns only text whose UTF-8 is complete, holding back a multi-byte character
    split across tokens (emoji often are) until its last byte arrives; ``flush()`` returns the
    rest. The concatenation of every ``push`` result and ``flush()`` equals
    ``tokenizer.decode(ids, render_special)`` for the same ids.
    """

    def __init__(self, tokenizer: Tokenizer, render_special: bool = False) -> None:
        self._tokenizer = tokenizer
        self._render_special = render_special
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")
        self._first = True

    def push(self, token_id: int) -> str:
        """Feed one token id; return the newly completed text (possibly empty)."""
        token_id = int(token_id)
        data = self._tokenizer.piece_bytes(token_id, self._render_special)
        if self._first and data:
            self._first = False
            if self._tokenizer.strips_leading_space(token_id):
                data = data[1:]
        return self._decoder.decode(data)

    def flush(self) -> str:
        """Return whatever is held back (an incomplete tail becomes U+FFFD) and reset."""
        text = self._decoder.decode(b"", final=True)
        self.reset()
        return text

    def reset(self) -> None:
        """Drop held-back bytes without emitting them; the next token starts a new text."""
        self._decoder.reset()
        self._first = True
