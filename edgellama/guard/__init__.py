"""Safeguards for chats: Llama Guard moderation of prompts and replies, and Code Shield scanning
of generated code (docs/guard.md).

- `prompts`: Llama Guard's formats (2, 3 8B, 3 1B) and taxonomies;
- `llama_guard`: `LlamaGuard`, whose checks return a `Verdict`;
- `code_blocks`: fenced code blocks found in streamed text as each one closes;
- `code_shield`: `CodeShield`, over Meta's codeshield package (the `guard` extra).
"""

from edgellama.guard.code_blocks import CodeBlock, CodeBlockWatcher
from edgellama.guard.code_shield import CodeShield, CodeVerdict
from edgellama.guard.llama_guard import GuardError, LlamaGuard, Verdict
from edgellama.guard.prompts import Category, Taxonomy

__all__ = ["Category", "CodeBlock", "CodeBlockWatcher", "CodeShield", "CodeVerdict", "GuardError", "LlamaGuard",
           "Taxonomy", "Verdict"]
