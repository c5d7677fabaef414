"""Values as people say them: round numbers, relative amounts, digits or words, with their units."""

from __future__ import annotations

import random
from typing import Any

from textbook.settings.catalogue import Setting
from textbook.settings.language import F, N

_NUM_WORDS = ("zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
              "sixteen seventeen eighteen nineteen").split()
_TENS = {2: "twenty", 3: "thirty", 4: "forty", 5: "fifty", 6: "sixty", 7: "seventy", 8: "eighty", 9: "ninety"}


def number_words(n: int) -> str | None:
    if 0 <= n < 20:
        return _NUM_WORDS[n]
    if 20 <= n < 100:
        return _TENS[n // 10] + ("" if n % 10 == 0 else " " + _NUM_WORDS[n % 10])
    return "one hundred" if n == 100 else None


def say_number(rng: random.Random, v: float, unit: str) -> tuple[list[str], list[int]]:
    """A number as typed: "70", "70%", "70 percent", sometimes in words ("seventy"); tokens and kinds."""
    text = f"{v:g}"
    r = rng.random()
    if r < 0.07 and float(v).is_integer() and number_words(int(v)):
        words = number_words(int(v)).split()
        toks, kinds = words, [N] * len(words)
    else:
        toks, kinds = [text], [N]
    if unit == "%":
        r = rng.random()
        if r < 0.35:
            toks = toks[:-1] + [toks[-1] + "%"]
        elif r < 0.55:
            toks, kinds = toks + ["percent"], kinds + [F]
    elif unit and rng.random() < 0.5:
        toks, kinds = toks + [unit], kinds + [F]
    return list(toks), list(kinds)


def parse_value(s: Setting, raw: str) -> Any:
    """The value in a "set:<value>" key of problems/phrases."""
    if s.type == "enum":
        return next(o.value for o in s.options if str(o.value) == raw)
    v = float(raw)
    return int(v) if v.is_integer() else v


def range_value(rng: random.Random, s: Setting) -> float:
    """Values people say: mostly round numbers, sometimes anything on the slider's grid."""
    lo, hi, step = s.min, s.max, s.step
    span = hi - lo
    if rng.random() < 0.65:
        for unit in (10, 5) if span >= 50 else (5, 1) if span >= 10 else (1,):
            first = -(-lo // unit) * unit
            count = int((hi - first) // unit) + 1
            if count > 1 and unit % step == 0 and (first - lo) % step == 0:  # round values on the slider's grid
                v = first + unit * rng.randrange(count)
                return int(v) if float(v).is_integer() else v
    v = lo + step * rng.randrange(int(round(span / step)) + 1)
    return int(v) if float(v).is_integer() else v


def amount(rng: random.Random, s: Setting) -> float:
    """A relative amount ("increase by 20"): one to three steps, or a round number."""
    rel = s.relative_step
    candidates = [rel * k for k in (1, 1, 2, 3)] + [a for a in (5, 10, 20, 25) if a % s.step == 0]
    ok = [a for a in candidates if 0 < a <= (s.max - s.min) / 2]
    v = rng.choice(ok or [rel])
    return int(v) if float(v).is_integer() else v
