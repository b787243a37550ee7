"""The server's safeguards (`edgellama serve --guard MODEL --code-shield`): guarded chats, and
/v1/moderations. The checks run the guard model, which blocks: they go to a worker thread so
that the event loop keeps serving other streams."""

from __future__ import annotations

import asyncio
import json
from typing import Any, Dict, List, Mapping, Optional, Sequence

from fastapi.responses import JSONResponse
from sse_starlette.sse import EventSourceResponse

from edgellama.guard.chat import Guards, StreamGuard, blocked_response, blocked_stream, guard_whole
from edgellama.server.errors import APIError


async def in_worker(function, *args):
    return await asyncio.get_running_loop().run_in_executor(None, function, *args)


async def check_request(guards: Guards, messages: Sequence[Mapping[str, Any]]) -> Optional[Dict[str, Any]]:
    return await in_worker(guards.check_request, messages)


def blocked_reply(llm, model_id: str, stream: bool, blocked: Dict[str, Any]):
    """A blocked request's answer: content_filter, whole or as a two-chunk stream."""
    from edgellama.generate import GenerationStats
    from edgellama.openai_shapes import ResponseShape

    shape = ResponseShape(llm.tokenizer, model_id, chat=True)
    if not stream:
        return JSONResponse(blocked_response(shape, blocked, GenerationStats()))

    async def events():
        for chunk in blocked_stream(shape, blocked):
            yield {"data": json.dumps(chunk, ensure_ascii=False)}
        yield {"data": "[DONE]"}

    return EventSourceResponse(events())


async def check_whole(guards: Guards, messages, response: Dict[str, Any]) -> Dict[str, Any]:
    return await in_worker(guard_whole, guards, messages, response)


def stream_guard(guards: Optional[Guards], messages, n: int) -> Optional[StreamGuard]:
    if guards is None:
        return None
    if n > 1:
        raise APIError(400, "a guarded stream has one choice; ask for n > 1 without stream", param="n")
    return StreamGuard(guards, messages)


async def moderations(guard, inputs: List[str], model_id: str) -> Dict[str, Any]:
    from edgellama.guard.moderation import moderations_response

    return await in_worker(moderations_response, guard, inputs, model_id)
