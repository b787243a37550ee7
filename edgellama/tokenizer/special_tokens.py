"""Control and user-defined token strings: finding them in text (encode with special=True) and
telling quickly whether a text holds one, or a piece of one (chat rendering's injection checks)."""

from __future__ import annotations

import bisect
import functools
from typing import Dict, FrozenSet, Iterable, Iterator, List, NamedTuple, Optional, Sequence, Tuple

import regex

from edgellama.tokenizer.vocabulary import TokenType


class _ControlFragments(NamedTuple):
    """What tells quickly whether a text holds a control-token string or a piece of one."""

    heads: FrozenSet[str]  # proper prefixes of the control-token strings ("<|im_")
    tails: FrozenSet[str]  # proper suffixes ("end|>")
    first_chars: str  # their first characters ("<")
    last_chars: str  # their last characters (">")
    longest: int


class SpecialTokens:
    """The control and user-defined tokens of a vocabulary, by their strings."""

    def __init__(self, tokens: Sequence[str], types: Sequence[int]) -> None:
        self._types = types
        self.by_text: Dict[str, int] = {
            text: i for i, text in enumerate(tokens) if types[i] in (TokenType.CONTROL, TokenType.USER_DEFINED) and text
        }
        # Longest first, so a token that is a prefix of another never shadows it.
        alternatives = sorted(self.by_text, key=lambda s: (-len(s), s))
        self.pattern: Optional["regex.Pattern[str]"] = (
            regex.compile("|".join(regex.escape(s) for s in alternatives)) if alternatives else None
        )

    def matches(self, text: str, split_at: Iterable[int]) -> Iterator[Tuple[int, int, int]]:
        """(start, end, id) of the special tokens encode(special=True) cuts out of text, leftmost
        first, longest at each place; none straddles an offset of ``split_at``."""
        pattern = self.pattern
        assert pattern is not None
        cuts = sorted(set(split_at))
        if not cuts:
            for m in pattern.finditer(text):
                yield m.start(), m.end(), self.by_text[m.group()]
            return
        pos = 0
        while True:
            m = pattern.search(text, pos)
            if m is None:
                return
            start, end = m.span()
            i = bisect.bisect_right(cuts, start)
            if i < len(cuts) and cuts[i] < end:
                # It straddles an offset: the longest special token that ends by the offset, if
                # any starts here; otherwise this place is text and the search goes on after it.
                m = pattern.match(text, start, cuts[i])
                if m is None:
                    pos = start + 1
                    continue
                end = m.end()
            yield start, end, self.by_text[m.group()]
            pos = end

    def control_spans(self, text: str) -> List[Tuple[int, int]]:
        """(start, end) of each control-token string in text that encode(special=True) turns into
        its token."""
        fragments = self._control_fragments
        if self.pattern is None or not any(c in text for c in fragments.first_chars):
            return []  # the common case, decided without the regex of every special token
        return [(start, end) for start, end, token_id in self.matches(text, ())
                if self._types[token_id] == TokenType.CONTROL]

    def control_edges(self, text: str) -> Tuple[bool, bool]:
        """Whether text starts with the end of a control-token string and whether it ends with the
        start of one."""
        fragments = self._control_fragments
        reach = min(len(text), fragments.longest - 1)
        # A fragment at the start ends with some token's last character, one at the end starts
        # with some token's first character: most texts are decided by those alone.
        starts = (any(c in text[:reach] for c in fragments.last_chars)
                  and any(text[:k] in fragments.tails for k in range(1, reach + 1)))
        ends = (any(c in text[len(text) - reach:] for c in fragments.first_chars)
                and any(text[-k:] in fragments.heads for k in range(1, reach + 1)))
        return starts, ends

    @property
    def control_chars(self) -> str:
        """The first and last characters of the control-token strings."""
        fragments = self._control_fragments
        return "".join(sorted(set(fragments.first_chars + fragments.last_chars)))

    @functools.cached_property
    def _control_fragments(self) -> _ControlFragments:
        texts = [t for t, i in self.by_text.items() if self._types[i] == TokenType.CONTROL]
        return _ControlFragments(
            heads=frozenset(t[:k] for t in texts for k in range(1, len(t))),
            tails=frozenset(t[k:] for t in texts for k in range(1, len(t))),
            first_chars="".join(sorted({t[0] for t in texts})),
            last_chars="".join(sorted({t[-1] for t in texts})),
            longest=max(map(len, texts), default=0),
        )
