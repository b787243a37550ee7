"""GGUF files, end to end: the header parser, the loader, the tokenizer and chat template built from
the file's metadata, and, for files that load, the C++ model built with a small context and run
on a token or two (where a size the loader let through would corrupt memory).

Each stage runs even when an earlier optional one rejected the file (a tokenizer error does not
stop the model from being built), and every stage may reject only with an EdgellamaError.
"""

from __future__ import annotations

from fuzz.gguf_mutator import COUNTS, mutate, mutate_structure  # noqa: F401 - fuzz.worker's mutants mode

MAX_LEN = 1 << 17  # the largest seed is ~45 KB
TIMEOUT = 20
N_CTX = 8
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi <|im_end|> there"}]

custom_mutator = mutate
counters = COUNTS


def setup():
    from edgellama import Llama
    from edgellama.chat import ChatTemplate
    from edgellama.errors import EdgellamaError
    from edgellama.gguf_header import read_gguf_header, read_gguf_summary as header_summary
    from edgellama.gguf_loader import load_gguf, read_gguf_summary as loader_summary
    from edgellama.tokenizer import Tokenizer
    from fuzz.targets.scratch import input_file

    def optional(stage, *args):
        """A stage whose rejection (an EdgellamaError) must not stop the later stages."""
        try:
            return stage(*args)
        except EdgellamaError:
            return None

    def text_stages(model):
        tokenizer = Tokenizer.from_metadata(model.tokenizer_metadata)
        ids = tokenizer.encode("Hello world", special=False)
        tokenizer.decode(ids)
        template = ChatTemplate.from_tokenizer_metadata(model.tokenizer_metadata, tokenizer)
        template.encode(tokenizer, MESSAGES)
        return ids

    def model_stages(path, ids):
        llm = Llama(path, n_ctx=N_CTX, n_threads=1)
        llm.eval([0])
        if ids:
            llm.eval(list(ids)[:N_CTX - 1])  # ids from the file's own tokenizer, as generate would pass

    def one_input(data: bytes) -> None:
        with input_file(data, ".gguf") as path:
            optional(read_gguf_header, path)
            optional(header_summary, path)
            optional(loader_summary, path)
            model = load_gguf(path)
            ids = optional(text_stages, model)
            del model  # its mapping must be gone before the file is removed
            model_stages(path, ids)

    return one_input
