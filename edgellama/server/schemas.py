"""The request bodies the server accepts, as pydantic models: exactly the parameters it implements.

Every model forbids extra fields, so an unknown or unsupported parameter is a 400 that names it,
never a silent ignore. Types are strict (a bool is not a number, a string is not a number);
ranges and the sampling rules are checked by SamplingParams and edgellama.arguments when the
request is turned into a generation, with the same InvalidArgumentError the Python API raises.
"""

from __future__ import annotations

from typing import Annotated, Any, Dict, List, Literal, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictFloat, StrictInt, StrictStr

from edgellama.arguments import MAX_CHOICES

Number = Union[StrictInt, StrictFloat]
TokenId = Annotated[StrictInt, Field(ge=0)]
TokenIds = Annotated[List[TokenId], Field(min_length=1)]
Text = Annotated[StrictStr, Field(min_length=1)]
MAX_STOP_STRINGS = 16
MAX_MESSAGES = 4096
MAX_N = MAX_CHOICES  # choices per request (each one a parallel sequence)


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class StreamOptions(_Strict):
    include_usage: Optional[StrictBool] = None


class JsonSchemaFormat(_Strict):
    name: StrictStr = Field(..., max_length=64)
    description: Optional[StrictStr] = None
    schema_: Union[Dict[str, Any], StrictBool, None] = Field(None, alias="schema")
    strict: Optional[StrictBool] = None  # the schema is always enforced


class ResponseFormat(_Strict):
    type: Literal["text", "json_object", "json_schema"]
    json_schema: Optional[JsonSchemaFormat] = None


class _Generation(_Strict):
    """What chat and text completions share."""

    model: StrictStr
    max_tokens: Optional[StrictInt] = Field(None, ge=0)
    temperature: Optional[Number] = Field(None, ge=0, allow_inf_nan=False)
    top_p: Optional[Number] = Field(None, gt=0, le=1)
    top_k: Optional[StrictInt] = Field(None, ge=0)
    min_p: Optional[Number] = Field(None, ge=0, le=1)
    repeat_penalty: Optional[Number] = Field(None, gt=0, allow_inf_nan=False)
    presence_penalty: Optional[Number] = Field(None, allow_inf_nan=False)
    frequency_penalty: Optional[Number] = Field(None, allow_inf_nan=False)
    logit_bias: Optional[Dict[StrictStr, Number]] = None  # token id (digits) -> bias
    seed: Optional[StrictInt] = Field(None, ge=0, le=2**64 - 1)
    stop: Union[None, StrictStr, List[StrictStr]] = Field(None, max_length=MAX_STOP_STRINGS)
    n: Optional[StrictInt] = Field(None, ge=1, le=MAX_N)
    stream: Optional[StrictBool] = None
    stream_options: Optional[StreamOptions] = None
    user: Optional[StrictStr] = None
    response_format: Optional[ResponseFormat] = None
    grammar: Optional[StrictStr] = None  # Lark or GBNF, as llama.cpp's server takes it
    regex: Optional[StrictStr] = None

    def constraint_settings(self) -> Dict[str, Any]:
        """The structured-output arguments, as the Python API takes them."""
        response_format = None
        if self.response_format is not None:
            response_format = self.response_format.model_dump(by_alias=True, exclude_none=True)
        return {"response_format": response_format, "grammar": self.grammar, "regex": self.regex}

    def sampling_settings(self) -> Dict[str, Any]:
        """The SamplingParams fields the request sets (the others keep their defaults)."""
        names = ("temperature", "top_p", "top_k", "min_p", "repeat_penalty", "presence_penalty",
                 "frequency_penalty", "logit_bias")
        return {name: getattr(self, name) for name in names if getattr(self, name) is not None}


class ChatMessage(BaseModel):
    """A message as the chat template receives it: a role and its content (a string, null, or a
    list of parts whose text parts are joined); further fields (name, tool_calls, ...) pass on to
    the template, which decides what it accepts."""

    model_config = ConfigDict(extra="allow")
    role: StrictStr
    content: Union[StrictStr, None, List[Dict[str, Any]]] = None


class FunctionDefinition(_Strict):
    name: StrictStr = Field(..., pattern=r"^[A-Za-z0-9_-]{1,64}$")
    description: Optional[StrictStr] = None
    parameters: Optional[Dict[str, Any]] = None  # a JSON schema of the arguments
    strict: Optional[StrictBool] = None  # a forced call always follows the schema


class Tool(_Strict):
    type: Literal["function"]
    function: FunctionDefinition


class FunctionName(_Strict):
    name: StrictStr


class NamedToolChoice(_Strict):
    type: Literal["function"]
    function: FunctionName


class ChatCompletionRequest(_Generation):
    messages: List[ChatMessage] = Field(..., min_length=1, max_length=MAX_MESSAGES)
    tools: Optional[List[Tool]] = Field(None, max_length=128)
    tool_choice: Union[Literal["auto", "none", "required"], NamedToolChoice, None] = None

    def tool_settings(self) -> Dict[str, Any]:
        """tools and tool_choice as the Python API takes them."""
        tools = None if self.tools is None else [t.model_dump(exclude_none=True) for t in self.tools]
        choice = self.tool_choice
        return {"tools": tools, "tool_choice": choice.model_dump() if isinstance(choice, BaseModel) else choice}
    max_completion_tokens: Optional[StrictInt] = Field(None, ge=0)
    logprobs: Optional[StrictBool] = None
    top_logprobs: Optional[StrictInt] = Field(None, ge=0, le=20)


class CompletionRequest(_Generation):
    prompt: Union[Text, TokenIds, List[Text]] = Field(..., description="a text, token ids, or a list of one text")
    logprobs: Optional[StrictInt] = Field(None, ge=0, le=20)


class EmbeddingRequest(_Strict):
    model: StrictStr
    input: Union[Text, Annotated[List[Text], Field(min_length=1)], TokenIds,
                 Annotated[List[TokenIds], Field(min_length=1)]]
    encoding_format: Optional[Literal["float", "base64"]] = None
    user: Optional[StrictStr] = None


class ModerationRequest(_Strict):
    input: Union[Text, Annotated[List[Text], Field(min_length=1, max_length=64)]]
    model: Optional[StrictStr] = None
