"""Teacher paraphrases of a seed, prompted with the setting's metadata (prompt tuning with metadata).

`render(...)` builds the chat messages (pure), `parse(obj, styles)` checks the reply and returns
(style, text) pairs or raises ValueError (the teacher client asks again on ValueError).
"""

from __future__ import annotations

from typing import Any

from textbook.contract import format_target
from textbook.prompts import Prompts
from textbook.settings.catalogue import Setting

TEMPLATE = "settings_paraphrase"
STYLES = ("command", "question", "problem", "keyword", "polite", "casual", "verbose")
STYLE_HELP = {
    "command": "a direct command",
    "question": "a question asking how to do it or asking for it",
    "problem": "describe the problem or wish behind it, without naming the setting",
    "keyword": "1 to 4 words, as typed into a search box",
    "polite": "a polite request",
    "casual": "casual and short, the way people text",
    "verbose": "a longer request with some context about why",
}
MAX_CHARS = 200  # "at most 20 words each"


def schema(styles: list[str]) -> dict[str, Any]:
    """The reply's JSON schema with the bounds `parse` enforces (one rewrite per style asked, short texts):
    a grammar-constrained server cannot loop inside the array until max_tokens."""
    return {
        "type": "object",
        "properties": {"paraphrases": {"type": "array", "minItems": 1, "maxItems": len(styles), "items": {
            "type": "object",
            "properties": {"style": {"type": "string", "enum": sorted(set(styles))},
                           "text": {"type": "string", "minLength": 1, "maxLength": MAX_CHARS}},
            "required": ["style", "text"], "additionalProperties": False}}},
        "required": ["paraphrases"],
        "additionalProperties": False,
    }


def value_words(s: Setting | None, value: Any) -> str:
    """A value as people would say it ("70%", "dark mode", "15 minutes")."""
    if s is None or value is None:
        return ""
    for o in s.options:
        if o.value == value:
            return o.say[0]
    unit = s.unit or ""
    return f"{value}{unit}" if unit in ("%", "Hz") else f"{value} {unit}".strip()


def meaning(s: Setting, action: str, value: Any) -> str:
    """What a call does, in words, for the prompts."""
    name = s.name
    if action == "open":
        return f"open the {name} page" if s.type == "page" else f"open the {name} setting"
    if action in ("on", "off"):
        return f"turn {name} {action}"
    if action == "set":
        return f"set {name} to {value_words(s, value)}"
    if action in ("increase", "decrease"):
        by = f" by {value_words(s, value)}" if value is not None else " a step"
        return f"{action} {name}{by}"
    return f"{name} (press the button)"


def describe_values(s: Setting) -> str:
    if s.type == "range":
        return f"{s.min:g} to {s.max:g}{' ' + s.unit if s.unit else ''}, step {s.step:g}"
    if s.type == "enum":
        return "options: " + ", ".join(f"{o.value} ({o.say[0]})" if str(o.value) != o.say[0] else str(o.value)
                                       for o in s.options)
    return ""


def styles_for(count: int, offset: int) -> list[str]:
    """`count` styles, rotating through all of them so every style is asked for across seeds."""
    return [STYLES[(offset + i) % len(STYLES)] for i in range(count)]


def render(prompts: Prompts, s: Setting, *, seed: str, action: str, value: Any, styles: list[str],
           product: str = "Windows") -> list[dict]:
    problems = [t for key, texts in s.problems.items() if key.split(":")[0] == action for t in texts][:4]
    text = prompts.render(
        TEMPLATE, product=product, setting=s, values=describe_values(s),
        names=list(dict.fromkeys([*s.synonyms, *s.words]))[:10], problems=problems, seed=seed,
        meaning=meaning(s, action, value), target=format_target(action, s.id, value), value=value,
        value_words=value_words(s, value),
        styles=styles, style_help=STYLE_HELP,
    )
    return [{"role": "user", "content": text}]


def parse(obj: Any, styles: list[str], prompt: str = "") -> list[tuple[str, str]]:
    """(style, text) pairs from the teacher's JSON; ValueError when it is not usable (retried). A text
    the prompt quotes is not a rewrite: the request itself, or the format's "<the rewrite>" echoed back."""
    if not isinstance(obj, dict) or not isinstance(obj.get("paraphrases"), list):
        raise ValueError('expected {"paraphrases": [...]}')
    out: list[tuple[str, str]] = []
    seen: set[str] = set()
    quoted = prompt.lower()
    for item in obj["paraphrases"]:
        if not isinstance(item, dict) or not isinstance(item.get("text"), str):
            continue
        text = " ".join(item["text"].strip().strip('"').split())
        style = item.get("style") if item.get("style") in STYLES else "command"
        if not text or len(text) > MAX_CHARS or text.lower() in seen or f'"{text.lower()}"' in quoted:
            continue
        seen.add(text.lower())
        out.append((style, text))
    if not out:
        raise ValueError("no usable paraphrase in the reply")
    return out[: len(styles)]
