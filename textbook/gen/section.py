"""Textbook sections (phi-1's synthetic textbooks): pure render(plan item) -> request, parse(reply) -> Markdown."""

from __future__ import annotations

import ast
import re

from textbook.gen.boilerplate import strip_boilerplate
from textbook.gen.plan import PlanItem
from textbook.gen.request import ParseError, Rendered, rendered
from textbook.prompts import Prompts

TEMPLATE = "textbook"
MIN_CHARS = 300  # below this a "section" is a stub, not a lesson
MIN_PROSE_WORDS = 40  # outside code: a lesson explains; a page of print calls is not one
_HEADING = re.compile(r"^#{1,6} \S", re.MULTILINE)
_WRAPPED = re.compile(r"^```(?:markdown|md)[ \t]*\n(.*?)\n?```$", re.DOTALL | re.IGNORECASE)
_CODE = re.compile(r"```(\w*)[^\n]*\n(.*?)```", re.DOTALL)


def render(prompts: Prompts, item: PlanItem) -> Rendered:
    return rendered(prompts.get(TEMPLATE), **item.template_vars())


def parse(text: str) -> str:
    """The section as Markdown, or ParseError: too short, no code, or code that does not even parse."""
    text = text.strip()
    wrapped = _WRAPPED.match(text)  # the teacher fenced its whole answer as a ```markdown block
    if wrapped:
        text = wrapped.group(1).strip()
    text = strip_boilerplate(text)
    if len(text) < MIN_CHARS:
        raise ParseError("parse_too_short", f"{len(text)} characters after stripping boilerplate (< {MIN_CHARS})")
    if not _HEADING.search(text):
        raise ParseError("parse_no_heading", 'no Markdown heading: a section starts with "## " and its subject')
    prose = len(_CODE.sub(" ", text).split())
    if prose < MIN_PROSE_WORDS:
        raise ParseError("parse_no_prose", f"{prose} words outside code blocks (< {MIN_PROSE_WORDS}): a section explains in prose")
    blocks = [(lang.lower(), body) for lang, body in _CODE.findall(text)]
    python = [body for lang, body in blocks if lang in ("python", "py", "python3", "")]
    if not python:
        raise ParseError("parse_no_code", "no fenced Python code block: a textbook section must show runnable code")
    for body in python:
        if body.lstrip().startswith(">>>"):
            continue  # an interactive session, not a program
        try:
            ast.parse(body)  # parsing only: generated code is never executed here
        except SyntaxError as exc:
            raise ParseError("parse_code_syntax", f"code block line {exc.lineno}: {exc.msg}") from None
    return text
