"""The settings catalogue: the bundled Windows catalogue and validation of users' catalogues."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from textbook.settings.catalogue import CatalogueError, describe_catalogue, load_catalogue, validate_catalogue_file


def _write(tmp_path, text: str):
    path = tmp_path / "cat.yaml"
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


def test_bundled_catalogue_is_large_and_complete():
    cat = load_catalogue()
    kinds = {}
    for s in cat.settings:
        kinds.setdefault(s.type, []).append(s)
    assert len(cat) >= 300
    controls = [s for s in cat.settings if s.type != "page"]
    assert len(controls) >= 150
    assert len(kinds["page"]) == 226  # every non-removed ms-settings: URI of the official list, one page per URI
    assert {"toggle", "range", "enum", "action"} <= set(kinds)
    for s in cat.settings:  # every entry carries everyday words and problem statements
        assert s.uri.startswith("ms-settings:") and s.category and s.description
        assert s.synonyms or s.words, s.id
        assert s.problems, s.id
    for s in kinds["range"]:
        assert s.min < s.max and s.step > 0 and s.min <= (s.default if s.default is not None else s.min) <= s.max
    for s in kinds["enum"]:
        assert len(s.options) >= 2 and all(o.say for o in s.options)
    # What people actually change is there, with real values.
    brightness = cat.get("display.brightness")
    assert (brightness.type, brightness.min, brightness.max, brightness.unit) == ("range", 0, 100, "%")
    assert "dark" in cat.get("personalization.colors.mode").option_values
    assert cat.get("network.reset").undoable is False
    for sid in ("display.nightlight", "display.scale", "display.resolution", "display.orientation", "display.hdr",
                "display.refresh_rate", "sound.volume", "sound.output_device", "sound.input_device", "sound.mono_audio",
                "taskbar.alignment", "taskbar.autohide", "start.layout", "accessibility.pointer_size",
                "accessibility.text_cursor_thickness", "accessibility.magnifier", "accessibility.narrator",
                "accessibility.contrast_theme", "accessibility.color_filters", "accessibility.live_captions",
                "accessibility.sticky_keys", "accessibility.filter_keys", "accessibility.on_screen_keyboard",
                "network.wifi", "network.airplane_mode", "bluetooth.enabled", "network.hotspot", "network.vpn_connect",
                "network.proxy_manual", "network.metered", "power.battery_saver", "power.mode",
                "power.screen_off_plugged", "power.sleep_plugged", "time.timezone", "time.auto_time",
                "region.short_date", "language.display", "keyboard.layout", "privacy.camera", "privacy.microphone",
                "privacy.location", "notifications.enabled", "notifications.dnd", "focus.start_session",
                "clipboard.history", "multitasking.snap", "storage.sense", "windowsupdate.pause",
                "apps.default_browser", "gaming.game_mode", "mouse.speed", "touchpad.enabled"):
        assert cat.get(sid) is not None, sid
    assert "valid catalogue 'windows' with 503 settings" in describe_catalogue()


def test_bundled_language_from_the_users_side():
    """Every setting carries >= 8 problem statements and >= 6 phrases (the top half by popularity >= 14 and
    >= 9), but for two legacy links no text can tell from their twins, and the toggles whose ON state
    suppresses something say what, so negations get the right polarity."""
    cat = load_catalogue()
    popularity = sorted(s.popularity for s in cat.settings)
    median = popularity[len(popularity) // 2]
    top = {s.id for s in cat.settings if s.popularity >= median}
    assert len(top) >= len(cat) // 2
    for s in cat.settings:
        if s.id in ("page.colors", "page.privacy_advertisingid"):  # the Colors page again; an older Windows' ad id page
            continue
        assert sum(map(len, s.problems.values())) >= (14 if s.id in top else 8), s.id
        assert sum(map(len, s.phrases.values())) >= (9 if s.id in top else 6), s.id
    suppressing = {s.id for s in cat.settings if s.suppresses}
    assert {"notifications.dnd", "sound.mute", "taskbar.autohide", "display.rotation_lock"} <= suppressing
    assert not cat.get("bluetooth.enabled").suppresses and all(cat.get(i).type == "toggle" for i in suppressing)


def test_suppresses_is_checked(tmp_path):
    head = """
        settings:
          - {id: page.n, type: page, uri: "x:n", category: C, name: Notifications, description: d, words: [alerts]}
    """
    path = _write(tmp_path, head + """
          - {id: n.dnd, type: toggle, uri: "x:n", name: Do not disturb, description: d, suppresses: [alerts]}
          - {id: n.level, type: range, uri: "x:n", name: Level, description: d, min: 0, max: 9, suppresses: [noise]}
          - {id: n.quiet, type: toggle, uri: "x:n", name: Quiet, description: d, suppresses: notifications}
          - {id: n.self, type: toggle, uri: "x:n", name: Hush, description: d, words: [pings], suppresses: [pings]}
    """)
    errors = "\n".join(validate_catalogue_file(path))
    assert "n.dnd: suppresses 'alerts', which also names page.n" in errors
    assert "unknown key 'suppresses' for range settings" in errors
    assert "(n.quiet) suppresses: must be a list of non-empty strings" in errors
    assert "n.self: suppresses 'pings', which also names n.self" in errors


def test_every_problem_reported_with_its_line(tmp_path):
    path = _write(tmp_path, """
        name: broken
        uri_scheme: "app:"
        settings:
          - id: page.display
            type: page
            uri: app:display
            category: System
            name: Display
            description: Screens.
          - id: display.brightness
            type: range
            uri: app:display
            name: Brightness
            description: How bright.
            min: 0
            max: 100
            default: 150
          - id: display.brightness
            type: toggle
            uri: app:display
            name: Again
            description: Duplicate id.
          - id: display.mode
            type: colour
            uri: app:display
            name: Mode
            description: Unknown type.
          - id: sound.volume
            type: range
            uri: app:sound
            name: Volume
            description: Its page is not declared.
            min: 0
            max: 100
            colour: red
          - id: display.theme
            type: enum
            uri: app:display
            name: Theme
            description: A problem key that is not an action of an enum.
            options: [light, dark]
            default: blue
            problems:
              on: [it is too bright]
    """)
    errors = validate_catalogue_file(path)
    text = "\n".join(errors)
    assert len(errors) == 8, text
    expected = [
        (":17:", "default 150 outside range 0..100"),
        (":18:", "duplicate id (first at line 10)"),
        (":24:", "unknown type 'colour'"),
        (":30:", "unknown URI 'app:sound'"),
        (":28:", "missing category"),
        (":35:", "unknown key 'colour' for range settings"),
        (":42:", "default 'blue' is not one of the options"),
        (":44:", "'on' is not an action of enum settings"),
    ]
    for line, message in expected:
        assert any(line in e and message in e for e in errors), (line, message, text)
    with pytest.raises(CatalogueError) as exc:
        load_catalogue(path)
    assert "8 problem(s)" in str(exc.value) and "duplicate id" in str(exc.value)


def test_bad_yaml_and_wrong_shape(tmp_path):
    path = _write(tmp_path, "settings:\n  - id: a\n    name: [unclosed\n")
    (error,) = validate_catalogue_file(path)
    assert "bad YAML" in error and "cat.yaml:" in error
    path.write_text("- just a list\n")
    (error,) = validate_catalogue_file(path)
    assert "a catalogue is a mapping with a `settings:` list" in error
    assert "no such file" in validate_catalogue_file(tmp_path / "missing.yaml")[0]


def test_yaml_12_booleans_and_duplicate_keys(tmp_path):
    # on/off are action keys and option values, not booleans (YAML 1.1 would make them True/False).
    path = _write(tmp_path, """
        settings:
          - id: page.net
            type: page
            uri: net
            category: Network
            name: Network
            description: Network page.
          - id: net.roaming
            type: enum
            uri: net
            name: Roaming
            description: Data roaming.
            options: [on, off]
            default: off
            phrases:
              set:on: [allow roaming]
            name: Twice
    """)
    errors = validate_catalogue_file(path)
    assert len(errors) == 1 and "key 'name' is written twice" in errors[0] and ":17:" in errors[0]
    path.write_text(path.read_text().replace("    name: Twice\n", ""))
    cat = load_catalogue(path)
    assert cat.get("net.roaming").option_values == ("on", "off")
    assert cat.get("net.roaming").phrases == {"set:on": ("allow roaming",)}
    # a key written twice inside phrases/problems: YAML keeps the last list, so the first one's texts would vanish
    path.write_text(path.read_text() + "      set:on: [let it roam]\n")
    errors = validate_catalogue_file(path)
    assert len(errors) == 1 and "key 'set:on' is written twice" in errors[0] and ":17:" in errors[0]


def test_a_users_catalogue_for_another_platform(tmp_path):
    path = _write(tmp_path, """
        name: gnome
        settings:
          - id: page.power
            type: page
            uri: gnome-control-center power
            category: Power
            name: Power
            description: Power settings.
            words: [battery]
            problems: {open: [my battery drains]}
          - id: power.dim_screen
            type: toggle
            uri: gnome-control-center power
            name: Dim screen when inactive
            description: Dim the screen after a while.
            synonyms: [screen dimming]
            problems: {off: [the screen keeps dimming while I read]}
    """)
    cat = load_catalogue(path)
    assert [s.id for s in cat.settings] == ["page.power", "power.dim_screen"]
    assert cat.get("power.dim_screen").category == "Power"  # inherited from its page


def test_the_documented_example_is_a_valid_catalogue(tmp_path):
    doc = (Path(__file__).resolve().parents[1] / "textbook/settings/FORMAT.md").read_text()
    example = doc.split("## The catalogue format (YAML)")[1].split("```yaml\n")[1].split("```")[0]
    path = tmp_path / "example.yaml"
    path.write_text(example)
    assert validate_catalogue_file(path) == []
    cat = load_catalogue(path)
    assert cat.get("display.brightness").category == "System" and cat.get("personalization.colors.mode").option_values == ("light", "dark", "custom")


def _seed_bank(tmp_path, text: str):
    """A seed drawer over a small catalogue written inline, with the bundled templates and noise lexicon."""
    from textbook.settings.language import load_noise_lexicon, load_templates
    from textbook.settings.seeds import SeedBank

    return SeedBank(load_catalogue(_write(tmp_path, text)), load_templates(), load_noise_lexicon())


def test_negations_of_what_a_toggle_suppresses_turn_it_on(tmp_path):
    """"i don't want interruptions" turns do not disturb ON, "bring back interruptions" turns it OFF, while
    "i don't want do not disturb" (the setting's own name) still turns it OFF."""
    import random

    bank = _seed_bank(tmp_path, """
        settings:
          - {id: page.n, type: page, uri: "x:n", category: C, name: Notifications, description: d, words: [alerts]}
          - {id: n.dnd, type: toggle, uri: "x:n", name: Do not disturb, description: d, suppresses: [interruptions]}
    """)
    rng = random.Random(0)
    seeds = [bank.draw(rng, 1) for _ in range(6000)]
    negations = [s for s in seeds if s.style == "negation"]
    on = {s.text for s in negations if s.action == "on"}
    off = {s.text for s in negations if s.action == "off"}
    assert "i don't want interruptions" in on and "i do not want interruptions" in on
    assert "bring back interruptions" in off and "don't block interruptions" in off
    assert "i don't want do not disturb" in off
    assert not any("interruptions" in t for t in on & off)


def test_negated_wordings_of_the_opposite_call(tmp_path):
    """"don't stop the screen from dimming" asks for dimming ON: a toggle's verb-first wordings of one call,
    negated, teach the other; problem statements and verbless phrases are never negated."""
    import random

    bank = _seed_bank(tmp_path, """
        settings:
          - {id: page.p, type: page, uri: "x:p", category: C, name: Power, description: d}
          - id: p.dim
            type: toggle
            uri: "x:p"
            name: Dim on battery
            description: d
            phrases:
              "on": [let the screen dim when unplugged, darker screen when unplugged]
              "off": [stop the screen from dimming on battery]
            problems:
              "off": [the screen goes dark whenever i unplug]
    """)
    rng = random.Random(0)
    seeds = [bank.draw(rng, 1) for _ in range(6000)]
    negated = {(s.text, s.action) for s in seeds if s.style == "negation"}
    assert ("don't stop the screen from dimming on battery", "on") in negated
    assert ("i don't want to let the screen dim when unplugged", "off") in negated
    assert not any("darker screen" in t or "goes dark" in t for t, _ in negated)
    def negations(text: str) -> int:
        return sum(w in ("not", "don't", "dont", "shouldn't", "never") for w in text.replace(",", "").split())

    once = {(t, a) for t, a in negated if negations(t) == 1}
    assert not any("stop the screen from dimming" in t and a == "off" for t, a in once)
    # negated twice, a wording keeps its own call
    twice = {(t, a) for t, a in negated if negations(t) == 2 and "screen" in t}
    assert any("not let the screen dim when unplugged" in t for t, _ in twice)
    assert all(a == ("off" if "stop the screen" in t else "on") for t, a in twice), twice
    # the setting's name negated twice is ON too; once, OFF
    assert ("i don't want dim on battery to not be on", "on") in negated
    assert ("i don't want dim on battery to be on", "off") in negated
    named = {(t, a) for t, a in negated if "dim on battery" in t}
    assert all(a == "on" for t, a in named if negations(t) == 2 or "to stop working" in t), named


def test_long_requests_keep_their_call(tmp_path):
    """A seed joined with another of its setting's own wordings joins one of the same call (never an OFF
    wording to an ON request), and a context clause names no setting: both make it a verbose request."""
    import random

    from textbook.settings.language import load_noise_lexicon, load_templates
    from textbook.settings.seeds import SeedBank

    path = _write(tmp_path, """
        settings:
          - {id: page.d, type: page, uri: "x:d", category: C, name: Display, description: d}
          - id: n.light
            type: toggle
            uri: "x:d"
            name: Night light
            description: d
            problems:
              "on": [the screen is too blue at night, my eyes hurt from the screen in the evening]
              "off": [everything looks orange, the colours look yellow and warm]
    """)
    cat = load_catalogue(path)
    templates = load_templates()
    own = {"on": ["the screen is too blue at night", "my eyes hurt from the screen in the evening"],
           "off": ["everything looks orange", "the colours look yellow and warm"]}
    rng = random.Random(0)
    bank = SeedBank(cat, templates, load_noise_lexicon(), lengthen={"join": 1.0})
    joined = [s for s in (bank.draw(rng, 1) for _ in range(3000)) if sum(t in s.text for ts in own.values() for t in ts) == 2]
    assert len(joined) > 200 and all(s.style == "verbose" for s in joined)
    for s in joined:
        assert all(t in s.text for t in own[s.action]), s.text  # both halves say the same call
    bank = SeedBank(cat, templates, load_noise_lexicon(), lengthen={"context": 1.0})
    clauses = templates.context["before"] + templates.context["after"]
    seeds = [bank.draw(rng, 1) for _ in range(500)]
    long = [s for s in seeds if s.style != "keyword"]
    assert long and all(s.style == "verbose" and any(c in s.text for c in clauses) for s in long)
    bank = SeedBank(cat, templates, load_noise_lexicon(), lengthen={})
    assert not any(sum(t in s.text for ts in own.values() for t in ts) == 2 for s in (bank.draw(rng, 1) for _ in range(3000)))
