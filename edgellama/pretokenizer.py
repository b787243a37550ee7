"""What byte-level (gpt2) tokenization does before any merge: the pre-tokenizer regexes, by the
name stored in ``tokenizer.ggml.pre``, the splitter that applies them without dropping a
character, and the gpt2 byte <-> unicode map the vocabulary is written in. (edgellama.tokenizer
re-exports these names.)"""

from __future__ import annotations

from typing import Dict, List, Mapping, Tuple

import regex


# ---------------------------------------------------------------------------------------------
# Pre-tokenizer patterns, by the name stored in ``tokenizer.ggml.pre``.

# The gpt2 pattern. The trailing ``|\s+`` only matters for Python's findall-style matching: it
# catches a lone non-space whitespace character followed by a non-space (e.g. "\n" in "\nx"),
# which the other alternatives leave unmatched. Our splitter keeps unmatched gaps anyway, so the
# two forms give identical pieces; spelling it out keeps the intent obvious.
_GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"

# Llama 3's pattern: case-insensitive contractions, letters with one optional leading
# non-letter/non-digit (not a newline), digits in groups of at most three, punctuation runs
# swallowing trailing newlines, newline runs.
_LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}"
    r"| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+"
)

# Every digit on its own (applied first for SmolLM vocabularies).
_SINGLE_DIGIT_PATTERN = r"\p{N}"

#: ``tokenizer.ggml.pre`` name -> regexes applied in sequence.
#: GGUF files name the plain byte-level pre-tokenizer "gpt-2" (the name edgellama writes, and the
#: only one other runtimes accept); "gpt2" is read too, for files written by earlier versions.
# Pre-tokenizers whose BPE takes a pre-token that is a token whole as that token, without merging
# (Llama 3's tiktoken BPE; Meta's tokenizer.json says "ignore_merges": true, and llama.cpp decides
# by these pre-tokenizer names, as a GGUF file has no flag of its own).
IGNORE_MERGES = frozenset({"llama-bpe"})

PRE_TOKENIZERS: Mapping[str, Tuple[str, ...]] = {
    "gpt-2": (_GPT2_PATTERN,),  # the name GGUF files use for the plain GPT-2 pattern
    "gpt2": (_GPT2_PATTERN,),   # also accepted: files written by earlier edgellama versions
    "llama-bpe": (_LLAMA3_PATTERN,),
    "smollm": (_SINGLE_DIGIT_PATTERN, _GPT2_PATTERN),
}


# ---------------------------------------------------------------------------------------------
# The gpt2 byte <-> unicode map.


def _build_byte_map() -> Tuple[Tuple[str, ...], Dict[str, int]]:
    """Bytes 33-126, 161-172 and 174-255 map to the code point of the same value; the remaining
    68 bytes map, in increasing byte order, to U+0100, U+0101, ... so that every byte becomes a
    printable, non-space character."""
    printable = set(range(33, 127)) | set(range(161, 173)) | set(range(174, 256))
    to_char: List[str] = []
    extra = 0
    for b in range(256):
        if b in printable:
            to_char.append(chr(b))
        else:
            to_char.append(chr(256 + extra))
            extra += 1
    return tuple(to_char), {c: b for b, c in enumerate(to_char)}


BYTE_TO_CHAR, CHAR_TO_BYTE = _build_byte_map()


def bytes_to_symbols(data: bytes) -> str:
    """Map raw bytes to the printable string the vocabulary is written in."""
    return "".join(BYTE_TO_CHAR[b] for b in data)


def symbols_to_bytes(text: str) -> bytes:
    """Inverse of :func:`bytes_to_symbols`. A character outside the map (which a well-formed
    vocabulary never contains) is passed through as its own UTF-8 encoding."""
    out = bytearray()
    for ch in text:
        b = CHAR_TO_BYTE.get(ch)
        if b is None:
            out += ch.encode("utf-8")
        else:
            out.append(b)
    return bytes(out)


def _split_keep_gaps(pattern: "regex.Pattern[str]", text: str) -> List[str]:
    """Split ``text`` into regex matches, keeping the text between matches as pieces too, so the
    pieces always concatenate back to ``text``."""
    pieces: List[str] = []
    pos = 0
    for m in pattern.finditer(text):
        start, end = m.span()
        if start == end:
            continue
        if start > pos:
            pieces.append(text[pos:start])
        pieces.append(text[start:end])
        pos = end
    if pos < len(text):
        pieces.append(text[pos:])
    return pieces
