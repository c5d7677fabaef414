"""The settings function-call grammar and its validator (what the trainer's evaluator uses)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from textbook.settings.target import (Target, TargetError, canonical, format_target, load_catalogue, parse_target,
                                      validate_target)


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


def test_target_module_imports_neither_openai_nor_torch():
    code = ("import sys, textbook.settings.target as t; t.validate_target(t.parse_target('{\"action\":\"none\"}'), "
            "t.load_catalogue()); bad = {'openai', 'torch'} & set(sys.modules); assert not bad, bad")
    subprocess.run([sys.executable, "-c", code], check=True)
