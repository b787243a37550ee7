"""Structured output: generation constrained to a JSON schema, a grammar or a regular expression,
valid by construction.

The constraint engine is llguidance (the `structured` extra): it compiles the grammar against the
model's vocabulary and gives, before each token, the set of tokens that keep the output inside
the grammar. The sampler bans every other token before temperature, top-k and the rest, so every
sampling setting stays valid. Modules:

- `vocabulary`: the model's tokenizer as llguidance sees it (built once per tokenizer);
- `grammar`: what a request asks (response_format, grammar, regex) as a checked grammar;
- `state`: one generation's position in its grammar, and the mask of its next token, computed
  while the forward step runs.
"""

from edgellama.constraints.grammar import Constraint, constraint_from
from edgellama.constraints.state import GrammarState

__all__ = ["Constraint", "GrammarState", "constraint_from"]
