"""Constrained decoding: a settings model may only emit calls that exist in its catalogue.

A greedy decoder left free invents ids and values now and then ("display.refresh_rate" set to 20 for
"120hz"; 1-2% of real-style requests). The catalogue's valid calls (`textbook.contract.valid_calls`, a few
thousand) are tokenized as training tokenizes targets and kept as a prefix tree; at each decoder step every
token that would leave the tree is masked, so the output is always one of them. The list travels with the
model as `calls.json` (RUN/ and the export directory), written by `textbook train --task settings`.
"""

from __future__ import annotations

import json
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


# Retrieval chooses a setting and the kind of action; the decoder chooses within the kind: on or off, more or less.
# A mean-pooled sentence embedding barely moves with "not" and "don't", the decoder reads every token: on the
# development set (session 16) leaving the direction to the decoder took negated requests from 69% to 90% and
# the whole set from 59.1% to 60.9%.
FAMILIES = {"on": "on/off", "off": "on/off", "increase": "increase/decrease", "decrease": "increase/decrease"}


def head_of(call: str) -> str:
    """What retrieval chooses for a call (neighbours.py): its setting and the family of its action, without the value
    (`on/off bluetooth.enabled`, `set display.brightness`, `none`); the decoder writes the rest."""
    parsed = json.loads(call)
    action = FAMILIES.get(parsed["action"], parsed["action"])
    return f"{action} {parsed['id']}" if parsed.get("id") else action


class CallTries:
    """The trie of every valid call, and one per head (built when first asked for): decoding restricted to
    one setting's calls, with the full trie still the one the answer's probability is taken over."""

    def __init__(self, calls: Sequence[str], tokenizer, eos: int):
        self.tokenizer, self.eos = tokenizer, eos
        self.full = CallTrie.from_calls(calls, tokenizer, eos)
        self.by_head: dict[str, list[str]] = {}
        for call in calls:
            self.by_head.setdefault(head_of(call), []).append(call)
        self._tries: dict[str, CallTrie] = {}

    def allowed_for(self, head: str | None):
        """The `allowed` function of one head's calls; the full trie's for None or a head with no valid call."""
        if head is None or head not in self.by_head:
            return self.full.allowed
        if head not in self._tries:
            self._tries[head] = CallTrie.from_calls(self.by_head[head], self.tokenizer, self.eos)
        return self._tries[head].allowed


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
