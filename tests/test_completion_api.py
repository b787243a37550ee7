"""create_chat_completion / create_completion / stream_tokens on the real SmolLM2 model: OpenAI
response schemas, finish reasons, seeds, stop strings across token boundaries, and KV-cache prefix
reuse across chat turns."""

import jsonschema
import numpy as np
import pytest

from edgellama import Llama

USAGE = {
    "type": "object", "additionalProperties": False,
    "required": ["prompt_tokens", "completion_tokens", "total_tokens"],
    "properties": {k: {"type": "integer", "minimum": 0} for k in ("prompt_tokens", "completion_tokens", "total_tokens")},
}
FINISH = {"enum": ["stop", "length"]}
COMMON = {
    "id": {"type": "string", "minLength": 1},
    "created": {"type": "integer"},
    "model": {"type": "string", "minLength": 1},
}
CHAT_COMPLETION = {
    "type": "object", "additionalProperties": False,
    "required": ["id", "object", "created", "model", "choices", "usage"],
    "properties": dict(COMMON, object={"const": "chat.completion"}, usage=USAGE, choices={
        "type": "array", "minItems": 1, "items": {
            "type": "object", "additionalProperties": False,
            "required": ["index", "message", "finish_reason", "logprobs"],
            "properties": {
                "index": {"type": "integer"},
                "message": {"type": "object", "additionalProperties": False, "required": ["role", "content"],
                            "properties": {"role": {"const": "assistant"}, "content": {"type": "string"}}},
                "logprobs": {"type": ["object", "null"]},
                "finish_reason": FINISH}}}),
}
CHAT_CHUNK = {
    "type": "object", "additionalProperties": False,
    "required": ["id", "object", "created", "model", "choices"],
    "properties": dict(COMMON, object={"const": "chat.completion.chunk"}, usage=USAGE, choices={
        "type": "array", "minItems": 1, "items": {
            "type": "object", "additionalProperties": False,
            "required": ["index", "delta", "finish_reason"],
            "properties": {
                "index": {"type": "integer"},
                "delta": {"type": "object", "additionalProperties": False,
                          "properties": {"role": {"const": "assistant"}, "content": {"type": "string"}}},
                "logprobs": {"type": ["object", "null"]},
                "finish_reason": {"anyOf": [FINISH, {"type": "null"}]}}}}),
}
TEXT_COMPLETION = {
    "type": "object", "additionalProperties": False,
    "required": ["id", "object", "created", "model", "choices"],
    "properties": dict(COMMON, object={"const": "text_completion"}, usage=USAGE, choices={
        "type": "array", "minItems": 1, "items": {
            "type": "object", "additionalProperties": False,
            "required": ["index", "text", "finish_reason", "logprobs"],
            "properties": {"index": {"type": "integer"}, "text": {"type": "string"},
                           "logprobs": {"type": ["object", "null"]},
                           "finish_reason": {"anyOf": [FINISH, {"type": "null"}]}}}}),
}

QUESTION = [{"role": "user", "content": "What is the capital of France?"}]


@pytest.fixture(scope="module")
def llm(smollm2_path):
    return Llama(smollm2_path, n_ctx=512, n_threads=2)


def test_chat_completion_matches_the_openai_schema(llm):
    response = llm.create_chat_completion(QUESTION, max_tokens=6, temperature=0)
    jsonschema.validate(response, CHAT_COMPLETION)
    assert response["id"].startswith("chatcmpl-")
    choice = response["choices"][0]
    assert choice["finish_reason"] == "length"
    usage = response["usage"]
    assert usage["completion_tokens"] == 6
    assert usage["prompt_tokens"] == len(llm.tokenize(llm.apply_chat_template(QUESTION), special=True))
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert choice["message"]["content"] == llm.detokenize(
        [r.token for r in llm.stream_tokens(llm.tokenize(llm.apply_chat_template(QUESTION), special=True),
                                            max_tokens=6, temperature=0)])


def test_streamed_chat_chunks_match_the_schema_and_the_whole_answer(llm):
    # 5 tokens: fewer than the greedy answer has, so the stream ends for length.
    whole = llm.create_chat_completion(QUESTION, max_tokens=5, temperature=0)
    chunks = list(llm.create_chat_completion(QUESTION, max_tokens=5, temperature=0, stream=True))
    for chunk in chunks:
        jsonschema.validate(chunk, CHAT_CHUNK)
    assert len({c["id"] for c in chunks}) == 1 and chunks[0]["id"].startswith("chatcmpl-")
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant"}
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert chunks[-1]["usage"] == whole["usage"]
    text = "".join(c["choices"][0]["delta"].get("content", "") for c in chunks)
    assert text == whole["choices"][0]["message"]["content"]
    assert len(chunks) > 3


def test_end_of_turn_token_finishes_with_stop(llm):
    eot = next(iter(llm.tokenizer.stop_ids))
    response = llm.create_chat_completion(QUESTION, max_tokens=20, logit_bias={eot: 100.0})
    assert response["choices"][0]["finish_reason"] == "stop"
    assert response["choices"][0]["message"]["content"] == ""
    assert response["usage"]["completion_tokens"] == 0
    chunks = list(llm.create_chat_completion(QUESTION, max_tokens=20, logit_bias={eot: 100.0}, stream=True))
    assert chunks[-1]["choices"][0]["finish_reason"] == "stop"


def test_text_completion_schema_streamed_and_not(llm):
    response = llm.create_completion("The capital of France is", max_tokens=8, temperature=0)
    jsonschema.validate(response, TEXT_COMPLETION)
    assert "Paris" in response["choices"][0]["text"]
    chunks = list(llm.create_completion("The capital of France is", max_tokens=8, temperature=0, stream=True))
    for chunk in chunks:
        jsonschema.validate(chunk, TEXT_COMPLETION)
    assert "".join(c["choices"][0]["text"] for c in chunks) == response["choices"][0]["text"]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length" and chunks[-1]["usage"] == response["usage"]


def test_same_seed_same_answer(llm):
    kw = dict(max_tokens=12, temperature=1.0, top_k=0, top_p=1.0, min_p=0.0)
    a = llm.create_chat_completion(QUESTION, seed=11, **kw)["choices"][0]["message"]["content"]
    b = llm.create_chat_completion(QUESTION, seed=11, **kw)["choices"][0]["message"]["content"]
    c = llm.create_chat_completion(QUESTION, seed=12, **kw)["choices"][0]["message"]["content"]
    assert a == b and a != c


def test_token_records_carry_ids_pieces_and_logprobs(llm):
    ids = llm.tokenize("The capital of France is")
    records = list(llm.stream_tokens(ids, max_tokens=5, temperature=0))
    assert len(records) == 5
    assert [r.finish_reason for r in records] == [None] * 4 + ["length"]
    assert "".join(r.text for r in records) == llm.detokenize([r.token for r in records])
    llm.reset()
    logits = llm.eval(ids)
    first = records[0]
    assert first.token == int(np.argmax(logits))
    shifted = logits.astype(np.float64) - logits.max()
    assert first.logprob == pytest.approx(shifted[first.token] - np.log(np.exp(shifted).sum()), abs=1e-4)
    assert all(r.logprob <= 0 for r in records)


def test_greedy_records_replay_as_argmax_of_eval_and_eval_greedy_agrees(llm):
    """Greedy generation takes each next token from Llama.eval_greedy (the engine's own choice):
    every record is the argmax of the logits eval gives for the same sequence, with its
    log-softmax; and eval_greedy itself, after the same prefix, returns that pair."""
    ids = llm.tokenize("The capital of France is")
    records = list(llm.stream_tokens(ids, max_tokens=6, temperature=0))
    llm.reset()
    feed = list(ids)
    for r in records:
        logits = llm.eval(feed).astype(np.float64)
        lse = logits.max() + np.log(np.exp(logits - logits.max()).sum())
        assert r.token == int(np.argmax(logits))
        assert r.logprob == pytest.approx(logits[r.token] - lse, abs=1e-6)
        feed = [r.token]
    llm.reset()
    llm.eval(ids[:-1])
    assert llm.eval_greedy(ids[-1:]) == (records[0].token, pytest.approx(records[0].logprob, abs=1e-6))
    assert llm.n_past == len(ids)


def test_stop_string_spanning_two_tokens_is_never_emitted(llm):
    ids = llm.tokenize("The capital of France is")
    free = list(llm.stream_tokens(ids, max_tokens=12, temperature=0))
    pieces = [r.text for r in free]
    # A stop string made of the end of one piece and the start of the next.
    k = next(i for i in range(1, len(pieces) - 1) if len(pieces[i]) >= 2 and len(pieces[i + 1]) >= 2)
    stop = pieces[k][-2:] + pieces[k + 1][:2]
    full = "".join(pieces)
    records = list(llm.stream_tokens(ids, max_tokens=12, temperature=0, stop=[stop]))
    text = "".join(r.text for r in records)
    assert text == full[:full.index(stop)]
    assert records[-1].finish_reason == "stop"
    assert all(stop not in r.text for r in records)


def test_follow_up_turn_prefills_only_the_new_messages(llm):
    llm.reset()
    turn1 = llm.create_chat_completion(QUESTION, max_tokens=5, temperature=0)  # fewer than the answer has
    assert turn1["choices"][0]["finish_reason"] == "length"
    cold = llm.last_stats
    assert cold.reused_tokens == 0
    history = QUESTION + [turn1["choices"][0]["message"], {"role": "user", "content": "And of Italy?"}]
    llm.create_chat_completion(history, max_tokens=4, temperature=0)
    warm = llm.last_stats
    # Everything of turn 1 (its prompt and the answer it generated, except the last sampled token
    # that was never evaluated) stays cached; only that token, the end-of-turn tags and the new
    # message (about 16 tokens) are prefilled.
    assert warm.reused_tokens == cold.prompt_tokens + cold.generated_tokens - 1
    assert warm.prompt_tokens - warm.reused_tokens < 20


def _log_softmax(x):
    x = np.asarray(x, dtype=np.float64)
    return x - x.max() - np.log(np.exp(x - x.max()).sum())


def test_chat_logprobs_are_the_models_log_softmax_with_its_top_alternatives(llm):
    messages = [{"role": "user", "content": "Name a colour."}]
    got = llm.create_chat_completion(messages, max_tokens=5, temperature=0, logprobs=True, top_logprobs=3)
    entries = got["choices"][0]["logprobs"]["content"]
    ids = llm.chat_template.encode(llm.tokenizer, messages, add_generation_prompt=True)
    llm.reset()
    logits = llm.eval(ids)
    text = ""
    for entry in entries:
        ref = _log_softmax(logits)
        token = int(np.argmax(logits))
        assert bytes(entry["bytes"]) == llm.tokenizer.piece_bytes(token, render_special=True)
        assert entry["logprob"] == pytest.approx(ref[token], abs=1e-4)
        order = np.argsort(-ref, kind="stable")[:3]
        assert [bytes(t["bytes"]) for t in entry["top_logprobs"]] == [
            llm.tokenizer.piece_bytes(int(t), render_special=True) for t in order]
        assert [t["logprob"] for t in entry["top_logprobs"]] == pytest.approx(ref[order].tolist(), abs=1e-4)
        text += entry["token"]
        if token in llm.tokenizer.stop_ids:
            break
        logits = llm.eval([token])
    assert got["choices"][0]["message"]["content"] in text


def test_completion_logprobs_legacy_shape_and_streamed_chunks_lose_no_token(llm):
    whole = llm.create_completion("The capital of France is", max_tokens=6, temperature=0, logprobs=2)
    lp = whole["choices"][0]["logprobs"]
    assert len(lp["tokens"]) == len(lp["token_logprobs"]) == len(lp["top_logprobs"]) == len(lp["text_offset"])
    assert all(len(alts) == 2 and max(alts.values()) >= lp["token_logprobs"][i] - 1e-6
               for i, alts in enumerate(lp["top_logprobs"]))
    assert lp["text_offset"][0] == 0
    streamed = list(llm.create_completion("The capital of France is", max_tokens=6, temperature=0, logprobs=2,
                                          stream=True))
    tokens = [t for c in streamed if c["choices"][0]["logprobs"] for t in c["choices"][0]["logprobs"]["tokens"]]
    assert tokens == lp["tokens"]
    plain = llm.create_completion("The capital of France is", max_tokens=6, temperature=0)
    assert plain["choices"][0]["logprobs"] is None and plain["choices"][0]["text"] == whole["choices"][0]["text"]


@pytest.mark.parametrize("kwargs", [dict(top_logprobs=2), dict(logprobs=True, top_logprobs=21),
                                    dict(logprobs=True, top_logprobs=-1), dict(logprobs="yes")])
def test_wrong_logprob_settings_are_refused(llm, kwargs):
    from edgellama import InvalidArgumentError

    with pytest.raises(InvalidArgumentError):
        llm.create_chat_completion([{"role": "user", "content": "Hi"}], max_tokens=1, **kwargs)
