"""Chat templates: built-in templates against their documented output, and rendering (file
templates, built-ins, a template using the Llama 3.x features) against transformers'
apply_chat_template."""

from __future__ import annotations

import json

import pytest

from edgellama.chat import (
    BUILTIN_TEMPLATES,
    ChatTemplate,
    ChatTemplateError,
    detect_family,
)
from edgellama.tokenizer import Tokenizer
from edgellama.tokenizer_convert import tokenizer_metadata_from_hf

transformers = pytest.importorskip("transformers")
hf = pytest.importorskip("tokenizers")

CONVERSATION = [
    {"role": "system", "content": "You are terse. "},
    {"role": "user", "content": "  What is 2+2?\n"},
    {"role": "assistant", "content": "4"},
    {"role": "user", "content": "Und auf Deutsch? 日本語 😀 <|eot_id|>"},
]
NO_SYSTEM = CONVERSATION[1:]

# A template in the style of Llama 3.1/3.2: tools as indented JSON, date_string with a
# strftime_now default, namespace counters, loop controls, a tool role, raise_exception.
FEATURE_TEMPLATE = """{{- bos_token }}
{%- if not date_string is defined %}
    {%- set date_string = strftime_now("%d %b %Y") %}
{%- endif %}
{%- if messages[0]['role'] == 'system' %}
    {%- set system_message = messages[0]['content'] | trim %}
    {%- set messages = messages[1:] %}
{%- else %}
    {%- set system_message = "" %}
{%- endif %}
{{- "<|start_header_id|>system<|end_header_id|>\\n\\n" }}
{%- if tools is not none %}
    {{- "Environment: ipython\\n" }}
{%- endif %}
{{- "Today Date: " + date_string + "\\n\\n" }}
{%- if tools is not none %}
    {%- for t in tools %}
        {{- t | tojson(indent=4) }}
        {{- "\\n\\n" }}
    {%- endfor %}
{%- endif %}
{{- system_message }}
{{- "<|eot_id|>" }}
{%- set ns = namespace(count=0) %}
{%- for message in messages %}
    {%- if message.role == 'tool' %}
        {%- continue %}
    {%- endif %}
    {%- if message.role not in ['user', 'assistant'] %}
        {{- raise_exception('unexpected role ' + message.role) }}
    {%- endif %}
    {%- set ns.count = ns.count + 1 %}
    {{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}
    {%- if ns.count >= 3 %}
        {%- break %}
    {%- endif %}
{%- endfor %}
{%- if add_generation_prompt %}
    {{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}
{%- endif %}
"""

TOOLS = [{"type": "function", "function": {
    "name": "get_weather", "description": "Wetter für einen Ort <heute>",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}]


@pytest.fixture(scope="module")
def smollm2_meta(smollm2_tokenizer_meta):
    return smollm2_tokenizer_meta


def hf_render(template, messages, bos="", eos="", add_generation_prompt=True, **kwargs):
    tok = transformers.PreTrainedTokenizerFast(tokenizer_object=hf.Tokenizer(hf.models.BPE()),
                                               bos_token=bos, eos_token=eos)
    tok.chat_template = template
    return tok.apply_chat_template(messages, tokenize=False, add_generation_prompt=add_generation_prompt,
                                   **kwargs)


def ours(template, messages, bos="", eos="", add_generation_prompt=True, **kwargs):
    return ChatTemplate(template, bos, eos).render(messages, add_generation_prompt=add_generation_prompt,
                                                   **kwargs)


# -- documented output of the built-ins -------------------------------------------------------


def test_llama3_documented_output():
    t = ChatTemplate.builtin("llama3", "<|begin_of_text|>", "<|end_of_text|>")
    assert t.render(CONVERSATION[:2]) == (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nYou are terse.<|eot_id|>"
        "<|start_header_id|>user<|end_header_id|>\n\nWhat is 2+2?<|eot_id|>"
        "<|start_header_id|>assistant<|end_header_id|>\n\n")
    assert t.render(CONVERSATION[:3], add_generation_prompt=False).endswith(
        "<|start_header_id|>assistant<|end_header_id|>\n\n4<|eot_id|>")
    assert t.stop_tokens[0] == "<|eot_id|>"


def test_llama2_documented_output():
    t = ChatTemplate.builtin("llama2", "<s>", "</s>")
    assert t.render(CONVERSATION) == (
        "<s>[INST] <<SYS>>\nYou are terse.\n<</SYS>>\n\nWhat is 2+2? [/INST] 4 </s>"
        "<s>[INST] Und auf Deutsch? 日本語 😀 <|eot_id|> [/INST]")
    assert t.render(NO_SYSTEM[:1]) == "<s>[INST] What is 2+2? [/INST]"
    with pytest.raises(ChatTemplateError, match="alternate"):
        t.render([{"role": "user", "content": "a"}, {"role": "user", "content": "b"}])
    assert t.stop_tokens == ("</s>",)


def test_chatml_documented_output():
    t = ChatTemplate.builtin("chatml", "", "<|im_end|>")
    assert t.render(NO_SYSTEM[:1]) == "<|im_start|>user\n  What is 2+2?\n<|im_end|>\n<|im_start|>assistant\n"
    assert t.render(NO_SYSTEM[:1], add_generation_prompt=False) == "<|im_start|>user\n  What is 2+2?\n<|im_end|>\n"
    assert "<|im_end|>" in t.stop_tokens


# -- parity with transformers ------------------------------------------------------------------


@pytest.mark.parametrize("family,bos,eos", [("llama3", "<|begin_of_text|>", "<|eot_id|>"),
                                            ("llama2", "<s>", "</s>"), ("chatml", "<|im_start|>", "<|im_end|>")])
@pytest.mark.parametrize("messages", [CONVERSATION, NO_SYSTEM, NO_SYSTEM[:1]], ids=["system", "no-system", "one"])
@pytest.mark.parametrize("agp", [True, False])
def test_builtins_match_transformers(family, bos, eos, messages, agp):
    template = BUILTIN_TEMPLATES[family]
    assert ours(template, messages, bos, eos, agp) == hf_render(template, messages, bos, eos, agp)


@pytest.mark.parametrize("agp", [True, False])
@pytest.mark.parametrize("messages", [CONVERSATION, NO_SYSTEM], ids=["system", "no-system"])
def test_smollm2_file_template_matches_transformers(smollm2_meta, messages, agp):
    meta = smollm2_meta
    tok = Tokenizer.from_metadata(meta)
    t = ChatTemplate.from_tokenizer_metadata(meta, tok)
    assert t.source == meta["tokenizer.chat_template"]
    assert t.family == "chatml" and t.stop_tokens == ("<|im_end|>", "<|endoftext|>")
    assert t.stop_ids(tok) == frozenset({tok.token_id("<|im_end|>"), tok.token_id("<|endoftext|>")})
    expected = hf_render(t.source, messages, "<|im_start|>", "<|im_end|>", agp)
    assert t.render(messages, add_generation_prompt=agp) == expected


@pytest.mark.parametrize("tools", [None, TOOLS], ids=["no-tools", "tools"])
@pytest.mark.parametrize("messages", [
    CONVERSATION,
    NO_SYSTEM + [{"role": "tool", "content": "ignored"}, {"role": "assistant", "content": "ok"},
                 {"role": "user", "content": "dropped by break"}],
], ids=["plain", "tool-and-break"])
def test_feature_template_matches_transformers(tools, messages):
    kwargs = {"date_string": "26 Jul 2024"}
    expected = hf_render(FEATURE_TEMPLATE, messages, "<|begin_of_text|>", "<|eot_id|>", tools=tools, **kwargs)
    got = ours(FEATURE_TEMPLATE, messages, "<|begin_of_text|>", "<|eot_id|>", tools=tools, **kwargs)
    assert got == expected
    assert "Today Date: 26 Jul 2024" in got
    if tools:
        assert json.dumps(TOOLS[0], indent=4, ensure_ascii=False) in got  # not HTML-escaped, not ASCII-escaped


def test_strftime_now_matches_transformers():
    # No date_string: the template falls back to strftime_now, in both renderers.
    assert ours(FEATURE_TEMPLATE, NO_SYSTEM, "<s>") == hf_render(FEATURE_TEMPLATE, NO_SYSTEM, "<s>")


def test_raise_exception_and_sandbox():
    with pytest.raises(ChatTemplateError, match="unexpected role"):
        ours(FEATURE_TEMPLATE, [{"role": "robot", "content": "x"}], date_string="x")
    with pytest.raises(ChatTemplateError):
        ours("{{ ''.__class__.__mro__[1].__subclasses__() }}", NO_SYSTEM)
    with pytest.raises(ChatTemplateError):
        ours("{% set x = messages.append({'role': 'user'}) %}", NO_SYSTEM)
    with pytest.raises(ChatTemplateError, match="parse"):
        ChatTemplate("{% for %}")
    with pytest.raises(ChatTemplateError, match="role"):
        ours(CHATML_SOURCE, [{"content": "no role"}])


CHATML_SOURCE = BUILTIN_TEMPLATES["chatml"]


# -- choice of the built-in by vocabulary ---------------------------------------------------


def test_llama32_vocabulary_gets_llama31(llama3_tokenizer_dir):
    meta = tokenizer_metadata_from_hf(llama3_tokenizer_dir)
    assert "tokenizer.chat_template" not in meta  # the base model's config has none
    tok = Tokenizer.from_metadata(meta)
    assert detect_family(tok) == "llama3.1"  # it names <|python_tag|> (test_chat_tools_template: 3.0)
    t = ChatTemplate.from_tokenizer_metadata(meta, tok)
    assert t.family == "llama3.1" and t.source == BUILTIN_TEMPLATES["llama3.1"]
    assert t.stop_tokens == ("<|eot_id|>", "<|eom_id|>", "<|end_of_text|>")
    assert t.stop_ids(tok) == frozenset({128009, 128008, 128001})
    assert t.stop_ids(tok) <= tok.stop_ids  # generation stops at each of them
    # Rendered with the real tokenizer in transformers, identically.
    ref = transformers.PreTrainedTokenizerFast(tokenizer_file=str(llama3_tokenizer_dir / "tokenizer.json"),
                                               bos_token="<|begin_of_text|>", eos_token="<|end_of_text|>")
    ref.chat_template = t.source
    assert t.render(CONVERSATION) == ref.apply_chat_template(CONVERSATION, tokenize=False, add_generation_prompt=True)
    # Tokenized: one BOS (the template writes it), control tokens real, user text plain.
    benign = CONVERSATION[:3]
    ids = t.encode(tok, benign)
    assert ids == ref.apply_chat_template(benign, tokenize=True, add_generation_prompt=True,
                                          return_dict=False)
    assert ids.count(tok.bos_id) == 1
    # The "<|eot_id|>" the user typed stays text (transformers would make it the control token):
    # one <|eot_id|> per turn, four.
    ids = t.encode(tok, CONVERSATION)
    assert ids.count(tok.eot_id) == 4 and ids.count(tok.bos_id) == 1


def test_chatml_vocabulary_without_template(smollm2_meta):
    meta = {k: v for k, v in smollm2_meta.items() if k != "tokenizer.chat_template"}
    t = ChatTemplate.from_tokenizer_metadata(meta, Tokenizer.from_metadata(meta))
    assert t.family == "chatml" and t.source == CHATML_SOURCE


def test_spm_vocabulary_gets_llama2(tmp_path):
    spm = pytest.importorskip("sentencepiece")
    from test_tokenizer_spm import train

    (tmp_path / "tokenizer.model").write_bytes(train(True))
    meta = tokenizer_metadata_from_hf(tmp_path)
    tok = Tokenizer.from_metadata(meta)
    t = ChatTemplate.from_tokenizer_metadata(meta, tok)
    assert spm is not None and t.family == "llama2" and t.stop_tokens == ("</s>",)
    assert t.render(NO_SYSTEM[:1]) == "<s>[INST] What is 2+2? [/INST]"
    ids = t.encode(tok, NO_SYSTEM[:1])
    assert ids[0] == tok.bos_id and ids.count(tok.bos_id) == 1


def test_llama_apply_chat_template(smollm2_path, smollm2_meta):
    from edgellama import Llama

    llm = Llama(smollm2_path, n_ctx=64, n_threads=1)
    expected = hf_render(smollm2_meta["tokenizer.chat_template"], NO_SYSTEM, "<|im_start|>", "<|im_end|>")
    assert llm.apply_chat_template(NO_SYSTEM) == expected
    assert llm.chat_template.stop_ids(llm.tokenizer) <= llm.tokenizer.stop_ids
