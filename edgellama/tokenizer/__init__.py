"""Tokenizers for GGUF vocabularies, and a streaming detokenizer.

Two families, chosen by ``tokenizer.ggml.model``:

* ``gpt2``: byte-level BPE (Llama 3, SmolLM2), described step by step below;
* ``llama``: SentencePiece-style BPE (Llama 2, TinyLlama): spaces become ``▁`` (U+2581), a ``▁``
  is prefixed to the text when ``tokenizer.ggml.add_space_prefix`` says so (the default), the
  UTF-8 characters are the initial symbols and adjacent symbols merge when their concatenation is
  a token, highest ``tokenizer.ggml.scores`` first (leftmost on ties); a character without a token
  becomes its bytes as ``<0xNN>`` tokens (byte fallback), or the unknown token.

The loader hands us the GGUF tokenizer metadata as a plain dict (keys exactly as stored in the
file: ``tokenizer.ggml.tokens``, ``tokenizer.ggml.merges``, ...). Encoding runs in four steps:

1. with ``special=True``, control and user-defined token strings (``<|im_start|>``) are cut out of
   the text and become single tokens; with ``special=False`` they are ordinary text;
2. the remaining text is pre-tokenized by the regular expression(s) that ``tokenizer.ggml.pre``
   names; each regex splits every piece produced by the previous one, and text between matches
   is kept as its own piece, so no character is ever dropped;
3. each pre-token's UTF-8 bytes are mapped to printable characters (the gpt2 byte<->unicode map);
4. merges are applied by rank within the pre-token, and the resulting symbols are looked up.

Where each part lives: tokenizer.py (the public class: ids, special tokens, encode and decode),
special_tokens.py, byte_level_bpe.py, sentencepiece.py, stream.py (StreamDecoder),
vocabulary.py (token types and errors).

Pre-tokenization is Python (the ``regex`` package for ``\\p{L}``/``\\p{N}``); the merge loops run in
the C++ core (``csrc/tokenizer``, ``_core.ByteLevelBpe`` / ``_core.SentencePieceBpe``). A pure
Python implementation of the same loops remains (``backend="python"``) for builds without the
core and as a cross-check in the tests; both give identical ids.
"""

from edgellama.pretokenizer import BYTE_TO_CHAR, PRE_TOKENIZERS
from edgellama.tokenizer.sentencepiece import SPM_SPACE
from edgellama.tokenizer.stream import StreamDecoder
from edgellama.tokenizer.tokenizer import Tokenizer
from edgellama.tokenizer.vocabulary import SUPPORTED_MODELS, TokenizerError, TokenizerMetadataError, TokenType

__all__ = ["Tokenizer", "StreamDecoder", "TokenizerError", "TokenizerMetadataError", "TokenType", "PRE_TOKENIZERS",
           "BYTE_TO_CHAR", "SPM_SPACE", "SUPPORTED_MODELS"]
