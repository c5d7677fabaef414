"""The automatic label check: a second teacher pass predicts each paraphrase's call from a shortlist.

The shortlist is the seed's setting, the settings it is confusable with and a few random ones, shuffled,
plus "none". A paraphrase whose predicted call differs from the seed's label is dropped with a reason
(judge_other_setting, judge_none, judge_other_action, judge_other_value, judge_missing).
"""

from __future__ import annotations

import random
from typing import Any

from textbook.contract import ACTIONS
from textbook.prompts import Prompts
from textbook.settings.catalogue import Catalogue, Setting
from textbook.settings.paraphrase import describe_values

TEMPLATE = "settings_judge"
SHORTLIST = 8
def schema(count: int, ids: list[str]) -> dict[str, Any]:
    """The verdict's JSON schema with the bounds `parse` enforces: one answer per request, an index in range,
    a candidate's id or none, a known action. A grammar-constrained server can write nothing else."""
    return {
        "type": "object",
        "properties": {"answers": {"type": "array", "minItems": 1, "maxItems": count, "items": {
            "type": "object",
            "properties": {"i": {"type": "integer", "minimum": 0, "maximum": count - 1},
                           "id": {"type": "string", "enum": [*ids, "none"]},
                           "action": {"type": "string", "enum": list(ACTIONS)},
                           "value": {"type": ["number", "string", "null"]}},
            "required": ["i", "id", "action", "value"], "additionalProperties": False}}},
        "required": ["answers"],
        "additionalProperties": False,
    }


def shortlist(catalogue: Catalogue, index: int, confusable: set[int], rng: random.Random) -> list[Setting]:
    """The seed's setting, its confusable neighbours, then random others; shuffled so position tells nothing."""
    chosen = [index] + sorted(confusable)[: SHORTLIST - 3]
    while len(chosen) < SHORTLIST and len(chosen) < len(catalogue):
        j = rng.randrange(len(catalogue))
        if j not in chosen:
            chosen.append(j)
    rng.shuffle(chosen)
    return [catalogue.settings[j] for j in chosen]


def render(prompts: Prompts, candidates: list[Setting], requests: list[str], product: str = "Windows") -> list[dict]:
    # "choices", not "values": Jinja reads `c.values` as the dict's own .values method (its repr, with a memory
    # address, made every judge prompt unique, so the response cache never replayed one)
    rows = [{"id": s.id, "name": s.name, "type": s.type, "choices": describe_values(s), "description": s.description}
            for s in candidates]
    return [{"role": "user", "content": prompts.render(TEMPLATE, product=product, candidates=rows, requests=requests)}]


def parse(obj: Any, count: int) -> dict[int, dict]:
    """Answers by request index; ValueError when the reply has none (retried)."""
    if not isinstance(obj, dict) or not isinstance(obj.get("answers"), list):
        raise ValueError('expected {"answers": [...]}')
    out: dict[int, dict] = {}
    for a in obj["answers"]:
        if isinstance(a, dict) and isinstance(a.get("i"), int) and 0 <= a["i"] < count and isinstance(a.get("id"), str):
            out.setdefault(a["i"], a)
    if not out:
        raise ValueError("no answer matched a request index")
    return out


def _same_value(a: Any, b: Any) -> bool:
    if isinstance(a, (int, float)) and not isinstance(a, bool):
        try:
            return abs(float(a) - float(b)) < 1e-6
        except (TypeError, ValueError):
            return False
    return str(a).strip().lower() == str(b).strip().lower()


def disagreement(answer: dict | None, setting_id: str, action: str, value: Any) -> str | None:
    """None when the judge agrees with the seed's label, else the drop reason."""
    if answer is None:
        return "judge_missing"
    if answer.get("id") != setting_id:
        return "judge_none" if answer.get("id") == "none" else "judge_other_setting"
    if answer.get("action") != action:
        return "judge_other_action"
    if value is not None and not _same_value(value, answer.get("value")):
        return "judge_other_value"
    return None
