"""OpenAI-style completion responses built on the generation loop (used by Llama.create_completion,
Llama.create_chat_completion and Llama.stream_tokens).

Non-streamed calls return one dict; streamed calls return an iterator of chunk dicts whose last
chunk carries finish_reason and usage. Field names and types follow the OpenAI API:

    {"id": "chatcmpl-…", "object": "chat.completion", "created": 1700000000, "model": "…",
     "choices": [{"index": 0, "message": {"role": "assistant", "content": "…"},
                  "logprobs": None, "finish_reason": "stop" | "length"}],
     "usage": {"prompt_tokens": 12, "completion_tokens": 5, "total_tokens": 17}}
"""

from __future__ import annotations

import asyncio
import re
from typing import Any, AsyncIterator, Dict, Iterator, List, Mapping, Optional, Sequence, Tuple, Union

from edgellama import arguments
from edgellama.engine.request import GenerationRequest
from edgellama.generate import TokenRecord
from edgellama.openai_shapes import ChoiceStream, ResponseShape, usage
from edgellama.sampling import DEFAULTS, Sampler, SamplingParams

Stop = Union[None, str, Sequence[str]]
MAX_TOP_LOGPROBS = 20  # as OpenAI's API


def stop_list(stop: Stop) -> List[str]:
    """The stop strings of a stop argument (None, a str, or a sequence of str)."""
    return arguments.stop_strings(stop)


def make_sampler(temperature: float = DEFAULTS.temperature, top_k: int = DEFAULTS.top_k,
                 top_p: float = DEFAULTS.top_p, min_p: float = DEFAULTS.min_p, typical_p: float = DEFAULTS.typical_p,
                 repeat_penalty: float = DEFAULTS.repeat_penalty, frequency_penalty: float = DEFAULTS.frequency_penalty,
                 presence_penalty: float = DEFAULTS.presence_penalty, penalty_last_n: int = DEFAULTS.penalty_last_n,
                 logit_bias: Optional[Mapping[int, float]] = None, seed: Optional[int] = None,
                 n_vocab: Optional[int] = None) -> Sampler:
    """A Sampler for these settings; InvalidArgumentError naming the first wrong one. With n_vocab
    (the model's vocabulary size) logit_bias is checked against the vocabulary too."""
    params = SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, typical_p=typical_p,
                            repeat_penalty=repeat_penalty, frequency_penalty=frequency_penalty,
                            presence_penalty=presence_penalty, penalty_last_n=penalty_last_n,
                            logit_bias=logit_bias)
    return Sampler(params, seed, n_vocab=n_vocab)


def chat_prompt_ids(llm, messages: Sequence[Mapping[str, Any]], tools=None) -> List[int]:
    """The token ids of a conversation rendered with the model's chat template, ready for the
    assistant's answer (ChatTemplate.encode). The template's markup becomes control tokens; the
    messages' text stays text even where it spells one (``<|im_end|>``), so a user cannot forge
    a turn. A BOS the template writes itself is not doubled by the tokenizer's own add_bos.
    tools: None or an edgellama.tools.ToolUse; a template that takes ``tools`` renders them, for
    one that does not they are listed in a system message. Raises ChatTemplateError for
    malformed messages or a failing template."""
    messages, extra = template_arguments(llm, messages, tools)
    return llm.chat_template.encode(llm.tokenizer, messages, add_generation_prompt=True, **extra)


def system_prefix_length(llm, messages: Sequence[Mapping[str, Any]], prompt_ids: Sequence[int]) -> Optional[int]:
    """How many of prompt_ids render the conversation's leading system messages (what a context
    shift keeps by default), or None when there are none or the template renders them only with
    a turn after them (then the shift keeps the BOS)."""
    from edgellama.errors import EdgellamaError
    from edgellama.generate import common_prefix_length

    count = next((i for i, m in enumerate(messages) if not (isinstance(m, Mapping) and m.get("role") == "system")),
                 len(messages))
    if count == 0:
        return None
    try:
        system = llm.chat_template.encode(llm.tokenizer, list(messages[:count]), add_generation_prompt=False)
    except EdgellamaError:
        return None
    return common_prefix_length(list(system), list(prompt_ids)) or None


_TAKES_TOOLS = re.compile(r"\btools\b")  # the template reads the tools variable


def template_arguments(llm, messages: Sequence[Mapping[str, Any]], tools) -> Tuple[Sequence[Mapping[str, Any]],
                                                                                  Dict[str, Any]]:
    """The messages and extra variables the chat template renders for a ToolUse (or None). A
    template that takes no tools gets earlier tool calls written as the JSON the model answers
    with, also when this request offers no tools."""
    from edgellama.tools.definitions import calls_as_text

    takes_tools = _TAKES_TOOLS.search(llm.chat_template.source)
    if tools is None:
        return (messages if takes_tools else calls_as_text(messages)), {}
    if takes_tools:
        return messages, {"tools": tools.template_tools()}
    return tools.plain_messages(messages), {}


def _request(llm, prompt_ids: Sequence[int], max_tokens: Optional[int], sampler: Sampler,
             stop: Stop, top_logprobs: int = 0, constraint=None, keep: Optional[int] = None) -> GenerationRequest:
    """A generation request, its arguments checked now: prompt_ids (a non-empty flat sequence of
    token ids), max_tokens (None or an integer >= 0) and stop. constraint: None or an
    edgellama.constraints.Constraint the output follows. keep: None, or the tokens a context shift
    keeps (Llama._context_keep)."""
    ids = arguments.token_ids("prompt", prompt_ids, llm.n_vocab).tolist()
    max_tokens = arguments.max_tokens(max_tokens)
    stops = arguments.stop_strings(stop)
    grammar = constraint.state() if constraint is not None else None
    return GenerationRequest(ids, max_tokens, sampler, stops, llm.tokenizer, llm.n_ctx, top_logprobs, grammar,
                             keep)


def run_records(llm, prompt_ids: Sequence[int], max_tokens: Optional[int], sampler: Sampler,
                stop: Stop, constraint=None, keep: Optional[int] = None) -> Iterator[TokenRecord]:
    """The generation's records, as a generator that joins llm's scheduler at its first next()
    and holds a sequence until it is exhausted, closed or collected (its last record comes with
    the sequence already free). The arguments are checked when the call is made. Each record
    carries the generation's stats, which also become llm.last_stats when it starts. constraint:
    None or the edgellama.constraints.Constraint the output follows; keep: as for _request."""
    return _records_of(llm, _request(llm, prompt_ids, max_tokens, sampler, stop, constraint=constraint, keep=keep))


def _records_of(llm, request: GenerationRequest) -> Iterator[TokenRecord]:
    scheduler = llm._scheduler

    def records() -> Iterator[TokenRecord]:
        try:
            llm.last_stats = request.stats
            scheduler.submit(request)
            while True:
                record = scheduler.next_record(request)
                if record is None:
                    return
                yield record
        finally:
            scheduler.cancel(request)  # closed early, failed or done: the sequence is free now

    return records()


def async_records(llm, prompt_ids: Sequence[int], max_tokens: Optional[int], sampler: Sampler,
                  stop: Stop, top_logprobs: int = 0, constraint=None,
                  keep: Optional[int] = None) -> AsyncIterator[TokenRecord]:
    """run_records as an async generator: waits never block the event loop. top_logprobs: the
    alternatives each record lists (TokenRecord.top_logprobs); constraint and keep: as for _request."""
    from edgellama.engine.scheduler import AsyncWaker

    request = _request(llm, prompt_ids, max_tokens, sampler, stop, top_logprobs, constraint, keep)
    scheduler = llm._scheduler

    async def records() -> AsyncIterator[TokenRecord]:
        try:
            request.waker = AsyncWaker(asyncio.get_running_loop())
            llm.last_stats = request.stats
            scheduler.submit(request)
            while True:
                record = await scheduler.next_record_async(request)
                if record is None:
                    return
                yield record
        finally:
            scheduler.cancel(request)

    return records()


def completion(llm, prompt_ids: Sequence[int], max_tokens: Optional[int], samplers: Sequence[Sampler], stop: Stop,
               stream: bool, chat: bool, top_logprobs: Optional[int] = None, constraint=None,
               tool_names: Optional[Sequence[str]] = None, model: Optional[str] = None, echo: bool = False,
               include_usage: bool = False, keep: Optional[int] = None):
    """An OpenAI-shaped response (or, streamed, its chunks) with one choice per sampler, generated
    as parallel sequences (n_parallel at a time). top_logprobs: None for no log-probabilities,
    else the number of alternatives each token lists (0 to 20); constraint: None or the
    Constraint every choice follows; tool_names: the functions an answer may call (it is read for
    tool calls), or None; model: the id the response names (default: the model's name); echo:
    each text starts with the prompt; include_usage: a stream ends with a usage chunk with no
    choices (OpenAI's stream_options), instead of the usage on its last chunk; keep: as for _request."""
    if top_logprobs is not None:
        top_logprobs = arguments.integer("top_logprobs", top_logprobs, at_least=0, at_most=MAX_TOP_LOGPROBS)
    requests = [_request(llm, prompt_ids, max_tokens, s, stop, top_logprobs or 0, constraint, keep)
                for s in samplers]
    shape = ResponseShape(llm.tokenizer, model or llm.model_name, chat, logprobs=top_logprobs is not None,
                          tool_names=tool_names)
    echoed = llm.tokenizer.decode(prompt_ids) if echo else None
    if arguments.flag("stream", stream):
        return _chunks(llm, shape, requests, echoed, include_usage)
    records: List[List[TokenRecord]] = [[] for _ in requests]
    for index, record in _side_by_side(llm, requests):
        records[index].append(record)
    choices = [shape.choice(i, r) for i, r in enumerate(records)]
    if echoed is not None:
        for c in choices:
            c["text"] = echoed + c["text"]
    return shape.response(choices, [r.stats for r in requests])


def _side_by_side(llm, requests: Sequence[GenerationRequest]) -> Iterator[Tuple[int, TokenRecord]]:
    """(request index, record) of every request as they come: n_parallel requests at a time, taken
    in turn, so that each step of the engine advances all of them."""
    width = max(1, llm.n_parallel)
    for start in range(0, len(requests), width):
        running = {i: _records_of(llm, requests[i]) for i in range(start, min(start + width, len(requests)))}
        try:
            while running:
                for i in list(running):
                    record = next(running[i], None)
                    if record is None:
                        del running[i]
                    else:
                        yield i, record
        finally:
            for records in running.values():
                records.close()  # closed early: the generations give their sequences back now


def _chunks(llm, shape: ResponseShape, requests: Sequence[GenerationRequest], echoed: Optional[str],
            include_usage: bool) -> Iterator[Dict[str, Any]]:
    """A chunk per released piece of text (per record when log-probabilities are asked for, so
    that none is lost; tool calls as their deltas), choices side by side; the usage comes on the
    last chunk, or in a chunk of its own with include_usage."""
    streams = [ChoiceStream(shape, i) for i in range(len(requests))]
    held = None  # the latest finish chunk: the usage goes on it if nothing follows
    for stream in streams:
        yield from stream.start(role_text=None)
        if echoed is not None:
            yield shape.chunk(stream.index, echoed)
    seen = set()
    side_by_side = _side_by_side(llm, requests)
    try:
        for index, record in side_by_side:
            seen.add(index)
            for chunk in streams[index].feed(record):
                if held is not None:
                    yield held
                    held = None
                if chunk["choices"][0]["finish_reason"]:
                    held = chunk
                else:
                    yield chunk
    finally:
        side_by_side.close()  # closed early (or done): the generations give their sequences back now
    for stream in streams:
        if stream.index not in seen:  # no record at all (max_tokens 0)
            if held is not None:
                yield held
            held = stream.end_without_records()
    stats = [r.stats for r in requests]
    if include_usage:
        yield held
        yield shape.usage_chunk(stats)
    else:
        held["usage"] = usage(stats)
        yield held
