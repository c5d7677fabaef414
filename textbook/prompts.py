"""Prompt templates are data: Jinja files in prompts/, overridable by name from a user's directory."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

import jinja2

from textbook.bundled import data_dir
from textbook.errors import ConfigError, TextbookError


def with_article(phrase: str) -> str:
    """`{{ difficulty | article }}`: "an intermediate", "a beginner". Decided by the first letter, which
    is right for every bundled value (not for "an hour" or "a user": word such values to suit)."""
    return f"{'an' if phrase[:1].lower() in 'aeiou' else 'a'} {phrase}"


@dataclass(frozen=True, slots=True)
class Template:
    name: str
    source: str
    sha256: str
    path: Path
    _compiled: jinja2.Template

    def render(self, **values) -> str:
        try:
            return self._compiled.render(**values).strip() + "\n"
        except jinja2.UndefinedError as exc:
            raise TextbookError(f"prompt template {self.path} needs a value it was not given: {exc.message}") from None


class Prompts:
    """Templates by name (`textbook` → textbook.j2); a user's directory wins over the bundled one."""

    def __init__(self, override: str | Path | None = None):
        self.dirs = [data_dir("prompts")]
        if override is not None:
            override = Path(override)
            if not override.is_dir():
                raise ConfigError(f"prompts directory {override} does not exist: pass an existing directory to --prompts")
            self.dirs.insert(0, override)
        # StrictUndefined: a missing variable is an error, never an empty string in a prompt.
        self._env = jinja2.Environment(undefined=jinja2.StrictUndefined, keep_trailing_newline=True, autoescape=False)
        self._env.filters["article"] = with_article
        self._cache: dict[str, Template] = {}

    def get(self, name: str) -> Template:
        if name not in self._cache:
            for directory in self.dirs:
                path = directory / f"{name}.j2"
                if path.is_file():
                    source = path.read_text(encoding="utf-8")
                    try:
                        compiled = self._env.from_string(source)
                    except jinja2.TemplateSyntaxError as exc:
                        raise TextbookError(f"prompt template {path} line {exc.lineno}: {exc.message}") from None
                    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
                    self._cache[name] = Template(name, source, digest, path, compiled)
                    break
            else:
                searched = ", ".join(str(d) for d in self.dirs)
                raise TextbookError(f"no prompt template {name}.j2 in {searched}")
        return self._cache[name]

    def render(self, name: str, **values) -> str:
        return self.get(name).render(**values)
