"""What every stage's run returns: its facts and the summary a person reads.

A `Report` is a read-only mapping of plain JSON facts (what manifests and tests read: `report["kept"]`)
with `str(report)` the summary the CLI prints at the end, one way for every command (`textbook.cli.options.show`).
Stages with richer results subclass it and define `facts()` and `lines()`; the rest build a
`Report(facts, lines)` directly.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any


class Report(Mapping[str, Any]):
    """A run's facts (`report[key]`, `report.facts()`) and its summary (`str(report)`)."""

    def __init__(self, facts: Mapping[str, Any] | None = None, lines: list[str] | tuple[str, ...] = ()):
        self._facts = dict(facts or {})
        self._lines = list(lines)

    def facts(self) -> dict[str, Any]:
        return self._facts

    def lines(self) -> list[str]:
        return self._lines

    def __getitem__(self, key: str) -> Any:
        return self.facts()[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.facts())

    def __len__(self) -> int:
        return len(self.facts())

    def __str__(self) -> str:
        return "\n".join(self.lines())

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.facts()!r})"
