"""Tokenizer encode and decode over byte-level (gpt2) and SentencePiece (llama) vocabularies and
the real SmolLM2 one, on both backends (C++ core and Python), with arbitrary text (lone
surrogates and control-token strings included) and arbitrary token ids.

Input layout: byte 0 picks the vocabulary, byte 1 the flags (bit 0: Python backend, bit 1:
special=True, bits 2-3: add_bos None/True/False, bits 4-6: the operation), the rest is the
payload: UTF-8 text (undecodable bytes become lone surrogates) or little-endian int32 token ids
(ids outside the vocabulary included).
"""

from __future__ import annotations

import struct

MAX_LEN = 4096
TIMEOUT = 10
TEXT_OPS = ("encode", "round_trip", "stream_round_trip", "pre_tokenize")
ID_OPS = ("decode", "stream_decode", "token_lookups", "decode_render_special")


def payload_text(payload: bytes) -> str:
    try:
        return payload.decode("utf-8", "surrogatepass")
    except UnicodeDecodeError:
        return payload.decode("utf-8", "surrogateescape")


def payload_ids(payload: bytes):
    usable = len(payload) // 4 * 4
    ids = list(struct.unpack(f"<{usable // 4}i", payload[:usable]))
    # Large ids too: a 64-bit id must be refused, not wrapped.
    return ids + ([2**40, -2**40, 2**64] if payload[usable:] == b"\xff" else [])


def setup():
    from edgellama.tokenizer import StreamDecoder, Tokenizer
    from fuzz.seeds import vocabularies

    tokenizers = [[Tokenizer.from_metadata(meta, backend=backend) for backend in ("core", "python")]
                  for meta in vocabularies().values()]

    def text_op(tok, op: str, text: str, special: bool, add_bos) -> None:
        ids = tok.encode(text, add_bos=add_bos, special=special)
        if op == "round_trip":
            tok.decode(ids)
        elif op == "stream_round_trip":
            stream = StreamDecoder(tok)
            for token in ids:
                stream.push(token)
            stream.flush()
        elif op == "pre_tokenize":
            tok.pre_tokenize(text)

    def id_op(tok, op: str, ids) -> None:
        if op == "decode":
            tok.decode(ids)
        elif op == "decode_render_special":
            tok.decode(ids, render_special=True)
        elif op == "stream_decode":
            stream = StreamDecoder(tok, render_special=bool(len(ids) % 2))
            for token in ids:
                stream.push(token)
            stream.flush()
        else:
            for token in ids[:16]:
                tok.token_text(token)
                tok.token_bytes(token)
                tok.piece_bytes(token, render_special=True)
                tok.is_special(token)

    def one_input(data: bytes) -> None:
        if len(data) < 2:
            return
        vocab, flags, payload = data[0], data[1], data[2:]
        tok = tokenizers[vocab % len(tokenizers)][flags & 1]
        op = (flags >> 4) & 7
        if op < len(TEXT_OPS):
            add_bos = (None, True, False, None)[(flags >> 2) & 3]
            text_op(tok, TEXT_OPS[op], payload_text(payload), bool(flags & 2), add_bos)
        else:
            id_op(tok, ID_OPS[op - len(TEXT_OPS)], payload_ids(payload))

    return one_input
