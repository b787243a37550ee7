"""A request's n choices as parallel generations on the shared Llama, for the HTTP layer: the whole
response, or its stream of chunks. Everything here is asyncio and never blocks the event loop
(edgellama.api.async_records); closing a stream (a client that disconnects) closes every choice's
generation, which frees its sequence at once."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any, AsyncIterator, Callable, Dict, List, Optional, Sequence, Tuple

from edgellama.api import async_records
from edgellama.generate import GenerationStats, TokenRecord
from edgellama.openai_shapes import ChoiceStream, ResponseShape
from edgellama.server.errors import APIError


@dataclass
class Plan:
    """What a request asks: prompt ids, limits, per-choice samplers (their seeds differ by index)."""

    prompt_ids: List[int]
    max_tokens: Optional[int]
    samplers: list
    stop: Any
    top_logprobs: Optional[int]  # None: no log-probabilities
    shape: ResponseShape
    include_usage: bool = False
    constraint: Any = None  # None, or the edgellama.constraints.Constraint every choice follows
    on_finished: Optional[Callable[[List[GenerationStats]], None]] = None  # the metrics, when all is generated
    keep: Optional[int] = None  # None, or the prefix a context shift keeps (ServerConfig.context_shift)


def check_fits(llm, prompt_ids: Sequence[int], param: str) -> None:
    """Before any response starts: a prompt longer than the window is a 400 naming `param` (the
    request's messages or prompt), and so is an empty one, not a broken stream."""
    if not prompt_ids:
        raise APIError(400, f"the {param} holds no tokens; give at least one", param=param)
    if len(prompt_ids) > llm.n_ctx:
        raise APIError(400, f"the prompt has {len(prompt_ids)} tokens, more than the context window of "
                            f"{llm.n_ctx} tokens; shorten it", param=param, code="context_length_exceeded")


def _choices(llm, plan: Plan) -> List[AsyncIterator[TokenRecord]]:
    return [async_records(llm, plan.prompt_ids, plan.max_tokens, sampler, plan.stop, plan.top_logprobs or 0,
                          plan.constraint, plan.keep) for sampler in plan.samplers]


async def _collect(records: AsyncIterator[TokenRecord]) -> Tuple[List[TokenRecord], Optional[GenerationStats]]:
    out: List[TokenRecord] = []
    async for record in records:
        out.append(record)
    return out, (out[-1].stats if out else None)


async def complete(llm, plan: Plan) -> Dict[str, Any]:
    """The whole response: every choice generated side by side."""
    choices = _choices(llm, plan)
    try:
        results = await asyncio.gather(*[_collect(c) for c in choices])
    finally:
        for c in choices:
            await c.aclose()
    stats = [s for _, s in results if s is not None] or [GenerationStats(prompt_tokens=len(plan.prompt_ids))]
    if plan.on_finished is not None:
        plan.on_finished(stats)
    return plan.shape.response([plan.shape.choice(i, records) for i, (records, _) in enumerate(results)], stats)


async def _merged(choices: List[AsyncIterator[TokenRecord]]) -> AsyncIterator[Tuple[int, TokenRecord]]:
    """(choice index, record) from every choice as they come; the first failure is raised."""
    if len(choices) == 1:
        async for record in choices[0]:
            yield 0, record
        return
    queue: asyncio.Queue = asyncio.Queue()
    done = object()

    async def pump(index: int) -> None:
        try:
            async for record in choices[index]:
                await queue.put((index, record))
        except Exception as exc:  # noqa: BLE001 - raised to the consumer below
            await queue.put((index, exc))
        finally:
            await queue.put((index, done))

    tasks = [asyncio.create_task(pump(i)) for i in range(len(choices))]
    try:
        finished = 0
        while finished < len(tasks):
            index, item = await queue.get()
            if item is done:
                finished += 1
            elif isinstance(item, Exception):
                raise item
            else:
                yield index, item
    finally:
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


async def stream(llm, plan: Plan) -> AsyncIterator[Dict[str, Any]]:
    """The chunks of a streamed response, OpenAI's way: a chat's first chunk per choice has the
    role; a chunk per released piece of text (per token with log-probabilities); a last chunk per
    choice with its finish_reason; with include_usage a final chunk with no choices and the usage."""
    shape = plan.shape
    choices = _choices(llm, plan)
    streams = [ChoiceStream(shape, i) for i in range(len(choices))]
    stats: Dict[int, GenerationStats] = {}
    try:
        for choice in streams:
            for chunk in choice.start():
                yield chunk
        async for index, record in _merged(choices):
            stats[index] = record.stats
            for chunk in streams[index].feed(record):
                yield chunk
    finally:
        for c in choices:
            await c.aclose()
    for i in range(len(choices)):
        if i not in stats:  # a choice with no record at all (max_tokens 0)
            yield streams[i].end_without_records()
    finished = [stats[i] for i in sorted(stats)] or [GenerationStats(prompt_tokens=len(plan.prompt_ids))]
    if plan.on_finished is not None:
        plan.on_finished(finished)
    if plan.include_usage:
        yield shape.usage_chunk(finished)
