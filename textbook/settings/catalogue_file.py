"""Reading and checking a catalogue file: every problem reported with its file and line (the format:
FORMAT.md). `check_text(path, text)` returns the Catalogue, or the list of problems."""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import yaml

from textbook.settings.setting import TYPES, Catalogue, Option, Setting
from textbook.settings.yamlfile import Map as _Map, load_yaml

_ID = re.compile(r"^[a-z0-9_]+(\.[a-z0-9_]+)*$")
_COMMON = {"id", "type", "uri", "category", "name", "description", "synonyms", "words", "problems", "phrases",
           "popularity", "undoable", "status", "source"}
_EXTRA = {
    "page": set(),
    "toggle": {"default", "suppresses"},
    "range": {"min", "max", "step", "unit", "default", "relative_step", "up", "down"},
    "enum": {"options", "default", "ordered", "unit", "up", "down"},
    "action": set(),
}
_OPTION_KEYS = {"value", "say"}
_STATUSES = ("", "conditional", "deprecated")


class _Report:
    def __init__(self, path: str):
        self.path = path
        self.errors: list[str] = []

    def add(self, line: int, where: str, message: str) -> None:
        self.errors.append(f"{self.path}:{line}: {where}: {message}")


def _strings(value: Any, rep: _Report, line: int, where: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
        rep.add(line, where, "must be a list of non-empty strings")
        return ()
    return tuple(v.strip() for v in value)


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def _on_grid(value: float, lo: float, step: float) -> bool:
    k = (value - lo) / step
    return abs(k - round(k)) < 1e-6


def _options(raw: Any, entry: _Map, rep: _Report, where: str) -> tuple[Option, ...]:
    line = entry.key_lines.get("options", entry.line)
    if not isinstance(raw, list) or not raw:
        rep.add(line, where, "enum needs a non-empty list of options")
        return ()
    unit = entry.get("unit") or ""
    out: list[Option] = []
    seen: set[str] = set()
    for i, item in enumerate(raw):
        iline = getattr(item, "line", line)
        if isinstance(item, (str, int, float)) and not isinstance(item, bool):
            item = {"value": item}
        if not isinstance(item, dict):
            rep.add(iline, f"{where} options[{i}]", "an option is a value or a mapping with value and say")
            continue
        for key in sorted(set(item) - _OPTION_KEYS):
            rep.add(iline, f"{where} options[{i}]", f"unknown key {key!r} (known: value, say)")
        value = item.get("value")
        if not (isinstance(value, str) and value) and not _number(value):
            rep.add(iline, f"{where} options[{i}]", "value must be a non-empty string or a number")
            continue
        if str(value) in seen:
            rep.add(iline, f"{where} options[{i}]", f"duplicate option value {value!r}")
        seen.add(str(value))
        say = _strings(item.get("say"), rep, iline, f"{where} options[{i}].say")
        if not say:
            if _number(value) and unit:
                say = (f"{value}{unit}" if unit in ("%", "hz", "Hz") else f"{value} {unit}", str(value))
            elif isinstance(value, str):
                say = (value.replace("_", " "),)
            else:
                rep.add(iline, f"{where} options[{i}]", "a numeric option without a unit needs `say` labels")
                continue
        out.append(Option(value, say))
    return tuple(out)


def _keyed(raw: Any, entry: _Map, key: str, setting: dict, rep: _Report, where: str) -> dict[str, tuple[str, ...]]:
    """problems/phrases: {action or "set:<value>": [texts]}; each key must be something the setting accepts."""
    if raw is None:
        return {}
    line = entry.key_lines.get(key, entry.line)
    if not isinstance(raw, dict):
        rep.add(line, f"{where} {key}", "must map an action (or set:<value>) to a list of texts")
        return {}
    out: dict[str, tuple[str, ...]] = {}
    for action, texts in raw.items():
        kline = raw.key_lines.get(action, line) if isinstance(raw, _Map) else line
        name, _, value = str(action).partition(":")
        if name not in setting["actions"]:
            rep.add(kline, f"{where} {key}", f"{action!r} is not an action of {setting['type']} settings "
                    f"(allowed: {', '.join(setting['actions'])}, or set:<value>)")
        elif value and name != "set":
            rep.add(kline, f"{where} {key}", f"only set takes a value ({action!r})")
        elif name == "set" and not value:
            rep.add(kline, f"{where} {key}", "say which value: set:<value>")
        elif value and not _value_ok(value, setting):
            rep.add(kline, f"{where} {key}", f"{value!r} is not a valid value for {setting['id']}")
        out[str(action)] = _strings(texts, rep, kline, f"{where} {key}.{action}")
    return out


def _value_ok(text: str, setting: dict) -> bool:
    if setting["type"] == "enum":
        return any(str(o.value) == text for o in setting["options"])
    try:
        value = float(text)
    except ValueError:
        return False
    return setting["min"] <= value <= setting["max"] and _on_grid(value, setting["min"], setting["step"])


def _entry(raw: _Map, i: int, pages: dict[str, _Map], scheme: str, rep: _Report) -> Setting | None:
    where = f"settings[{i}]"
    if not isinstance(raw, dict):
        rep.add(getattr(raw, "line", 0) or 0, where, "each setting is a mapping (id:, type:, uri:, ...)")
        return None
    line = raw.line
    sid = raw.get("id")
    if not isinstance(sid, str) or not _ID.match(sid):
        rep.add(line, where, f"id {sid!r} must be lowercase words joined by dots (e.g. display.brightness)")
        return None
    where = f"{where} ({sid})"
    kind = raw.get("type")
    if kind not in TYPES:
        rep.add(raw.key_lines.get("type", line), where, f"unknown type {kind!r} (use one of {', '.join(TYPES)})")
        return None
    for key in sorted(set(raw) - _COMMON - _EXTRA[kind]):
        rep.add(raw.key_lines.get(key, line), where, f"unknown key {key!r} for {kind} settings")
    for key in ("uri", "name", "description"):
        if not isinstance(raw.get(key), str) or not raw[key].strip():
            rep.add(line, where, f"missing {key} (a non-empty string)")
    uri = raw.get("uri") if isinstance(raw.get("uri"), str) else ""
    if uri and scheme and not uri.startswith(scheme):
        rep.add(raw.key_lines.get("uri", line), where, f"uri {uri!r} does not start with the catalogue's uri_scheme {scheme!r}")
    if kind != "page" and uri and uri not in pages:
        rep.add(raw.key_lines.get("uri", line), where, f"unknown URI {uri!r}: no page entry declares it")
    category = raw.get("category") or (pages[uri].get("category") if uri in pages else None)
    if not isinstance(category, str) or not category:
        rep.add(line, where, "missing category (give it here or on the page entry)")
    popularity = raw.get("popularity", 1.0)
    if not _number(popularity) or popularity <= 0:
        rep.add(raw.key_lines.get("popularity", line), where, f"popularity {popularity!r} must be a number > 0")
        popularity = 1.0
    undoable = raw.get("undoable", True)
    if not isinstance(undoable, bool):
        rep.add(raw.key_lines.get("undoable", line), where, "undoable must be true or false")
    status = raw.get("status", "") or ""
    if status not in _STATUSES:
        rep.add(raw.key_lines.get("status", line), where, f"status {status!r} must be one of conditional, deprecated")
    values: dict[str, Any] = {}
    if kind == "range":
        values = _range(raw, rep, where)
    elif kind == "enum":
        options = _options(raw.get("options"), raw, rep, where)
        values = {"options": options, "ordered": bool(raw.get("ordered", False)), "unit": str(raw.get("unit") or ""),
                  "up": _strings(raw.get("up"), rep, line, f"{where} up"),
                  "down": _strings(raw.get("down"), rep, line, f"{where} down")}
        if (values["up"] or values["down"]) and not values["ordered"]:
            rep.add(raw.key_lines.get("up", raw.key_lines.get("down", line)), where, "up/down words need `ordered: true`")
        if "default" in raw and options and raw["default"] not in [o.value for o in options]:
            rep.add(raw.key_lines.get("default", line), where, f"default {raw['default']!r} is not one of the options")
        values["default"] = raw.get("default")
    elif kind == "toggle":
        if "default" in raw and not isinstance(raw["default"], bool):
            rep.add(raw.key_lines.get("default", line), where, "a toggle's default is true or false")
        values["default"] = raw.get("default")
        values["suppresses"] = _strings(raw.get("suppresses"), rep, raw.key_lines.get("suppresses", line),
                                        f"{where} suppresses")
    if (kind == "range" and not values) or (kind == "enum" and not values["options"]):
        return None  # already reported; problems/phrases cannot be checked without values
    probe = {"id": sid, "type": kind, "actions": Setting(sid, kind, "", "", "", "", **values).actions, **values}
    problems = _keyed(raw.get("problems"), raw, "problems", probe, rep, where)
    phrases = _keyed(raw.get("phrases"), raw, "phrases", probe, rep, where)
    return Setting(
        id=sid, type=kind, uri=uri, category=str(category or ""), name=str(raw.get("name", "")).strip(),
        description=str(raw.get("description", "")).strip(),
        synonyms=_strings(raw.get("synonyms"), rep, raw.key_lines.get("synonyms", line), f"{where} synonyms"),
        words=_strings(raw.get("words"), rep, raw.key_lines.get("words", line), f"{where} words"),
        problems=problems, phrases=phrases, popularity=float(popularity), undoable=bool(undoable),
        status=str(status), source=str(raw.get("source", "") or ""), **values,
    )


def _range(raw: _Map, rep: _Report, where: str) -> dict[str, Any]:
    line = raw.line
    lo, hi, step = raw.get("min"), raw.get("max"), raw.get("step", 1)
    if not (_number(lo) and _number(hi)) or lo >= hi:
        rep.add(raw.key_lines.get("min", line), where, f"a range needs numbers min < max (got min={lo!r}, max={hi!r})")
        return {}
    if not _number(step) or step <= 0 or not _on_grid(hi, lo, step):
        rep.add(raw.key_lines.get("step", line), where, f"step {step!r} must be > 0 and divide max - min")
        return {}
    out: dict[str, Any] = {"min": lo, "max": hi, "step": step, "unit": str(raw.get("unit") or "")}
    default = raw.get("default")
    if default is not None and (not _number(default) or not lo <= default <= hi or not _on_grid(default, lo, step)):
        rep.add(raw.key_lines.get("default", line), where, f"default {default!r} outside range {lo}..{hi} (step {step})")
    out["default"] = default
    rel = raw.get("relative_step", max(step, (hi - lo) / 10))
    if not _number(rel) or rel <= 0 or rel > hi - lo or not _on_grid(rel, 0, step):
        rep.add(raw.key_lines.get("relative_step", line), where, f"relative_step {rel!r} must be a multiple of step within the range")
    out["relative_step"] = rel
    out["up"] = _strings(raw.get("up"), rep, raw.key_lines.get("up", line), f"{where} up")
    out["down"] = _strings(raw.get("down"), rep, raw.key_lines.get("down", line), f"{where} down")
    return out


def check_text(path: str, text: str) -> tuple[Catalogue | None, list[str]]:
    rep = _Report(path)
    try:
        doc = load_yaml(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else 0
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        return None, [f"{path}:{line}: bad YAML: {problem}"]
    if not isinstance(doc, dict) or not isinstance(doc.get("settings"), list):
        return None, [f"{path}:1: a catalogue is a mapping with a `settings:` list (see textbook/settings/FORMAT.md)"]
    for key in sorted(set(doc) - {"name", "uri_scheme", "source", "license", "settings"}):
        rep.add(doc.key_lines.get(key, 1), "top level", f"unknown key {key!r} (known: name, uri_scheme, source, license, settings)")
    _check_duplicate_keys(doc, "top level", rep)
    scheme = str(doc.get("uri_scheme") or "")
    raws = doc["settings"]
    pages: dict[str, _Map] = {}
    for raw in raws:
        if isinstance(raw, dict) and raw.get("type") == "page" and isinstance(raw.get("uri"), str):
            if raw["uri"] in pages:
                rep.add(raw.line, f"settings ({raw.get('id')})", f"page URI {raw['uri']!r} is already declared by {pages[raw['uri']].get('id')}")
            pages.setdefault(raw["uri"], raw)
    settings: list[Setting] = []
    lines: dict[str, int] = {}
    for i, raw in enumerate(raws):
        setting = _entry(raw, i, pages, scheme, rep)
        if setting is None:
            continue
        if setting.id in lines:
            rep.add(raw.line, f"settings[{i}] ({setting.id})", f"duplicate id (first at line {lines[setting.id]})")
            continue
        lines[setting.id] = raw.line
        settings.append(setting)
    _check_shared_texts(settings, lines, rep)
    _check_suppressed(settings, lines, rep)
    if rep.errors:
        return None, rep.errors
    cat = Catalogue(str(doc.get("name") or Path(path).stem), path, scheme, tuple(settings), {s.id: s for s in settings})
    return cat, []


def _check_duplicate_keys(node: Any, where: str, rep: _Report) -> None:
    """A key written twice, at any depth: YAML keeps the last value silently, so the first one's texts would vanish."""
    if isinstance(node, _Map):
        for key, line in node.duplicates:
            rep.add(line, where, f"key {key!r} is written twice (merge the two)")
        for key, value in node.items():
            _check_duplicate_keys(value, f"{where} {key}" if where != "top level" else str(key), rep)
    elif isinstance(node, list):
        for i, value in enumerate(node):
            label = value.get("id") if isinstance(value, dict) and isinstance(value.get("id"), str) else i
            _check_duplicate_keys(value, f"{where}[{label}]", rep)


def _check_shared_texts(settings: list[Setting], lines: dict[str, int], rep: _Report) -> None:
    """One problem statement must mean one thing: the same text under two labels would teach noise."""
    owner: dict[str, tuple[str, str]] = {}
    for s in settings:
        for table in (s.problems, s.phrases):
            for key, texts in table.items():
                for text in texts:
                    norm = " ".join(text.lower().split())
                    label = (s.id, key)
                    if norm in owner and owner[norm] != label:
                        other = owner[norm]
                        rep.add(lines[s.id], s.id, f"text {text!r} is given for {key} here and for {other[1]} of {other[0]}")
                    owner.setdefault(norm, label)


def _check_suppressed(settings: list[Setting], lines: dict[str, int], rep: _Report) -> None:
    """What a toggle suppresses must not also name a setting: "i don't want <it>" would then mean this toggle
    ON and that setting OFF (or, for its own name, both ON and OFF)."""
    names: dict[str, str] = {}
    for s in settings:
        for name in (s.name, *s.synonyms, *s.words):
            names.setdefault(" ".join(name.lower().split()), s.id)
    for s in settings:
        for thing in s.suppresses:
            owner = names.get(" ".join(thing.lower().split()))
            if owner:
                rep.add(lines[s.id], s.id, f"suppresses {thing!r}, which also names {owner}: \"i don't want {thing}\" "
                        "would mean two calls (name the setting by what it is, or drop one)")
