"""The OpenAI parameters clients send, in the Python API: n choices as parallel sequences (more
than n_parallel in waves), stream_options.include_usage, echo, model and user, best_of as n,
max_completion_tokens; unsupported ones (suffix, best_of other than n, echo with logprobs) are
an InvalidArgumentError naming them. Responses validate with the openai package's types."""

import pytest

from edgellama import Llama
from edgellama.errors import InvalidArgumentError

openai_types = pytest.importorskip("openai.types", reason="the openai package is not installed")
from openai.types import Completion  # noqa: E402
from openai.types.chat import ChatCompletion, ChatCompletionChunk  # noqa: E402

ASK = [{"role": "user", "content": [{"type": "text", "text": "Name a colour."}]}]  # content parts, as clients send


@pytest.fixture(scope="module")
def llm(smollm2_path):
    return Llama(smollm2_path, n_ctx=512, n_threads=2, n_parallel=2)


def test_n_choices_each_equal_their_single_request(llm):
    reply = llm.create_completion("Once upon a time", max_tokens=8, temperature=0.9, seed=5, n=3)
    Completion.model_validate(reply)
    assert [c["index"] for c in reply["choices"]] == [0, 1, 2]  # three choices on two sequences: in waves
    for i, choice in enumerate(reply["choices"]):
        alone = llm.create_completion("Once upon a time", max_tokens=8, temperature=0.9, seed=5 + i)
        assert choice["text"] == alone["choices"][0]["text"]
    counts = [llm.create_completion("Once upon a time", max_tokens=8, temperature=0.9, seed=5 + i)["usage"]
              ["completion_tokens"] for i in range(3)]
    assert reply["usage"]["completion_tokens"] == sum(counts)


def test_streamed_n_choices_equal_the_whole_and_include_usage(llm):
    whole = llm.create_chat_completion(ASK, max_tokens=10, temperature=0.8, seed=1, n=2)
    ChatCompletion.model_validate(whole)
    chunks = list(llm.create_chat_completion(ASK, max_tokens=10, temperature=0.8, seed=1, n=2, stream=True,
                                             stream_options={"include_usage": True}))
    for chunk in chunks:
        ChatCompletionChunk.model_validate(chunk)
    for i in range(2):
        text = "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks
                       if c["choices"] and c["choices"][0]["index"] == i)
        assert text == whole["choices"][i]["message"]["content"]
    assert chunks[-1]["choices"] == [] and chunks[-1]["usage"] == whole["usage"]
    assert all("usage" not in c for c in chunks[:-1])


def test_echo_model_user_and_max_completion_tokens(llm):
    reply = llm.create_completion("The sky is", max_tokens=4, temperature=0, echo=True, model="my-model", user="u1")
    plain = llm.create_completion("The sky is", max_tokens=4, temperature=0)
    assert reply["choices"][0]["text"] == "The sky is" + plain["choices"][0]["text"]
    assert reply["model"] == "my-model"
    streamed = "".join(c["choices"][0]["text"] for c in llm.create_completion("The sky is", max_tokens=4,
                                                                              temperature=0, echo=True, stream=True))
    assert streamed == reply["choices"][0]["text"]
    a = llm.create_chat_completion(ASK, max_completion_tokens=3, temperature=0)
    b = llm.create_chat_completion(ASK, max_tokens=3, temperature=0)
    assert a["choices"][0]["message"] == b["choices"][0]["message"] and a["usage"]["completion_tokens"] == 3
    assert llm.create_completion("x", max_tokens=1, n=2, best_of=2)["choices"][1]["index"] == 1


@pytest.mark.parametrize("call, named", [
    (lambda llm: llm.create_completion("x", suffix="y"), "suffix"),
    (lambda llm: llm.create_completion("x", n=1, best_of=3), "best_of"),
    (lambda llm: llm.create_completion("x", echo=True, logprobs=1), "echo"),
    (lambda llm: llm.create_completion("x", n=0), "n"),
    (lambda llm: llm.create_completion("x", n=17), "n"),
    (lambda llm: llm.create_completion("x", stream_options={"include_usage": True}), "stream_options"),
    (lambda llm: llm.create_completion("x", stream=True, stream_options={"usage": True}), "stream_options"),
    (lambda llm: llm.create_completion("x", model=5), "model"),
    (lambda llm: llm.create_chat_completion(ASK, user=["u"]), "user"),
    (lambda llm: llm.create_chat_completion(ASK, max_tokens=3, max_completion_tokens=4), "max_completion_tokens"),
])
def test_unsupported_or_wrong_parameters_are_named(llm, call, named):
    with pytest.raises(InvalidArgumentError) as info:
        call(llm)
    assert info.value.argument == named
