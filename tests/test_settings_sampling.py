"""Smart sampling: popularity with floors, confusable oversampling, duplicate cap, splits grouped by seed."""

from __future__ import annotations

import json
import math
import random
import textwrap
from collections import Counter, defaultdict

import pytest

from textbook.settings.catalogue import load_catalogue
from textbook.settings.config import SettingsConfig
from textbook.settings.language import load_noise_lexicon, norm
from textbook.settings.pipeline import build_context, group_text
from textbook.settings.run import generate_settings
from textbook.settings.sampling import DupCap, confusable_groups, setting_weights, split_of
from textbook.shards import read_table


@pytest.fixture(scope="module")
def offline(tmp_path_factory):
    out = tmp_path_factory.mktemp("settings")
    summary = generate_settings(SettingsConfig(n=30_000, out=str(out), offline=True), progress=False)
    return out, read_table(out / "settings").to_pylist(), summary


def _tiny(tmp_path):
    path = tmp_path / "tiny.yaml"
    path.write_text(textwrap.dedent("""
        settings:
          - {id: page.p, type: page, uri: p, category: C, name: Display page, description: d, popularity: 100}
          - {id: a.screen_brightness, type: toggle, uri: p, name: Screen brightness auto, description: d, popularity: 1}
          - {id: a.keyboard_brightness, type: toggle, uri: p, name: Keyboard brightness, description: d, popularity: 1}
          - {id: a.sticky, type: toggle, uri: p, name: Sticky keys, description: d, popularity: 1}
    """))
    return load_catalogue(path)


def test_weights_follow_popularity_with_a_floor_and_a_confusable_boost(tmp_path):
    cat = _tiny(tmp_path)
    groups = confusable_groups(cat)
    assert groups[1] == {2} and groups[2] == {1} and groups[3] == set()  # "brightness" is shared by exactly two
    w = setting_weights(cat, floor=0.5, boost=0.0, groups=groups)
    assert math.isclose(sum(w), 1.0)
    assert w[1] == w[2] == w[3] and w[3] > 1 / 103  # the floor lifts rare settings above their popularity share
    assert w[0] > 5 * w[3]  # and the popular one still dominates
    boosted = setting_weights(cat, floor=0.5, boost=0.5, groups=groups)
    assert math.isclose(boosted[1] / boosted[3], 1.5) and math.isclose(boosted[2] / boosted[3], 1.5)


def test_bundled_confusables_group_the_brightness_and_volume_controls():
    cat = load_catalogue()
    groups = confusable_groups(cat)
    index = {s.id: i for i, s in enumerate(cat.settings)}
    brightness = {cat.settings[j].id for j in groups[index["display.brightness"]]}
    assert {"display.brightness_auto", "power.battery_saver_brightness"} <= brightness
    volume = {cat.settings[j].id for j in groups[index["sound.volume"]]}
    assert {"sound.input_volume", "sound.system_sounds_volume", "accessibility.narrator_volume"} <= volume


def test_draws_match_the_weights():
    ctx = build_context(SettingsConfig())
    rng = random.Random(0)
    draws = 200_000
    counts = Counter(ctx.chooser.pick(rng) for _ in range(draws))
    tv = 0.5 * sum(abs(counts.get(i, 0) / draws - w) for i, w in enumerate(ctx.weights))
    assert tv < 0.03, tv
    for i, w in enumerate(ctx.weights):
        expected = draws * w
        assert abs(counts.get(i, 0) - expected) < 6 * math.sqrt(expected) + 3, ctx.catalogue.settings[i].id


def test_dataset_balance_floor_and_out_of_scope_share(offline):
    _, rows, summary = offline
    per_setting = Counter(r["id"] for r in rows if r["id"])
    cat = load_catalogue()
    assert len(per_setting) >= 0.98 * len(cat)  # the floor reaches (nearly) every one of 503 settings at 30k
    assert per_setting["display.brightness"] > 10 * per_setting["page.wheel"]  # popularity still counts
    none = sum(1 for r in rows if r["action"] == "none")
    assert 0.04 < none / len(rows) < 0.08
    styles = Counter(r["style"] for r in rows)
    for style in ("command", "question", "keyword", "problem", "negation", "polite", "casual", "verbose"):
        # negation is the rarest by design (~2.1%: only toggles and two-option enums are negated)
        assert styles[style] > 0.015 * len(rows), style
    assert str(summary).startswith("wrote 30,000 settings samples")


def test_splits_are_grouped_by_seed_without_leakage(offline):
    _, rows, _ = offline
    lex = load_noise_lexicon()
    split_of_seed: dict[str, set] = defaultdict(set)
    split_of_text: dict[tuple, set] = defaultdict(set)
    for r in rows:
        split_of_seed[r["seed_id"]].add(r["split"])
        split_of_text[(r["target"] if not r["noise_ops"] else None, group_text(r["clean_query"], lex))].add(r["split"])
    assert all(len(s) == 1 for s in split_of_seed.values())
    clean = {k: v for k, v in split_of_text.items() if k[0] is not None}
    assert all(len(s) == 1 for s in clean.values())  # the same request never sits in two splits
    test_seeds = {k for k, v in split_of_seed.items() if v == {"test"}}
    train_seeds = {k for k, v in split_of_seed.items() if v == {"train"}}
    assert test_seeds and not test_seeds & train_seeds
    shares = Counter(r["split"] for r in rows)
    assert 0.035 < shares["test"] / len(rows) < 0.065 and 0.035 < shares["validation"] / len(rows) < 0.065
    assert split_of(0, 0.05, 0.05) == "test" and split_of(2**64 - 1, 0.05, 0.05) == "train"


def test_duplicate_cap(tmp_path):
    cap = DupCap(2, bits=8)
    assert [cap.admit(5), cap.admit(5 + 256), cap.admit(5), cap.admit(6)] == [True, True, False, True]
    assert DupCap(2, data=cap.to_bytes(), bits=8).admit(5) is False
    out = tmp_path / "capped"
    generate_settings(SettingsConfig(n=5_000, out=str(out), offline=True, max_duplicates=2), progress=False)
    rows = read_table(out / "settings").to_pylist()
    copies = Counter(norm(r["query"]) for r in rows)
    assert max(copies.values()) <= 2
    report = json.loads((out / "settings-report.json").read_text())
    assert report["summary"]["duplicates_capped"] > 0
