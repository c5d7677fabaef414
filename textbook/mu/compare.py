"""How sure a settings score is: Wilson intervals, and two runs compared request by request on one set.

A few hundred requests measure a model only roughly: on 340 requests a 68% score has a 95% interval about
±5 points wide, and a style of 20 requests one of ±20. Two runs scored on the *same* requests are compared
more sharply by pairing: only the requests one run gets right and the other wrong tell them apart, and
McNemar's exact test (a two-sided binomial test on those discordant requests) says how often chance alone
would split them so unevenly. What it cannot say is how much a second training seed of the same recipe would
move either run: that variance is the runs', not the set's, and needs more runs.

`eval.py` stores each run's per-request outcomes in its report (`outcomes`); `compare` reads two reports.
No torch here: `textbook eval compare` runs without it.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any, Iterable

from textbook.errors import TextbookError
from textbook.report import Report

Z95 = 1.959964  # the normal quantile of a two-sided 95% interval


def wilson(right: int, rows: int, z: float = Z95) -> tuple[float, float]:
    """The Wilson score interval of a proportion (Wilson 1927): unlike p ± z·se it stays inside [0, 1] and
    keeps its coverage for small sets and scores near 0 or 1."""
    if rows == 0:
        return 0.0, 1.0
    p, zz = right / rows, z * z
    centre = (p + zz / (2 * rows)) / (1 + zz / rows)
    half = z * math.sqrt(p * (1 - p) / rows + zz / (4 * rows * rows)) / (1 + zz / rows)
    return max(0.0, centre - half), min(1.0, centre + half)


def mcnemar(only_a: int, only_b: int) -> float:
    """Two-sided exact McNemar p-value: the chance of a split of the discordant requests at least this uneven
    if either run were as likely as the other to be the one right."""
    n = only_a + only_b
    if n == 0:
        return 1.0
    tail = sum(math.comb(n, i) for i in range(min(only_a, only_b) + 1)) / 2 ** n
    return min(1.0, 2 * tail)


def holm(pvalues: list[float]) -> list[float]:
    """Holm's step-down adjustment (Holm 1979): comparing nine styles at once, one of them falls below 0.05 by
    chance about a third of the time; adjusted, the chance that any does stays at 5%."""
    order = sorted(range(len(pvalues)), key=lambda i: pvalues[i])
    adjusted, running = [1.0] * len(pvalues), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(pvalues) - rank) * pvalues[i]))
        adjusted[i] = running
    return adjusted


def rows_digest(pairs: Iterable[tuple[str, str]]) -> str:
    """Identifies the evaluated requests and their order: two reports pair up only on the same set."""
    h = hashlib.sha256()
    for query, target in pairs:
        h.update(json.dumps([query, target], ensure_ascii=False).encode())
    return h.hexdigest()


def outcomes(pairs: list[tuple[str, str]], call: list[bool], page: list[bool], styles: list[str]) -> dict[str, Any]:
    """The per-request record kept in an eval report: '1'/'0' strings (compact for a 13,000-row test split)."""
    return {"rows_sha256": rows_digest(pairs), "call": "".join("1" if x else "0" for x in call),
            "page": "".join("1" if x else "0" for x in page), "style": styles}


def report_path(run_or_report: str | Path, name: str) -> Path:
    """A run directory (its eval-settings-NAME.json) or a report file itself."""
    path = Path(run_or_report)
    return path if path.is_file() else path / f"eval-settings-{name}.json"


def _load(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise TextbookError(f"{path} does not exist: run `textbook eval settings RUN --data SET` on both runs first")
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise TextbookError(f"{path} is not an eval report ({e}): evaluate the run again") from None
    record = report.get("outcomes") if isinstance(report, dict) else None
    if not isinstance(record, dict) or not {"rows_sha256", "call", "page", "style"} <= set(record):
        raise TextbookError(f"{path} has no per-request outcomes (an eval report from before they were kept): "
                            "evaluate the run again")
    if not len(record["call"]) == len(record["page"]) == len(record["style"]):
        raise TextbookError(f"{path}: its per-request outcomes are damaged; evaluate the run again")
    return report


def _pair(a: str, b: str) -> dict[str, Any]:
    """Scores, intervals and McNemar's test of two '1'/'0' outcome strings over the same requests."""
    n = len(a)
    ra, rb = a.count("1"), b.count("1")
    only_a = sum(x == "1" and y == "0" for x, y in zip(a, b))
    only_b = sum(x == "0" and y == "1" for x, y in zip(a, b))
    return {"rows": n, "a": ra / n, "b": rb / n, "a_ci95": list(wilson(ra, n)), "b_ci95": list(wilson(rb, n)),
            "only_a": only_a, "only_b": only_b, "p": mcnemar(only_a, only_b)}


def _line(label: str, f: dict[str, Any]) -> str:
    judged = f.get("p_holm", f["p"])
    verdict = "a difference chance rarely makes" if judged < 0.05 else "within what chance makes"
    held = f", {f['p_holm']:.2g} for all styles at once (Holm)" if "p_holm" in f else ""
    return (f"{label}: A {f['a']:.1%} [{f['a_ci95'][0]:.1%}, {f['a_ci95'][1]:.1%}]  "
            f"B {f['b']:.1%} [{f['b_ci95'][0]:.1%}, {f['b_ci95'][1]:.1%}]  B - A {100 * (f['b'] - f['a']):+.1f} points; "
            f"only A right {f['only_a']}, only B right {f['only_b']}; McNemar p = {f['p']:.2g}{held}: {verdict}")


def _name(path: Path) -> Path:
    return path.parent if path.name.startswith("eval-settings-") else path


def compare(a: str | Path, b: str | Path, name: str = "test") -> Report:
    """Runs (or eval reports) A and B on the set NAME, request by request: the call and the page overall, the
    call by style (its p-values adjusted together)."""
    path_a, path_b = report_path(a, name), report_path(b, name)
    oa, ob = _load(path_a)["outcomes"], _load(path_b)["outcomes"]
    if oa["rows_sha256"] != ob["rows_sha256"]:
        raise TextbookError(f"{path_a} and {path_b} scored different requests (or the same in another order): "
                            "evaluate both runs on the same --data and --split")
    n = len(oa["call"])
    facts: dict[str, Any] = {"set": name, "rows": n, "a": str(path_a), "b": str(path_b)}
    lines = [f"{n} requests of {name}; A = {_name(path_a)}, B = {_name(path_b)}; [95% Wilson intervals]"]
    for key in ("call", "page"):
        facts[key] = _pair(oa[key], ob[key])
        lines.append(_line(key, facts[key]))
    styles = sorted(set(oa["style"]))
    by_style = {}
    for style in styles:
        idx = [i for i, s in enumerate(oa["style"]) if s == style]
        by_style[style] = _pair("".join(oa["call"][i] for i in idx), "".join(ob["call"][i] for i in idx))
    if len(styles) > 1:
        for style, adjusted in zip(styles, holm([by_style[s]["p"] for s in styles])):
            by_style[style]["p_holm"] = adjusted
        lines.append("call by style:")
        lines += [_line(f"  {style} ({by_style[style]['rows']})", by_style[style]) for style in styles]
    facts["call_by_style"] = by_style
    lines.append("These intervals and p-values are the evaluation set's sampling noise for these two models; "
                 "a second training seed moves a run as well (score several seeds to see how much).")
    return Report(facts, lines)
