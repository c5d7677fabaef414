"""Reading failed requests: what the server said (one line, key redacted), why a connection failed, Retry-After;
and the one error every command raises when the teacher gave it nothing usable at all."""

from __future__ import annotations

import email.utils
import re
import socket
import time
from datetime import timezone
from typing import Any, Mapping

from textbook.errors import TextbookError

# Anything shaped like an API key, in case a server echoes one back (OpenAI's 401 quotes a masked key),
# and HTTP credentials (Basic carries user:password in base64, from a URL's user:pass@).
_KEYLIKE = re.compile(r"\b(sk|key|api[_-]?key)[-_][A-Za-z0-9_\-*]{6,}|\b(Basic|Bearer)\s+[A-Za-z0-9+/=._\-]{6,}",
                      re.IGNORECASE)


def one_line(text: str, secret: str | None = None, limit: int = 200) -> str:
    """Whitespace folded, the API key and key-like tokens removed, cut to `limit` characters."""
    text = " ".join(str(text).split())
    if secret:
        text = text.replace(secret, "[api key]")
    text = _KEYLIKE.sub("[redacted]", text)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def error_field(body: Any, name: str) -> str | None:
    """A field of an OpenAI-style error body ({"error": {...}} or the inner dict the SDK keeps)."""
    if isinstance(body, Mapping):
        inner = body.get("error", body)
        if isinstance(inner, Mapping) and inner.get(name) is not None:
            return str(inner[name])
        if isinstance(inner, str) and name == "message":  # {"error": "model not found"} (Ollama)
            return inner
    return None


def server_message(body: Any, secret: str | None = None) -> str:
    message = error_field(body, "message")
    if message is None:
        message = body if isinstance(body, str) else ""
    return one_line(message, secret) or "no message"


def connection_reason(exc: BaseException) -> str:
    """Why a request never got an answer, from the exception chain the SDK wraps (transport -> OSError).

    The root cause wins over the wrapper's name: the aiohttp transport reports a refused connection
    as a connect *timeout* whose cause is the ConnectionRefusedError."""
    seen: list[BaseException] = []
    link: BaseException | None = exc
    while link is not None and link not in seen:
        seen.append(link)
        link = link.__cause__ or link.__context__
    for link in seen:
        if isinstance(link, socket.gaierror):
            return "host name not found"
        if isinstance(link, ConnectionRefusedError):
            return "connection refused"
    if any(isinstance(link, TimeoutError) or "Timeout" in type(link).__name__ for link in seen):
        return "timed out"
    names = [type(e).__name__ for e in seen]
    detail = next((str(e) for e in reversed(seen) if str(e)), "")
    return one_line(f"{names[-1]}: {detail}" if detail else names[-1], limit=120)


def retry_after(headers: Mapping[str, str], now: float | None = None) -> float | None:
    """Seconds the server asks us to wait: `retry-after-ms` (OpenAI, Azure), then `Retry-After` as
    seconds or as an HTTP-date (RFC 9110 10.2.3). None when absent or unreadable."""
    value = headers.get("retry-after-ms")
    if value is not None:
        try:
            return max(0.0, float(value) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when is None:
        return None
    if when.tzinfo is None:  # "-0000" zone: the date is still UTC
        when = when.replace(tzinfo=timezone.utc)
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


# What to do about the most common reject reason (the teacher's own `TeacherRejected.reason`, however the
# command prefixes it: teacher_length, paraphrase_failed_length, ...).
_FIXES = {
    "length": "raise max_tokens in [teacher] of textbook.toml, or use a --model that answers more briefly",
    "content_filter": "use another --model: its provider's content filter refused the requests",
    "invalid_json": "use a stronger --model, one that follows JSON output (structured outputs)",
    "schema_mismatch": "use a stronger --model, one that follows JSON output (structured outputs)",
}
_FIX = "read the raw replies among the rejects, then use a stronger --model or fix the prompts (--prompts)"


def nothing_usable(rejects: Mapping[str, int], *, asked: int, what: str, where: Any = None,
                   fixes: Mapping[str, str] | None = None) -> TextbookError:
    """The error of a command that sent the teacher requests and kept nothing: how many of `asked` `what`
    were rejected and why (top reasons with counts), where the rejects are, and what to do. The caller
    raises it after saving everything, so a rerun resumes."""
    top = _top(rejects)
    why = "; ".join(part for part in (top_reasons(rejects), f"see {where}" if where else "") if part)
    table = {**_FIXES, **(fixes or {})}
    first = top[0][0] if top else ""
    fix = next((f for key, f in table.items() if first == key or first.endswith("_" + key)), _FIX)
    return TextbookError(f"the teacher gave nothing usable: {sum(c for _, c in top):,} of {asked:,} {what} rejected ({why}): {fix}")


def _top(counts: Mapping[str, int]) -> list[tuple[str, int]]:
    return sorted(((r, c) for r, c in counts.items() if c), key=lambda rc: (-rc[1], rc[0]))


def top_reasons(counts: Mapping[str, int], limit: int = 3) -> str:
    """`reason count, ...` for the most common reasons, e.g. `teacher_length 20, parse_no_code 3`."""
    top = _top(counts)
    if not top:
        return "no reject reason recorded"
    return ", ".join(f"{r} {c:,}" for r, c in top[:limit]) + (f", {len(top) - limit} more" if len(top) > limit else "")
