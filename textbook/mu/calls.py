"""Constrained decoding: a settings model may only emit calls that exist in its catalogue.

A greedy decoder left free invents ids and values now and then ("display.refresh_rate" set to 20 for
"120hz"; 1-2% of real-style requests). The catalogue's valid calls (`textbook.contract.valid_calls`, a few
thousand) are tokenized as training tokenizes targets and kept as a prefix tree; at each decoder step every
token that would leave the tree is masked, so the output is always one of them. The list travels with the
model as `calls.json` (RUN/ and the export directory), written by `textbook train --task settings`.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Iterable, Sequence

from textbook.errors import TextbookError
from textbook.shards import atomic_write_json

CALLS_FILE = "calls.json"


class CallTrie:
    """Which token may follow a prefix of one of the valid calls' token sequences (EOS ends a call)."""

    def __init__(self, sequences: Iterable[Sequence[int]], eos: int):
        follow: dict[tuple[int, ...], set[int]] = {}
        for seq in sequences:
            seq = tuple(seq) + (eos,)
            for i in range(len(seq)):
                follow.setdefault(seq[:i], set()).add(seq[i])
        self.next: dict[tuple[int, ...], list[int]] = {prefix: sorted(tokens) for prefix, tokens in follow.items()}
        self.eos = eos

    @classmethod
    def from_calls(cls, calls: Sequence[str], tokenizer, eos: int) -> "CallTrie":
        return cls((e.ids for e in tokenizer.encode_batch(list(calls), add_special_tokens=False)), eos)

    def allowed(self, prefix: Sequence[int]) -> list[int]:
        """The tokens that keep `prefix` on the way to a valid call; [eos] once it has left the tree (a
        prefix the constrained decoder never makes)."""
        return self.next.get(tuple(prefix), [self.eos])


# Retrieval chooses a setting and the kind of action; within the kind the decoder's reading and the neighbours' votes
# are weighed together (`Steer`): on or off, more or less, and since session 21 the value. A mean-pooled sentence
# embedding barely moves with "not" and "don't", the decoder reads every token: on the development set (session 16)
# leaving the direction to the decoder alone took negated requests from 69% to 90% and the whole set from 59.1% to
# 60.9%; weighing both (session 17) took indirect problem statements ("the words are too small") from 40% to 53% and
# the whole set from 61.2% to 65.6%, negated requests unchanged (90%). A request with negation words takes its prior
# from the requests that negate as often (session 22; neighbours.py NEGATION), and none from numbers. The value: a
# short fine-tune copies "weekly" into every_month and "1680x1050" into 1366x768 now and then; the neighbours' values
# and the numbers the request writes know better (session 21, below).
FAMILIES = {"on": "on/off", "off": "on/off", "increase": "increase/decrease", "decrease": "increase/decrease"}


def action_of(call: str) -> str:
    """A call's setting and its exact action, without the value (`off bluetooth.enabled`, `set display.brightness`)."""
    parsed = json.loads(call)
    return f"{parsed['action']} {parsed['id']}" if parsed.get("id") else parsed["action"]


def head_of(call: str) -> str:
    """What retrieval chooses for a call (neighbours.py): its setting and the family of its action, without the value
    (`on/off bluetooth.enabled`, `set display.brightness`, `none`); the decoder writes the rest."""
    parsed = json.loads(call)
    action = FAMILIES.get(parsed["action"], parsed["action"])
    return f"{action} {parsed['id']}" if parsed.get("id") else action


def number_of(call: str) -> str | None:
    """A call's numeric value as a request writes it (`70`, `1.5`), or None (no value, or a word)."""
    value = json.loads(call).get("value")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return f"{value:g}" if isinstance(value, float) else str(value)


class Steer:
    """Decoding within one head, nudged by a prior over some of its calls: the head's tokens are allowed, and each is
    nudged by log(share + floor), where share is the part of the prior that went to the calls the token still leads
    to. The decoder's log-probability plus that prior is a product of the two experts; where the calls part (at the
    action's token, at the value's) it decides, elsewhere the bias is the same for every token and changes nothing.
    The answer's score stays the decoder's own (Mu.generate_scored `scored_by`)."""

    def __init__(self, head: CallTrie, options: list[tuple[CallTrie, float]], floor: float):
        self.head, self.options, self.floor = head, options, floor

    def __call__(self, prefix: Sequence[int]) -> list[int]:
        return self.head.allowed(prefix)

    def bias(self, prefix: Sequence[int], tokens: Sequence[int]) -> list[float] | None:
        """The prior of each of `tokens` after `prefix`; None where it is the same for all (nothing to weigh)."""
        key = tuple(prefix)
        shares = [sum(share for trie, share in self.options if token in trie.next.get(key, ())) for token in tokens]
        return [math.log(s + self.floor) for s in shares] if len(set(shares)) > 1 else None


class CallTries:
    """The trie of every valid call, and one per head (and per call, built when first asked for): decoding
    restricted to one setting's calls, with the full trie still the one the answer's probability is taken over."""

    def __init__(self, calls: Sequence[str], tokenizer, eos: int):
        self.tokenizer, self.eos = tokenizer, eos
        self.full = CallTrie.from_calls(calls, tokenizer, eos)
        self.by_head: dict[str, list[str]] = {}
        for call in calls:
            self.by_head.setdefault(head_of(call), []).append(call)
        self.number = {call: number_of(call) for call in calls}  # parsed once: steer reads them for every request
        self._tries: dict[str, CallTrie] = {}

    def _trie(self, key: str, calls: list[str]) -> CallTrie:
        if key not in self._tries:
            self._tries[key] = CallTrie.from_calls(calls, self.tokenizer, self.eos)
        return self._tries[key]

    def allowed_for(self, head: str | None):
        """The `allowed` function of one head's calls; the full trie's for None or a head with no valid call."""
        if head is None or head not in self.by_head:
            return self.full.allowed
        return self._trie(f"head {head}", self.by_head[head]).allowed

    def steer(self, head: str, shares: dict[str, float], floor: float, numbers: Sequence[str] = ()):
        """The `allowed` function of one head's calls, a `Steer` by the neighbours' `shares` (exact call -> part of the
        head's vote) when the head has several calls. A number the request writes (`numbers`) that is a value of
        the head takes its action's share from the voters' values: "brightness to 72" is 72 whatever the neighbours
        said (session 21, the own validation split: +0.2 points beside the voted values' +1.2)."""
        calls = self.by_head.get(head, [])
        if len(calls) < 2 or not shares:
            return self.allowed_for(head)
        written = [call for call in calls if self.number[call] in numbers] if numbers else []
        for action in {action_of(call) for call in written}:
            own = [call for call in written if action_of(call) == action]
            total = sum(share for call, share in shares.items() if action_of(call) == action)
            shares = {call: share for call, share in shares.items() if action_of(call) != action}
            shares.update({call: total / len(own) for call in own})
        return Steer(self._trie(f"head {head}", calls), [(self._trie(f"call {call}", [call]), share)
                                                         for call, share in shares.items()], floor)


def save_calls(directory: str | Path, calls: Sequence[str]) -> None:
    atomic_write_json(Path(directory) / CALLS_FILE, {"calls": list(calls)})


def load_calls(directory: str | Path) -> list[str] | None:
    """The valid calls stored with a run or an export, or None (a run from before they were kept)."""
    path = Path(directory) / CALLS_FILE
    if not path.is_file():
        return None
    try:
        calls = json.loads(path.read_text(encoding="utf-8"))["calls"]
    except (ValueError, KeyError, TypeError):
        raise TextbookError(f"{path} is damaged: delete it (decoding is then unconstrained) or retrain") from None
    if not isinstance(calls, list) or not all(isinstance(c, str) for c in calls):
        raise TextbookError(f"{path} is damaged: delete it (decoding is then unconstrained) or retrain")
    return calls
