"""The language data seeds and noise are made from: phrasing frames, wrappers, out-of-scope requests, lexicons.

Both files live in textbook/settings/language/ (templates.yaml, noise.yaml) so another language or keyboard
layout is a data change. Tokens carry a kind, which is what lets noise injection keep the meaning:
    F filler (may be typo'd or dropped)   A anchor: names the setting (typos within a budget)
    K key: carries the action ("increase", "louder")   S strict: negations, on/off, up/down (never touched)
    V value word ("dark", "portrait")      N number (never touched)
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path

from textbook.errors import TextbookError
from textbook.settings.yamlfile import load_yaml

F, A, K, S, V, N = range(6)
DIR = Path(__file__).resolve().parent / "language"
_SLOT = re.compile(r"^(.*?)\{(\w+)\}(.*)$")
SLOTS = {"name", "task", "value", "option", "other", "amount", "up", "down", "x"}
_STRIP = ",.?!;:\"'()"

# Small English stop-word list: words that never identify a setting (so they are not anchors).
STOPWORDS = frozenset(
    "a an the my me i i'm im it it's its is are was be been am to of in on at for with from by and or but so as "
    "this that these those there their they them he she we you your our us his her what which who whom how why "
    "when where can could would should will shall do does did done have has had just very really too also "
    "any some all every each more most less much many again now then than only even still here out up down "
    "into over about after before while if because please pls plz want need like get got make keep let".split()
)


@dataclass(frozen=True, slots=True)
class NoiseLexicon:
    """The word lists of noise.yaml: which words carry meaning (never noised) and how the rest get misspelled."""

    strict: frozenset[str]
    key: frozenset[str]
    droppable: frozenset[str]
    misspellings: dict[str, tuple[str, ...]]
    phonetic: dict[str, tuple[str, ...]]
    keyboard: dict[str, str]

    def kind(self, token: str, content: int = A) -> int:
        """The kind of a literal token; `content` is the kind given to content words (A, or F in frames)."""
        word = token.strip(_STRIP)
        if any(c.isdigit() for c in word):
            return N
        low = word.lower()
        if low in self.strict or token.lower() in self.strict:
            return S
        if low in self.key:
            return K
        if len(low) >= 3 and low not in STOPWORDS:
            return content
        return F


@dataclass(frozen=True, slots=True)
class Templates:
    frames: dict[str, dict[str, tuple[str, ...]]]  # kind of frame -> style -> frames
    wrappers: dict[str, dict[str, tuple[str, ...]]]
    verbs: frozenset[str]
    none_frames: tuple[str, ...]
    none_slots: dict[str, tuple[str, ...]]
    context: dict[str, tuple[str, ...]]  # before / after clauses, join frames ({a}, {b}): long requests


NOT_ALNUM = {ord(c): None for c in "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"}


def norm(text: str) -> str:
    """Lowercase words without punctuation: the key for near-duplicate capping and collisions."""
    return " ".join(text.lower().translate(NOT_ALNUM).split())


def bare(token: str) -> str:
    """A token without punctuation, spaces or case (what a reader recognises)."""
    return token.lower().translate(NOT_ALNUM).replace(" ", "")


def split_frame(frame: str, slots: frozenset[str] | set[str] = SLOTS) -> list[tuple[str, str, str] | str]:
    """'turn on {name}?' -> ['turn', 'on', ('', 'name', '?')]: literal words and slots with glued text."""
    parts: list[tuple[str, str, str] | str] = []
    for word in frame.split():
        m = _SLOT.match(word)
        if m:
            if m.group(2) not in slots:
                raise TextbookError(f"template {frame!r} uses unknown slot {{{m.group(2)}}} (known: {', '.join(sorted(slots))})")
            parts.append((m.group(1), m.group(2), m.group(3)))
        else:
            parts.append(word)
    return parts


def _tuples(mapping: dict, where: str) -> dict[str, tuple[str, ...]]:
    if not isinstance(mapping, dict):
        raise TextbookError(f"{where} must map names to lists")
    return {str(k): tuple(str(x) for x in v) for k, v in mapping.items()}


@lru_cache(maxsize=4)
def load_templates(path: str | None = None) -> Templates:
    p = Path(path) if path else DIR / "templates.yaml"
    doc = load_yaml(p.read_text(encoding="utf-8"))
    frames = {kind: _tuples(styles, f"{p}: frames.{kind}") for kind, styles in doc["frames"].items()}
    for styles in frames.values():
        for texts in styles.values():
            for text in texts:
                split_frame(text)  # fail early on a bad slot
    none_slots = _tuples(doc["none"]["slots"], f"{p}: none.slots")
    context = _tuples(doc.get("context", {}), f"{p}: context")
    for text in context.get("join", ()):
        if text.count("{a}") != 1 or text.count("{b}") != 1:
            raise TextbookError(f"{p}: context.join frame {text!r} must hold {{a}} and {{b}} once each")
    for text in doc["none"]["frames"]:
        split_frame(text, set(none_slots))
    return Templates(
        frames=frames,
        wrappers={k: _tuples(v, f"{p}: wrappers.{k}") for k, v in doc["wrappers"].items()},
        verbs=frozenset(doc["verbs"]),
        none_frames=tuple(doc["none"]["frames"]),
        none_slots=none_slots,
        context=context,
    )


@lru_cache(maxsize=4)
def load_noise_lexicon(path: str | None = None) -> NoiseLexicon:
    p = Path(path) if path else DIR / "noise.yaml"
    doc = load_yaml(p.read_text(encoding="utf-8"))
    return NoiseLexicon(
        strict=frozenset(doc["strict"]),
        key=frozenset(doc["key"]),
        droppable=frozenset(doc["droppable"]),
        misspellings=_tuples(doc["misspellings"], f"{p}: misspellings"),
        phonetic=_tuples(doc["phonetic"], f"{p}: phonetic"),
        keyboard={str(k): str(v) for k, v in doc["keyboard"].items()},
    )
