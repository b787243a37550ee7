"""Tool calling, OpenAI's way: `tools` and `tool_choice` in a chat completion.

- `definitions`: the tools and the choice, checked; what the template and the constraint get;
- `calls`: the model's answer read back as OpenAI `tool_calls` (malformed output stays content).

The tools go to the model through its own chat template (Llama 3.1/3.2 templates take `tools`);
for a template that knows nothing of tools, a system message lists them instead. With
tool_choice "required" or a named function the call is constrained by a JSON-schema grammar, so
it always parses and matches the function's parameters.
"""

from edgellama.tools.calls import parse_tool_calls
from edgellama.tools.definitions import ToolUse, tool_use

__all__ = ["ToolUse", "parse_tool_calls", "tool_use"]
