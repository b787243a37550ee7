"""The request bodies the server accepts, as pydantic models: exactly the parameters it implements.

Every model forbids extra fields, so an unknown or unsupported parameter is a 400 that names it,
never a silent ignore. Types are strict (a bool is not a number, a string is not a number);
ranges and the sampling rules are checked by SamplingParams and edgellama.arguments when the
request is turned into a generation, with the same InvalidArgumentError the Python API raises.
"""

from __future__ import annotations

from typing import Any, Dict, List, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

Number = Union[StrictInt, StrictFloat]
MAX_STOP_STRINGS = 16
MAX_MESSAGES = 4096
MAX_N = 16  # choices per request (each one a parallel sequence)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StreamOptions(_Strict):
    include_usage: Optional[StrictBool] = None


class _Generation(_Strict):
    """What chat and text completions share."""

    model: StrictStr
    max_tokens: Optional[StrictInt] = Field(None, ge=0)
    temperature: Optional[Number] = None
    top_p: Optional[Number] = None
    top_k: Optional[StrictInt] = None
    min_p: Optional[Number] = None
    repeat_penalty: Optional[Number] = None
    presence_penalty: Optional[Number] = None
    frequency_penalty: Optional[Number] = None
    logit_bias: Optional[Dict[StrictStr, Number]] = None
    seed: Optional[StrictInt] = None
    stop: Union[None, StrictStr, List[StrictStr]] = Field(None, max_length=MAX_STOP_STRINGS)
    n: Optional[StrictInt] = Field(None, ge=1, le=MAX_N)
    stream: Optional[StrictBool] = None
    stream_options: Optional[StreamOptions] = None
    user: Optional[StrictStr] = None

    def sampling_settings(self) -> Dict[str, Any]:
        """The SamplingParams fields the request sets (the others keep their defaults)."""
        names = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "presence_penalty",
                 "frequency_penalty", "logit_bias")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


class ChatCompletionRequest(_Generation):
    messages: List[Dict[str, Any]] = Field(..., min_length=1, max_length=MAX_MESSAGES)
    max_completion_tokens: Optional[StrictInt] = Field(None, ge=0)
    logprobs: Optional[StrictBool] = None
    top_logprobs: Optional[StrictInt] = Field(None, ge=0, le=20)


class CompletionRequest(_Generation):
    prompt: Union[StrictStr, List[StrictInt], List[StrictStr]]
    logprobs: Optional[StrictInt] = Field(None, ge=0, le=20)


class EmbeddingRequest(_Strict):
    model: StrictStr
    input: Union[StrictStr, List[StrictStr], List[StrictInt], List[List[StrictInt]]]
    encoding_format: Optional[Literal["float", "base64"]] = None
    user: Optional[StrictStr] = None
