"""How sure a settings score is: Wilson intervals, McNemar's exact test, `textbook eval compare`."""

from __future__ import annotations

import json
import random

import pytest
from scipy.stats import binomtest

from tests.clirun import run_cli
from textbook.errors import TextbookError
from textbook.mu.compare import compare, mcnemar, outcomes, wilson


def test_wilson_matches_the_textbook_values_and_stays_inside_0_1():
    assert wilson(5, 10) == pytest.approx((0.2366, 0.7634), abs=1e-4)
    assert wilson(0, 10) == pytest.approx((0.0, 0.2775), abs=1e-4)  # p ± z·se would give [0, 0]
    assert wilson(10, 10) == pytest.approx((0.7225, 1.0), abs=1e-4)
    lo, hi = wilson(230, 340)  # the real-style set: 340 requests at ~68% is about ±5 points
    assert 0.09 < hi - lo < 0.11 and lo < 230 / 340 < hi


def test_mcnemar_is_the_exact_two_sided_binomial_test_on_the_discordant_requests():
    rng = random.Random(0)
    for _ in range(40):
        a, b = rng.randint(0, 30), rng.randint(0, 30)
        if a + b:
            assert mcnemar(a, b) == pytest.approx(binomtest(a, a + b, 0.5).pvalue)
    assert mcnemar(0, 0) == 1.0 and mcnemar(3, 3) == 1.0
    assert mcnemar(0, 6) == pytest.approx(2 / 64)


def _report(path, call: str, page: str, styles: list[str], queries: list[str]) -> str:
    pairs = [(q, '{"action":"on","id":"x"}') for q in queries]
    record = outcomes(pairs, [c == "1" for c in call], [p == "1" for p in page], styles)
    path.write_text(json.dumps({"rows": len(call), "outcomes": record}), encoding="utf-8")
    return str(path)


def test_compare_pairs_two_runs_request_by_request(tmp_path, capsys):
    queries = [f"request {i}" for i in range(40)]
    styles = ["indirect"] * 20 + ["short"] * 20
    # A and B agree on 30 requests; B alone gets 8 right, A alone 2 (all of them indirect)
    a = "1" * 2 + "0" * 8 + "1" * 20 + "0" * 10
    b = "0" * 2 + "1" * 8 + "1" * 20 + "0" * 10
    ra = _report(tmp_path / "a.json", a, "1" * 40, styles, queries)
    rb = _report(tmp_path / "b.json", b, "1" * 40, styles, queries)
    result = compare(ra, rb, "mine")
    call = result["call"]
    assert (call["only_a"], call["only_b"]) == (2, 8) and call["a"] == 22 / 40 and call["b"] == 28 / 40
    assert call["p"] == pytest.approx(binomtest(2, 10, 0.5).pvalue)
    assert result["page"]["only_a"] == result["page"]["only_b"] == 0 and result["page"]["p"] == 1.0
    by_style = result["call_by_style"]
    assert by_style["short"]["p"] == 1.0 and by_style["indirect"]["only_b"] == 8
    assert by_style["indirect"]["p_holm"] == pytest.approx(min(1.0, 2 * by_style["indirect"]["p"]))
    code, out, _ = run_cli(capsys, "eval", "compare", ra, rb, "--set", "mine")
    assert code == 0 and "only A right 2, only B right 8" in out and "+15.0 points" in out
    code, out, _ = run_cli(capsys, "eval", "compare", ra, rb, "--set", "mine", "--json")
    assert code == 0 and json.loads(out)["call"]["only_b"] == 8

    other = _report(tmp_path / "c.json", a, "1" * 40, styles, [q + "!" for q in queries])
    with pytest.raises(TextbookError, match="different requests"):
        compare(ra, other)
    (tmp_path / "old.json").write_text(json.dumps({"rows": 40, "exact_match": 0.5}))
    code, _, err = run_cli(capsys, "eval", "compare", ra, str(tmp_path / "old.json"))
    assert code != 0 and "evaluate the run again" in err and "Traceback" not in err
    code, _, err = run_cli(capsys, "eval", "compare", str(tmp_path), ra, "--set", "realstyle")
    assert code != 0 and "eval-settings-realstyle.json does not exist" in err


def test_holm_adjusts_several_p_values_together():
    from textbook.mu.compare import holm

    assert holm([0.01, 0.04, 0.03, 0.5]) == pytest.approx([0.04, 0.09, 0.09, 0.5])
    assert holm([0.016] + [1.0] * 8) == pytest.approx([0.144] + [1.0] * 8)  # one style in nine: not below 0.05
