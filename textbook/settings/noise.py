"""Noise injection that keeps the label: typos, spacing, casing, partial words, dropped words, misspellings.

Every operation works on a seed's tokens, which carry kinds (language.py): strict tokens (negations,
on/off, numbers) are never touched, anchors and action words may take a few typos, only filler words are
dropped, and truncation ("turn on blueto") only removes filler or value words after the cut. After the
operations, a recognition check decides the outcome:
    ok              the noised query still says the same thing: keep the label
    value_lost      truncation removed the value ("set volume to"): the caller relabels (set -> open,
                    increase by 20 -> increase)
    unrecognisable  a name or action word is past recognition: the caller drops the sample with this reason
A word stays recognisable with at most 1 edit (4-7 letters) or 2 edits (8+ letters), none under 4 letters,
or as a prefix of at least 3 letters and 40% of the word (partial words), or as a curated misspelling.
"""

from __future__ import annotations

import math
import random
from bisect import bisect
from dataclasses import dataclass
from itertools import accumulate

from textbook.settings.language import A, F, K, N, S, V, NoiseLexicon, bare

OPS = ("keyboard_neighbor", "deletion", "insertion", "transposition", "double_letter", "missing_space",
       "extra_space", "casing", "drop_punctuation", "truncation", "drop_word", "misspelling", "phonetic")
# How often each operation is picked (relative); partial words and typos are what real queries are full of.
OP_WEIGHTS = {"keyboard_neighbor": 1.2, "deletion": 1.0, "insertion": 0.6, "transposition": 0.9,
              "double_letter": 0.5, "missing_space": 0.6, "extra_space": 0.3, "casing": 0.7,
              "drop_punctuation": 0.5, "truncation": 1.4, "drop_word": 0.8, "misspelling": 1.0, "phonetic": 0.5}
_PUNCT = ",.?!;:'\""
_NUMBERISH = {"one", "two", "to", "too", "for", "four", "won", "ate", "eight", "ten"}
SHORT_PARTIAL = 0.3  # chance that a noised query of 1-2 words starts as a partial word


@dataclass(slots=True)
class NoiseResult:
    text: str
    ops: list[str]
    status: str  # ok | value_lost | unrecognisable


def budget(word: str) -> int:
    n = len(word)
    return 0 if n <= 3 else 1 if n <= 7 else 2


class _State:
    __slots__ = ("toks", "kinds", "orig", "edits", "curated", "cut", "seps", "lost")

    def __init__(self, tokens: list[str], kinds: list[int]):
        self.toks = list(tokens)
        self.kinds = list(kinds)
        self.orig = [bare(t) for t in tokens]
        self.edits = [0] * len(tokens)
        self.curated = [False] * len(tokens)
        self.cut = [False] * len(tokens)
        self.seps = [""] + [" "] * (len(tokens) - 1)
        self.lost: list[int] = []

    def text(self) -> str:
        return "".join(sep + tok for sep, tok in zip(self.seps, self.toks))

    def remove(self, i: int) -> None:
        self.lost.append(self.kinds[i])
        for name in self.__slots__[:-1]:
            del getattr(self, name)[i]
        if self.seps:
            self.seps[0] = ""


class Noiser:
    """Applies 1-3 seeded noise operations to a seed's tokens and checks the label survived."""

    def __init__(self, lexicon: NoiseLexicon, weights: dict[str, float] | None = None):
        self.lex = lexicon
        weights = weights or OP_WEIGHTS
        unknown = set(weights) - set(OPS)
        if unknown:
            raise ValueError(f"unknown noise operation(s): {', '.join(sorted(unknown))}")
        self._names = [op for op in OPS if weights.get(op, 0) > 0]
        self._cum = list(accumulate(weights[op] for op in self._names))
        self._fn = {op: getattr(self, "_" + op) for op in OPS}

    def apply(self, rng: random.Random, tokens: list[str], kinds: list[int]) -> NoiseResult:
        st = _State(tokens, kinds)
        wanted = 1 + (rng.random() < 0.35) + (rng.random() < 0.1)
        ops: list[str] = []
        # Search boxes are typed into letter by letter: short queries are often cut mid-word ("blueto").
        if len(tokens) <= 2 and rng.random() < SHORT_PARTIAL and self._truncation(rng, st):
            ops.append("truncation")
        for _ in range(wanted * 4):
            if len(ops) == wanted:
                break
            op = self._names[bisect(self._cum, rng.random() * self._cum[-1])]
            if self._fn[op](rng, st):
                ops.append(op)
        return NoiseResult(st.text(), ops, self._check(st))

    def apply_op(self, rng: random.Random, tokens: list[str], kinds: list[int], op: str) -> NoiseResult | None:
        """Apply exactly one named operation (None when it does not apply to these tokens)."""
        st = _State(tokens, kinds)
        if not self._fn[op](rng, st):
            return None
        return NoiseResult(st.text(), [op], self._check(st))

    # -- the recognition check ----------------------------------------------------------------
    def _ok(self, st: _State, i: int) -> bool:
        word = st.orig[i]
        if st.curated[i]:
            return True
        if st.cut[i]:
            return st.edits[i] == 0 and len(bare(st.toks[i])) >= max(3, math.ceil(0.4 * len(word)))
        return st.edits[i] <= budget(word)

    def _check(self, st: _State) -> str:
        for i, kind in enumerate(st.kinds):
            if kind in (S, N) and bare(st.toks[i]) != st.orig[i]:
                return "unrecognisable"
            if kind in (K, V) and not self._ok(st, i):
                return "unrecognisable"
        for group in (A, V, K):
            members = [i for i, k in enumerate(st.kinds) if k == group]
            if members:
                if not any(self._ok(st, i) for i in members):
                    return "unrecognisable"
                break
        if V in st.lost or N in st.lost:
            return "value_lost"
        return "ok"

    # -- operations: each returns False when it does not apply ---------------------------------
    def _letters(self, st: _State, minimum: int) -> list[int]:
        toks, cut = st.toks, st.cut
        return [i for i, k in enumerate(st.kinds) if k < S and not cut[i] and len(toks[i]) >= minimum] + \
               [i for i, k in enumerate(st.kinds) if k == V and not cut[i] and len(toks[i]) >= minimum]

    def _char_op(self, rng: random.Random, st: _State, minimum: int, edit) -> bool:
        candidates = self._letters(st, minimum)
        if not candidates:
            return False
        i = rng.choice(candidates)
        tok = st.toks[i]
        letters = [p for p, c in enumerate(tok) if c.isalpha()]
        if len(letters) < minimum:
            return False
        new = edit(rng, tok, letters)
        if new is None or new == tok:
            return False
        st.toks[i] = new
        st.edits[i] += 1
        return True

    def _neighbor(self, c: str, rng: random.Random) -> str:
        near = self.lex.keyboard.get(c.lower())
        if not near:
            return c
        r = rng.choice(near)
        return r.upper() if c.isupper() else r

    def _keyboard_neighbor(self, rng, st) -> bool:
        def edit(rng, tok, letters):
            p = rng.choice(letters)
            return tok[:p] + self._neighbor(tok[p], rng) + tok[p + 1:]
        return self._char_op(rng, st, 2, edit)

    def _deletion(self, rng, st) -> bool:
        def edit(rng, tok, letters):
            inner = [p for p in letters if p > 0] or letters  # people rarely lose the first letter
            p = rng.choice(inner)
            return tok[:p] + tok[p + 1:]
        return self._char_op(rng, st, 3, edit)

    def _insertion(self, rng, st) -> bool:
        def edit(rng, tok, letters):
            p = rng.choice(letters)
            return tok[:p + 1] + self._neighbor(tok[p], rng) + tok[p + 1:]
        return self._char_op(rng, st, 2, edit)

    def _transposition(self, rng, st) -> bool:
        def edit(rng, tok, letters):
            pairs = [p for p in letters if p + 1 < len(tok) and tok[p + 1].isalpha() and tok[p] != tok[p + 1]]
            if not pairs:
                return None
            p = rng.choice(pairs)
            return tok[:p] + tok[p + 1] + tok[p] + tok[p + 2:]
        return self._char_op(rng, st, 2, edit)

    def _double_letter(self, rng, st) -> bool:
        def edit(rng, tok, letters):
            p = rng.choice(letters)
            return tok[:p + 1] + tok[p] + tok[p + 1:]
        return self._char_op(rng, st, 2, edit)

    def _missing_space(self, rng, st) -> bool:
        gaps = [i for i in range(1, len(st.toks)) if st.seps[i] == " "]
        if not gaps:
            return False
        st.seps[rng.choice(gaps)] = ""
        return True

    def _extra_space(self, rng, st) -> bool:
        candidates = [i for i in self._letters(st, 4) if " " not in st.toks[i] and st.toks[i].isalpha()]
        if not candidates:
            return False
        i = rng.choice(candidates)
        p = rng.randrange(2, len(st.toks[i]) - 1)
        st.toks[i] = st.toks[i][:p] + " " + st.toks[i][p:]
        return True

    def _casing(self, rng, st) -> bool:
        before = st.text()
        mode = rng.randrange(4)
        if mode == 0:
            st.toks = [t.upper() for t in st.toks]
        elif mode == 1:
            st.toks = [t[:1].upper() + t[1:] for t in st.toks]
        elif mode == 2:
            st.toks[0] = st.toks[0][:1].upper() + st.toks[0][1:]
        else:
            words = [i for i, t in enumerate(st.toks) if any(c.isalpha() for c in t)]
            if not words:
                return False
            i = rng.choice(words)
            st.toks[i] = st.toks[i].upper()
        return st.text() != before

    def _drop_punctuation(self, rng, st) -> bool:
        if not any(c in _PUNCT for t in st.toks for c in t):
            return False
        st.toks = ["".join(c for c in t if c not in _PUNCT) for t in st.toks]
        for i in range(len(st.toks) - 1, -1, -1):
            if not st.toks[i] and len(st.toks) > 1:
                st.remove(i)
                st.lost.pop()  # punctuation only: nothing of meaning went
        return True

    def _truncation(self, rng, st) -> bool:
        n = len(st.toks)
        choices = []
        for j in range(n - 1, -1, -1):
            word = st.toks[j].rstrip(_PUNCT)
            if st.kinds[j] in (F, A, K, V) and not st.cut[j] and word.isalpha() and len(word) >= 4:
                lo = max(3, math.ceil(0.4 * len(word)))
                if lo <= len(word) - 1:
                    choices.append(j)
            if st.kinds[j] not in (F, V, N):  # nothing but filler and values may be cut away behind the cut
                break
        if not choices:
            return False
        j = choices[0] if rng.random() < 0.7 or len(choices) == 1 else rng.choice(choices[1:])
        word = st.toks[j].rstrip(_PUNCT)
        keep = rng.randint(max(3, math.ceil(0.4 * len(word))), len(word) - 1)
        st.toks[j] = word[:keep]
        st.cut[j] = True
        for i in range(n - 1, j, -1):
            st.remove(i)
        return True

    def _drop_word(self, rng, st) -> bool:
        if len(st.toks) < 3:
            return False
        candidates = [i for i, k in enumerate(st.kinds) if k == F and st.orig[i] in self.lex.droppable]
        if not candidates:
            return False
        i = rng.choice(candidates)
        st.remove(i)
        st.lost.pop()  # filler carries no meaning
        return True

    def _replace(self, rng, st, table: dict[str, tuple[str, ...]], avoid_numbers: bool) -> bool:
        has_numbers = avoid_numbers and N in st.kinds
        candidates = [i for i, k in enumerate(st.kinds)
                      if k not in (S, N) and not st.cut[i] and st.edits[i] == 0 and st.orig[i] in table]
        if not candidates:
            return False
        i = rng.choice(candidates)
        # "to" -> "2" or "for" -> "four" next to a value would blur the number: not when the query has one.
        options = [o for o in table[st.orig[i]]
                   if not (has_numbers and (o in _NUMBERISH or any(c.isdigit() for c in o)))]
        if not options:
            return False
        tok = st.toks[i]
        tail = tok[len(tok.rstrip(_PUNCT)):]
        st.toks[i] = rng.choice(options) + tail
        st.curated[i] = True
        st.edits[i] += 1
        return True

    def _misspelling(self, rng, st) -> bool:
        return self._replace(rng, st, self.lex.misspellings, avoid_numbers=False)

    def _phonetic(self, rng, st) -> bool:
        return self._replace(rng, st, self.lex.phonetic, avoid_numbers=True)
