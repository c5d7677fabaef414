"""Every transport fault the fake server can inject, and how the teacher rides it out (or stops the run)."""

from __future__ import annotations

import asyncio
import time

import pytest

from textbook.errors import TextbookError
from textbook.teacher.client import Teacher, TeacherRejected


def ask(content: str) -> list[dict]:
    return [{"role": "user", "content": content}]


def run(config, body):
    async def main():
        async with Teacher(config, cache_path=None, progress=False) as teacher:
            return await body(teacher), teacher.stats

    return asyncio.run(main())


def one(teacher, prompt="hello"):
    return teacher.complete(ask(prompt), template_sha="t")


def gaps(server) -> list[float]:
    times = [r.time for r in server.chat_requests()]
    return [b - a for a, b in zip(times, times[1:])]


@pytest.mark.parametrize("header", [{"retry_after": 0.3}, {"retry_after_ms": 300}])
def test_429_honours_retry_after(fake_teacher, header):
    fake_teacher.fault("429", times=1, **header)
    c, stats = run(fake_teacher.config(), one)
    assert c.text and stats.rate_limited == 1 and stats.retries == 1
    (gap,) = gaps(fake_teacher)
    assert gap >= 0.3  # waited at least as long as the server asked (backoff alone would be ~10 ms)


def test_429_honours_retry_after_as_an_http_date(fake_teacher):
    fake_teacher.fault("429", times=1, retry_after_date=2)  # whole seconds: the wait is between 1 and 2 s
    run(fake_teacher.config(), one)
    (gap,) = gaps(fake_teacher)
    assert gap >= 1.0


def test_retry_after_pauses_the_other_requests_too(fake_teacher):
    fake_teacher.fault("429", times=1, match="first", retry_after=0.3)

    async def body(t):
        first = asyncio.ensure_future(one(t, "first"))
        await asyncio.sleep(0.1)  # the 429 has arrived: the run is paused
        start = time.monotonic()
        await one(t, "second")
        await first
        return time.monotonic() - start

    waited, _ = run(fake_teacher.config(), body)
    assert waited >= 0.15


@pytest.mark.parametrize("kind", ["500", "503", "malformed", "drop"])
def test_transient_faults_are_retried(fake_teacher, kind):
    fake_teacher.replies = "fine"
    fake_teacher.fault(kind, times=2)
    c, stats = run(fake_teacher.config(), one)
    assert c.text == "fine" and stats.retries == 2 and len(fake_teacher.chat_requests()) == 3


def test_slow_reply_times_out_and_is_retried(fake_teacher):
    fake_teacher.fault("slow", times=1, delay=2.0)
    c, stats = run(fake_teacher.config(timeout_s=0.3), one)
    assert c.text and stats.retries == 1 and len(fake_teacher.chat_requests()) == 2


def test_endpoint_failing_for_good_stops_the_run(fake_teacher):
    fake_teacher.fault("503", times=None)
    with pytest.raises(TextbookError) as info:
        run(fake_teacher.config(max_retries=3), one)
    message = str(info.value)
    assert "failed 4 attempts in a row" in message and "503" in message and "\n" not in message
    assert len(fake_teacher.chat_requests()) == 4


def test_one_poison_request_is_rejected_while_the_run_goes_on(fake_teacher):
    fake_teacher.latency = 0.01
    fake_teacher.fault("500", times=None, match="poison")
    prompts = ["poison"] + [f"fine {i}" for i in range(30)]
    results, stats = run(fake_teacher.config(max_retries=3, concurrency=4), lambda t: t.map(prompts, lambda p: one(t, p)))
    assert isinstance(results[0], TeacherRejected) and results[0].reason == "server_error"
    assert all(r.text for r in results[1:])
    assert stats.rejected == 1


def test_dropped_connections_for_good_stop_the_run(fake_teacher):
    fake_teacher.fault("drop", times=None)
    with pytest.raises(TextbookError, match="connection"):
        run(fake_teacher.config(max_retries=2), one)


def test_bad_key_mid_run_stops_with_one_line_and_no_key(fake_teacher):
    fake_teacher.api_key = "sk-right-key-1111"
    wrong = "sk-wrong-key-2222-secret"
    with pytest.raises(TextbookError) as info:
        run(fake_teacher.config(api_key=wrong), one)
    message = str(info.value)
    assert "rejected the API key (401" in message and "--api-key / OPENAI_API_KEY" in message
    assert wrong not in message and "\n" not in message  # the fake server echoes the key back
    assert len(fake_teacher.chat_requests()) == 1  # no retries on a bad key


def test_unknown_model_mid_run_stops(fake_teacher):
    with pytest.raises(TextbookError, match="404 for model 'nope'"):
        run(fake_teacher.config(model="nope"), one)


def test_insufficient_quota_stops_at_once(fake_teacher):
    fake_teacher.fault("429", times=None, code="insufficient_quota", message="You exceeded your current quota.")
    with pytest.raises(TextbookError, match="no quota left"):
        run(fake_teacher.config(), one)
    assert len(fake_teacher.chat_requests()) == 1


def test_absurd_retry_after_stops_instead_of_stalling(fake_teacher):
    fake_teacher.fault("429", times=None, retry_after=86400)
    with pytest.raises(TextbookError, match="asks to wait 86400s"):
        run(fake_teacher.config(), one)


def test_sustained_429_with_no_progress_stops_the_run(fake_teacher):
    fake_teacher.fault("429", times=None)
    with pytest.raises(TextbookError, match="kept answering 429"):
        run(fake_teacher.config(max_retries=3), one)
    assert len(fake_teacher.chat_requests()) == 4


def test_concurrency_adapts_to_a_server_at_capacity(fake_teacher):
    fake_teacher.latency = 0.02
    fake_teacher.max_in_flight = 4  # more than 4 at once: 429

    async def body(t):
        await t.map(range(150), lambda i: one(t, f"a{i}"))
        squeezed = t.stats.concurrency
        fake_teacher.max_in_flight = None  # capacity is back
        await t.map(range(300), lambda i: one(t, f"b{i}"))
        return squeezed

    squeezed, stats = run(fake_teacher.config(concurrency=32, max_retries=3), body)
    assert stats.completed == 450 and stats.rejected == 0  # nothing lost to the 429s
    assert stats.concurrency_cuts >= 2 and squeezed <= 8  # backed off towards what the server takes
    assert fake_teacher.rate_limited < 150  # and did not hammer it: fewer 429s than jobs
    assert stats.concurrency > squeezed  # then ramped up again


def test_requests_per_minute_paces_the_run(fake_teacher):
    config = fake_teacher.config(requests_per_minute=1200)  # 20/s after a burst of 6 s worth (120)
    start = time.monotonic()
    _, stats = run(config, lambda t: t.map(range(130), lambda i: one(t, f"q{i}")))
    assert time.monotonic() - start >= 0.45  # the 10 past the burst came at 20/s (lower bound only)
    assert stats.completed == 130


def test_tokens_per_minute_charges_the_estimate_then_refunds_the_difference(fake_teacher):
    # 1000 tokens/s, bucket of 6000; each request reserves ~5000 (its max_tokens) but uses ~10.
    async def body(t):
        for i in range(4):
            await one(t, f"q{i}")
        return t._tpm.level, t._tpm.capacity

    (level, capacity), stats = run(fake_teacher.config(tokens_per_minute=60_000, max_tokens=5000), body)
    assert stats.completed == 4
    assert level >= capacity - 200  # what was not used came back; without refunds it would sit ~15,000 below
