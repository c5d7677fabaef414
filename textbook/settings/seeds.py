"""Seeds: clean, correctly labelled requests, rendered from phrasing frames and the catalogue's own words.

For every setting and action the bank holds frames grouped by style: generic frames from
language/templates.yaml filled with the setting's names, values and options, plus the setting's own
phrases and problem statements (wrapped into more styles). A draw picks an action, then a style, then a
frame, then fills its slots, and returns tokens with kinds (see language.py) so noise can keep the label.

Overlapping names are resolved toward the most-used setting (as the Mu settings agent did): when two
settings share a name ("screen timeout"), only the more popular one is ever rendered with it, and a
generic frame that renders one of the catalogue's own wordings takes that wording's label, so one text
never carries two labels.
"""

from __future__ import annotations

import random
from bisect import bisect
from dataclasses import dataclass
from itertools import accumulate
from typing import Any

from textbook.settings.catalogue import Catalogue, Setting
from textbook.settings.language import NOT_ALNUM, A, F, K, V, NoiseLexicon, Templates, norm, split_frame
from textbook.settings.values import amount, parse_value, range_value, say_number

# The recipe's mix of actions per setting type and of styles; overridable through SeedBank(...).
ACTION_WEIGHTS = {
    "page": {"open": 1.0},
    "toggle": {"on": 0.42, "off": 0.40, "open": 0.18},
    "range": {"set": 0.36, "increase": 0.26, "decrease": 0.26, "open": 0.12},
    "enum": {"set": 0.80, "increase": 0.05, "decrease": 0.05, "open": 0.10},
    "action": {"run": 1.0},
}
# Negations were 0.08 (and command 0.26) until session 18: only toggles and two-option settings take them, so they
# came to 2.3% of the rows, and a 14.5-minute fine-tune got half of its own template negations right; at 0.18 they
# are 4.7%, and those went from 47.5% to 62.6% (development set 61.2 -> 63.4%, one run each; README, "As typed, and more negations").
STYLE_WEIGHTS = {"command": 0.16, "keyword": 0.16, "question": 0.11, "problem": 0.18, "negation": 0.18,
                 "polite": 0.06, "casual": 0.10, "verbose": 0.05}
# Shares of seeds made long (templates.yaml `context`): joined with another own wording of the same call,
# or given a clause that names no setting. Without them the training requests stop at ~12 words (90th
# percentile) while people who describe a problem write 20-30, and the model had never had to find the
# request inside a long sentence.
LENGTHEN = {"join": 0.10, "context": 0.08}


@dataclass(slots=True)
class Seed:
    tokens: list[str]
    kinds: list[int]
    action: str
    setting: int  # index into catalogue.settings; -1 = out of scope
    value: Any
    style: str
    words: list[str] | None = None  # the normalised words (lowercase, no punctuation), when already known

    @property
    def text(self) -> str:
        return " ".join(self.tokens)


@dataclass(slots=True)
class _Frame:
    parts: list  # literal (tokens, kinds) tuples and slot (pre, slot, post) tuples
    value: Any  # a fixed value, or a marker in _SAMPLED
    style: str


_SAMPLED = ("<value>", "<option>", "<amount>", "<max>", "<min>", "<negation>")


class _Choice:
    """Weighted choice over items with precomputed cumulative weights (random.choices without the overhead)."""

    __slots__ = ("items", "cum", "total")

    def __init__(self, pairs: list[tuple[Any, float]]):
        pairs = [(item, w) for item, w in pairs if w > 0]
        self.items = [item for item, _ in pairs]
        self.cum = list(accumulate(w for _, w in pairs))
        self.total = self.cum[-1] if self.cum else 0.0

    def __bool__(self) -> bool:
        return bool(self.items)

    def pick(self, rng: random.Random) -> Any:
        return self.items[bisect(self.cum, rng.random() * self.total)]


class SeedBank:
    """All frames of a catalogue, compiled once; `draw(rng, i)` renders a seed for setting i."""

    def __init__(self, catalogue: Catalogue, templates: Templates, lexicon: NoiseLexicon, *,
                 action_weights: dict | None = None, style_weights: dict | None = None, lengthen: dict | None = None):
        self.catalogue = catalogue
        self.templates = templates
        self.lex = lexicon
        self.action_weights = action_weights or ACTION_WEIGHTS
        self.style_weights = style_weights or STYLE_WEIGHTS
        self.lengthen = LENGTHEN if lengthen is None else lengthen
        # Per (setting, action, value): the setting's own wordings of that call, bare, for joins.
        self._bare: dict[tuple[int, str, Any], list[tuple[tuple, tuple]]] = {}
        settings = catalogue.settings
        self._kinds: dict[tuple[str, int], int] = {}
        self._frames: dict[tuple, _Frame] = {}
        ctx = templates.context
        # (before?, clause): clauses go before the request 60% of the time, as people set the scene first
        before, after = ctx.get("before", ()), ctx.get("after", ())
        self._clauses = _Choice([((True, self._tokens(c, F)), 0.6 / len(before)) for c in before]
                                + [((False, self._tokens(c, F)), 0.4 / len(after)) for c in after])
        self._joins = [split_frame(j, {"a", "b"}) for j in ctx.get("join", ())]
        self._names = self._resolve_names(settings)
        self._said = self._wordings(settings)
        self._labels = _distinctive_labels(settings)
        # Option names, tokenised once: per setting, per option, the ways people say it.
        self._options = [[[self._value_tokens(x) for x in o.say] for o in s.options] for s in settings]
        self._distinct = [[(o.value, self._value_tokens(x)) for o in s.options for x in o.say
                           if self._labels.get(norm(x)) == (i, o.value)] for i, s in enumerate(settings)]
        # Per setting, one flat choice over (action, frame): P = P(action) x P(style | action) x P(frame | style).
        self._tables: list[_Choice] = []
        for i, s in enumerate(settings):
            per_action = [(action, weight, self._styles(i, s, action))
                          for action, weight in self.action_weights[s.type].items() if action in s.actions]
            per_action = [(a, w, styles) for a, w, styles in per_action if styles]
            total = sum(w for _, w, _ in per_action)
            flat = []
            for action, weight, styles in per_action:
                for (style, frames), style_w in zip(styles.items, _probabilities(styles)):
                    for frame, frame_w in zip(frames.items, _probabilities(frames)):
                        flat.append(((action, frame), weight / total * style_w * frame_w))
            self._tables.append(_Choice(flat))
        self._none = [split_frame(f, set(templates.none_slots)) for f in templates.none_frames]

    # -- compile ----------------------------------------------------------------------------------
    def _resolve_names(self, settings: tuple[Setting, ...]) -> list[dict[str, list]]:
        """Per setting and action, the names it may be rendered with: a name shared by several settings
        ("wifi", "night light settings" ~ "night light") belongs to the most popular one only."""
        owner: dict[str, int] = {}
        variants: list[list[str]] = []
        for i, s in enumerate(settings):
            names = list(dict.fromkeys(x.lower() for x in (s.name, *s.synonyms, *s.words)))
            variants.append(names)
            for name in names:
                key = _name_key(name)
                j = owner.get(key)
                if j is None or s.popularity > settings[j].popularity:
                    owner[key] = i
        out = []
        for i, s in enumerate(settings):
            tasks = {x.lower() for x in (s.name, *s.synonyms)}
            kept = [self._tokens(n, A) for n in variants[i] if owner[_name_key(n)] == i]
            per: dict[str, list] = {action: kept for action in s.actions}
            if s.type == "action":
                per["task"] = [self._tokens(n, A) for n in variants[i] if owner[_name_key(n)] == i and n in tasks]
            out.append(per)
        return out

    def _wordings(self, settings: tuple[Setting, ...]) -> dict[str, tuple[int, str, Any]]:
        """Every phrase and problem statement -> its label: a generic frame that renders the same text
        ("mute" as a bare keyword) takes the label the catalogue gives that text."""
        out: dict[str, tuple[int, str, Any]] = {}
        for i, s in enumerate(settings):
            for table in (s.phrases, s.problems):
                for key, texts in table.items():
                    action, _, raw = key.partition(":")
                    value = parse_value(s, raw) if raw else None
                    for text in texts:
                        out.setdefault(norm(text), (i, action, value))
        return out

    def _kind(self, token: str, content: int) -> int:
        key = (token, content)
        kind = self._kinds.get(key)
        if kind is None:
            kind = self._kinds[key] = self.lex.kind(token, content)
        return kind

    def _tokens(self, text: str, content: int, value_words: frozenset = frozenset()) -> tuple[tuple, tuple]:
        toks = tuple(text.lower().split())
        kinds = []
        for t in toks:
            kind = self._kind(t, content)
            if kind in (A, F) and t.strip(",.?!") in value_words:
                kind = V
            kinds.append(kind)
        return toks, tuple(kinds)

    def _compile(self, frame: str, value: Any, style: str) -> _Frame:
        key = (frame, value, style)
        compiled = self._frames.get(key)
        if compiled is None:  # generic frames are shared by every setting: compile each once
            parts: list = []
            for p in split_frame(frame):
                if not isinstance(p, str):
                    parts.append(p)
                elif parts and len(parts[-1]) == 2:  # consecutive words: one part
                    parts[-1] = (parts[-1][0] + (p,), parts[-1][1] + (self._kind(p, F),))
                else:
                    parts.append(((p,), (self._kind(p, F),)))
            compiled = self._frames[key] = _Frame(parts, value, style)
        return compiled

    def _own(self, s: Setting, action: str) -> list[tuple[str, str, Any]]:
        """The setting's own wordings for `action`: (phrase|problem, text, value)."""
        out = []
        for table_key, table in (("phrase", s.phrases), ("problem", s.problems)):
            for k, texts in table.items():
                name, _, raw = k.partition(":")
                if name != action:
                    continue
                value = parse_value(s, raw) if raw else None
                if action == "set" and s.type == "range" and value is None:
                    continue
                out.extend((table_key, t, value) for t in texts)
        return out

    def _styles(self, i: int, s: Setting, action: str) -> _Choice:
        fr = self.templates.frames
        groups: dict[str, list[tuple[_Frame, float]]] = {}

        def add(kind: str, value: Any, weight: float, only: str | None = None) -> None:
            for style, texts in fr.get(kind, {}).items():
                if only and style != only:
                    continue
                for t in texts:
                    groups.setdefault(style, []).append((self._compile(t, value, style), weight / len(texts)))

        names = self._names[i].get(action, [])
        if action == "run":
            if self._names[i].get("task"):
                add("run", None, 1.0)
        elif names:
            if action in ("open", "on", "off"):
                add(action, None, 1.0)
            elif action == "set" and s.type == "range":
                add("set_range", "<value>", 1.0)
                add("set_max", "<max>", 0.12)
                if s.min == 0:
                    add("set_min", "<min>", 0.08)
            elif action == "set":
                add("set_enum", "<option>", 1.0)
                if len(s.options) == 2:
                    add("set_negation", "<negation>", 0.6)
            elif action in ("increase", "decrease"):
                add(action, None, 1.0)
                if s.type == "range":
                    add(f"{action}_by", "<amount>", 0.45)
        if action in ("increase", "decrease") and (s.up if action == "increase" else s.down):
            add(f"{action}_word", None, 0.5)
        if action == "set" and s.type == "enum" and self._distinct[i]:
            add("set_option", "<option-distinctive>", 0.5)
        own = self._own(s, action)
        share = min(1.0, len(own) / 6)
        wrap = self.templates.wrappers
        if s.suppresses and action in ("on", "off"):  # "i don't want notifications" turns do not disturb ON
            for style, wrappers in wrap[f"suppressed_{action}"].items():
                for thing in s.suppresses:
                    for w in wrappers:
                        frame = self._own_frame(w.replace("{x}", thing.lower()), None, style, frozenset())
                        groups.setdefault(style, []).append((frame, 1.0 / len(s.suppresses) / len(wrappers)))
        for kind, text, value in own:
            text = text.lower()
            words = self._option_words(s, value)
            self._bare.setdefault((i, action, value), []).append(self._tokens(text, A, words))
            if kind == "problem":
                for style, wrappers in wrap["problem"].items():
                    for w in wrappers:
                        frame = self._own_frame(w.replace("{x}", text), value, style, words)
                        groups.setdefault(style, []).append((frame, share / len(own) / len(wrappers)))
            else:
                groups.setdefault("command", []).append((self._own_frame(text, value, "command", words), share / len(own)))
                if text.split()[0] in self.templates.verbs:
                    for style, wrappers in wrap["verb"].items():
                        for w in wrappers:
                            frame = self._own_frame(w.replace("{x}", text), value, style, words)
                            groups.setdefault(style, []).append((frame, 0.6 * share / len(own) / len(wrappers)))
        if s.type == "toggle" and action in ("on", "off"):
            # A toggle's verb-first wordings for the opposite call, negated: "don't stop the screen from dimming"
            # wants the dimming ON (people write these with the setting's verbs, not its name); and its own,
            # negated twice, keep their call: "i don't want it to not let apps see my location" is ON, at half
            # the weight, as people write fewer of them.
            def verb_first(wordings):
                return [t.lower() for kind, t, _ in wordings if kind == "phrase" and t.split()[0].lower() in self.templates.verbs]

            opposite = self._own(s, "off" if action == "on" else "on")
            for texts, kind, weight in ((verb_first(opposite), "negated", 1.0), (verb_first(own), "double_negated", 0.5)):
                each = weight * min(1.0, len(texts) / 6) / len(texts) if texts else 0.0  # as `share` for own wordings
                for text in texts:
                    for style, wrappers in wrap.get(kind, {}).items():
                        for w in wrappers:
                            frame = self._own_frame(w.replace("{x}", text), None, style, frozenset())
                            groups.setdefault(style, []).append((frame, each / len(wrappers)))
        return _Choice([((style, _Choice(frames)), self.style_weights.get(style, 0.0)) for style, frames in groups.items()])

    def _option_words(self, s: Setting, value: Any) -> frozenset:
        for o in s.options:
            if o.value == value:
                return frozenset(w for say in o.say for w in say.lower().split())
        return frozenset()

    def _own_frame(self, text: str, value: Any, style: str, words: frozenset) -> _Frame:
        toks, kinds = self._tokens(text, A, words)
        return _Frame([(toks, kinds)], value, style)

    # -- draw -------------------------------------------------------------------------------------
    def draw(self, rng: random.Random, i: int) -> Seed | None:
        """One seed for setting i (None when the catalogue gives it nothing to say)."""
        table = self._tables[i]
        if not table:
            return None
        action, frame = table.pick(rng)
        s = self.catalogue.settings[i]
        value, fills = self._value(rng, i, s, frame.value)
        tokens: list[str] = []
        kinds: list[int] = []
        for part in frame.parts:
            if len(part) == 2:
                tokens.extend(part[0])
                kinds.extend(part[1])
                continue
            pre, slot, post = part
            if slot in fills:
                toks, ks = fills[slot]
            elif slot == "name":
                toks, ks = rng.choice(self._names[i][action])
            elif slot == "task":
                toks, ks = rng.choice(self._names[i]["task"])
            elif slot in ("up", "down"):
                toks, ks = (rng.choice(s.up if slot == "up" else s.down).lower().split(), None)
                ks = [K] * len(toks)
            else:
                raise AssertionError(slot)
            tokens.extend(_glued(toks, pre, post))
            kinds.extend(ks)
        for k in range(len(tokens) - 1, 0, -1):  # "printer settings settings", "switch to to ..."
            if tokens[k] == tokens[k - 1]:
                del tokens[k], kinds[k]
        words = " ".join(tokens).lower().translate(NOT_ALNUM).split()
        said = self._said.get(" ".join(words))
        if said is not None:
            i, action, value = said
        if frame.style == "question" and rng.random() < 0.4 and not tokens[-1].endswith("?"):
            tokens[-1] += "?"
        style = frame.style
        if style != "keyword" and self._lengthen(rng, tokens, kinds, (i, action, value)):
            style = "verbose"
            words = " ".join(tokens).lower().translate(NOT_ALNUM).split()
        return Seed(tokens, kinds, action, i, value, style, words)

    def _lengthen(self, rng: random.Random, tokens: list[str], kinds: list[int], call: tuple) -> bool:
        """Maybe join the seed with another own wording of the same call, or add a clause; in place."""
        r = rng.random()
        join, context = self.lengthen.get("join", 0.0), self.lengthen.get("context", 0.0)
        if r < join and self._joins:
            others = [b for b in self._bare.get(call, ()) if list(b[0]) != tokens]
            if not others:
                return False
            toks, ks = rng.choice(others)
            a, b = (tokens[:], kinds[:]), (list(toks), list(ks))
            if rng.random() < 0.5:
                a, b = b, a
            tokens.clear()
            kinds.clear()
            for p in rng.choice(self._joins):
                if isinstance(p, str):
                    tokens.append(p)
                    kinds.append(F)
                    continue
                pre, slot, post = p
                t, k = a if slot == "a" else b
                tokens.extend(_glued(t, pre, post))
                kinds.extend(k)
            return True
        if r < join + context and self._clauses:
            before, (t, k) = self._clauses.pick(rng)
            if before:
                glue = rng.choice((",", ".", ""))
                tokens[:0], kinds[:0] = [*t[:-1], t[-1] + glue], list(k)
            else:
                tokens[-1] += rng.choice((",", ".", ""))
                tokens.extend(t)
                kinds.extend(k)
            return True
        return False

    def _value(self, rng: random.Random, i: int, s: Setting, marker: Any) -> tuple[Any, dict]:
        if marker not in _SAMPLED and marker != "<option-distinctive>":
            return marker, {}
        if marker == "<max>":
            return s.max, {}
        if marker == "<min>":
            return s.min, {}
        if marker == "<value>":
            v = range_value(rng, s)
            return v, {"value": say_number(rng, v, s.unit)}
        if marker == "<amount>":
            v = amount(rng, s)
            return v, {"amount": say_number(rng, v, s.unit)}
        if marker == "<option-distinctive>":
            value, label = rng.choice(self._distinct[i])
            return value, {"option": label}
        o = rng.randrange(len(s.options))
        fills = {"option": rng.choice(self._options[i][o])}
        if marker == "<negation>":
            fills["other"] = rng.choice(self._options[i][1 - o])
        return s.options[o].value, fills

    def _value_tokens(self, label: str) -> tuple:
        toks, kinds = self._tokens(label, V)
        return toks, tuple(V if k in (A, F) else k for k in kinds)

    def none(self, rng: random.Random) -> Seed:
        """An out-of-scope request (target {"action":"none"})."""
        parts = rng.choice(self._none)
        tokens: list[str] = []
        for p in parts:
            if isinstance(p, str):
                tokens.append(p)
            else:
                pre, slot, post = p
                words = rng.choice(self.templates.none_slots[slot]).split()
                words[0] = pre + words[0]
                words[-1] += post
                tokens.extend(words)
        return Seed(tokens, [F] * len(tokens), "none", -1, None, "out_of_scope")

    def reachable(self) -> list[bool]:
        return [bool(t) for t in self._tables]


_GENERIC = {"settings", "setting", "page", "options", "menu", "config", "preferences"}


def _glued(tokens, pre: str, post: str) -> list[str]:
    """A slot's words with the frame's text glued on: "{name}?" -> [..., "bluetooth?"] (one word takes both)."""
    out = list(tokens)
    out[0] = pre + out[0]
    out[-1] = out[-1] + post
    return out


def _name_key(name: str) -> str:
    """Names that render the same requests: "night light settings" ~ "night light", "the taskbar" ~ "taskbar"."""
    words = norm(name).split()
    while len(words) > 1 and words[-1] in _GENERIC:
        words.pop()
    while len(words) > 1 and words[0] in ("the", "my"):
        words.pop(0)
    return " ".join(words)


def _probabilities(choice: _Choice) -> list[float]:
    previous = [0.0, *choice.cum[:-1]]
    return [(c - p) / choice.total for c, p in zip(choice.cum, previous)]


def _distinctive_labels(settings: tuple[Setting, ...]) -> dict[str, tuple[int, Any]]:
    """Option names that mean one thing across the catalogue ("dark mode", "1080p"), usable on their own."""
    seen: dict[str, list[tuple[int, Any]]] = {}
    for i, s in enumerate(settings):
        if s.type != "enum":
            continue
        for o in s.options:
            for label in o.say:
                seen.setdefault(norm(label), []).append((i, o.value))
    common = {"on", "off", "never", "always", "none", "default", "auto", "automatic", "normal", "custom"}
    return {label: owners[0] for label, owners in seen.items()
            if len(owners) == 1 and len(label) >= 4 and label not in common and not label.isdigit()}
