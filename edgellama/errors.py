"""Exceptions raised by edgellama. Every load problem names the file, the tensor (when there is one)
and what is wrong, so a user can tell a broken download from an unsupported model."""

from __future__ import annotations

from typing import Optional


class EdgellamaError(Exception):
    """Base class of every error edgellama raises on purpose."""


class ModelLoadError(EdgellamaError, ValueError):
    """A model file could not be loaded. Attributes: path, tensor (or None), problem."""

    def __init__(self, path, problem: str, tensor: Optional[str] = None):
        self.path = str(path)
        self.tensor = tensor
        self.problem = problem
        where = f"{self.path}" + (f", tensor '{tensor}'" if tensor else "")
        super().__init__(f"{where}: {problem}")


class InvalidGGUFError(ModelLoadError):
    """The file is not a well-formed GGUF model: bad magic, truncated, a tensor's data outside the
    file, a missing tensor, a shape that contradicts the hyper-parameters, an unknown type id."""


class InvalidMetadataError(InvalidGGUFError):
    """A metadata value has the wrong type or lies outside the range the model can run with
    (a block count the file cannot hold, a negative epsilon, a context length of 0 ...).
    Attributes: key, value (as read from the file)."""

    def __init__(self, path, key: str, value, problem: str):
        self.key = key
        self.value = value
        shown = repr(value)
        if len(shown) > 80:
            shown = shown[:77] + "..."
        super().__init__(path, f"metadata '{key}' = {shown}: {problem}")


class UnsupportedModelError(ModelLoadError):
    """The file is valid GGUF but describes something edgellama does not run: an architecture other
    than llama, or a tensor type outside F32/F16/BF16/Q8_0/Q4_0/Q4_1/Q5_0/Q5_1/Q4_K/Q5_K/Q6_K."""


class ModelOutputError(EdgellamaError, ValueError):
    """The model computed a NaN logit: its weights hold NaN or infinite values (a corrupt or hostile
    file whose structure is valid), so no token can be chosen."""


class ContextOverflowError(EdgellamaError, ValueError):
    """More tokens were evaluated than the context window (n_ctx) holds."""


class ModelFetchError(EdgellamaError, RuntimeError):
    """The default model could not be fetched or failed its checksum."""


class DeviceError(EdgellamaError, RuntimeError):
    """The GPU backend failed: a CUDA runtime error while uploading or running the model."""


class DeviceUnavailableError(DeviceError):
    """device="cuda" was asked for, but edgellama was built without its CUDA module (edgellama._cuda)
    or no CUDA GPU is visible. The message says which, and how to fix it."""


class DeviceOutOfMemoryError(DeviceError, MemoryError):
    """The model (weights, KV cache or scratch) does not fit in GPU memory; the message names the
    buffer that did not fit, its size and the free memory."""


class InvalidCheckpointError(ModelLoadError):
    """A Hugging Face checkpoint folder is malformed: a corrupt safetensors header, a tensor whose
    bytes lie outside its file, an index naming a missing file, an unreadable config.json."""


class QuantizeError(EdgellamaError, ValueError):
    """A quantize/export request that cannot be carried out: an unknown type, OUT == IN, a
    tensor that cannot take the requested type."""


class InvalidArgumentError(EdgellamaError, ValueError, TypeError):
    """An argument of the public API or the command line has the wrong type or value. The message
    names the argument; `argument` holds its name. It is both a ValueError and a TypeError, so
    callers that caught either before keep working."""

    def __init__(self, argument: str, problem: str):
        self.argument = argument
        super().__init__(f"{argument}: {problem}")


class InsufficientMemoryError(EdgellamaError, MemoryError):
    """What was asked for (a context window, a buffer) needs more memory than the machine has.
    Attributes: what, bytes_needed, bytes_available."""

    def __init__(self, what: str, bytes_needed: int, bytes_available: int, hint: str = ""):
        self.what = what
        self.bytes_needed = int(bytes_needed)
        self.bytes_available = int(bytes_available)
        message = (f"{what} needs {self.bytes_needed:,} bytes ({self.bytes_needed / 2**30:.2f} GiB) but only "
                   f"{self.bytes_available:,} bytes ({self.bytes_available / 2**30:.2f} GiB) are available")
        super().__init__(message + (f"; {hint}" if hint else ""))


class ModelBusyError(EdgellamaError, RuntimeError):
    """The model is in use by a generation that has not finished (e.g. a second streaming
    generator started from the thread that is still consuming the first). Finish or close the
    first one, or use a second Llama object."""


class StateError(EdgellamaError, ValueError):
    """A saved state (Llama.save_state, save_session) that cannot be used here: one from another
    model, longer than this n_ctx, a session file that is corrupt, truncated or of an unknown
    version, or an engine that cannot save its cache."""
