"""Structured outputs: ask for JSON the way the endpoint supports, then parse it tolerantly and validate it.

Endpoints with structured outputs (OpenAI, Azure, vLLM, llama.cpp, recent Ollama) get
`response_format: {"type": "json_schema", ...}`. The others get the schema as plain instructions,
and their replies are parsed tolerantly: models wrap JSON in ```json fences or a sentence of preamble.
"""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any, Callable

from jsonschema import exceptions as schema_errors
from jsonschema import validators

from textbook.teacher.failures import one_line

class BadReply(Exception):
    """A reply that cannot be used, with a short countable `reason` and a one-line `detail`."""

    def __init__(self, reason: str, detail: str):
        super().__init__(detail)
        self.reason = reason
        self.detail = detail


_FENCE = re.compile(r"```[\w-]*\s*\n?(.*?)```", re.DOTALL)
_DECODER = json.JSONDecoder()


def response_format(schema: dict[str, Any], name: str = "reply") -> dict[str, Any]:
    # strict=False: OpenAI's strict mode only takes schemas with every property required and
    # additionalProperties false; ours are validated here anyway, so the loose mode is enough.
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema, "strict": False}}


def with_instructions(messages: list[dict], schema: dict[str, Any]) -> list[dict]:
    """The messages with the schema spelled out at the end of the last user message (fallback mode)."""
    note = (
        "\n\nReply with only a JSON value (no prose, no code fences) that follows this JSON Schema:\n"
        + json.dumps(schema, ensure_ascii=False)
    )
    out = [dict(m) for m in messages]
    for message in reversed(out):
        if message.get("role") == "user" and isinstance(message.get("content"), str):
            message["content"] += note
            return out
    return out + [{"role": "user", "content": note.strip()}]


def rejects_response_format(status: int, message: str, param: str | None) -> bool:
    """Does a 400 say that `response_format` (or JSON-schema output) is what the server cannot do?"""
    if status not in (400, 422):
        return False
    text = f"{param or ''} {message}".lower()
    return "response_format" in text or "json_schema" in text or "structured output" in text


def extract_json(text: str) -> Any:
    """The JSON value in a reply: the whole text, else a fenced block, else the first {...} or [...] that parses.

    Raises ValueError (with what was wrong) when there is none.
    """
    stripped = text.strip()
    if not stripped:
        raise ValueError("empty reply, expected JSON")
    try:
        return json.loads(stripped)
    except ValueError as exc:
        first_error = exc
    for block in _FENCE.findall(stripped):
        try:
            return json.loads(block.strip())
        except ValueError:
            pass
    for match in re.finditer(r"[\[{]", stripped):
        try:
            return _DECODER.raw_decode(stripped, match.start())[0]
        except ValueError:
            continue
    raise ValueError(f"no JSON value in the reply ({first_error})")


@lru_cache(maxsize=64)
def _validator(schema_json: str) -> Any:
    schema = json.loads(schema_json)
    cls = validators.validator_for(schema)
    cls.check_schema(schema)  # a broken schema is the caller's bug: SchemaError, not a reject
    return cls(schema)


def check_schema(value: Any, schema: dict[str, Any]) -> None:
    """Raise ValueError naming the first place where `value` breaks `schema`."""
    validator = _validator(json.dumps(schema, sort_keys=True))
    error = schema_errors.best_match(validator.iter_errors(value))
    if error is not None:
        where = "/".join(str(p) for p in error.absolute_path) or "the top level"
        raise ValueError(f"does not match the schema at {where}: {error.message}")


def accept(text: str, schema: dict | None, validate: Callable[[Any], Any] | None) -> Any:
    """The parsed value of an acceptable reply (None without a schema); BadReply says why not."""
    if not text.strip():
        raise BadReply("empty", "the reply is empty")
    parsed = None
    if schema is not None:
        try:
            parsed = extract_json(text)
        except ValueError as exc:
            raise BadReply("invalid_json", one_line(str(exc))) from None
        try:
            check_schema(parsed, schema)
        except ValueError as exc:
            raise BadReply("schema_mismatch", one_line(str(exc))) from None
    if validate is not None:
        try:
            validate(parsed if schema is not None else text)
        except ValueError as exc:
            raise BadReply(getattr(exc, "reason", None) or "invalid_output", one_line(str(exc))) from None
    return parsed
