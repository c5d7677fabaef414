"""The records of a settings catalogue: a Setting (with the calls it accepts), its enum Options, and the
Catalogue that holds them. Reading and checking a catalogue file: catalogue_file.py; loading: catalogue.py."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from textbook.errors import TextbookError

TYPES = ("page", "toggle", "range", "enum", "action")
_ACTIONS = {
    "page": ("open",),
    "toggle": ("open", "on", "off"),
    "range": ("open", "set", "increase", "decrease"),
    "enum": ("open", "set"),
    "action": ("open", "run"),
}


class CatalogueError(TextbookError):
    """A catalogue that does not load; the message lists every problem with its file and line."""


@dataclass(frozen=True, slots=True)
class Option:
    value: str | int | float
    say: tuple[str, ...]  # how people name this value ("dark", "dark theme"); never empty


@dataclass(frozen=True, slots=True)
class Setting:
    id: str
    type: str
    uri: str
    category: str
    name: str
    description: str
    synonyms: tuple[str, ...] = ()
    words: tuple[str, ...] = ()  # everyday words people use for it ("blue light filter")
    problems: dict[str, tuple[str, ...]] = field(default_factory=dict)  # "on" / "set:dark" -> statements
    phrases: dict[str, tuple[str, ...]] = field(default_factory=dict)  # same keys: direct, setting-specific wordings
    popularity: float = 1.0
    undoable: bool = True
    status: str = ""
    source: str = ""
    min: float | None = None
    max: float | None = None
    step: float | None = None
    unit: str = ""
    default: Any = None
    relative_step: float | None = None
    up: tuple[str, ...] = ()  # comparatives for increase ("brighter", "louder")
    down: tuple[str, ...] = ()
    options: tuple[Option, ...] = ()
    ordered: bool = False
    # what a toggle's ON state suppresses ("notifications" for do not disturb): "i don't want notifications"
    # then means `on`, where "i don't want <the setting>" means `off`
    suppresses: tuple[str, ...] = ()

    @property
    def actions(self) -> tuple[str, ...]:
        if self.type == "enum" and self.ordered:
            return _ACTIONS["enum"] + ("increase", "decrease")
        return _ACTIONS[self.type]

    @property
    def option_values(self) -> tuple[Any, ...]:
        return tuple(o.value for o in self.options)


@dataclass(frozen=True, slots=True)
class Catalogue:
    name: str
    path: str
    uri_scheme: str
    settings: tuple[Setting, ...]
    by_id: dict[str, Setting]

    def get(self, setting_id: str) -> Setting | None:
        return self.by_id.get(setting_id)

    def __len__(self) -> int:
        return len(self.settings)
