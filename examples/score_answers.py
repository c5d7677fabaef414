"""Score an exported model's answers (`textbook infer DIR --input REQUESTS.jsonl > ANSWERS.jsonl`) against the
requests' labels, per style: the exact call, and the page the call lands on (what the user sees open).

    python examples/score_answers.py tests/data/settings/realstyle.jsonl OUT/answers.jsonl [--report OUT/scored.json]

REQUESTS.jsonl lines carry `query`, `target` (the canonical call), `uri` (its page, absent for none) and
`style`; ANSWERS.jsonl has one line per request, in order, as `textbook infer` writes them. With `--confidence`
(or `--min-confidence`: a withheld call is scored as the call it withheld) it also prints the accuracy of the most
confident 90%, 80%, ... of the answers: what answering only those, and showing search results for the rest, gives.
`--report` also writes the outcome of every request, so that `textbook eval compare` can pair this model with
another run or export scored on the same requests (`textbook eval compare OUT/scored.json OTHER/scored.json`).
"""

from __future__ import annotations

import json
import math
import sys
from collections import defaultdict
from pathlib import Path

from textbook.contract import TargetError, canonical, parse_target
from textbook.mu.compare import outcomes, wilson
from textbook.shards import atomic_write_json
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


def call_of(answer: dict) -> dict | None:
    """The call of an answer line (a withheld one's too), without its confidence; None for an error line."""
    if "error" in answer:
        return None
    call = answer["call"] if answer.get("abstain") else answer
    return {k: v for k, v in call.items() if k != "confidence"}


def main() -> None:
    args = sys.argv[1:]
    report_to = None
    if len(args) == 4 and args[2] == "--report":
        report_to, args = Path(args[3]), args[:2]
    if len(args) != 2:
        sys.exit("usage: python examples/score_answers.py REQUESTS.jsonl ANSWERS.jsonl [--report OUT.json]")
    requests = [json.loads(line) for line in Path(args[0]).read_text(encoding="utf-8").splitlines() if line.strip()]
    answers = [json.loads(line) for line in Path(args[1]).read_text(encoding="utf-8").splitlines()]
    if len(requests) != len(answers):
        sys.exit(f"error: {len(requests)} requests but {len(answers)} answers: answer the same file with textbook infer")
    catalogue = load_catalogue()
    tally: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])  # style -> [rows, call right, page right]
    scored = []  # (confidence, call right, page right) of the answers that carry a confidence
    calls, on_pages = [], []  # every request's outcome, in order
    for request, answer in zip(requests, answers):
        gold = canonical(request["target"])
        answered = call_of(answer)
        call = answered is not None and canonical(json.dumps(answered)) == gold
        on_page = answered is not None and page(answered, catalogue) == (request.get("uri") or "none")
        calls.append(call)
        on_pages.append(on_page)
        for key in ("all", request.get("style") or "?"):
            tally[key][0] += 1
            tally[key][1] += call
            tally[key][2] += on_page
        if "confidence" in answer:
            scored.append((answer["confidence"], call, on_page))
    print(f"{'style':<16}{'rows':>6}{'call':>9}{'page':>9}")
    for style, (n, right, pages) in sorted(tally.items(), key=lambda kv: (kv[0] != "all", kv[0])):
        print(f"{style:<16}{n:>6}{100 * right / n:>8.1f}%{100 * pages / n:>8.1f}%")
    if scored:
        scored.sort(key=lambda t: -t[0])
        print(f"\n{'answered':<16}{'rows':>6}{'call':>9}{'page':>9}  confidence >=")
        for coverage in (1.0, 0.9, 0.8, 0.7, 0.6, 0.5):
            kept = scored[: max(1, math.ceil(coverage * len(scored)))]
            print(f"{f'{coverage:.0%} most sure':<16}{len(kept):>6}{100 * sum(c for _, c, _ in kept) / len(kept):>8.1f}%"
                  f"{100 * sum(p for _, _, p in kept) / len(kept):>8.1f}%  {kept[-1][0]:.2f}")
    if report_to is not None:
        n = len(requests)
        atomic_write_json(report_to, {
            "requests": args[0], "answers": args[1], "rows": n, "exact_match": sum(calls) / n, "page_match": sum(on_pages) / n,
            "ci95": {"exact_match": wilson(sum(calls), n), "page_match": wilson(sum(on_pages), n)},
            "outcomes": outcomes([(r.get("query") or "", r["target"]) for r in requests], calls, on_pages,
                                 [r.get("style") or "?" for r in requests]),
        })
        print(f"\nevery request's outcome: {report_to} (textbook eval compare {report_to} OTHER.json)")


if __name__ == "__main__":
    main()
