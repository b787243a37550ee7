"""OpenAI's moderation response (/v1/moderations) from Llama Guard verdicts.

OpenAI's 13 categories do not match the MLCommons hazards Llama Guard is trained on. Each Llama
Guard category maps, by its name, to the OpenAI categories it overlaps (docs/guard.md has the
table); Specialized Advice, Privacy, Intellectual Property and Elections have no counterpart. A
flagged input always has `flagged: true`, whatever the mapping; its scores are P(unsafe) for the
mapped categories and 0 for the others, as Llama Guard gives one probability, not one per
category. The Llama Guard verdict itself comes in an extra `llama_guard` field.
"""

from __future__ import annotations

import uuid
from typing import Any, Dict, List

OPENAI_CATEGORIES = ("harassment", "harassment/threatening", "hate", "hate/threatening", "illicit",
                     "illicit/violent", "self-harm", "self-harm/intent", "self-harm/instructions", "sexual",
                     "sexual/minors", "violence", "violence/graphic")

# Llama Guard category name -> OpenAI categories.
CATEGORY_MAP: Dict[str, tuple] = {
    "Violent Crimes": ("violence", "illicit/violent"),
    "Non-Violent Crimes": ("illicit",),
    "Sex Crimes": ("sexual", "illicit"),
    "Child Exploitation": ("sexual/minors",),
    "Defamation": ("harassment",),
    "Indiscriminate Weapons": ("illicit/violent",),
    "Hate": ("hate",),
    "Self-Harm": ("self-harm",),
    "Sexual Content": ("sexual",),
    "Code Interpreter Abuse": ("illicit",),
}


def moderation_result(verdict) -> Dict[str, Any]:
    """One input's result: flagged, categories, category_scores, category_applied_input_types."""
    mapped = {name for category in verdict.category_names for name in CATEGORY_MAP.get(category, ())}
    return {
        "flagged": not verdict.safe,
        "categories": {name: name in mapped for name in OPENAI_CATEGORIES},
        "category_scores": {name: (verdict.p_unsafe if name in mapped else 0.0) for name in OPENAI_CATEGORIES},
        "category_applied_input_types": {name: ["text"] for name in OPENAI_CATEGORIES},
        "llama_guard": verdict.as_dict(),
    }


def moderations_response(guard, inputs: List[str], model: str) -> Dict[str, Any]:
    """OpenAI's moderation response for texts, each checked as a user's message."""
    results = [moderation_result(guard.check_input([{"role": "user", "content": text}])) for text in inputs]
    return {"id": "modr-" + uuid.uuid4().hex, "model": model, "results": results}
