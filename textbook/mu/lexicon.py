"""Spelling correction of settings queries against the words of the training data.

Why: a byte-level BPE cuts a misspelt word ("tsakbar", "cursour") into pieces the model has rarely
seen next to each other, and the model has to learn every typo of every word from examples. A
search box corrects spelling before it searches; so does this lexicon, in front of the encoder, with
the same code in training, `eval`, the exporter and the ONNX runner (MuConfig.spell_correct).

How: the words of the *clean* training queries (the `clean_query` column that `textbook gen settings`
writes; else the `query` column, keeping words seen at least 3 times, since typos repeat too) with
their counts. A word that is not in the lexicon is replaced by the lexicon word nearest in a
keyboard-aware Damerau-Levenshtein distance (`distance`: 1 edit up to 5 letters, 2 edits above), the
most frequent on a tie; found through the symmetric-delete index of SymSpell (Garbe 2012), so a lookup costs microseconds.
Two more repairs: a stray space inside a word ("docume nt") and a missing one ("switchzone"); a
missing space, one edit, wins over a correction of two ("wifion" is "wifi on", not "wifi"), which
took 39.9% -> 54.9% of the validation queries with a missing space back to their clean text.
Words of one or two letters, words with letters beyond a-z, numbers and punctuation are never
touched. A word the lexicon does not know and cannot correct is left as it is: the model still
reads it.

The last word is read as a search box reads it, as typed so far: an unknown last word that starts
known words ("night lig", "keyboard lay", "autopl") is completed to the one that most often follows
the word before it in the training queries ("time zo" -> "time zone", "dark mo" -> "dark mode"),
else to the most frequent. Spelling correction had made those "night log", "keyboard play" and
"auto". Measured on the development set (session 18): 19 of its 23 partial requests were completed (the
other 4 were corrected right already or end in a known word), and 1 of its 253 other requests changed
("for a sec" -> "for a second").
"""

from __future__ import annotations

import bisect
import json
import re
from collections import Counter
from pathlib import Path
from typing import Iterable

from textbook.contract import CLEAN_QUERY, QUERY, TRAIN
from textbook.errors import TextbookError
from textbook.mu.tokenizer import texts_from_shards
from textbook.shards import atomic_write_json, read_manifest

FORMAT = 2  # 2 added the word pairs that completion reads; a format-1 lexicon still loads (completes by frequency)
_WORD = re.compile(r"[^\W\d_]+")  # a run of letters, any script
_PARTS = re.compile(r"[^\W\d_]+|[\W\d_]+")  # words, and everything between them
_RAW_MIN_COUNT = 3  # for a lexicon read from noisy queries
_PAIR_MIN_COUNT = 2  # word pairs kept for completion


def _deletes(word: str, edits: int) -> set[str]:
    out = frontier = {word}
    for _ in range(edits):
        frontier = {w[:i] + w[i + 1:] for w in frontier if len(w) > 1 for i in range(len(w))}
        out = out | frontier
    return out


def _max_edits(word: str) -> int:
    return 1 if len(word) <= 5 else 2


# QWERTY, each row half a key right of the one above: a typed substitution is nearly always a key
# next to the intended one.
_ROWS = ("qwertyuiop", "asdfghjkl", "zxcvbnm")
_KEY = {c: (r, i + 0.5 * r) for r, row in enumerate(_ROWS) for i, c in enumerate(row)}
_NEAR = frozenset(
    (a, b)
    for a, (ra, xa) in _KEY.items()
    for b, (rb, xb) in _KEY.items()
    if a != b and abs(ra - rb) <= 1 and abs(xa - xb) <= 1
)


def _substitution(a: str, b: str) -> int:
    return 0 if a == b else 1 if (a, b) in _NEAR else 2


def distance(a: str, b: str) -> int:
    """Damerau-Levenshtein distance (optimal string alignment) for typed text.

    Deleting, inserting or swapping neighbours costs 1; substituting a letter costs 1 for a key next
    to it on a QWERTY keyboard and 2 (a deletion plus an insertion) for any other. Why: a real word the
    lexicon does not know ("miles", "convert") is often one or two *unlikely* substitutions from a known
    one ("files", "connect"); typos rarely are. Measured on the 10,075 validation queries of the
    README's `gen settings` data: 53.9% of the typo'd ones restored exactly (52.5% with every
    substitution at 1), and the same 37 of 7,138 clean ones changed.
    """
    prev2: list[int] = []
    prev = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        row = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            row[j] = min(prev[j] + 1, row[j - 1] + 1, prev[j - 1] + _substitution(ca, cb))
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                row[j] = min(row[j], prev2[j - 2] + 1)
        prev2, prev = prev, row
    return prev[-1]


class Lexicon:
    """Known words with counts; `correct(text)` repairs the unknown ones of a lowercased query."""

    def __init__(self, counts: dict[str, int], pairs: dict[tuple[str, str], int] | None = None):
        self.counts = {w: int(c) for w, c in counts.items() if w.isalpha() and w.islower()}
        self.pairs = {p: int(c) for p, c in (pairs or {}).items() if p[0] in self.counts and p[1] in self.counts}
        self._sorted = sorted(self.counts)  # for prefix lookups
        self._index: dict[str, list[str]] = {}
        for word in self._sorted:
            for key in _deletes(word, _max_edits(word) if len(word) > 2 else 0):
                self._index.setdefault(key, []).append(word)

    @classmethod
    def from_texts(cls, texts: Iterable[str], min_count: int = 1) -> "Lexicon":
        counts: Counter[str] = Counter()
        pairs: Counter[tuple[str, str]] = Counter()
        for text in texts:
            words = _WORD.findall(text.lower())
            counts.update(words)
            pairs.update(zip(words, words[1:]))
        # Pairs seen once are dropped: they barely inform a completion and would double the file.
        return cls({w: c for w, c in counts.items() if c >= min_count},
                   {p: c for p, c in pairs.items() if c >= max(min_count, _PAIR_MIN_COUNT)})

    @classmethod
    def from_shards(cls, directories: Iterable[str | Path]) -> "Lexicon":
        """The lexicon of the train split: clean queries when the shards have them, else queries."""
        directories = list(directories)
        clean = all(CLEAN_QUERY in {f["name"] for f in (read_manifest(d) or {"schema": []})["schema"]} for d in directories)
        column = CLEAN_QUERY if clean else QUERY
        lexicon = cls.from_texts(texts_from_shards(directories, [column], split=TRAIN), 1 if clean else _RAW_MIN_COUNT)
        if not lexicon.counts:
            raise TextbookError(f"no words in the {column} column of the train split: train with --no-spell-correct")
        return lexicon

    def save(self, path: Path) -> None:
        atomic_write_json(path, {"format": FORMAT, "words": dict(sorted(self.counts.items())),
                                 "pairs": {f"{a} {b}": c for (a, b), c in sorted(self.pairs.items())}})

    @classmethod
    def load(cls, path: str | Path) -> "Lexicon":
        try:
            data = json.loads(Path(path).read_text())
            if data.get("format") not in (1, FORMAT) or not isinstance(data.get("words"), dict):
                raise ValueError("not a textbook lexicon")
            return cls(data["words"], {tuple(p.split(" ")): c for p, c in data.get("pairs", {}).items()})
        except FileNotFoundError:
            raise TextbookError(f"{path} is missing: the model was trained with spelling correction and needs it") from None
        except (ValueError, AttributeError, TypeError, IndexError) as exc:  # IndexError: a pair that is not two words
            raise TextbookError(f"{path} is not a lexicon.json written by textbook ({exc}): retrain or re-export") from None

    def word(self, word: str) -> str:
        """`word` corrected: itself when known or not correctable, else the nearest known word(s)."""
        if word in self.counts or len(word) < 3 or not word.isascii():  # edits are spelled in a-z
            return word
        nearest, split = self._nearest(word), self._split(word)
        # A missing space is one edit: "wifion" is "wifi on", not "wifi" two deletions away, and
        # "nomore" is "no more", not "more".
        if split and (nearest is None or nearest[0] > 1):
            return split
        return nearest[2] if nearest else word

    def complete(self, word: str, before: str | None) -> str | None:
        """The known word that the unknown `word`, typed so far, is the start of, or None: the one most often
        after `before` (the word typed before it), else the most frequent; alphabetical on a tie."""
        if word in self.counts or len(word) < 2 or not word.isascii():
            return None
        start = bisect.bisect_right(self._sorted, word)
        end = bisect.bisect_left(self._sorted, word[:-1] + chr(ord(word[-1]) + 1), start)
        candidates = self._sorted[start:end]
        if not candidates:
            return None
        return min(candidates, key=lambda w: (-self.pairs.get((before, w), 0), -self.counts[w], w))

    def _nearest(self, word: str) -> tuple[int, int, str] | None:
        """(distance, -count, word) of the known word nearest to `word`, within its edit budget."""
        edits = _max_edits(word)
        best: tuple[int, int, str] | None = None
        for key in _deletes(word, edits):
            for candidate in self._index.get(key, ()):
                d = distance(word, candidate)
                if d <= edits and (best is None or (d, -self.counts[candidate], candidate) < best):
                    best = (d, -self.counts[candidate], candidate)
        return best

    def _split(self, word: str) -> str | None:
        """`word` as two known words, the split whose rarer half is most common; None if none."""
        splits = [(min(self.counts[word[:i]], self.counts[word[i:]]), word[:i], word[i:])
                  for i in range(2, len(word) - 1) if word[:i] in self.counts and word[i:] in self.counts]
        if not splits:
            return None
        _, left, right = max(splits)
        return f"{left} {right}"

    def _join(self, left: str, right: str) -> str | None:
        """One known word for two typed ones split by a stray space, or None.

        "docume nt" and "dev ice" join when the joined word is known and one half is not (the lexicon
        knows "dev", and would make "ice" "dice"); "notifi catons", two unknown halves, joins when the
        joined word is one edit from a known one. Two known words stay two.
        """
        joined = left + right
        unknown = (left not in self.counts) + (right not in self.counts)
        if not unknown:
            return None
        if joined in self.counts:
            return joined
        if unknown == 2 and len(joined) >= 6:
            nearest = self._nearest(joined)
            if nearest and nearest[0] == 1:
                return nearest[2]
        return None

    def correct(self, text: str) -> str:
        parts = _PARTS.findall(text)
        out: list[str] = []
        i = 0
        while i < len(parts):
            part = parts[i]
            if part[0].isalpha():
                if i == len(parts) - 1:  # the last word may be unfinished
                    before = _WORD.findall("".join(out)[-64:])  # the word before it, as corrected
                    completed = self.complete(part, before[-1] if before else None)
                    if completed:
                        out.append(completed)
                        break
                if i + 2 < len(parts) and parts[i + 1] == " ":  # parts alternate: a word follows
                    joined = self._join(part, parts[i + 2])
                    if joined:
                        out.append(joined)
                        i += 3
                        continue
                part = self.word(part)
            out.append(part)
            i += 1
        return "".join(out)
