"""Text embeddings from a generative model (Llama.embed, Llama.create_embedding, /v1/embeddings).

An input's embedding is the mean, over its tokens, of the model's final hidden state (the last
layer's output after the output RMSNorm: what the output projection turns into logits), scaled to
unit length. What that means for a model trained to predict the next token: each position's state
encodes the text up to it (attention is causal), so the mean leans on the whole text but weighs
its end less than a trained embedding model would; cosine similarities rank texts by overall topic
and wording reasonably, but a model trained for retrieval (with its own pooling) does better. The
values depend on the model file, as logits do.

The input is evaluated on a free sequence of the model (it waits for one as eval does), from an
empty cache, and that sequence keeps the input's keys and values afterwards (a later prompt that
starts with the same tokens reuses them).
"""

from __future__ import annotations

from typing import Any, Dict, List, Sequence, Union

import numpy as np

from edgellama import arguments
from edgellama.errors import ContextOverflowError, EdgellamaError, InvalidArgumentError

Input = Union[str, Sequence[int], Sequence[str], Sequence[Sequence[int]]]
MAX_INPUTS = 2048  # inputs per call


def input_ids(llm, value: Input) -> List[List[int]]:
    """The token ids of each input: a str, a list of str, a list of token ids, or a list of such
    lists. Text is tokenized as a prompt (control-token spellings stay text)."""
    if isinstance(value, str):
        items: List[Any] = [value]
    elif isinstance(value, (list, tuple)) and value and all(isinstance(v, (list, tuple, str)) for v in value):
        items = list(value)
    elif isinstance(value, (list, tuple, np.ndarray)):
        items = [value]
    else:
        raise InvalidArgumentError("input", f"must be a str, a list of str, or token ids, got {type(value).__name__}")
    if not items or len(items) > MAX_INPUTS:
        raise InvalidArgumentError("input", f"must hold 1 to {MAX_INPUTS} inputs, got {len(items)}")
    ids = []
    for item in items:
        tokens = llm.tokenize(item) if isinstance(item, str) else arguments.token_ids("input", item, llm.n_vocab).tolist()
        if not tokens:
            raise InvalidArgumentError("input", "an input has no tokens")
        if len(tokens) > llm.n_ctx:
            raise ContextOverflowError(f"an input of {len(tokens)} tokens exceeds the context window "
                                       f"n_ctx={llm.n_ctx}")
        ids.append(tokens)
    return ids


def embed_ids(llm, ids: List[int]) -> np.ndarray:
    """The unit-length mean hidden state (float32, n_embd) of one input's token ids."""
    mean = hidden_states(llm, ids).astype(np.float64).mean(axis=0)
    norm = np.linalg.norm(mean)
    return (mean / norm if norm > 0 else mean).astype(np.float32)


def hidden_states(llm, ids: List[int]) -> np.ndarray:
    """The final hidden state (after the output norm) of every token of one input, float32
    [len(ids), n_embd], evaluated in a free sequence of its own."""
    core = llm._core
    if not hasattr(core, "forward_hidden"):
        raise EdgellamaError("embeddings run on the CPU engine (device='cpu'); this Llama runs on "
                             f"device={llm.device!r}")
    with llm._scheduler.direct(None, "an embedding") as slot:
        core.seq_clear(slot.index)
        slot.keep_first(0)
        n = len(ids)
        hidden = core.forward_hidden(np.asarray(ids, dtype=np.int32), np.full(n, slot.index, dtype=np.int32),
                                     np.arange(n, dtype=np.int64), np.ones(n, dtype=np.uint8))
        slot.tokens = list(ids)
    return hidden


def embedding_response(llm, value: Input, model: str) -> Dict[str, Any]:
    """OpenAI's embeddings response: {"object": "list", "data": [{"object": "embedding",
    "embedding": [floats], "index": i}], "model", "usage": {"prompt_tokens", "total_tokens"}}."""
    all_ids = input_ids(llm, value)
    data = [{"object": "embedding", "embedding": embed_ids(llm, ids).tolist(), "index": i}
            for i, ids in enumerate(all_ids)]
    tokens = sum(len(ids) for ids in all_ids)
    return {"object": "list", "data": data, "model": model,
            "usage": {"prompt_tokens": tokens, "total_tokens": tokens}}
