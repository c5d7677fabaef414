"""Score an exported model's answers (`textbook infer DIR --input REQUESTS.jsonl > ANSWERS.jsonl`) against the
requests' labels, per style: the exact call, and the page the call lands on (what the user sees open).

    python examples/score_answers.py tests/data/settings/realstyle.jsonl OUT/answers.jsonl

REQUESTS.jsonl lines carry `query`, `target` (the canonical call), `uri` (its page, absent for none) and
`style`; ANSWERS.jsonl has one line per request, in order, as `textbook infer` writes them.
"""

from __future__ import annotations

import json
import sys
from collections import defaultdict
from pathlib import Path

from textbook.contract import TargetError, canonical, parse_target
from textbook.settings.catalogue import load_catalogue


def page(answer: dict, catalogue) -> str | None:
    try:
        call = parse_target(json.dumps(answer))
    except TargetError:
        return None
    if call.action == "none":
        return "none"
    setting = catalogue.get(call.id or "")
    return setting.uri if setting else None


def main() -> None:
    if len(sys.argv) != 3:
        sys.exit("usage: python examples/score_answers.py REQUESTS.jsonl ANSWERS.jsonl")
    requests = [json.loads(line) for line in Path(sys.argv[1]).read_text(encoding="utf-8").splitlines() if line.strip()]
    answers = [json.loads(line) for line in Path(sys.argv[2]).read_text(encoding="utf-8").splitlines()]
    if len(requests) != len(answers):
        sys.exit(f"error: {len(requests)} requests but {len(answers)} answers: answer the same file with textbook infer")
    catalogue = load_catalogue()
    tally: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # style -> [rows, call right, page right]
    for request, answer in zip(requests, answers):
        gold = canonical(request["target"])
        call = "error" not in answer and canonical(json.dumps(answer)) == gold
        on_page = page(answer, catalogue) == (request.get("uri") or "none")  # an error line names no page
        for key in ("all", request.get("style") or "?"):
            tally[key][0] += 1
            tally[key][1] += call
            tally[key][2] += on_page
    print(f"{'style':<16}{'rows':>6}{'call':>9}{'page':>9}")
    for style, (n, right, pages) in sorted(tally.items(), key=lambda kv: (kv[0] != "all", kv[0])):
        print(f"{style:<16}{n:>6}{100 * right / n:>8.1f}%{100 * pages / n:>8.1f}%")


if __name__ == "__main__":
    main()
