"""The usage ledger: counts by stage and in all, costs reported / estimated / unknown, every run added once."""

from __future__ import annotations

import asyncio

import pytest

from tests.fakeserver import FakeServer
from textbook.teacher.client import Teacher, TeacherRejected
from textbook.teacher.ledger import Ledger, describe


def test_totals_by_stage_and_cost_kinds(tmp_path):
    book = Ledger(tmp_path / "l.sqlite")
    book.record("paraphrase", "ok", prompt_tokens=100, completion_tokens=20, cost_usd=0.002)
    book.record("paraphrase", "timeout", retry=False)
    book.record("paraphrase", "ok", retry=True, prompt_tokens=100, completion_tokens=30, cost_usd=0.003)
    book.record("paraphrase", "cache")
    book.record("judge", "ok", prompt_tokens=50, completion_tokens=5, cost_usd=None)  # an unpriced model
    book.record("judge", "rejected")
    book.close()
    totals = Ledger(tmp_path / "l.sqlite").totals()  # reopened: it is a file, not process memory
    para, judge, total = totals["stages"]["paraphrase"], totals["stages"]["judge"], totals["total"]
    assert (para["sent"], para["succeeded"], para["failed"], para["retried"], para["from_cache"]) == (3, 2, 1, 1, 1)
    assert para["failures"] == {"timeout": 1} and para["cost_usd"] == pytest.approx(0.005) and para["cost_is"] == "estimated"
    assert judge["cost_usd"] is None and judge["cost_is"] == "unknown" and judge["rejected"] == 1
    assert (total["sent"], total["prompt_tokens"], total["completion_tokens"]) == (4, 250, 55) and total["cost_is"] == "unknown"
    lines = describe(totals)
    assert lines[0].startswith("  teacher judge: 1 requests sent") and "failed: timeout 1" in lines[1]
    assert lines[-1].startswith("  teacher, all runs into this output: 4 requests sent (3 answered, 1 retries; failed: timeout 1)")


def test_the_client_records_every_request_reply_and_rejection(tmp_path):
    def reply(messages):
        return "fine" if "a" in messages[-1]["content"] else {"content": "x" * 400, "finish_reason": "stop"}

    with FakeServer(reply, models=("gpt-4o-mini",)) as server:
        server.fault("500", times=1, match="a")
        server.fault("length", times=None, match="b")

        async def main():
            async with Teacher(server.config(output_retries=1), cache_path=tmp_path / "c.sqlite",
                               ledger_path=tmp_path / "l.sqlite", progress=False) as teacher:
                await teacher.complete([{"role": "user", "content": "a"}], template_sha="t", stage="one")
                with pytest.raises(TeacherRejected):
                    await teacher.complete([{"role": "user", "content": "b"}], template_sha="t", stage="two")
                await teacher.complete([{"role": "user", "content": "a"}], template_sha="t", stage="one")  # cached
                return teacher.ledger.totals()

        totals = asyncio.run(main())
    one, two = totals["stages"]["one"], totals["stages"]["two"]
    assert (one["sent"], one["succeeded"], one["failures"], one["from_cache"]) == (2, 1, {"server_error": 1}, 1)
    assert (two["sent"], two["succeeded"], two["rejected"], two["retried"]) == (2, 2, 1, 1)  # a length reply is paid
    assert one["cost_is"] == "estimated" and one["cost_usd"] > 0  # gpt-4o-mini is in the price table
    assert totals["total"]["sent"] == server.served == 4
