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

from edgellama.generate import GenerationStats, TokenRecord, iter_tokens
from edgellama.sampling import Sampler, SamplingParams

Stop = Union[None, str, Sequence[str]]


def stop_list(stop: Stop) -> List[str]:
    if stop is None:
        return []
    if isinstance(stop, str):
        return [stop]
    return [s for s in stop if s]


def make_sampler(temperature: float = 0.8, top_k: int = 40, top_p: float = 0.95, min_p: float = 0.05,
                 typical_p: float = 1.0, repeat_penalty: float = 1.0, frequency_penalty: float = 0.0,
                 presence_penalty: float = 0.0, penalty_last_n: int = 64,
                 logit_bias: Optional[Mapping[int, float]] = None, seed: Optional[int] = None) -> Sampler:
    params = SamplingParams(temperature=temperature, top_k=top_k, top_p=top_p, min_p=min_p, typical_p=typical_p,
                            repeat_penalty=repeat_penalty, frequency_penalty=frequency_penalty,
                            presence_penalty=presence_penalty, penalty_last_n=penalty_last_n,
                            logit_bias=dict(logit_bias) if logit_bias else None)
    return Sampler(params, seed)


def chat_prompt_ids(llm, messages: Sequence[Mapping[str, Any]]) -> List[int]:
    """The token ids of a conversation rendered with the model's chat template, ready for the
    assistant's answer. Control tokens in the template are real tokens (special=True); a BOS the
    template writes itself is not doubled by the tokenizer's own add_bos."""
    text = llm.apply_chat_template(list(messages), add_generation_prompt=True)
    ids = llm.tokenize(text, special=True)
    bos = llm.tokenizer.bos_id
    if bos is not None and len(ids) >= 2 and ids[0] == bos and ids[1] == bos:
        ids = ids[1:]
    return ids


def _usage(stats: GenerationStats) -> Dict[str, int]:
    return {"prompt_tokens": stats.prompt_tokens, "completion_tokens": stats.generated_tokens,
            "total_tokens": stats.prompt_tokens + stats.generated_tokens}


def _model_name(llm) -> str:
    return llm.model_name


def run_records(llm, prompt_ids: List[int], max_tokens: Optional[int], sampler: Sampler,
                stop: Stop) -> Iterator[TokenRecord]:
    """iter_tokens with a fresh GenerationStats stored as llm.last_stats."""
    if not prompt_ids:
        raise ValueError("the prompt is empty: give text or at least one token id")
    if max_tokens is not None and max_tokens < 0:
        raise ValueError(f"max_tokens must be >= 0 or None, got {max_tokens}")
    llm.last_stats = GenerationStats()
    return iter_tokens(llm, prompt_ids, max_tokens, sampler, stop_list(stop), llm.last_stats)


def completion(llm, prompt_ids: List[int], max_tokens: Optional[int], sampler: Sampler, stop: Stop,
               stream: bool, chat: bool):
    records = run_records(llm, prompt_ids, max_tokens, sampler, stop)
    ident = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
    created = int(time.time())
    if stream:
        return _chunks(llm, records, ident, created, chat)
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
            "model": _model_name(llm), "choices": [choice], "usage": _usage(llm.last_stats)}


def _chunks(llm, records: Iterator[TokenRecord], ident: str, created: int, chat: bool) -> Iterator[Dict[str, Any]]:
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
    last = chunk(record.text if record is not None and record.text else None, finish)
    if not chat and record is None:
        last["choices"][0]["text"] = ""
    last["usage"] = _usage(llm.last_stats)
    yield last
