"""Coverage-guided fuzzing of edgellama's input surfaces (atheris, i.e. libFuzzer for Python).

Targets (fuzz/targets/): `gguf` (header parser, loader, tokenizer and chat template from the
file's metadata, the C++ model built and run on what loads), `safetensors` (the checkpoint
reader), `tokenizer` (encode/decode of byte-level and SentencePiece vocabularies) and `chat`
(chat-template rendering with arbitrary templates and messages).

The oracle (fuzz/oracle.py) is the same for all: no crash, no hang, and no exception outside the
documented EdgellamaError family. `python -m fuzz.run TARGET --seconds N` runs one target;
`python -m fuzz.campaign` is the long run (see fuzz/README.md).
"""
