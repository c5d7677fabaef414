"""The filter's heuristic stage as a list of steps, built from a preset.

A step is a small object with a `name` (its key in a preset, its row in the report's timings) and
`__call__(docs, rows) -> reasons`: one reason (None = passes) for each document in `rows`, the
documents no earlier step removed (heuristics.Docs carries their texts, their shared WordTable and
numbers several steps use). The first step a document fails gives its reason.

The built-in steps run in FineWeb's order (Gopher repetition, Gopher quality, C4, FineWeb). A new step
is one file: a module `textbook/filter/<name>.py` that defines a frozen `Config` dataclass (its
settings, `enabled` among them) and a `Step` class taking that config. Naming `<name>:` in a preset
turns it on; such steps run before the built-in ones, in the order the preset lists them (cheap
filters first, as datatrove's pipelines put URL and language filters before Gopher). language.py is
one. Modules are looked up by name inside this package only: a preset cannot import arbitrary code.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
from types import ModuleType
from typing import Any

from textbook.errors import ConfigError

BUILT_IN = ("gopher_repetition", "gopher_quality", "c4", "fineweb")


def step_module(name: str, where: str) -> ModuleType:
    """The module of an added step (`textbook.filter.<name>`), or a ConfigError that lists what exists."""
    module = None
    if name.isidentifier() and importlib.util.find_spec(f"textbook.filter.{name}") is not None:
        module = importlib.import_module(f"textbook.filter.{name}")
    if module is None or not (dataclasses.is_dataclass(getattr(module, "Config", None)) and hasattr(module, "Step")):
        raise ConfigError(f"unknown stage {name!r} in {where}: a preset names the built-in stages "
                          f"({', '.join((*BUILT_IN, 'dedup', 'classifier'))}) or a step module textbook/filter/<name>.py "
                          "that defines Config and Step (such as language)")
    return module


def build_steps(preset: Any) -> list:
    """The enabled heuristic steps of a preset, in the order they run."""
    from textbook.filter.heuristics import C4Step, FineWebStep, GopherQualityStep, GopherRepetitionStep

    added = [step_module(name, "the preset").Step(config) for name, config in preset.added if config.enabled]
    built_in = [GopherRepetitionStep(preset.gopher_repetition), GopherQualityStep(preset.gopher_quality),
                C4Step(preset.c4), FineWebStep(preset.fineweb)]
    return added + [step for step in built_in if step.config.enabled]
