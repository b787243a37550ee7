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

import time
import uuid
from typing import Any, Dict, Iterator, List, Mapping, Optional, Sequence, Union

from edgellama import arguments
from edgellama.generate import GenerationStats, TokenRecord, iter_tokens
from edgellama.sampling import Sampler, SamplingParams

Stop = Union[None, str, Sequence[str]]


def stop_list(stop: Stop) -> List[str]:
    """The stop strings of a stop argument (None, a str, or a sequence of str)."""
    return arguments.stop_strings(stop)


def make_sampler(temperature: float = 0.8, top_k: int = 40, top_p: float = 0.95, min_p: float = 0.05,
                 typical_p: float = 1.0, repeat_penalty: float = 1.0, frequency_penalty: float = 0.0,
                 presence_penalty: float = 0.0, penalty_last_n: int = 64,
                 logit_bias: Optional[Mapping[int, float]] = None, seed: Optional[int] = None,
                 n_vocab: Optional[int] = None) -> Sampler:
    """A Sampler for these settings; InvalidArgumentError naming the first wrong one. With n_vocab
    (the model's vocabulary size) logit_bias is checked against the vocabulary too."""
    params = SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, typical_p=typical_p,
                            repeat_penalty=repeat_penalty, frequency_penalty=frequency_penalty,
                            presence_penalty=presence_penalty, penalty_last_n=penalty_last_n,
                            logit_bias=logit_bias)
    return Sampler(params, seed, n_vocab=n_vocab)


def chat_prompt_ids(llm, messages: Sequence[Mapping[str, Any]]) -> List[int]:
    """The token ids of a conversation rendered with the model's chat template, ready for the
    assistant's answer (ChatTemplate.encode). The template's markup becomes control tokens; the
    messages' text stays text even where it spells one (``<|im_end|>``), so a user cannot forge
    a turn. A BOS the template writes itself is not doubled by the tokenizer's own add_bos.
    Raises ChatTemplateError for malformed messages or a failing template."""
    return llm.chat_template.encode(llm.tokenizer, messages, add_generation_prompt=True)


def _usage(stats: GenerationStats) -> Dict[str, int]:
    """Usage of one generation, from its own stats (never llm.last_stats, which a generation
    started later, in another thread, replaces)."""
    return {"prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.generated_tokens,
            "total_tokens": stats.prompt_tokens + stats.generated_tokens}


def _model_name(llm) -> str:
    return llm.model_name


def run_records(llm, prompt_ids: Sequence[int], max_tokens: Optional[int], sampler: Sampler, stop: Stop,
                stats: Optional[GenerationStats] = None) -> Iterator[TokenRecord]:
    """The generation's records (iter_tokens), as a generator that owns llm from its first next()
    until it is exhausted, closed or collected (edgellama.ownership). The arguments are checked
    here, when the call is made: prompt_ids (a non-empty flat sequence of token ids), max_tokens
    (None or an integer >= 0) and stop. stats (a fresh GenerationStats by default) is filled as the
    generation runs, and becomes llm.last_stats when it starts."""
    ids = arguments.token_ids("prompt", prompt_ids, llm.n_vocab).tolist()
    max_tokens = arguments.max_tokens(max_tokens)
    stops = arguments.stop_strings(stop)
    stats = GenerationStats() if stats is None else stats

    def start() -> Iterator[TokenRecord]:
        llm.last_stats = stats
        return iter_tokens(llm, ids, max_tokens, sampler, stops, stats)

    # The record with a finish_reason is the last: the model is free again before the caller sees it.
    return llm._ownership.owned_iteration(start, "generation",
                                          is_last=lambda record: record.finish_reason is not None)


def completion(llm, prompt_ids: Sequence[int], max_tokens: Optional[int], sampler: Sampler, stop: Stop,
               stream: bool, chat: bool):
    stats = GenerationStats()
    records = run_records(llm, prompt_ids, max_tokens, sampler, stop, stats)
    ident = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
    created = int(time.time())
    if arguments.flag("stream", stream):
        return _chunks(llm, records, stats, ident, created, chat)
    pieces, finish = [], "length"
    for record in records:
        pieces.append(record.text)
        if record.finish_reason:
            finish = record.finish_reason
    text = "".join(pieces)
    if chat:
        choice = {"index": 0, "message": {"role": "assistant", "content": text}, "logprobs": None,
                  "finish_reason": finish}
    else:
        choice = {"index": 0, "text": text, "logprobs": None, "finish_reason": finish}
    return {"id": ident, "object": "chat.completion" if chat else "text_completion", "created": created,
            "model": _model_name(llm), "choices": [choice], "usage": _usage(stats)}


def _chunks(llm, records: Iterator[TokenRecord], stats: GenerationStats, ident: str, created: int,
            chat: bool) -> Iterator[Dict[str, Any]]:
    obj = "chat.completion.chunk" if chat else "text_completion"
    model = _model_name(llm)

    def chunk(text: Optional[str], finish: Optional[str], role: bool = False) -> Dict[str, Any]:
        if chat:
            delta: Dict[str, Any] = {}
            if role:
                delta["role"] = "assistant"
            if text is not None:
                delta["content"] = text
            choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
        else:
            choice = {"index": 0, "text": text or "", "logprobs": None, "finish_reason": finish}
        return {"id": ident, "object": obj, "created": created, "model": model, "choices": [choice]}

    try:
        if chat:
            yield chunk(None, None, role=True)
        finish = "length"
        for record in records:
            if record.finish_reason:
                finish = record.finish_reason
                break
            if record.text:
                yield chunk(record.text, None)
        else:
            record = None
    finally:
        records.close()  # closed early (or done): the generation gives the model back now
    last = chunk(record.text if record is not None and record.text else None, finish)
    if not chat and record is None:
        last["choices"][0]["text"] = ""
    last["usage"] = _usage(stats)
    yield last
