"""What the data side hands the model side: the shard columns the trainer, its evaluator and the
exporter read, and the grammar of the settings `target` column.

The two sides meet only in shards (house rule 11): the model side imports this module and
`textbook.shards`, never `textbook.settings`, `textbook.gen`, `textbook.filter` or `textbook.teacher`,
and this module imports nothing but the standard library (tests/test_contract.py checks both).

The target a settings model emits is one compact JSON function call (textbook/settings/FORMAT.md,
"The target grammar"):

    {"action":"none"}                                   not a settings request
    {"action":"open","id":"display.brightness"}         open a page, or the page of a setting
    {"action":"on","id":"bluetooth.enabled"}            toggle on (and "off")
    {"action":"set","id":"display.brightness","value":70}
    {"action":"set","id":"personalization.colors.mode","value":"dark"}
    {"action":"increase","id":"sound.volume"}           one relative step (and "decrease")
    {"action":"increase","id":"sound.volume","value":20}  by an amount
    {"action":"run","id":"windowsupdate.check"}         press a button

Canonical text: keys in the order action, id, value; no spaces; integral numbers without ".0";
non-ASCII kept as is. Training targets are canonical, so exact match of canonical strings is the metric.

    parse_target(text) -> Target          raises TargetError (a ValueError) on anything outside the grammar
    Target.to_json() -> canonical text    canonical(text) = parse_target(text).to_json()
    validate_target(target, catalogue) -> list[str]   empty when the call is valid for that catalogue
                                          (any object with `get(id)`, e.g. textbook.settings.catalogue.load_catalogue())
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Iterable, Protocol

# -- the columns of settings shards the model side reads (textbook.settings.records.SettingsSample) --
QUERY = "query"  # what the user typed (noised when noise_ops is not empty)
CLEAN_QUERY = "clean_query"  # the query before noise: the words the spelling lexicon learns
TARGET = "target"  # the canonical call (the grammar below)
SPLIT = "split"  # train | validation | test; every variant of a seed lands in its seed's split
ACTION, STYLE, NOISE_OPS = "action", "style", "noise_ops"  # what the evaluator groups exact match by
TRAIN, VALIDATION, TEST = "train", "validation", "test"  # the values of SPLIT
# -- shard formats: the file format (`--format`) -> the shards' suffix (textbook.shards writes and reads them) --
FORMATS = {"arrow": ".arrow", "arrow-stream": ".arrow", "parquet": ".parquet"}

# -- the text column of text shards (textbook gen's sections; the default --text-column everywhere) --
TEXT = "text"

# -- the call grammar --
ACTIONS = ("none", "open", "on", "off", "set", "increase", "decrease", "run")
_NEEDS_VALUE = {"set"}
_MAY_HAVE_VALUE = {"set", "increase", "decrease"}


class TargetError(ValueError):
    """Text that is not a settings function call in the grammar."""


@dataclass(frozen=True, slots=True)
class Target:
    action: str
    id: str | None = None
    value: Any = None  # None = no value given (JSON null is not part of the grammar)

    def to_json(self) -> str:
        return format_target(self.action, self.id, self.value)

    @property
    def value_json(self) -> str | None:
        """The value as JSON text (the shards' `value` column), or None."""
        return None if self.value is None else value_text(self.value)


def _dump(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def _norm_number(value: Any) -> Any:
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def value_text(value: Any) -> str:
    """A value as canonical JSON text (cached: a catalogue has few distinct values)."""
    key = (type(value), value)
    text = _VALUE_TEXT.get(key)
    if text is None:
        text = _VALUE_TEXT[key] = _dump(_norm_number(value))
    return text


_VALUE_TEXT: dict[tuple, str] = {}


def format_target(action: str, setting_id: str | None = None, value: Any = None) -> str:
    """Canonical text for a call, without checking it (the generator's hot path)."""
    if action == "none":
        return '{"action":"none"}'
    head = f'{{"action":{_dump(action)},"id":{_dump(setting_id)}' if not _SAFE.issuperset(setting_id) or not _SAFE.issuperset(action) \
        else f'{{"action":"{action}","id":"{setting_id}"'
    if value is None:
        return head + "}"
    return f'{head},"value":{value_text(value)}}}'


_SAFE = frozenset("abcdefghijklmnopqrstuvwxyz0123456789_.-")


def parse_target(text: str) -> Target:
    """Parse a model's output into a Target; TargetError says why it is not a call."""
    try:
        obj = json.loads(text)
    except (json.JSONDecodeError, TypeError) as exc:
        raise TargetError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise TargetError("a call is a JSON object")
    unknown = set(obj) - {"action", "id", "value"}
    if unknown:
        raise TargetError(f"unknown key(s): {', '.join(sorted(unknown))}")
    action = obj.get("action")
    if action not in ACTIONS:
        raise TargetError(f"unknown action {action!r}: one of {', '.join(ACTIONS)}")
    if action == "none":
        if len(obj) != 1:
            raise TargetError('"none" takes no id or value')
        return Target("none")
    setting_id = obj.get("id")
    if not isinstance(setting_id, str) or not setting_id:
        raise TargetError(f'"{action}" needs an "id" string')
    if "value" not in obj:
        if action in _NEEDS_VALUE:
            raise TargetError('"set" needs a "value"')
        return Target(action, setting_id)
    value = obj["value"]
    if action not in _MAY_HAVE_VALUE:
        raise TargetError(f'"{action}" takes no value')
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise TargetError("value must be a number or a string")
    if isinstance(value, float) and not math.isfinite(value):
        raise TargetError("value must be finite")
    return Target(action, setting_id, _norm_number(value))


def canonical(text: str) -> str:
    """The canonical form of any text in the grammar (raises TargetError otherwise)."""
    return parse_target(text).to_json()


class SettingView(Protocol):
    """What validation reads of a setting (textbook.settings.catalogue.Setting has it)."""

    id: str
    type: str  # page | toggle | range | enum | action
    min: float | None
    max: float | None
    step: float | None

    @property
    def actions(self) -> tuple[str, ...]: ...

    @property
    def option_values(self) -> tuple[Any, ...]: ...


class CatalogueView(Protocol):
    """What validation reads of a catalogue (textbook.settings.catalogue.Catalogue has it)."""

    def get(self, setting_id: str) -> SettingView | None: ...


def _on_grid(value: float, lo: float, step: float) -> bool:
    k = (value - lo) / step
    return abs(k - round(k)) < 1e-6


def _value_errors(target: Target, s: SettingView) -> list[str]:
    v = target.value
    if target.action == "set":
        if s.type == "range":
            if not isinstance(v, (int, float)):
                return [f"{s.id} takes a number, not {v!r}"]
            if not s.min <= v <= s.max or not _on_grid(v, s.min, s.step):
                return [f"{v} is outside {s.id}'s range {s.min:g}..{s.max:g} (step {s.step:g})"]
            return []
        if s.type == "enum":
            if not any(v == o and type(v) is not bool for o in s.option_values):
                return [f"{v!r} is not an option of {s.id} ({', '.join(map(str, s.option_values))})"]
            return []
        return [f"{s.id} is a {s.type}: it cannot be set to a value"]
    if v is None:
        return []
    if s.type != "range":  # ordered enums move one option at a time
        return [f"{s.id} moves one option at a time: no amount"]
    if not isinstance(v, (int, float)) or v <= 0 or v > s.max - s.min or not _on_grid(v, 0, s.step):
        return [f"amount {v!r} must be a positive multiple of {s.step:g} up to {s.max - s.min:g}"]
    return []


def validate_target(target: Target, catalogue: CatalogueView) -> list[str]:
    """Why this call is invalid for the catalogue (unknown id, action the setting lacks, bad value)."""
    if target.action == "none":
        return []
    setting = catalogue.get(target.id or "")
    if setting is None:
        return [f"unknown setting id {target.id!r}"]
    if target.action not in setting.actions:
        return [f"{setting.id} is a {setting.type}: {target.action!r} is not one of {', '.join(setting.actions)}"]
    return _value_errors(target, setting)


def _grid(lo: float, hi: float, step: float) -> list[Any]:
    count = int(round((hi - lo) / step))
    return [_norm_number(round(lo + k * step, 9)) for k in range(count + 1)]


def valid_calls(settings: Iterable[SettingView]) -> list[str]:
    """The canonical text of every call valid for these settings, "none" included: what constrained
    decoding lets a model emit (a few thousand for the bundled catalogue)."""
    calls = [format_target("none")]
    for s in settings:
        for action in s.actions:
            if action == "set":
                values = _grid(s.min, s.max, s.step) if s.type == "range" else list(s.option_values)
                calls += [format_target(action, s.id, v) for v in values]
                continue
            calls.append(format_target(action, s.id))
            if action in _MAY_HAVE_VALUE and s.type == "range":  # an amount: a positive multiple of the step
                calls += [format_target(action, s.id, v) for v in _grid(s.step, s.max - s.min, s.step)]
    return sorted(set(calls))
