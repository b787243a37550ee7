"""A drop-in for llama-cpp-python's ``Llama``: code written for it runs on edgellama after one
changed import, ``from edgellama.compat import Llama``.

What maps, and how:

- Constructor: ``model_path``, ``n_ctx`` (0: the model's training context), ``n_threads``,
  ``n_batch`` (accepted: prefill chunking is the scheduler's), ``n_gpu_layers`` (0: CPU; -1 or at
  least the layer count: the CUDA engine, which runs whole models only, so a partial offload is an
  error), ``seed`` (the default seed of every call; -1 or 0xFFFFFFFF: random), ``verbose`` (a load
  line on stderr), ``chat_format`` (None: the file's template; "chatml", "llama-2", "llama-3" and
  the function-calling formats pick a template family; tools work with any template),
  ``embedding`` and ``logits_all`` (accepted: embeddings always work; eval keeps scores),
  ``pooling_type`` (llama.cpp's numbers: -1 or 0 one vector per token, as llama-cpp-python gives a
  llama model by default; 1 mean, 2 first token, 3 last token), and
  llama.cpp's tuning knobs that change nothing here (``use_mmap``, ``flash_attn``...).
- ``__call__`` / ``create_completion`` / ``create_chat_completion``: llama-cpp-python's defaults
  (temperature 0.8 for completions, 0.2 for chat; ``max_tokens`` None or <= 0: until the window is
  full), its ``response_format={"type": "json_object", "schema": ...}`` JSON-schema mode, and its
  ``grammar`` as GBNF text. Samplers edgellama lacks (mirostat, tfs_z) and callback hooks
  (logits_processor, stopping_criteria) are an InvalidArgumentError when set.
- ``tokenize(bytes, add_bos=True, special=False)`` -> ids; ``detokenize(ids)`` -> bytes;
  ``n_ctx()``, ``n_vocab()``, ``n_embd()``, ``token_bos()``, ``token_eos()``; ``create_embedding``
  and ``embed`` as llama-cpp-python gives them (the final hidden states, pooled as pooling_type
  says, unnormalized unless ``normalize=True``; edgellama's own ``Llama.embed`` is mean-pooled
  and unit length); ``reset``, ``eval``, ``set_seed``; ``Llama.from_pretrained(repo_id, filename)`` through
  huggingface_hub.
- ``save_state()`` -> a state object, ``load_state(state)``: edgellama's LlamaState (the tokens and
  KV cache of sequence 0; Llama.save_state), not llama-cpp-python's byte layout, so a state moves
  between these objects, not between the two libraries. ``n_tokens`` is the same attribute.
"""

from __future__ import annotations

import fnmatch
import sys
from typing import Any, Dict, List, Mapping, Optional, Sequence, Union

import numpy as np

from edgellama import arguments
from edgellama.errors import InvalidArgumentError
from edgellama.model import Llama as _Llama

RANDOM_SEEDS = (-1, 0xFFFFFFFF)  # llama-cpp-python's "pick a random seed"
CHAT_FORMATS = {
    "chatml": "chatml", "chatml-function-calling": "chatml", "functionary": None, "functionary-v2": None,
    "llama-2": "llama2", "llama-3": "llama3.1",
}
# llama.cpp knobs with no counterpart here: memory mapping, batching and kernel choices that
# edgellama makes itself. They are accepted and change nothing.
IGNORED_OPTIONS = {
    "use_mmap", "use_mlock", "n_ubatch", "n_threads_batch", "offload_kqv", "flash_attn", "numa",
    "last_n_tokens_size", "mul_mat_q", "main_gpu", "vocab_only", "kv_overrides", "type_k", "type_v",
    "rope_scaling_type", "swa_full", "op_offload", "spm_infill", "lora_path",
}
# llama.cpp's pooling types (llama_pooling_type) that embed() offers: UNSPECIFIED (-1: a llama
# model's default, NONE), NONE (0: one vector per token), MEAN (1), CLS (2: the first token's),
# LAST (3). RANK (4) belongs to rerankers.
POOLING = {-1: "none", 0: "none", 1: "mean", 2: "first", 3: "last"}


class Llama:
    """llama-cpp-python's ``Llama`` over an edgellama model (see the module notes)."""

    def __init__(self, model_path: str, *, n_gpu_layers: int = 0, seed: int = 0xFFFFFFFF, n_ctx: int = 512,
                 n_batch: int = 512, n_threads: Optional[int] = None, embedding: bool = False,
                 logits_all: bool = False, chat_format: Optional[str] = None, verbose: bool = True,
                 pooling_type: int = -1, **options: Any):
        unknown = sorted(set(options) - IGNORED_OPTIONS)
        if unknown:
            raise InvalidArgumentError(unknown[0], "is not a llama-cpp-python option edgellama supports")
        self.model_path = str(model_path)
        arguments.integer("n_batch", n_batch, at_least=1)
        arguments.flag("embedding", embedding)
        pooling_type = arguments.integer("pooling_type", pooling_type, at_least=-1)
        if pooling_type not in POOLING:
            raise InvalidArgumentError("pooling_type", f"{pooling_type} is not supported (supported: "
                                                       f"{', '.join(map(str, POOLING))})")
        self.pooling = POOLING[pooling_type]
        self.logits_all = arguments.flag("logits_all", logits_all)
        self.verbose = arguments.flag("verbose", verbose)
        n_ctx = arguments.integer("n_ctx", n_ctx, at_least=0)
        device = _device(n_gpu_layers, self.model_path)
        self._llm = _Llama(self.model_path, n_ctx=n_ctx or _training_context(self.model_path), n_threads=n_threads,
                           device=device)
        self.set_seed(seed)
        self.chat_format = chat_format
        if chat_format is not None:
            self._use_chat_format(chat_format)
        if self.verbose:
            print(f"edgellama: loaded {self.model_path} ({self._llm.n_ctx} tokens of context, "
                  f"{'CUDA' if device == 'cuda' else f'{self._llm.n_threads} CPU threads'})", file=sys.stderr)

    # --- construction ----------------------------------------------------------------------------
    @classmethod
    def from_pretrained(cls, repo_id: str, filename: Optional[str], **kwargs: Any) -> "Llama":
        """Downloads `filename` (a name or a glob such as "*q4_0.gguf") of a Hugging Face repo with
        huggingface_hub, then loads it with kwargs."""
        try:
            import huggingface_hub
        except ImportError:
            raise InvalidArgumentError("repo_id", "Llama.from_pretrained needs huggingface_hub: "
                                                  "pip install huggingface_hub") from None
        files = [f for f in huggingface_hub.list_repo_files(repo_id) if fnmatch.fnmatch(f, filename or "*.gguf")]
        if len(files) != 1:
            raise InvalidArgumentError("filename", f"matches {len(files)} files of {repo_id} "
                                                   f"({', '.join(files[:5]) or 'none'}); name one")
        return cls(huggingface_hub.hf_hub_download(repo_id, files[0]), **kwargs)

    def _use_chat_format(self, chat_format: str) -> None:
        from edgellama.chat import ChatTemplate

        if chat_format not in CHAT_FORMATS:
            raise InvalidArgumentError("chat_format", f"unknown {chat_format!r}; edgellama knows "
                                                      f"{', '.join(sorted(CHAT_FORMATS))}")
        family = CHAT_FORMATS[chat_format]
        if family is not None:
            current = self._llm.chat_template
            self._llm._chat_template = ChatTemplate.builtin(family, current.bos_token, current.eos_token)

    # --- vocabulary ------------------------------------------------------------------------------
    def tokenize(self, text: bytes, add_bos: bool = True, special: bool = False) -> List[int]:
        if not isinstance(text, (bytes, bytearray)):
            raise InvalidArgumentError("text", f"must be bytes (llama-cpp-python's API), got {type(text).__name__}")
        try:
            decoded = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidArgumentError("text", f"is not valid UTF-8 (byte {exc.start})") from None
        # add_bos=True adds a BOS where the model's vocabulary asks for one (llama.cpp's add_special).
        return self._llm.tokenize(decoded, add_bos=None if arguments.flag("add_bos", add_bos) else False,
                                  special=special)

    def detokenize(self, tokens: Sequence[int], prev_tokens: Optional[Sequence[int]] = None,
                   special: bool = False) -> bytes:
        ids = arguments.token_ids("tokens", tokens, self._llm.n_vocab, allow_empty=True).tolist()
        special = arguments.flag("special", special)
        return b"".join(self._llm.tokenizer.piece_bytes(t, render_special=special) for t in ids
                        if special or not self._llm.tokenizer.is_special(t))

    def n_ctx(self) -> int:
        return self._llm.n_ctx

    def n_vocab(self) -> int:
        return self._llm.n_vocab

    def n_embd(self) -> int:
        return self._llm.config.n_embd

    def token_bos(self) -> int:
        return -1 if self._llm.tokenizer.bos_id is None else self._llm.tokenizer.bos_id

    def token_eos(self) -> int:
        return -1 if self._llm.tokenizer.eos_id is None else self._llm.tokenizer.eos_id

    @property
    def metadata(self) -> Dict[str, str]:
        """The GGUF metadata's scalar values as strings, as llama-cpp-python gives them."""
        return {k: str(v) for k, v in self._llm.model.metadata.items() if isinstance(v, (str, int, float, bool))}

    # --- state -----------------------------------------------------------------------------------
    def set_seed(self, seed: int) -> None:
        """The seed of calls that give none (-1 or 0xFFFFFFFF: a fresh random one each call)."""
        seed = arguments.integer("seed", seed, at_least=-1, at_most=2**64 - 1)
        self._seed = None if seed in RANDOM_SEEDS else seed

    def reset(self) -> None:
        self._llm.reset()

    def save_state(self):
        """The tokens and KV cache of sequence 0 (edgellama.session.LlamaState)."""
        return self._llm.save_state()

    def load_state(self, state) -> None:
        """Restores a save_state() of this model (StateError for another model's)."""
        self._llm.load_state(state)

    def eval(self, tokens: Sequence[int]) -> None:
        """Appends tokens to sequence 0 (llama-cpp-python keeps the scores; edgellama returns them
        from edgellama.Llama.eval)."""
        self._llm.eval(tokens, all_logits=False)

    # --- generation ------------------------------------------------------------------------------
    def __call__(self, prompt: Union[str, List[int]], **kwargs: Any):
        return self.create_completion(prompt, **kwargs)

    def create_completion(self, prompt: Union[str, List[int]], suffix: Optional[str] = None,
                          max_tokens: Optional[int] = 16, temperature: float = 0.8, top_p: float = 0.95,
                          min_p: float = 0.05, typical_p: float = 1.0, logprobs: Optional[int] = None,
                          echo: bool = False, stop: Union[None, str, List[str]] = None,
                          frequency_penalty: float = 0.0, presence_penalty: float = 0.0, repeat_penalty: float = 1.0,
                          top_k: int = 40, stream: bool = False, seed: Optional[int] = None,
                          logit_bias: Optional[Dict[int, float]] = None, grammar: Optional[str] = None,
                          model: Optional[str] = None, **llama_cpp_only: Any):
        _refuse_unsupported(llama_cpp_only)
        return self._llm.create_completion(
            prompt, max_tokens=_max_tokens(max_tokens), temperature=temperature, top_k=top_k, top_p=top_p,
            min_p=min_p, typical_p=typical_p, repeat_penalty=repeat_penalty, frequency_penalty=frequency_penalty,
            presence_penalty=presence_penalty, logit_bias=logit_bias, seed=self._seed_of(seed), stop=stop or None,
            stream=stream, logprobs=logprobs, echo=echo, suffix=suffix, grammar=_grammar_text(grammar),
            model=model or self.model_path)

    def create_chat_completion(self, messages: List[Mapping[str, Any]], functions: Optional[List[Dict]] = None,
                               function_call: Any = None, tools: Optional[List[Dict]] = None,
                               tool_choice: Any = None, temperature: float = 0.2, top_p: float = 0.95,
                               top_k: int = 40, min_p: float = 0.05, typical_p: float = 1.0, stream: bool = False,
                               stop: Union[None, str, List[str]] = None, seed: Optional[int] = None,
                               response_format: Optional[Mapping[str, Any]] = None,
                               max_tokens: Optional[int] = None, presence_penalty: float = 0.0,
                               frequency_penalty: float = 0.0, repeat_penalty: float = 1.0,
                               model: Optional[str] = None, logit_bias: Optional[Dict[int, float]] = None,
                               logprobs: Optional[bool] = None, top_logprobs: Optional[int] = None,
                               grammar: Optional[str] = None, **llama_cpp_only: Any):
        _refuse_unsupported(llama_cpp_only)
        if functions is not None:  # the legacy form of tools
            tools = [{"type": "function", "function": f} for f in functions]
            if isinstance(function_call, Mapping):
                tool_choice = {"type": "function", "function": {"name": function_call.get("name")}}
            elif function_call in ("auto", "none"):
                tool_choice = function_call
        response = self._llm.create_chat_completion(
            messages, max_tokens=_max_tokens(max_tokens), temperature=temperature, top_k=top_k, top_p=top_p,
            min_p=min_p, typical_p=typical_p, repeat_penalty=repeat_penalty, frequency_penalty=frequency_penalty,
            presence_penalty=presence_penalty, logit_bias=logit_bias, seed=self._seed_of(seed), stop=stop or None,
            stream=stream, logprobs=bool(logprobs), top_logprobs=top_logprobs if logprobs else None,
            response_format=_response_format(response_format), grammar=_grammar_text(grammar), tools=tools,
            tool_choice=tool_choice, model=model or self.model_path)
        if not stream:  # llama-cpp-python also gives a call as the legacy message.function_call
            for choice in response["choices"]:
                calls = choice["message"].get("tool_calls")
                if calls:
                    choice["message"]["function_call"] = dict(calls[0]["function"])
        return response

    def _seed_of(self, seed: Optional[int]) -> Optional[int]:
        if seed is None or seed in RANDOM_SEEDS:
            return self._seed if seed is None else None
        return seed

    # --- embeddings ------------------------------------------------------------------------------
    def create_embedding(self, input: Union[str, List[str]], model: Optional[str] = None) -> Dict[str, Any]:
        """OpenAI's embeddings response with llama-cpp-python's content: each input's embed()
        (unnormalized; per token unless a pooling_type pools them)."""
        vectors, count = self.embed(input, return_count=True)
        vectors = [vectors] if isinstance(input, str) else vectors
        return {"object": "list", "model": model or self.model_path,
                "data": [{"object": "embedding", "embedding": v, "index": i} for i, v in enumerate(vectors)],
                "usage": {"prompt_tokens": count, "total_tokens": count}}

    def embed(self, input: Union[str, List[str]], normalize: bool = False, truncate: bool = True,
              return_count: bool = False):
        """As llama-cpp-python: the final hidden states of a str's tokens (a list per token with the
        default pooling, NONE for llama models; one list with pooling_type MEAN, CLS or LAST), each
        scaled to unit length with normalize=True; a list of those for a list of str."""
        from edgellama.embeddings import hidden_states, input_ids

        normalize = arguments.flag("normalize", normalize)
        arguments.flag("truncate", truncate)
        all_ids = input_ids(self._llm, input)
        results = [self._pooled(hidden_states(self._llm, ids), normalize) for ids in all_ids]
        result = results[0] if isinstance(input, str) else results
        if arguments.flag("return_count", return_count):
            return result, sum(len(ids) for ids in all_ids)
        return result

    def _pooled(self, hidden: np.ndarray, normalize: bool):
        rows = hidden.astype(np.float64)
        if self.pooling != "none":
            rows = {"mean": rows.mean(axis=0), "first": rows[0], "last": rows[-1]}[self.pooling][None]
        if normalize:
            norms = np.linalg.norm(rows, axis=1, keepdims=True)
            rows = rows / np.where(norms > 0, norms, 1.0)
        vectors = rows.astype(np.float32).tolist()
        return vectors if self.pooling == "none" else vectors[0]


def _device(n_gpu_layers: Any, model_path: str) -> str:
    layers = arguments.integer("n_gpu_layers", n_gpu_layers, at_least=-1)
    if layers == 0:
        return "cpu"
    if layers == -1:
        return "cuda"
    from edgellama.gguf_loader import load_gguf

    n_layer = load_gguf(model_path).config.n_layer
    if layers < n_layer:
        raise InvalidArgumentError("n_gpu_layers", f"{layers} of {n_layer} layers: edgellama runs a model whole "
                                                   "on the CPU (0) or on the GPU (-1); partial offload is not supported")
    return "cuda"


def _training_context(model_path: str) -> int:
    from edgellama.gguf_loader import load_gguf

    return load_gguf(model_path).config.context_length


def _max_tokens(max_tokens: Any) -> Optional[int]:
    """llama-cpp-python's rule: None or <= 0 generates until the window is full."""
    if max_tokens is None:
        return None
    return None if arguments.integer("max_tokens", max_tokens) <= 0 else max_tokens


def _grammar_text(grammar: Any) -> Optional[str]:
    """GBNF text, or llama-cpp-python's LlamaGrammar (its source text)."""
    if grammar is None or isinstance(grammar, str):
        return grammar
    source = getattr(grammar, "_grammar", None)
    if isinstance(source, str):
        return source
    raise InvalidArgumentError("grammar", "must be GBNF text (a str)")


def _response_format(response_format: Any) -> Any:
    """llama-cpp-python's {"type": "json_object", "schema": {...}} as a json_schema format."""
    if isinstance(response_format, Mapping) and response_format.get("type") == "json_object" \
            and "schema" in response_format:
        return {"type": "json_schema", "json_schema": {"name": "output", "schema": response_format["schema"]}}
    return response_format


# llama-cpp-python parameters with no edgellama counterpart: refused when they ask for something.
_INERT_VALUES = {"tfs_z": 1.0, "mirostat_mode": 0, "mirostat_tau": 5.0, "mirostat_eta": 0.1,
                 "stopping_criteria": None, "logits_processor": None}


def _refuse_unsupported(given: Mapping[str, Any]) -> None:
    for name, value in given.items():
        if name not in _INERT_VALUES:
            raise InvalidArgumentError(name, "is not a parameter of llama-cpp-python's API")
        if value != _INERT_VALUES[name]:
            raise InvalidArgumentError(name, "is not supported by edgellama (leave it at its default)")

