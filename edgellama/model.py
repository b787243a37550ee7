"""The public model class: `Llama` loads a GGUF file, evaluates tokens in the C++ core and generates."""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

import numpy as np

from edgellama import arguments
from edgellama import resources
from edgellama.errors import ContextOverflowError, InvalidArgumentError, ModelOutputError
from edgellama.gguf_loader import GGUFModel, ModelConfig, load_gguf
from edgellama.sampling import DEFAULTS, SAMPLING_FIELDS, Sampler, SamplingParams, log_softmax_at

if TYPE_CHECKING:  # for the annotations only: edgellama.session is imported where it is used
    from edgellama.session import LlamaState

DEFAULT_N_CTX = 2048


def default_thread_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


MAX_PARALLEL = resources.MAX_PARALLEL


def _create_backend(device: str, model: GGUFModel, n_ctx: int, n_threads: int, n_parallel: int, cuda_options,
                    cache_types: Tuple[str, str], activations: str):
    """The forward-step engine, with the batched-step interface of edgellama.engine.backends."""
    if device == "cpu":
        from edgellama import _core

        return _core.LlamaModel(model.config.core_dict(), model.core_tensors(), n_ctx, n_threads,
                                weights_file_mapped=model.matrices_in_mapping(), n_seq=n_parallel,
                                cache_type_k=cache_types[0], cache_type_v=cache_types[1], activations=activations)
    if device == "cuda":
        from edgellama.cuda import create_cuda_model
        from edgellama.engine.backends import SingleSequenceBackend

        return SingleSequenceBackend(create_cuda_model(model, n_ctx, n_threads, cuda_options, activations=activations),
                                     greedy_on_device=cuda_options.greedy_on_device)
    raise ValueError(f"unknown device {device!r} (expected 'cpu' or 'cuda')")


ACTIVATIONS = ("precise", "int8")


def _check_activations(activations, device: str) -> str:
    """The matmul input rounding to use: the engine's default ("precise" on the CPU, "int8" on
    CUDA, where precise has yet to be measured on a GPU) when None."""
    if activations is None:
        return "precise" if device == "cpu" else "int8"
    activations = arguments.text("activations", activations)
    if activations not in ACTIVATIONS:
        raise InvalidArgumentError("activations", f"must be one of {', '.join(ACTIVATIONS)}, got {activations!r}")
    if device == "cuda":
        from edgellama.cuda import engine_activations

        supported = engine_activations()  # None without the module: its own error comes when the engine is made
        if supported is not None and activations not in supported:
            raise InvalidArgumentError("activations", f"this build of the CUDA engine (edgellama._cuda) rounds "
                                                      f"activations as {' or '.join(supported)} only, got "
                                                      f"{activations!r}; rebuild it to get {activations!r}")
    return activations


def _check_parallel(n_parallel, device: str) -> int:
    n_parallel = arguments.integer("n_parallel", n_parallel, at_least=1, at_most=MAX_PARALLEL)
    if device == "cuda" and n_parallel > 1:
        raise InvalidArgumentError("n_parallel", f"the CUDA engine runs one sequence; got {n_parallel} "
                                                 "(use device='cpu' for parallel sequences)")
    return n_parallel


def _check_cuda_options(cuda_options, device: str):
    if device != "cuda":
        if cuda_options is not None:
            raise InvalidArgumentError("cuda_options", f"apply to device='cuda' only, not device={device!r}")
        return None
    from edgellama.cuda import CudaOptions

    return CudaOptions.coerce(cuda_options)


class Llama:
    """A llama-architecture model from a GGUF file.

    Args:
        model_path: the .gguf file.
        n_ctx: context window of every sequence in tokens (KV cache size); default min(2048, the
            model's training context).
        n_threads: CPU threads for the forward step; default all cores this process may use.
        device: "cpu", or "cuda" for the GPU backend (edgellama.cuda; needs the _cuda module and a GPU).
        n_parallel: how many sequences the KV cache holds (default 1): up to this many generations
            run at once, their decode steps batched; more wait for a free sequence. Each sequence
            has its own window of n_ctx tokens, so the cache takes n_parallel times the memory of
            one (reserved up front, resident only as positions fill).
        cuda_options: with device="cuda", how the GPU engine runs (an edgellama.cuda.CudaOptions,
            or a dict of its fields; None: its defaults).
        cache_type_k, cache_type_v: how the KV cache stores keys and values: "f16" (default), or
            the quantized "q8_0" (53% of f16's memory) or "q4_0" (28%), CPU engine only. The
            attention reads the quantized blocks directly; see the README for their quality and speed.
        activations: how every matmul with quantized weights rounds its input. "precise" (the CPU
            default): each block of 32 or 256 values as int8 plus an int8 residual, about 15 bits,
            logits close to exact arithmetic on the weights. "int8": one int8 block, as llama.cpp
            rounds (about 0.25 logit RMS from exact on SmolLM2-135M; faster prefill). The CUDA
            engine runs both; its default is "int8" until precise is measured on a GPU. See the
            README for the measured cost.

    Sequence 0 is the one `eval`, `reset` and `truncate` work on, and `n_past` counts; generations
    take whichever sequence holds the longest prefix of their prompt, so a follow-up turn of a chat
    prefills only its new tokens.

    Threads and asyncio: one object may be shared. Generations started from many threads (or
    tasks, through `stream_tokens_async`) run side by side up to n_parallel, and queue beyond it;
    each has its own sampler, seed, stop strings and statistics, and produces exactly what it would
    alone. A streamed generation takes a sequence at its first next() and keeps it until it is
    exhausted, closed or garbage-collected. eval, eval_greedy, reset and truncate wait until
    sequence 0 is free. A wait that only the calling thread could end (every sequence it needs is
    held by an unfinished stream this thread is consuming) raises ModelBusyError at once; other
    waits for a sequence last `busy_timeout` seconds at most (None, the default: as long as it
    takes). Tokenizing and the chat template need no sequence.
    """

    def __init__(self, model_path: Union[str, Path], n_ctx: Optional[int] = None,
                 n_threads: Optional[int] = None, device: str = "cpu", n_parallel: int = 1,
                 cuda_options=None, cache_type_k: str = "f16", cache_type_v: str = "f16",
                 activations: Optional[str] = None):
        self.model: GGUFModel = load_gguf(model_path)
        self.config: ModelConfig = self.model.config
        n_ctx = min(DEFAULT_N_CTX, self.config.context_length) if n_ctx is None else n_ctx
        n_threads = default_thread_count() if n_threads is None else n_threads
        n_parallel = _check_parallel(n_parallel, device)
        cuda_options = _check_cuda_options(cuda_options, device)
        cache_types = resources.check_cache_types(self.config, cache_type_k, cache_type_v, device)
        activations = _check_activations(activations, device)
        # Types, ranges, and whether the window fits in memory, before anything is allocated.
        n_ctx, n_threads = resources.check_context_request(self.config, n_ctx, n_threads,
                                                           check_memory=device == "cpu", n_seq=n_parallel,
                                                           cache_types=cache_types)
        self.device = device
        with resources.allocation_errors(self.config, n_ctx, n_threads, n_parallel, cache_types):
            self._core = _create_backend(device, self.model, n_ctx, n_threads, n_parallel, cuda_options,
                                         cache_types, activations)
        self._activations = activations
        from edgellama.engine import Scheduler

        self._scheduler = Scheduler(self._core, n_ctx, n_parallel)
        self._lazy_lock = threading.Lock()  # builds the tokenizer and the chat template once
        self._tokenizer = None
        self._chat_template = None
        self._identity: Optional[str] = None  # model_identity, computed when a state first needs it
        # The statistics of the latest generation to start; each record carries its own (.stats).
        self.last_stats = None

    @property
    def _greedy_on_device(self) -> bool:
        """Whether the engine makes a plain greedy choice itself, so that only the token comes back
        (CudaOptions.greedy_on_device; eval_greedy and plain greedy generations): the backend's flag."""
        return getattr(self._core, "greedy_on_device", False)

    # --- sizes -----------------------------------------------------------------------------
    @property
    def n_ctx(self) -> int:
        return self._core.n_ctx

    @property
    def cache_types(self) -> Tuple[str, str]:
        """How the KV cache stores (keys, values): "f16", "q8_0" or "q4_0"."""
        return tuple(self._core.cache_types)

    @property
    def activations(self) -> str:
        """How the matmuls round their input: "precise" or "int8" (the `activations` argument)."""
        return self._activations

    @property
    def kv_cache_bytes(self) -> int:
        """Bytes of the KV cache when every sequence's window is full (reserved at creation;
        resident as positions fill)."""
        return resources.kv_cache_bytes(self.config, self.n_ctx, len(self._scheduler.slots), self.cache_types)

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
    def n_parallel(self) -> int:
        """Sequences the KV cache holds: generations that run at once."""
        return len(self._scheduler.slots)

    @property
    def cached_tokens(self) -> List[int]:
        """A copy of the tokens sequence 0 of the KV cache holds, in order (n_past of them)."""
        with self._scheduler.locked():
            return list(self._scheduler.slots[0].tokens)

    @property
    def n_past(self) -> int:
        """Tokens currently held in sequence 0 of the KV cache."""
        return self._core.seq_n_past(0)

    @property
    def busy_timeout(self) -> Optional[float]:
        """Seconds a call waits for a free sequence (a generation, or eval and friends for sequence
        0) before it raises ModelBusyError; None (the default) waits for as long as it takes. A
        streaming generator that is kept referenced but no longer advanced holds its sequence until
        it is closed or collected: this timeout is the way out for the callers behind it."""
        return self._scheduler.timeout

    @busy_timeout.setter
    def busy_timeout(self, seconds: Optional[float]) -> None:
        self._scheduler.timeout = (None if seconds is None
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

    def apply_chat_template(self, messages, add_generation_prompt: bool = True,
                            tools: Optional[Sequence[Mapping[str, Any]]] = None) -> str:
        """The prompt text for a conversation ([{"role": ..., "content": ...}, ...]), rendered with the
        model's chat template, with OpenAI function tools when given (as create_chat_completion
        renders them). The text holds the messages verbatim: tokenizing it with special=True
        would turn a message that spells a control token ("<|im_end|>") into that token. For the
        prompt's token ids use ``self.chat_template.encode(self.tokenizer, messages)`` (what
        create_chat_completion does), which keeps message text plain."""
        from edgellama.api import template_arguments
        from edgellama.tools import tool_use

        messages, extra = template_arguments(self, messages, tool_use(tools, None))
        return self.chat_template.render(messages, add_generation_prompt=add_generation_prompt, **extra)

    # --- evaluation ------------------------------------------------------------------------
    def eval(self, ids: Sequence[int], all_logits: bool = False) -> np.ndarray:
        """Appends ids (a flat sequence of integer token ids in [0, n_vocab): a list, tuple, range or
        1-D numpy integer array; not floats, bools or nested lists) to the KV cache and returns
        float32 logits: shape (n_vocab,) for the last token, or (len(ids), n_vocab) with
        all_logits=True. Raises InvalidArgumentError for other ids and ContextOverflowError when the
        cache cannot hold them; nothing is evaluated then. Works on sequence 0 (see the class notes)."""
        all_logits = arguments.flag("all_logits", all_logits)
        return self._evaluate(ids, lambda tokens: self._core.forward(tokens, all_logits))

    def eval_greedy(self, ids: Sequence[int]) -> Tuple[int, float]:
        """Appends ids to the KV cache as eval does and returns the greedy choice after them: the
        first token of the largest logit and its log-probability (log-softmax). With
        CudaOptions.greedy_on_device the CUDA engine makes the choice on the device and returns
        only those two numbers; otherwise they come from the logits here. The same token either way."""
        if self._greedy_on_device:
            token, logprob = self._evaluate(ids, self._core.forward_greedy)
            return int(token), float(logprob)
        logits = self.eval(ids)
        token = int(np.argmax(logits))  # the first NaN, if there is one
        if np.isnan(logits[token]):
            raise ModelOutputError("a logit is NaN: the model's weights hold NaN or infinite values")
        return token, log_softmax_at(logits, token)

    def _evaluate(self, ids: Sequence[int], forward):
        """forward(int32 token ids) on sequence 0, holding it, after eval's checks."""
        tokens = arguments.token_ids("ids", ids, self.n_vocab)
        with self._scheduler.direct(0, "eval") as slot:
            if len(slot.tokens) + tokens.size > self.n_ctx:
                raise ContextOverflowError(
                    f"{tokens.size} new tokens + {len(slot.tokens)} cached exceed the context window "
                    f"n_ctx={self.n_ctx}; use a larger n_ctx or a shorter prompt")
            result = forward(tokens.astype(np.int32))
            slot.tokens.extend(tokens.tolist())
        return result

    def reset(self) -> None:
        """Empties sequence 0 of the KV cache. Waits for the sequence as eval does."""
        with self._scheduler.direct(0, "reset") as slot:
            self._core.seq_clear(0)
            slot.keep_first(0)

    def truncate(self, n: int) -> None:
        """Keeps the first n tokens of sequence 0, forgetting the rest (n: an integer in [0, n_past]).
        Waits for the sequence as eval does."""
        with self._scheduler.direct(0, "truncate") as slot:
            n = arguments.integer("n", n, at_least=0, at_most=len(slot.tokens))
            self._core.seq_truncate(0, n)
            slot.keep_first(n)

    # --- saved state -----------------------------------------------------------------------
    def save_state(self, n_tokens: Optional[int] = None) -> "LlamaState":
        """Sequence 0's tokens and KV cache, copied (edgellama.session.LlamaState); n_tokens: only
        the first n_tokens. Waits for the sequence as eval does. After a context shift, only the
        kept prefix whose cache is what a fresh evaluation gives is saved. The same layout on
        every engine."""
        from edgellama.session import LlamaState

        with self._scheduler.direct(0, "save_state") as slot:
            n = len(slot.tokens) if slot.exact is None else slot.exact
            if n_tokens is not None:
                n = min(n, arguments.integer("n_tokens", n_tokens, at_least=0))
            keys, values = self._core.seq_read(0, n)
            return LlamaState(self.identity, tuple(slot.tokens[:n]), keys, values, self.cache_types)

    def load_state(self, state: "LlamaState") -> None:
        """Makes sequence 0 hold a state from save_state: a later generation whose prompt starts
        with its tokens evaluates only the rest. StateError for another model's state, one of
        another cache type or one longer than n_ctx; the cache is unchanged then."""
        from edgellama.session import check_state

        c = self.config
        state = check_state(state, self.identity, (c.n_layer, c.n_head_kv, c.head_dim), self.n_ctx,
                            self.cache_types)
        with self._scheduler.direct(0, "load_state") as slot:
            self._core.seq_write(0, state.keys, state.values)
            slot.hold(state.tokens)

    def save_session(self, path: Union[str, Path], n_tokens: Optional[int] = None) -> None:
        """save_state(n_tokens) written to a file, atomically, with a version, the model's identity
        and a checksum (edgellama/session.py)."""
        from edgellama.session import write_session

        write_session(path, self.save_state(n_tokens))

    def load_session(self, path: Union[str, Path]) -> None:
        """load_state() of a file from save_session. StateError for a corrupt, truncated or
        foreign file (the cache is unchanged then); FileNotFoundError when there is none."""
        from edgellama.session import read_session

        self.load_state(read_session(path))

    @property
    def identity(self) -> str:
        """A digest naming this model's weights and vocabulary, which saved states carry
        (edgellama.session.model_identity)."""
        if self._identity is None:
            from edgellama.session import model_identity

            self._identity = model_identity(self.model)
        return self._identity

    # --- embeddings ------------------------------------------------------------------------
    def embed(self, input: Union[str, Sequence[int], Sequence[str], Sequence[Sequence[int]]]) -> List[List[float]]:
        """Unit-length embeddings (n_embd floats each) of a str, a list of str, token ids or a list
        of token-id lists: the mean of the model's final hidden state over each input's tokens
        (edgellama.embeddings says what that means for a generative model). CPU engine only."""
        from edgellama.embeddings import embed_ids, input_ids

        return [embed_ids(self, ids).tolist() for ids in input_ids(self, input)]

    def create_embedding(self, input: Union[str, Sequence[int], Sequence[str], Sequence[Sequence[int]]],
                         model: Optional[str] = None) -> Dict[str, Any]:
        """embed() as OpenAI's response: {"object": "list", "data": [{"object": "embedding",
        "embedding", "index"}], "model", "usage"}."""
        from edgellama.embeddings import embedding_response

        return embedding_response(self, input, model or self.model_name)

    # --- generation ------------------------------------------------------------------------
    def generate(self, prompt: Union[str, Sequence[int]], max_tokens: Optional[int] = 128,
                 temperature: float = DEFAULTS.temperature, top_k: int = DEFAULTS.top_k,
                 top_p: float = DEFAULTS.top_p, seed: Optional[int] = None,
                 stop: Union[None, str, Sequence[str]] = None, stream: bool = False,
                 add_bos: Optional[bool] = None, response_format: Optional[Mapping[str, Any]] = None,
                 grammar: Optional[str] = None, regex: Optional[str] = None,
                 context_shift: Union[bool, int] = False) -> Union[str, Iterator[str]]:
        """Continues prompt (a str, or a flat sequence of token ids). Returns the text, or with
        stream=True an iterator of text pieces. Stops at max_tokens (None: a full context window),
        an end-of-turn token, a stop string (never included) or a full context window.

        The other sampling settings take SamplingParams' defaults (temperature 0 is greedy; top_k
        0 disables it); seed is None or an integer in [0, 2**64); stop is None, a str or a sequence
        of str. Every argument is checked here, before any token is evaluated: a wrong one is an
        InvalidArgumentError naming it. A streamed generation takes its sequence at its first
        next() (see the class notes). response_format, grammar, regex and context_shift as in
        create_completion."""
        from edgellama.generate import text_pieces

        sampler = self._sampler(dict(temperature=temperature, top_k=top_k, top_p=top_p), seed)
        stream = arguments.flag("stream", stream)
        constraint = self._constraint(response_format, grammar, regex)
        ids = self._prompt_ids(prompt, add_bos)
        pieces = text_pieces(self._records(ids, max_tokens, sampler, stop, constraint,
                                           self._context_keep(context_shift, ids)))
        return pieces if stream else "".join(pieces)

    def _sampler(self, settings: Mapping[str, Any], seed: Optional[int]) -> Sampler:
        """A Sampler of SamplingParams(**settings); InvalidArgumentError naming a wrong setting."""
        return Sampler(SamplingParams(**settings), seed, n_vocab=self.n_vocab)

    def _samplers(self, settings: Mapping[str, Any], seed: Optional[int], n: int) -> List[Sampler]:
        """One Sampler per choice; choice i samples with seed + i."""
        params = SamplingParams(**settings)
        return [Sampler(params, s, n_vocab=self.n_vocab) for s in arguments.choice_seeds(seed, n)]

    def _records(self, prompt_ids: Sequence[int], max_tokens: Optional[int], sampler: Sampler, stop,
                 constraint=None, keep: Optional[int] = None):
        from edgellama.api import run_records  # looked up at each call: the CLI's tests replace it

        extra = {name: value for name, value in (("constraint", constraint), ("keep", keep)) if value is not None}
        return run_records(self, prompt_ids, max_tokens, sampler, stop, **extra)

    def _context_keep(self, context_shift: Any, prompt_ids: Sequence[int],
                      default_keep: Optional[int] = None) -> Optional[int]:
        """None without a context shift, else the number of leading tokens it keeps: context_shift
        itself when it is an integer, else default_keep (None: the prompt's BOS, if it has one), at
        most half the window (a shift must leave room to go on)."""
        keep = arguments.context_shift(context_shift)
        if keep is None:
            return None
        if keep is True:
            bos = self.tokenizer.bos_id
            keep = default_keep if default_keep is not None else int(
                len(prompt_ids) > 0 and bos is not None and int(prompt_ids[0]) == bos)
            keep = min(keep, self.n_ctx // 2)
        if keep > self.n_ctx - 2:
            raise InvalidArgumentError("context_shift", f"keeps {keep} tokens, which leaves no room in "
                                                        f"n_ctx={self.n_ctx} (at most {self.n_ctx - 2})")
        return keep

    # --- OpenAI-style API --------------------------------------------------------------------
    def _prompt_ids(self, prompt: Union[str, Sequence[int]], add_bos: Optional[bool] = None) -> Sequence[int]:
        """Text is tokenized; anything else is taken for token ids (run_records checks them)."""
        if isinstance(prompt, str):
            return self.tokenize(prompt, add_bos=add_bos)
        arguments.optional_flag("add_bos", add_bos)
        return prompt

    def stream_tokens(self, prompt: Union[str, Sequence[int]], max_tokens: Optional[int] = 128,
                      temperature: float = DEFAULTS.temperature, top_k: int = DEFAULTS.top_k,
                      top_p: float = DEFAULTS.top_p, min_p: float = DEFAULTS.min_p,
                      typical_p: float = DEFAULTS.typical_p, repeat_penalty: float = DEFAULTS.repeat_penalty,
                      frequency_penalty: float = DEFAULTS.frequency_penalty,
                      presence_penalty: float = DEFAULTS.presence_penalty,
                      penalty_last_n: int = DEFAULTS.penalty_last_n,
                      logit_bias: Optional[Mapping[int, float]] = None, seed: Optional[int] = None,
                      stop: Union[None, str, Sequence[str]] = None, add_bos: Optional[bool] = None,
                      context_shift: Union[bool, int] = False):
        """Iterator of per-token records (edgellama.generate.TokenRecord): .token (id), .text (the
        text this token releases; stop strings and their partial prefixes are held back and never
        released), .logprob (log-probability under the model's raw distribution),
        .finish_reason (None until the last record: "stop" or "length") and .stats (the
        generation's GenerationStats). A record for a sampled end-of-turn token comes last, with
        finish_reason "stop". max_tokens=None: until the context is full. Sampling knobs as in
        create_completion, and context_shift. The iterator holds a sequence from its first next()
        until it is exhausted, closed or collected (see the class notes)."""
        settings = _settings(locals())
        ids = self._prompt_ids(prompt, add_bos)
        return self._records(ids, max_tokens, self._sampler(settings, seed), stop,
                             keep=self._context_keep(context_shift, ids))

    def stream_tokens_async(self, prompt: Union[str, Sequence[int]], max_tokens: Optional[int] = 128,
                            temperature: float = DEFAULTS.temperature, top_k: int = DEFAULTS.top_k,
                            top_p: float = DEFAULTS.top_p, min_p: float = DEFAULTS.min_p,
                            typical_p: float = DEFAULTS.typical_p,
                            repeat_penalty: float = DEFAULTS.repeat_penalty,
                            frequency_penalty: float = DEFAULTS.frequency_penalty,
                            presence_penalty: float = DEFAULTS.presence_penalty,
                            penalty_last_n: int = DEFAULTS.penalty_last_n,
                            logit_bias: Optional[Mapping[int, float]] = None, seed: Optional[int] = None,
                            stop: Union[None, str, Sequence[str]] = None, add_bos: Optional[bool] = None,
                            context_shift: Union[bool, int] = False):
        """stream_tokens as an async iterator, for asyncio code: ``async for record in ...``. It
        never blocks the event loop (forward steps run on the scheduler's own step thread); closing it
        (``aclose()``) or dropping it frees its sequence. Arguments are checked at the call."""
        from edgellama.api import async_records

        settings = _settings(locals())
        ids = self._prompt_ids(prompt, add_bos)
        return async_records(self, ids, max_tokens, self._sampler(settings, seed), stop,
                             keep=self._context_keep(context_shift, ids))

    def create_completion(self, prompt: Union[str, Sequence[int]], max_tokens: Optional[int] = 16,
                          temperature: float = DEFAULTS.temperature, top_k: int = DEFAULTS.top_k,
                          top_p: float = DEFAULTS.top_p, min_p: float = DEFAULTS.min_p,
                          typical_p: float = DEFAULTS.typical_p, repeat_penalty: float = DEFAULTS.repeat_penalty,
                          frequency_penalty: float = DEFAULTS.frequency_penalty,
                          presence_penalty: float = DEFAULTS.presence_penalty,
                          penalty_last_n: int = DEFAULTS.penalty_last_n,
                          logit_bias: Optional[Mapping[int, float]] = None, seed: Optional[int] = None,
                          stop: Union[None, str, Sequence[str]] = None, stream: bool = False,
                          add_bos: Optional[bool] = None, logprobs: Optional[int] = None,
                          response_format: Optional[Mapping[str, Any]] = None, grammar: Optional[str] = None,
                          regex: Optional[str] = None, n: int = 1, best_of: Optional[int] = None,
                          echo: bool = False, suffix: Optional[str] = None,
                          stream_options: Optional[Mapping[str, Any]] = None, model: Optional[str] = None,
                          user: Optional[str] = None, context_shift: Union[bool, int] = False):
        """Continues prompt. Returns an OpenAI "text_completion" dict
        ({id, object, created, model, choices: [{index, text, logprobs, finish_reason}], usage}),
        or with stream=True an iterator of such dicts, one per text piece, the last with
        finish_reason and usage. stop: a string or list of strings that end the text (never
        included); seed (None or an integer in [0, 2**64)) makes sampling reproducible.

        The sampling settings follow SamplingParams (temperature 0 is greedy, top_k 0 disables it,
        ...). logit_bias maps token ids (integers in [0, n_vocab), or strings of digits as JSON
        sends them) to a finite bias or -inf (a ban; banning every token is an error). Every
        argument is checked when the call is made, before any token is evaluated: a wrong one is
        an InvalidArgumentError naming it. logprobs: None, or an integer in [0, 20]: each choice
        then has OpenAI's legacy "logprobs" ({tokens, token_logprobs, top_logprobs, text_offset})
        with that many alternatives per token.

        Structured output (the `structured` extra): response_format={"type": "json_object"} or
        {"type": "json_schema", "json_schema": {"name", "schema"}}, grammar= (Lark or GBNF text)
        or regex= constrain the text to that format; it ends with finish_reason "stop" where the
        format is complete, or "length" when max_tokens cut it first (then it is not valid). An
        invalid schema, grammar or regex is an InvalidArgumentError before any token.

        OpenAI's other parameters: n choices (at most 16; choice i samples with seed + i; they run
        as parallel sequences, n_parallel at a time); best_of only as n; echo starts each text
        with the prompt (not with logprobs); stream_options={"include_usage": True} ends a stream
        with a usage chunk with no choices; model names the response's model; user is accepted
        and not kept. suffix (fill-in-the-middle) is not supported: an InvalidArgumentError.

        context_shift: when the window fills, instead of ending with finish_reason "length", drop
        the older half of the tokens after a kept prefix and go on, the kept keys rotated to their
        new positions in place (no recomputation; llama.cpp's context shift). True keeps the BOS
        (create_chat_completion: the system prompt), an integer n the first n tokens. The text
        after a shift no longer sees the dropped tokens. max_tokens=None then means one window's
        worth of tokens."""
        from edgellama.api import completion

        n = _choices(n, best_of)
        samplers = self._samplers(_settings(locals()), seed, n)
        if suffix is not None:
            raise InvalidArgumentError("suffix", "is not supported: the models complete text left to right "
                                                 "(no fill-in-the-middle)")
        if arguments.flag("echo", echo) and logprobs is not None:
            raise InvalidArgumentError("echo", "with logprobs is not supported (the prompt's log-probabilities)")
        constraint = self._constraint(response_format, grammar, regex)
        ids = self._prompt_ids(prompt, add_bos)
        return completion(self, ids, max_tokens, samplers, stop, stream, chat=False,
                          top_logprobs=logprobs, constraint=constraint, model=_names("model", model, user),
                          echo=echo, include_usage=arguments.include_usage(stream_options, stream),
                          keep=self._context_keep(context_shift, ids))

    def create_chat_completion(self, messages: Sequence[Mapping[str, Any]], max_tokens: Optional[int] = None,
                               temperature: float = DEFAULTS.temperature, top_k: int = DEFAULTS.top_k,
                               top_p: float = DEFAULTS.top_p, min_p: float = DEFAULTS.min_p,
                               typical_p: float = DEFAULTS.typical_p,
                               repeat_penalty: float = DEFAULTS.repeat_penalty,
                               frequency_penalty: float = DEFAULTS.frequency_penalty,
                               presence_penalty: float = DEFAULTS.presence_penalty,
                               penalty_last_n: int = DEFAULTS.penalty_last_n,
                               logit_bias: Optional[Mapping[int, float]] = None,
                               seed: Optional[int] = None, stop: Union[None, str, Sequence[str]] = None,
                               stream: bool = False, logprobs: bool = False, top_logprobs: Optional[int] = None,
                               response_format: Optional[Mapping[str, Any]] = None, grammar: Optional[str] = None,
                               regex: Optional[str] = None, tools: Optional[Sequence[Mapping[str, Any]]] = None,
                               tool_choice: Union[None, str, Mapping[str, Any]] = None, n: int = 1,
                               max_completion_tokens: Optional[int] = None,
                               stream_options: Optional[Mapping[str, Any]] = None, model: Optional[str] = None,
                               user: Optional[str] = None, guard=None, code_shield=None, guard_every: int = 64,
                               context_shift: Union[bool, int] = False):
        """Answers a conversation ([{"role": "system"|"user"|"assistant", "content": str}, ...]).

        Returns an OpenAI "chat.completion" dict ({id, object, created, model, choices: [{index,
        message: {role, content}, logprobs, finish_reason}], usage}); with stream=True an iterator
        of "chat.completion.chunk" dicts: the first delta is {"role": "assistant"}, then
        {"content": piece}, and the last chunk has finish_reason and usage. The prompt is the
        model's chat template; the KV cache of the previous turn is reused, so a follow-up turn
        prefills only the new messages. max_tokens=None: until the context is full. Arguments are
        checked as by create_completion. logprobs=True gives each choice OpenAI's "logprobs"
        ({"content": [{token, logprob, bytes, top_logprobs}]}), with top_logprobs (0 to 20)
        alternatives per token. response_format, grammar and regex constrain the answer as in
        create_completion.

        tools: OpenAI function tools ([{"type": "function", "function": {"name", "description",
        "parameters"}}]), rendered through the chat template (listed in a system message when
        the template takes none). tool_choice: "auto" (the default with tools), "none",
        "required", or {"type": "function", "function": {"name": ...}}; with the last two the call
        is constrained to the functions' parameter schemas. An answer that calls tools has
        message.tool_calls ([{id, type: "function", function: {name, arguments: JSON text}}]),
        content None and finish_reason "tool_calls"; streamed, tool-call deltas.

        n, stream_options, model and user as in create_completion; max_completion_tokens is
        OpenAI's newer name for max_tokens (give one, or both equal).

        guard: an edgellama.guard.LlamaGuard that checks the last user message before any token is
        evaluated and the answer when it ends (streamed: also every guard_every pieces);
        code_shield: an edgellama.guard.CodeShield that scans each code block as it closes and the
        code in tool calls. A blocked request or answer has finish_reason "content_filter",
        content None, a "refusal" message and the verdicts in a "guard" field."""
        from edgellama.api import chat_prompt_ids, completion, system_prefix_length
        from edgellama.tools import tool_use

        samplers = self._samplers(_settings(locals()), seed, _choices(n, None))
        if not arguments.flag("logprobs", logprobs) and top_logprobs is not None:
            raise InvalidArgumentError("top_logprobs", "needs logprobs=True")
        if max_completion_tokens is not None:
            if max_tokens is not None and max_tokens != max_completion_tokens:
                raise InvalidArgumentError("max_completion_tokens", "differs from max_tokens; give one of them")
            max_tokens = max_completion_tokens
        use = tool_use(tools, tool_choice)
        constraint = self._constraint(response_format, grammar, regex, use)
        ids = chat_prompt_ids(self, messages, use)
        include_usage = arguments.include_usage(stream_options, stream)
        keep = self._context_keep(context_shift, ids, system_prefix_length(self, messages, ids)
                                  if context_shift is True else None)

        def respond():
            return completion(self, ids, max_tokens, samplers, stop, stream, chat=True,
                              top_logprobs=(top_logprobs or 0) if logprobs else None, constraint=constraint,
                              tool_names=use.names if use is not None and use.parses_calls else None,
                              model=_names("model", model, user), include_usage=include_usage, keep=keep)

        if guard is None and code_shield is None:
            return respond()
        from edgellama.guard.chat import Guards, guarded

        every = arguments.integer("guard_every", guard_every, at_least=1)
        return guarded(self, messages, Guards(guard, code_shield, every), arguments.flag("stream", stream),
                       len(samplers), model, respond)

    def _constraint(self, response_format, grammar, regex, tools=None):
        """The checked Constraint of a request's structured-output arguments and of a tool
        choice that forces a call (tools: None or a ToolUse); None for free text."""
        forced = tools.call_schema() if tools is not None else None
        if forced is not None:
            if not (response_format is None and grammar is None and regex is None):
                raise InvalidArgumentError("tool_choice", "a forced tool call has its own format; "
                                                          "leave out response_format, grammar and regex")
            from edgellama.constraints.grammar import json_schema_constraint

            return json_schema_constraint(self.tokenizer, self.n_vocab, forced, "tools")
        if response_format is None and grammar is None and regex is None:
            return None  # free text needs no constraint engine installed
        from edgellama.constraints import constraint_from

        return constraint_from(self.tokenizer, self.n_vocab, response_format, grammar, regex)



def _choices(n: Any, best_of: Any) -> int:
    """n checked; best_of is supported only as n (every choice is returned)."""
    n = arguments.choices(n)
    if best_of is not None and arguments.integer("best_of", best_of, at_least=1) != n:
        raise InvalidArgumentError("best_of", f"is supported only equal to n ({n}): every choice is returned")
    return n


def _names(name: str, model: Any, user: Any) -> Optional[str]:
    """The model id a response names (None: the model's own), with user checked: both None or a str."""
    for label, value in ((name, model), ("user", user)):
        if value is not None and not isinstance(value, str):
            raise InvalidArgumentError(label, f"must be a string, got {type(value).__name__}")
    return model


def _settings(arguments_given: Mapping[str, Any]) -> Dict[str, Any]:
    """The SamplingParams fields among a method's arguments (its locals())."""
    return {name: arguments_given[name] for name in SAMPLING_FIELDS if name in arguments_given}
