"""OpenAI response shapes built from generation records: the one place where the Python API
(edgellama.api) and the server (edgellama.server) turn TokenRecords into choices and chunks.

Chat choices carry ``logprobs = {"content": [{"token", "logprob", "bytes", "top_logprobs": [...]}]}``
when log-probabilities are asked for; text completions the legacy ``{"tokens", "token_logprobs",
"top_logprobs", "text_offset"}``. A token's text is its bytes decoded as UTF-8 (a byte of a
multi-byte character shows as U+FFFD; ``bytes`` has the exact bytes).
"""

from __future__ import annotations

import time
import uuid
from typing import Any, Dict, List, Optional, Sequence

from edgellama.generate import GenerationStats, TokenRecord


def usage(stats: Sequence[GenerationStats]) -> Dict[str, int]:
    """Usage of one request's generations (its n choices share one prompt, counted once)."""
    prompt = stats[0].prompt_tokens if stats else 0
    completion = sum(s.generated_tokens for s in stats)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


class ResponseShape:
    """Builds the dicts of one response. chat: chat.completion(.chunk) or text_completion;
    logprobs: whether choices carry log-probabilities (top_logprobs alternatives each, which
    the records hold when the generation was asked for them)."""

    def __init__(self, tokenizer, model: str, chat: bool, logprobs: bool = False,
                 tool_names: Optional[Sequence[str]] = None):
        self.tokenizer = tokenizer
        self.model = model
        self.chat = chat
        self.logprobs = logprobs
        self.tool_names = tool_names  # the functions an answer may call (None: not read for calls)
        self.ident = ("chatcmpl-" if chat else "cmpl-") + uuid.uuid4().hex
        self.created = int(time.time())

    def _envelope(self, obj: str, choices: List[Dict[str, Any]]) -> Dict[str, Any]:
        return {"id": self.ident, "object": obj, "created": self.created, "model": self.model, "choices": choices}

    # --- log-probabilities -----------------------------------------------------------------------
    def _token(self, token: int, logprob: float) -> Dict[str, Any]:
        raw = self.tokenizer.piece_bytes(token, render_special=True)
        return {"token": raw.decode("utf-8", errors="replace"), "logprob": logprob, "bytes": list(raw)}

    def _logprobs(self, records: Sequence[TokenRecord], text_offset: int = 0) -> Optional[Dict[str, Any]]:
        if not self.logprobs:
            return None
        entries = []
        for r in records:
            entry = self._token(r.token, r.logprob)
            entry["top_logprobs"] = [self._token(t, lp) for t, lp in (r.top_logprobs or [])]
            entries.append(entry)
        if self.chat:
            return {"content": entries}
        offsets, at = [], text_offset
        for e in entries:
            offsets.append(at)
            at += len(e["token"])
        return {"tokens": [e["token"] for e in entries], "token_logprobs": [e["logprob"] for e in entries],
                "top_logprobs": [{t["token"]: t["logprob"] for t in e["top_logprobs"]} for e in entries],
                "text_offset": offsets}

    # --- whole responses -------------------------------------------------------------------------
    def choice(self, index: int, records: Sequence[TokenRecord]) -> Dict[str, Any]:
        """A finished choice from all of its records."""
        text = "".join(r.text for r in records)
        finish = next((r.finish_reason for r in records if r.finish_reason), "length")
        calls = self.tool_calls(text, finish)
        if calls:
            return {"index": index, "message": {"role": "assistant", "content": None, "tool_calls": calls},
                    "logprobs": None, "finish_reason": "tool_calls"}
        if self.chat:
            return {"index": index, "message": {"role": "assistant", "content": text},
                    "logprobs": self._logprobs(records), "finish_reason": finish}
        return {"index": index, "text": text, "logprobs": self._logprobs(records), "finish_reason": finish}

    def tool_calls(self, text: str, finish: str) -> Optional[List[Dict[str, Any]]]:
        """The answer's tool calls, when it was read for calls, finished, and is nothing else."""
        if self.tool_names is None or finish != "stop":
            return None
        from edgellama.tools import parse_tool_calls

        return parse_tool_calls(text, self.tool_names)

    def response(self, choices: List[Dict[str, Any]], stats: Sequence[GenerationStats]) -> Dict[str, Any]:
        body = self._envelope("chat.completion" if self.chat else "text_completion", choices)
        body["usage"] = usage(stats)
        return body

    # --- streamed chunks -------------------------------------------------------------------------
    def chunk(self, index: int, text: Optional[str], finish: Optional[str] = None, role: bool = False,
              records: Sequence[TokenRecord] = (), text_offset: int = 0) -> Dict[str, Any]:
        """One streamed piece of choice `index`: its text (None: none), its finish reason on the
        last, the assistant role on a chat's first, and the log-probabilities of the records it
        releases."""
        logprobs = self._logprobs(records, text_offset) if records else None
        if self.chat:
            delta: Dict[str, Any] = {}
            if role:
                delta["role"] = "assistant"
            if text is not None:
                delta["content"] = text
            choice = {"index": index, "delta": delta, "logprobs": logprobs, "finish_reason": finish}
        else:
            choice = {"index": index, "text": text or "", "logprobs": logprobs, "finish_reason": finish}
        return self._envelope("chat.completion.chunk" if self.chat else "text_completion", [choice])

    def tool_call_chunks(self, index: int, calls: List[Dict[str, Any]]) -> List[Dict[str, Any]]:
        """A streamed answer's tool calls, OpenAI's way: per call a delta with its id, type, name
        and arguments (the arguments whole: they are known only once the call is complete), then
        the finish."""
        chunks = []
        for position, call in enumerate(calls):
            delta = {"tool_calls": [{"index": position, "id": call["id"], "type": "function",
                                     "function": dict(call["function"])}]}
            chunks.append(self._envelope("chat.completion.chunk", [{"index": index, "delta": delta,
                                                                    "logprobs": None, "finish_reason": None}]))
        chunks.append(self.chunk(index, None, "tool_calls"))
        return chunks

    def usage_chunk(self, stats: Sequence[GenerationStats]) -> Dict[str, Any]:
        """The final chunk of stream_options.include_usage: no choices, the usage."""
        body = self._envelope("chat.completion.chunk" if self.chat else "text_completion", [])
        body["usage"] = usage(stats)
        return body


class ChoiceStream:
    """One choice's chunks as its records arrive: a chat's first chunk has the role; a chunk per
    released piece of text (per record with log-probabilities); the last has the finish reason.
    An answer read for tool calls is held while it may still be one (it begins like JSON or a
    call marker): complete, it becomes tool-call deltas; otherwise its text goes out as content."""

    def __init__(self, shape: ResponseShape, index: int):
        self.shape, self.index = shape, index
        self.offset = 0
        self.held: List[TokenRecord] = []
        self.deciding = shape.chat and shape.tool_names is not None

    def start(self, role_text: Optional[str] = "") -> List[Dict[str, Any]]:
        """A chat's first chunk: the role (with `role_text` as content; None: no content key)."""
        return [self.shape.chunk(self.index, role_text, role=True)] if self.shape.chat else []

    def feed(self, record: TokenRecord) -> List[Dict[str, Any]]:
        if self.deciding:
            from edgellama.tools.calls import may_be_a_call

            self.held.append(record)
            text = "".join(r.text for r in self.held)
            if record.finish_reason is not None:
                calls = self.shape.tool_calls(text, record.finish_reason)
                if calls:
                    return self.shape.tool_call_chunks(self.index, calls)
            elif may_be_a_call(text):
                return []
            self.deciding = False
            held, self.held = self.held, []
            return [c for r in held for c in self._content(r)]
        return self._content(record)

    def _content(self, record: TokenRecord) -> List[Dict[str, Any]]:
        if not (record.text or self.shape.logprobs or record.finish_reason):
            return []
        chunk = self.shape.chunk(self.index, record.text, record.finish_reason, records=[record],
                                 text_offset=self.offset)
        self.offset += len(record.text)
        return [chunk]

    def end_without_records(self) -> Dict[str, Any]:
        """The last chunk of a choice that produced no record (max_tokens 0)."""
        return self.shape.chunk(self.index, "" if self.shape.chat else None, "length")
