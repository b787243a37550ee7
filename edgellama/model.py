"""The public model class: `Llama` loads a GGUF file, evaluates tokens in the C++ core and generates."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from edgellama import arguments
from edgellama import resources
from edgellama.errors import ContextOverflowError, ModelOutputError
from edgellama.gguf_loader import GGUFModel, ModelConfig, load_gguf
from edgellama.ownership import ModelOwnership
from edgellama.sampling import Sampler, SamplingParams, log_softmax_at

DEFAULT_N_CTX = 2048


def default_thread_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def _create_backend(device: str, model: GGUFModel, n_ctx: int, n_threads: int):
    """The forward-step engine: an object with forward(tokens, all_logits), truncate, reset and the
    n_past / n_ctx / n_threads properties (the interface of _core.LlamaModel)."""
    if device == "cpu":
        from edgellama import _core

        return _core.LlamaModel(model.config.core_dict(), model.core_tensors(), n_ctx, n_threads,
                                weights_file_mapped=model.matrices_in_mapping())
    if device == "cuda":
        from edgellama.cuda import create_cuda_model

        return create_cuda_model(model, n_ctx, n_threads)
    raise ValueError(f"unknown device {device!r} (expected 'cpu' or 'cuda')")


class Llama:
    """A llama-architecture model from a GGUF file.

    Args:
        model_path: the .gguf file.
        n_ctx: context window in tokens (KV cache size); default min(2048, the model's training context).
        n_threads: CPU threads for the forward step; default all cores this process may use.
        device: "cpu", or "cuda" for the GPU backend (edgellama.cuda; needs the _cuda module and a GPU).

    The KV cache persists between calls: `eval` appends to it, `reset`/`truncate` rewind it.

    Threads: one object may be shared. The cache holds one sequence, so each operation owns the
    model while it runs (edgellama.ownership): a generation from its first token to its last, eval,
    eval_greedy, reset and truncate for their call. A call from another thread waits its turn
    (`busy_timeout` seconds at most, then ModelBusyError; None, the default, waits as long as it
    takes). A streamed generation takes ownership at its first next() and keeps it until it is
    exhausted, closed or garbage-collected; while it is unfinished, any other use of the model from
    the thread that is consuming it raises ModelBusyError (waiting would deadlock). Tokenizing and
    the chat template need no ownership. Generations never interleave: for several independent
    conversations at once, use one Llama per conversation.
    """

    def __init__(self, model_path: Union[str, Path], n_ctx: Optional[int] = None,
                 n_threads: Optional[int] = None, device: str = "cpu"):
        self.model: GGUFModel = load_gguf(model_path)
        self.config: ModelConfig = self.model.config
        n_ctx = min(DEFAULT_N_CTX, self.config.context_length) if n_ctx is None else n_ctx
        n_threads = default_thread_count() if n_threads is None else n_threads
        # Types, ranges, and whether the window fits in memory, before anything is allocated.
        n_ctx, n_threads = resources.check_context_request(self.config, n_ctx, n_threads,
                                                           check_memory=device == "cpu")
        self.device = device
        with resources.allocation_errors(self.config, n_ctx, n_threads):
            self._core = _create_backend(device, self.model, n_ctx, n_threads)
        # The CUDA engine can make a greedy choice itself, so that only the token comes back
        # (eval_greedy); EDGELLAMA_CUDA_GREEDY=1 until that has run on a GPU.
        self._greedy_on_device = False
        if device == "cuda":
            from edgellama.cuda import _env_flag  # read as the engine's other settings are

            self._greedy_on_device = _env_flag("EDGELLAMA_CUDA_GREEDY")
        # One operation at a time owns the cache (the core releases the GIL during a forward step).
        self._ownership = ModelOwnership()
        self._cached_tokens: List[int] = []  # the tokens whose keys/values the cache holds
        self._lazy_lock = threading.Lock()  # builds the tokenizer and the chat template once
        self._tokenizer = None
        self._chat_template = None
        # GenerationStats of the latest generation to start (each generation fills its own object).
        self.last_stats = None

    # --- sizes -----------------------------------------------------------------------------
    @property
    def n_ctx(self) -> int:
        return self._core.n_ctx

    @property
    def n_vocab(self) -> int:
        return self.config.n_vocab

    @property
    def n_threads(self) -> int:
        return self._core.n_threads

    @property
    def model_name(self) -> str:
        """The file name without .gguf (the "model" field of completion responses)."""
        name = self.model.path.name
        return name[:-5] if name.lower().endswith(".gguf") else name

    @property
    def n_past(self) -> int:
        """Tokens currently held in the KV cache."""
        return self._core.n_past

    @property
    def busy_timeout(self) -> Optional[float]:
        """Seconds a call waits for a generation or eval running in another thread before it raises
        ModelBusyError; None (the default) waits for as long as it takes. A streaming generator that
        another thread keeps referenced but no longer advances holds the model until it is closed
        or collected: this timeout is the way out for the threads behind it."""
        return self._ownership.timeout

    @busy_timeout.setter
    def busy_timeout(self, seconds: Optional[float]) -> None:
        self._ownership.timeout = (None if seconds is None
                                   else arguments.real("busy_timeout", seconds, at_least=0.0))

    # --- tokens ----------------------------------------------------------------------------
    @property
    def tokenizer(self):
        if self._tokenizer is None:
            from edgellama.tokenizer import Tokenizer

            with self._lazy_lock:  # threads asking at once build it once
                if self._tokenizer is None:
                    self._tokenizer = Tokenizer.from_metadata(self.model.tokenizer_metadata)
        return self._tokenizer

    def tokenize(self, text: str, add_bos: Optional[bool] = None, special: bool = False) -> List[int]:
        """Token ids of text (a str). special=True lets control-token strings in text become those
        tokens. add_bos: None follows the model's metadata."""
        text = arguments.text("text", text)
        add_bos = arguments.optional_flag("add_bos", add_bos)
        return self.tokenizer.encode(text, add_bos=add_bos, special=arguments.flag("special", special))

    def detokenize(self, ids: Sequence[int]) -> str:
        """The text of token ids (a flat sequence of integers in [0, n_vocab))."""
        checked = arguments.token_ids("ids", ids, self.tokenizer.n_vocab, allow_empty=True)
        return self.tokenizer.decode(checked.tolist())

    @property
    def chat_template(self):
        if self._chat_template is None:
            from edgellama.chat import ChatTemplate

            tokenizer = self.tokenizer
            with self._lazy_lock:
                if self._chat_template is None:
                    self._chat_template = ChatTemplate.from_tokenizer_metadata(self.model.tokenizer_metadata,
                                                                               tokenizer)
        return self._chat_template

    def apply_chat_template(self, messages, add_generation_prompt: bool = True) -> str:
        """The prompt text for a conversation ([{"role": ..., "content": ...}, ...]), rendered with the
        model's chat template. The text holds the messages verbatim: tokenizing it with special=True
        would turn a message that spells a control token ("<|im_end|>") into that token. For the
        prompt's token ids use ``self.chat_template.encode(self.tokenizer, messages)`` (what
        create_chat_completion does), which keeps message text plain."""
        return self.chat_template.render(messages, add_generation_prompt=add_generation_prompt)

    # --- evaluation ------------------------------------------------------------------------
    def eval(self, ids: Sequence[int], all_logits: bool = False) -> np.ndarray:
        """Appends ids (a flat sequence of integer token ids in [0, n_vocab): a list, tuple, range or
        1-D numpy integer array; not floats, bools or nested lists) to the KV cache and returns
        float32 logits: shape (n_vocab,) for the last token, or (len(ids), n_vocab) with
        all_logits=True. Raises InvalidArgumentError for other ids and ContextOverflowError when the
        cache cannot hold them; nothing is evaluated then. Owns the model for the call."""
        all_logits = arguments.flag("all_logits", all_logits)
        return self._evaluate(ids, lambda tokens: self._core.forward(tokens, all_logits))

    def eval_greedy(self, ids: Sequence[int]) -> Tuple[int, float]:
        """Appends ids to the KV cache as eval does and returns the greedy choice after them: the
        first token of the largest logit and its log-probability (log-softmax). With
        EDGELLAMA_CUDA_GREEDY=1 the CUDA engine makes the choice on the device and returns only
        those two numbers; otherwise they come from the logits here. The same token either way."""
        if self._greedy_on_device:
            token, logprob = self._evaluate(ids, self._core.forward_greedy)
            return int(token), float(logprob)
        logits = self.eval(ids)
        token = int(np.argmax(logits))  # the first NaN, if there is one
        if np.isnan(logits[token]):
            raise ModelOutputError("a logit is NaN: the model's weights hold NaN or infinite values")
        return token, log_softmax_at(logits, token)

    def _evaluate(self, ids: Sequence[int], forward):
        """forward(int32 token ids) while owning the model, after eval's checks; the ids join the
        cached ones."""
        tokens = arguments.token_ids("ids", ids, self.n_vocab)
        with self._ownership.hold("eval"):
            if self.n_past + tokens.size > self.n_ctx:
                raise ContextOverflowError(
                    f"{tokens.size} new tokens + {self.n_past} cached exceed the context window "
                    f"n_ctx={self.n_ctx}; use a larger n_ctx or a shorter prompt")
            result = forward(tokens.astype(np.int32))
            self._cached_tokens.extend(tokens.tolist())
        return result

    def reset(self) -> None:
        """Empties the KV cache. Owns the model for the call."""
        with self._ownership.hold("reset"):
            self._core.reset()
            self._cached_tokens.clear()

    def truncate(self, n: int) -> None:
        """Keeps the first n cached tokens, forgetting the rest (n: an integer in [0, n_past]).
        Owns the model for the call."""
        with self._ownership.hold("truncate"):
            n = arguments.integer("n", n, at_least=0, at_most=self.n_past)
            self._core.truncate(n)
            del self._cached_tokens[n:]

    def _prefill_reusing_cache(self, ids: List[int]):
        """Evaluates ids as a fresh sequence, reusing the cached prefix they share with the last one.
        Returns (logits of the last token, number of reused tokens)."""
        from edgellama.generate import common_prefix_length

        if len(ids) > self.n_ctx:
            raise ContextOverflowError(f"prompt of {len(ids)} tokens exceeds the context window n_ctx={self.n_ctx}")
        if len(self._cached_tokens) != self.n_past:
            # An interrupted eval (Ctrl-C between the core's step and our bookkeeping) can leave the
            # record of cached tokens out of step with the cache: trust neither, start afresh.
            self.reset()
        # At least the last token is evaluated again: its logits are what we need.
        keep = min(common_prefix_length(self._cached_tokens, ids), len(ids) - 1)
        self.truncate(keep)
        return self.eval(ids[keep:]), keep

    # --- generation ------------------------------------------------------------------------
    def generate(self, prompt: Union[str, Sequence[int]], max_tokens: Optional[int] = 128,
                 temperature: float = 0.8, top_k: int = 40, top_p: float = 0.95, seed: Optional[int] = None,
                 stop: Union[None, str, Sequence[str]] = None, stream: bool = False,
                 add_bos: Optional[bool] = None) -> Union[str, Iterator[str]]:
        """Continues prompt (a str, or a flat sequence of token ids). Returns the text, or with
        stream=True an iterator of text pieces. Stops at max_tokens (None: a full context window),
        an end-of-turn token, a stop string (never included) or a full context window.

        Settings follow SamplingParams (temperature 0 is greedy; top_k 0 disables it); seed is None
        or an integer in [0, 2**64); stop is None, a str or a sequence of str. Every argument is
        checked here, before any token is evaluated: a wrong one is an InvalidArgumentError naming
        it. The generation owns the model from its first token to its last (see the class notes);
        a streamed one from its first next()."""
        from edgellama.api import run_records
        from edgellama.generate import text_pieces

        sampler = Sampler(SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p), seed,
                          n_vocab=self.n_vocab)
        stream = arguments.flag("stream", stream)
        pieces = text_pieces(run_records(self, self._prompt_ids(prompt, add_bos), max_tokens, sampler, stop))
        return pieces if stream else "".join(pieces)

    # --- OpenAI-style API --------------------------------------------------------------------
    def _prompt_ids(self, prompt: Union[str, Sequence[int]], add_bos: Optional[bool] = None) -> Sequence[int]:
        """Text is tokenized; anything else is taken for token ids (run_records checks them)."""
        if isinstance(prompt, str):
            return self.tokenize(prompt, add_bos=add_bos)
        arguments.optional_flag("add_bos", add_bos)
        return prompt

    def stream_tokens(self, prompt: Union[str, Sequence[int]], max_tokens: Optional[int] = 128,
                      temperature: float = 0.8, top_k: int = 40, top_p: float = 0.95, min_p: float = 0.05,
                      typical_p: float = 1.0, repeat_penalty: float = 1.0, frequency_penalty: float = 0.0,
                      presence_penalty: float = 0.0, penalty_last_n: int = 64,
                      logit_bias: Optional[Mapping[int, float]] = None, seed: Optional[int] = None,
                      stop: Union[None, str, Sequence[str]] = None, add_bos: Optional[bool] = None):
        """Iterator of per-token records (edgellama.generate.TokenRecord): .token (id), .text (the
        text this token releases; stop strings and their partial prefixes are held back and never
        released), .logprob (log-probability under the model's raw distribution) and
        .finish_reason (None until the last record: "stop" or "length"). A record for a sampled
        end-of-turn token comes last, with finish_reason "stop". max_tokens=None: until the
        context is full. Sampling knobs as in create_completion. The iterator owns the model from
        its first next() until it is exhausted, closed or collected (see the class notes)."""
        from edgellama.api import make_sampler, run_records

        sampler = make_sampler(temperature, top_k, top_p, min_p, typical_p, repeat_penalty, frequency_penalty,
                               presence_penalty, penalty_last_n, logit_bias, seed, n_vocab=self.n_vocab)
        return run_records(self, self._prompt_ids(prompt, add_bos), max_tokens, sampler, stop)

    def create_completion(self, prompt: Union[str, Sequence[int]], max_tokens: Optional[int] = 16,
                          temperature: float = 0.8, top_k: int = 40, top_p: float = 0.95, min_p: float = 0.05,
                          typical_p: float = 1.0, repeat_penalty: float = 1.0, frequency_penalty: float = 0.0,
                          presence_penalty: float = 0.0, penalty_last_n: int = 64,
                          logit_bias: Optional[Mapping[int, float]] = None, seed: Optional[int] = None,
                          stop: Union[None, str, Sequence[str]] = None, stream: bool = False,
                          add_bos: Optional[bool] = None):
        """Continues prompt. Returns an OpenAI "text_completion" dict
        ({id, object, created, model, choices: [{index, text, logprobs, finish_reason}], usage}),
        or with stream=True an iterator of such dicts, one per text piece, the last with
        finish_reason and usage. stop: a string or list of strings that end the text (never
        included); seed (None or an integer in [0, 2**64)) makes sampling reproducible.

        The sampling settings follow SamplingParams (temperature 0 is greedy, top_k 0 disables it,
        ...). logit_bias maps token ids (integers in [0, n_vocab), or strings of digits as JSON
        sends them) to a finite bias or -inf (a ban; banning every token is an error). Every
        argument is checked when the call is made, before any token is evaluated: a wrong one is
        an InvalidArgumentError naming it."""
        from edgellama.api import completion, make_sampler

        sampler = make_sampler(temperature, top_k, top_p, min_p, typical_p, repeat_penalty, frequency_penalty,
                               presence_penalty, penalty_last_n, logit_bias, seed, n_vocab=self.n_vocab)
        return completion(self, self._prompt_ids(prompt, add_bos), max_tokens, sampler, stop, stream, chat=False)

    def create_chat_completion(self, messages: Sequence[Mapping[str, Any]], max_tokens: Optional[int] = None,
                               temperature: float = 0.8, top_k: int = 40, top_p: float = 0.95,
                               min_p: float = 0.05, typical_p: float = 1.0, repeat_penalty: float = 1.0,
                               frequency_penalty: float = 0.0, presence_penalty: float = 0.0,
                               penalty_last_n: int = 64, logit_bias: Optional[Mapping[int, float]] = None,
                               seed: Optional[int] = None, stop: Union[None, str, Sequence[str]] = None,
                               stream: bool = False):
        """Answers a conversation ([{"role": "system"|"user"|"assistant", "content": str}, ...]).

        Returns an OpenAI "chat.completion" dict ({id, object, created, model, choices: [{index,
        message: {role, content}, logprobs, finish_reason}], usage}); with stream=True an iterator
        of "chat.completion.chunk" dicts: the first delta is {"role": "assistant"}, then
        {"content": piece}, and the last chunk has finish_reason and usage. The prompt is the
        model's chat template; the KV cache of the previous turn is reused, so a follow-up turn
        prefills only the new messages. max_tokens=None: until the context is full. Arguments are
        checked as by create_completion."""
        from edgellama.api import chat_prompt_ids, completion, make_sampler

        sampler = make_sampler(temperature, top_k, top_p, min_p, typical_p, repeat_penalty, frequency_penalty,
                               presence_penalty, penalty_last_n, logit_bias, seed, n_vocab=self.n_vocab)
        return completion(self, chat_prompt_ids(self, messages), max_tokens, sampler, stop, stream, chat=True)
