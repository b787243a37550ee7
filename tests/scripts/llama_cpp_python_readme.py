"""The usage llama-cpp-python's README documents, written against its API. The only line that
differs from code for llama-cpp-python is the import: tests/test_compat.py runs this script with
`python llama_cpp_python_readme.py MODEL.gguf` and checks what it prints (one JSON line per example).
"""

import json
import sys

from edgellama.compat import Llama  # was: from llama_cpp import Llama

model_path = sys.argv[1]
report = {}

# High-level API: a completion with stop strings and echo.
llm = Llama(model_path=model_path, n_gpu_layers=0, seed=1337, n_ctx=2048, verbose=False)
output = llm("Q: Name the planets in the solar system? A: ", max_tokens=32, stop=["Q:", "\n"], echo=True)
report["completion"] = output

# Streaming a completion.
report["stream"] = [chunk["choices"][0]["text"] for chunk in llm("The sky is", max_tokens=8, stream=True)]

# Chat completion with a chat format.
llm = Llama(model_path=model_path, chat_format="chatml", verbose=False)
report["chat"] = llm.create_chat_completion(messages=[
    {"role": "system", "content": "You are an assistant who perfectly describes images."},
    {"role": "user", "content": "Describe this image in detail please."},
], max_tokens=16)

# JSON mode, and JSON schema mode.
report["json_mode"] = llm.create_chat_completion(messages=[
    {"role": "system", "content": "You are a helpful assistant that outputs in JSON."},
    {"role": "user", "content": "Who won the world series in 2020"},
], response_format={"type": "json_object"}, temperature=0.7, max_tokens=64)
report["json_schema_mode"] = llm.create_chat_completion(messages=[
    {"role": "system", "content": "You are a helpful assistant that outputs in JSON."},
    {"role": "user", "content": "Who won the world series in 2020"},
], response_format={"type": "json_object", "schema": {
    "type": "object", "properties": {"team_name": {"type": "string", "maxLength": 30}}, "required": ["team_name"]}},
    temperature=0.7, max_tokens=64)

# Function calling, with a named tool choice.
llm = Llama(model_path=model_path, chat_format="chatml-function-calling", verbose=False)
report["function_call"] = llm.create_chat_completion(messages=[
    {"role": "system", "content": "A chat between a curious user and an artificial intelligence assistant. The "
                                  "assistant calls functions with appropriate input when necessary"},
    {"role": "user", "content": "Extract Jason is 25 years old"},
], tools=[{"type": "function", "function": {"name": "UserDetail", "parameters": {
    "type": "object", "title": "UserDetail",
    "properties": {"name": {"title": "Name", "type": "string", "maxLength": 20},
                   "age": {"title": "Age", "type": "integer", "minimum": 0, "maximum": 150}},
    "required": ["name", "age"]}}}],
    tool_choice={"type": "function", "function": {"name": "UserDetail"}}, max_tokens=64)

# Embeddings.
llm = Llama(model_path=model_path, embedding=True, verbose=False)
report["embedding"] = llm.create_embedding("Hello, world!")["data"][0]["embedding"][:4]
report["embed"] = len(llm.embed("Hello, world!"))

# Tokenization, and the model's sizes.
tokens = llm.tokenize(b"Hello, world!")
report["tokens"] = tokens
report["detokenized"] = llm.detokenize(tokens).decode("utf-8")
report["sizes"] = [llm.n_ctx(), llm.n_vocab(), llm.n_embd(), llm.token_bos(), llm.token_eos()]

for name, value in report.items():
    print(json.dumps({name: value}))
