"""Strip the stock openings and sign-offs teachers wrap around content ("Welcome to…", "In this chapter we will…").

They carry no knowledge, repeat across thousands of samples (a small model learns to parrot them)
and inflate near-duplicate similarity. Only whole leading/trailing sentences are removed; headings
and code are never touched.
"""

from __future__ import annotations

import re

_OPENING = re.compile(
    r"""^(?:
        (?:sure|certainly|of\ course|absolutely|great(?:\ question)?|okay|ok)\s*[!,.:]
      | welcome\b
      | here(?:'s|\ is|\ are)\b[^.!?\n]*\b(?:section|chapter|tutorial|lesson|textbook|guide|explanation|exercise|article|overview)\b
      | in\ this\ (?:chapter|section|tutorial|lesson|article|guide|unit|module|part)\b[^.!?\n]*\b(?:we|you)(?:'ll|\ will|\ are\ going\ to|\ shall|\ can)\b
      | (?:this|the\ following)\ (?:chapter|section|tutorial|lesson|article|guide)\ (?:will|aims\ to|is\ designed\ to)\b
      | (?:let's|let\ us)\ (?:dive|explore|get\ started|begin|start|take\ a\ (?:closer\ )?look|embark)\b
      | (?:today|now),?\ we(?:'ll|\ will|\ are\ going\ to)\b
      | as\ an\ ai\b
      | get\ ready\ to\b
    )""",
    re.IGNORECASE | re.VERBOSE,
)
_CLOSING = re.compile(
    r"^(?:happy\ (?:coding|learning|programming)|i\ hope\ this\b|hope\ this\ helps|good\ luck|"
    r"feel\ free\ to\b|let\ me\ know\b|keep\ (?:practicing|coding|learning)\b)",
    re.IGNORECASE | re.VERBOSE,
)
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


def _is_prose(paragraph: str) -> bool:
    first = paragraph.lstrip()
    return bool(first) and not first.startswith(("#", "```", "    ", "|", "-", "*", ">")) and not first[0].isdigit()


def _drop_sentences(paragraph: str, pattern: re.Pattern, from_end: bool) -> str:
    """Drop matching sentences from one end of a paragraph, leaving the rest byte for byte."""
    rest = paragraph.strip()
    while rest:
        if from_end:
            last = _SENTENCE_END.split(rest)[-1]
            if not pattern.match(last.lstrip("*_ ")):
                break
            rest = rest[: len(rest) - len(last)].rstrip()
        else:
            if not pattern.match(rest.lstrip("*_ ")):
                break
            parts = _SENTENCE_END.split(rest, maxsplit=1)
            rest = parts[1] if len(parts) > 1 else ""
    return rest


def strip_boilerplate(text: str) -> str:
    """Remove boilerplate sentences at the start of the first prose paragraph(s) and at the very end."""
    paragraphs = re.split(r"\n\s*\n", text.strip())
    # Openings: the first prose paragraphs (after any heading), until one keeps some content.
    i = 0
    while i < len(paragraphs):
        if paragraphs[i].lstrip().startswith("#"):
            i += 1
            continue
        if not _is_prose(paragraphs[i]):
            break
        kept = _drop_sentences(paragraphs[i], _OPENING, from_end=False)
        if kept:
            paragraphs[i] = kept
            break
        del paragraphs[i]
    # Sign-offs: trailing prose paragraphs made only of closing sentences.
    while paragraphs and _is_prose(paragraphs[-1]):
        kept = _drop_sentences(paragraphs[-1], _CLOSING, from_end=True)
        if kept:
            paragraphs[-1] = kept
            break
        paragraphs.pop()
    return "\n\n".join(paragraphs).strip() + "\n" if paragraphs else ""
