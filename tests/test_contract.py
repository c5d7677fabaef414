"""The contract between the data side and the model side: the settings function-call grammar, its
validator (what the trainer's evaluator uses), the shard column names, and house rule 11 (the model
side imports nothing of the data side)."""

from __future__ import annotations

import ast
import dataclasses
import subprocess
import sys
from pathlib import Path

import pytest

import textbook
from textbook.contract import (
    ACTION, CLEAN_QUERY, NOISE_OPS, QUERY, SPLIT, STYLE, TARGET, TEST, TEXT, TRAIN, VALIDATION, Target, TargetError,
    canonical, format_target, parse_target, validate_target,
)
from textbook.settings.catalogue import load_catalogue


def test_canonical_text_and_round_trip():
    assert format_target("set", "display.brightness", 70) == '{"action":"set","id":"display.brightness","value":70}'
    assert format_target("set", "display.brightness", 70.0) == '{"action":"set","id":"display.brightness","value":70}'
    assert format_target("on", "bluetooth.enabled") == '{"action":"on","id":"bluetooth.enabled"}'
    assert format_target("none") == '{"action":"none"}'
    assert format_target("set", "x.y", 'say "hi"') == '{"action":"set","id":"x.y","value":"say \\"hi\\""}'
    # Whatever the key order and spacing a model emits, the canonical form is one string.
    assert canonical('{ "value": 70, "id": "display.brightness", "action": "set" }') == \
        '{"action":"set","id":"display.brightness","value":70}'
    assert canonical('{"action":"set","id":"display.scale","value":125.0}') == \
        '{"action":"set","id":"display.scale","value":125}'
    t = parse_target('{"action":"increase","id":"sound.volume","value":20}')
    assert t == Target("increase", "sound.volume", 20) and t.value_json == "20"
    assert parse_target('{"action":"set","id":"personalization.colors.mode","value":"dark"}').value_json == '"dark"'


@pytest.mark.parametrize("text, why", [
    ("turn on bluetooth", "not JSON"),
    ("[1, 2]", "JSON object"),
    ('{"action":"launch","id":"a"}', "unknown action"),
    ('{"action":"set","id":"display.brightness"}', "needs a \"value\""),
    ('{"action":"on"}', "needs an \"id\""),
    ('{"action":"on","id":"bluetooth.enabled","value":1}', "takes no value"),
    ('{"action":"none","id":"x"}', "takes no id"),
    ('{"action":"set","id":"a","value":[1]}', "number or a string"),
    ('{"action":"set","id":"a","value":true}', "number or a string"),
    ('{"action":"on","id":"a","extra":1}', "unknown key"),
])
def test_parse_rejects_text_outside_the_grammar(text, why):
    with pytest.raises(TargetError, match=why):
        parse_target(text)


def test_validate_against_the_catalogue():
    cat = load_catalogue()
    ok = [
        '{"action":"none"}',
        '{"action":"set","id":"display.brightness","value":70}',
        '{"action":"increase","id":"display.brightness"}',
        '{"action":"decrease","id":"sound.volume","value":20}',
        '{"action":"set","id":"personalization.colors.mode","value":"dark"}',
        '{"action":"set","id":"display.scale","value":150}',
        '{"action":"increase","id":"display.scale"}',
        '{"action":"on","id":"bluetooth.enabled"}',
        '{"action":"open","id":"page.display"}',
        '{"action":"open","id":"display.brightness"}',
        '{"action":"run","id":"windowsupdate.check"}',
    ]
    for text in ok:
        assert validate_target(parse_target(text), cat) == [], text
    bad = {
        '{"action":"on","id":"display.warp_drive"}': "unknown setting id",
        '{"action":"set","id":"display.brightness","value":170}': "outside display.brightness's range 0..100",
        '{"action":"set","id":"display.brightness","value":"max"}': "takes a number",
        '{"action":"set","id":"personalization.colors.mode","value":"purple"}': "not an option",
        '{"action":"on","id":"display.brightness"}': "'on' is not one of",
        '{"action":"set","id":"bluetooth.enabled","value":1}': "'set' is not one of",
        '{"action":"increase","id":"display.scale","value":25}': "one option at a time",
        '{"action":"increase","id":"sound.volume","value":-5}': "positive multiple",
        '{"action":"run","id":"page.display"}': "'run' is not one of",
    }
    for text, why in bad.items():
        errors = validate_target(parse_target(text), cat)
        assert len(errors) == 1 and why in errors[0], (text, errors)


def test_grammar_and_catalogue_import_neither_openai_nor_torch():
    code = ("import sys, textbook.contract as t, textbook.settings.catalogue as c; "
            "t.validate_target(t.parse_target('{\"action\":\"none\"}'), c.load_catalogue()); "
            "bad = {'openai', 'torch'} & set(sys.modules); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


DATA_SIDE = ("textbook.settings", "textbook.gen", "textbook.filter", "textbook.teacher", "openai")


def _imports(path: Path) -> set[str]:
    """Every module a file imports, at its top or inside a function."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def test_the_model_side_imports_nothing_of_the_data_side():
    root = Path(textbook.__file__).parent
    files = [*sorted((root / "mu").glob("*.py")), *sorted((root / "export").glob("*.py")), root / "contract.py"]
    bad = {f"{path.relative_to(root)}: {name}" for path in files for name in _imports(path)
           if any(name == side or name.startswith(side + ".") for side in DATA_SIDE)}
    assert not bad, sorted(bad)


def test_the_evaluator_and_the_exporter_load_without_the_data_side():
    pytest.importorskip("torch")
    code = ("import sys, textbook.mu.eval, textbook.mu.train, textbook.export.parity, textbook.export.exporter; "
            f"bad = sorted(m for m in sys.modules if m.startswith({DATA_SIDE!r})); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)


def test_column_names_are_the_ones_the_data_side_writes():
    from textbook.gen.records import ROWS
    from textbook.settings.records import SettingsSample
    from textbook.settings.sampling import split_of

    settings_columns = {f.name for f in dataclasses.fields(SettingsSample)}
    assert {QUERY, CLEAN_QUERY, TARGET, SPLIT, ACTION, STYLE, NOISE_OPS} <= settings_columns
    assert TEXT in {f.name for f in dataclasses.fields(ROWS["textbook"])}
    assert {split_of(h << 11, 0.3, 0.3) for h in (0, 1 << 52, (1 << 53) - 1)} == {TEST, VALIDATION, TRAIN}
