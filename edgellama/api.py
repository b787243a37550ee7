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
from edgellama.generate import GenerationStats, TokenRecord
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


_TAKES_TOOLS = re.compile(r"\btools\b")  # the template reads the tools variable


def template_arguments(llm, messages: Sequence[Mapping[str, Any]], tools) -> Tuple[Sequence[Mapping[str, Any]],
                                                                                  Dict[str, Any]]:
    """The messages and extra variables the chat template renders for a ToolUse (or None)."""
    if tools is None:
        return messages, {}
    if _TAKES_TOOLS.search(llm.chat_template.source):
        return messages, {"tools": tools.template_tools()}
    return tools.plain_messages(messages), {}


def _request(llm, prompt_ids: Sequence[int], max_tokens: Optional[int], sampler: Sampler,
             stop: Stop, top_logprobs: int = 0, constraint=None) -> GenerationRequest:
    """A generation request, its arguments checked now: prompt_ids (a non-empty flat sequence of
    token ids), max_tokens (None or an integer >= 0) and stop. constraint: None or an
    edgellama.constraints.Constraint the output follows."""
    ids = arguments.token_ids("prompt", prompt_ids, llm.n_vocab).tolist()
    max_tokens = arguments.max_tokens(max_tokens)
    stops = arguments.stop_strings(stop)
    grammar = constraint.state() if constraint is not None else None
    return GenerationRequest(ids, max_tokens, sampler, stops, llm.tokenizer, llm.n_ctx, top_logprobs, grammar)


def run_records(llm, prompt_ids: Sequence[int], max_tokens: Optional[int], sampler: Sampler,
                stop: Stop, constraint=None) -> Iterator[TokenRecord]:
    """The generation's records, as a generator that joins llm's scheduler at its first next()
    and holds a sequence until it is exhausted, closed or collected (its last record comes with
    the sequence already free). The arguments are checked when the call is made. Each record
    carries the generation's stats, which also become llm.last_stats when it starts. constraint:
    None or the edgellama.constraints.Constraint the output follows."""
    return _records_of(llm, _request(llm, prompt_ids, max_tokens, sampler, stop, constraint=constraint))


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
                  stop: Stop, top_logprobs: int = 0, constraint=None) -> AsyncIterator[TokenRecord]:
    """run_records as an async generator: waits never block the event loop. top_logprobs: the
    alternatives each record lists (TokenRecord.top_logprobs); constraint: as for _request."""
    from edgellama.engine.scheduler import AsyncWaker

    request = _request(llm, prompt_ids, max_tokens, sampler, stop, top_logprobs, constraint)
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


def completion(llm, prompt_ids: Sequence[int], max_tokens: Optional[int], sampler: Sampler, stop: Stop,
               stream: bool, chat: bool, top_logprobs: Optional[int] = None, constraint=None,
               tool_names: Optional[Sequence[str]] = None):
    """An OpenAI-shaped response (or, streamed, its chunks) of one generation. top_logprobs: None
    for no log-probabilities, else the number of alternatives each token lists (0 to 20);
    constraint: None or the Constraint the output follows; tool_names: the functions the answer
    may call (it is read for tool calls), or None."""
    if top_logprobs is not None:
        top_logprobs = arguments.integer("top_logprobs", top_logprobs, at_least=0, at_most=MAX_TOP_LOGPROBS)
    request = _request(llm, prompt_ids, max_tokens, sampler, stop, top_logprobs or 0, constraint)
    shape = ResponseShape(llm.tokenizer, llm.model_name, chat, logprobs=top_logprobs is not None,
                          tool_names=tool_names)
    records = _records_of(llm, request)
    if arguments.flag("stream", stream):
        return _chunks(shape, records, request.stats)
    return shape.response([shape.choice(0, list(records))], [request.stats])


def _chunks(shape: ResponseShape, records: Iterator[TokenRecord], stats: GenerationStats) -> Iterator[Dict[str, Any]]:
    """A chunk per released piece of text (per record when log-probabilities are asked for, so
    that none is lost; tool calls as their deltas); the last has finish_reason and usage."""
    stream = ChoiceStream(shape, 0)
    last = None
    try:
        yield from stream.start(role_text=None)
        for record in records:
            for chunk in stream.feed(record):
                if chunk["choices"][0]["finish_reason"]:
                    last = chunk  # sent below, with the usage
                else:
                    yield chunk
            if record.finish_reason:
                break
    finally:
        records.close()  # closed early (or done): the generation gives its sequence back now
    if last is None:
        last = stream.end_without_records()
    last["usage"] = usage([stats])
    yield last
