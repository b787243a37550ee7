"""The text every tokenizer test runs over (all three vocabulary families), and hypothesis
strategies for generated text."""

from __future__ import annotations

from hypothesis import strategies as st

CORPUS = [
    "",
    "Hello world!",
    "The quick brown fox jumps over the lazy dog. It's what they'll say; we'd've known.",
    "I'M SHOUTING, DON'T YOU'LL SEE",
    "def add(a, b):\n\treturn a + b   \n\n\nclass Foo:\n    def bar(self):  \n        pass\n",
    "if (x) {\r\n\t\tfoo();\r\n}\r\n",
    "    leading spaces and trailing   ",
    "3.14159265358979 and 1234567890123 and 00042, also 1,000,000 and -7e-10",
    "12345678901234567890123456789012345678901234567890 0000000000 9999999",
    "\n\n\n \t \t\n   \n",
    "   ",
    "\t",
    "          x          \n\n\n\n\n\n\n\ny\t\t\t\t z  ",
    "a\n\nb\r\n\r\nc",
    "日本語のテキストと中文字符，还有한국어 문장.",
    "مرحبا بالعالم، كيف حالك؟",
    "नमस्ते दुनिया, आप कैसे हैं?",
    "emoji 😀🎉 and family 👨‍👩‍👧‍👦 and flags 🇫🇷🇯🇵 and skin 👍🏽",
    "combining: e\u0301 a\u0308 n\u0303 and precomposed é ä ñ; Zalgo: Z\u0336\u0351a\u0334l\u0335g\u0337o",
    "<|im_start|>user\nhi<|im_end|>",
    "<|im_start |> <| im_end|> <|im_start|<|im_end|>> <|endoftext||> <im_start>",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>",
    "<|eot_id |> <|eot_id|<|eot_id|>|> <|start_header_id> <|reserved_special_token_5|>",
    "<s>[INST] <<SYS>>\nBe brief.\n<</SYS>>\n\nhi [/INST] ok </s><s>[INST] again [/INST]",
    "<0x41> <unk> ▁word ▁▁ ▁",
    "Mixed: naïve café résumé Ελληνικά Кириллица ١٢٣ ४५६ ½ Ⅻ",
    "tabs\tin\tthe\tmiddle\t\t\tand \u00a0nbsp\u2003em\u3000ideographic",
    "quotes 'single' \"double\" `back` ’curly’ 's 't 're 've 'm 'll 'd",
    "url: https://example.com/path?q=1&x=2#frag, email a.b@c.io",
    "\u200b\u200c\u200d\ufeff zero-width and BOM",
    "null \x00 byte and \x1c\x1d\x1e\x1f separators and \x85 NEL and \u2028\u2029",
]

# Arbitrary text without lone surrogates (they have no UTF-8 encoding) and without code points
# unassigned in Python's Unicode tables (14.0 for Python 3.11): each regex engine classifies those by
# its own Unicode version (the `regex` package calls U+18D80, assigned in Unicode 16, a letter; the
# reference's engine does not), so they test the libraries' versions, not the tokenizer.
TEXT = st.text(alphabet=st.characters(blacklist_categories=("Cs", "Cn")), max_size=80)
# Text biased toward the interesting classes: whitespace, digits, apostrophes, specials.
PIECES = st.lists(st.sampled_from([
    " ", "  ", "\n", "\r\n", "\t", "\u00a0", "\u3000", "'s", "'LL", "'", "1", "234", "٣", "½",
    "a", "Ab", "é", "e\u0301", "日本", "😀", "👨‍👩‍👧", "!", "?!", ".", "<|im_start|>", "<|im_end|>",
    "<|endoftext|>", "<|", "|>", "ſ", "K", "<|eot_id|>", "<|begin_of_text|>", "[INST]", "</s>",
    "▁", "the", " the", "ing", "مرحبا", "नमस्ते",
]), max_size=30).map("".join)
ANY_TEXT = st.one_of(TEXT, PIECES)


def stream(tok, ids, **kw):
    """The pieces a StreamDecoder emits for ids, the final flush included."""
    from edgellama.tokenizer import StreamDecoder

    dec = StreamDecoder(tok, **kw)
    pieces = [dec.push(i) for i in ids]
    pieces.append(dec.flush())
    return pieces
