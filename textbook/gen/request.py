"""A rendered request: the chat messages for one plan item and the hashes that identify them."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass

from textbook.prompts import Template


@dataclass(frozen=True, slots=True)
class Rendered:
    template: str
    template_sha: str
    messages: list[dict]
    prompt_sha: str


class ParseError(ValueError):
    """A reply that cannot become a row; `reason` is the short, countable reject reason."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def rendered(template: Template, **values) -> Rendered:
    """One user message holding the whole rendered template (the template is the prompt, all of it)."""
    messages = [{"role": "user", "content": template.render(**values)}]
    digest = hashlib.sha256(json.dumps(messages, sort_keys=True, ensure_ascii=False).encode()).hexdigest()[:16]
    return Rendered(template.name, template.sha256, messages, digest)
