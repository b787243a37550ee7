"""edgellama: run quantized Llama-family models from GGUF files on-device.

    from edgellama import Llama
    llm = Llama("model.gguf")
    print(llm.generate("The capital of France is", max_tokens=16, temperature=0))
"""

from edgellama.errors import (
    ContextOverflowError,
    EdgellamaError,
    InsufficientMemoryError,
    InvalidArgumentError,
    InvalidGGUFError,
    InvalidMetadataError,
    ModelBusyError,
    ModelLoadError,
    ModelOutputError,
    UnsupportedModelError,
)

__version__ = "0.1.0"
__all__ = ["Llama", "EdgellamaError", "ModelLoadError", "InvalidGGUFError", "InvalidMetadataError",
           "UnsupportedModelError", "ContextOverflowError", "InvalidArgumentError", "InsufficientMemoryError",
           "ModelBusyError", "ModelOutputError"]


def __getattr__(name):
    # Lazy: importing edgellama (e.g. for the tokenizer alone) does not load the C++ core.
    if name == "Llama":
        from edgellama.model import Llama

        return Llama
    raise AttributeError(f"module 'edgellama' has no attribute {name!r}")
