"""The plan: a deterministic, seeded list of what to ask the teacher, spread evenly over topics and constraints.

Diversity is the point (phi-1: topic and audience constraints plus random words, the TinyStories
trick; function-name constraints for CodeExercises), so the plan is *stratified*, not sampled:

- Leaves are visited in cycles; within a cycle each leaf appears once, in an order that interleaves
  the branches of the tree (a prefix of the plan already covers every branch).
- Item i = cycle q, position r. Each constraint axis is a cyclic shift of a balanced per-leaf offset:
  with q's digits (d0, d1, d2) in the mixed radix (audiences, styles, difficulties),
      audience = d0 + oA[r],  style = d0 + d1 + oS[r],  difficulty = d0 + d1 + d2 + oD[r]   (mod sizes).
  Within a cycle every axis is balanced (the offsets are), the shift moves every cycle so the
  surplus values rotate, and for a fixed leaf the map q -> (audience, style, difficulty) is injective:
  no leaf gets the same constraint tuple twice before all of them are used.
- Random words come from consecutive slices of seeded permutations of the vocabulary (every word
  used equally often); function names from a seeded permutation of verb x noun (all distinct).
Item i depends only on i and the inputs, never on n: a larger --n extends the same plan.
"""

from __future__ import annotations

import hashlib
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

from textbook.bundled import data_dir
from textbook.errors import TextbookError
from textbook.gen.topics import leaves


@dataclass(frozen=True, slots=True)
class PlanItem:
    plan_id: int
    topic_path: tuple[str, ...]
    audience: str
    style: str
    difficulty: str
    words: tuple[str, ...]
    function_name: str | None
    seed: int  # sampling seed sent to the teacher (endpoints that honour it reproduce the reply)

    @property
    def topic(self) -> str:
        return self.topic_path[-1]

    def template_vars(self) -> dict[str, Any]:
        """What every generator's template may use (StrictUndefined makes a typo an error, not a blank)."""
        return {"topic": self.topic, "path": list(self.topic_path), "audience": self.audience, "style": self.style,
                "difficulty": self.difficulty, "words": list(self.words), "function_name": self.function_name}


@dataclass(frozen=True, slots=True)
class Axes:
    """The constraint values a plan crosses the leaves with (from GenConfig)."""

    audiences: tuple[str, ...]
    styles: tuple[str, ...]
    difficulties: tuple[str, ...]
    words_per_prompt: int


def load_vocabulary(prompts_dir: str | Path | None = None) -> dict[str, list[str]]:
    """Word lists for random-word injection and function names (prompts/vocabulary.json; overridable)."""
    for directory in ([Path(prompts_dir)] if prompts_dir else []) + [data_dir("prompts")]:
        path = directory / "vocabulary.json"
        if path.is_file():
            vocab = json.loads(path.read_text(encoding="utf-8"))
            for key in ("words", "verbs", "nouns"):
                if not vocab.get(key) or not all(isinstance(w, str) and w for w in vocab[key]):
                    raise TextbookError(f"{path}: {key!r} must be a non-empty list of words")
            return vocab
    raise TextbookError("vocabulary.json is missing from the prompts directory")


def _interleaved(tree: dict[str, Any], rng: random.Random) -> list[tuple[str, ...]]:
    """Leaves ordered so branches alternate (seeded shuffle at every node, then round-robin)."""

    def walk(node: dict[str, Any], path: tuple[str, ...]) -> list[tuple[str, ...]]:
        path = (*path, node["topic"])
        children = list(node.get("subtopics") or [])
        if not children:
            return [path]
        rng.shuffle(children)
        parts = [walk(child, path) for child in children]
        out: list[tuple[str, ...]] = []
        for i in range(max(len(p) for p in parts)):
            out.extend(p[i] for p in parts if i < len(p))
        return out

    return walk(tree, ())


def _balanced(length: int, size: int, rng: random.Random) -> list[int]:
    """`length` values in range(size): concatenated shuffled permutations (every prefix balanced)."""
    out: list[int] = []
    while len(out) < length:
        block = list(range(size))
        rng.shuffle(block)
        out.extend(block)
    return out[:length]


def _item_seed(seed: int, i: int) -> int:
    return int.from_bytes(hashlib.sha256(f"{seed}:{i}".encode()).digest()[:4], "big") >> 1


def build_plan(
    tree: dict[str, Any], *, n: int, seed: int, axes: Axes, vocabulary: dict[str, list[str]], function_names: bool
) -> list[PlanItem]:
    for name in ("audiences", "styles", "difficulties"):
        if not getattr(axes, name):
            raise TextbookError(f"the plan needs at least one value in {name}: fix [gen] {name} in the config file")
    rng = random.Random(f"plan:{seed}")
    order = _interleaved(tree, rng)
    n_leaves = len(order)
    sizes = (len(axes.audiences), len(axes.styles), len(axes.difficulties))
    offsets = [_balanced(n_leaves, size, rng) for size in sizes]

    words = vocabulary["words"]
    k = max(0, min(axes.words_per_prompt, len(words)))
    per_cycle = len(words) // k if k else 0
    word_perms: dict[int, list[str]] = {}

    names: list[str] = []
    if function_names:
        verbs, nouns = vocabulary["verbs"], vocabulary["nouns"]
        names = [f"{v}_{w}" for v in verbs for w in nouns]
        random.Random(f"names:{seed}").shuffle(names)

    items: list[PlanItem] = []
    for i in range(n):
        q, r = divmod(i, n_leaves)
        d0, rest = q % sizes[0], q // sizes[0]
        d1, d2 = rest % sizes[1], rest // sizes[1]
        audience = axes.audiences[(d0 + offsets[0][r]) % sizes[0]]
        style = axes.styles[(d0 + d1 + offsets[1][r]) % sizes[1]]
        difficulty = axes.difficulties[(d0 + d1 + d2 + offsets[2][r]) % sizes[2]]
        chosen: tuple[str, ...] = ()
        if k:
            c, j = divmod(i, per_cycle)
            if c not in word_perms:
                word_perms = {c: random.Random(f"words:{seed}:{c}").sample(words, len(words))}
            chosen = tuple(word_perms[c][j * k : (j + 1) * k])
        name = None
        if names:
            lap, j = divmod(i, len(names))
            name = names[j] if lap == 0 else f"{names[j]}_{lap + 1}"
        items.append(PlanItem(i, order[r], audience, style, difficulty, chosen, name, _item_seed(seed, i)))
    return items


def plan_sha(tree: dict[str, Any], *, seed: int, axes: Axes, vocabulary: dict[str, list[str]], extra: Sequence[str] = ()) -> str:
    """What makes two plans the same (n excluded: a larger --n extends a plan, so an output can grow)."""
    blob = json.dumps(
        {"leaves": leaves(tree), "seed": seed, "axes": [list(axes.audiences), list(axes.styles), list(axes.difficulties),
                                                       axes.words_per_prompt], "vocabulary": vocabulary, "extra": list(extra)},
        sort_keys=True,
    )
    return hashlib.sha256(blob.encode()).hexdigest()[:16]
