"""The client adapts to the server it meets: slots and speed from a llama.cpp-like server, re-asks that
change what they send, timeouts that cut concurrency, a circuit breaker, a model name that must be real."""

from __future__ import annotations

import asyncio
import time

import pytest

from tests.fakeserver import FakeServer
from textbook.errors import ConfigError, TextbookError
from textbook.teacher.client import Teacher, TeacherRejected


def run(config, coro_fn):
    async def main():
        async with Teacher(config, cache_path=None, progress=False) as teacher:
            return await coro_fn(teacher)

    return asyncio.run(main())


def ask(teacher, text="hello", **kwargs):
    return teacher.complete([{"role": "user", "content": text}], template_sha="t", **kwargs)


def test_a_wrong_model_name_is_refused_by_a_server_that_answers_to_any_name():
    with FakeServer("OK", models=("/models/SmolLM2-135M-Instruct.Q4_1.gguf",), slots=2) as server:
        with pytest.raises(ConfigError, match=r"does not serve model 'gpt-4o-mini': it answered as '/models/SmolLM2"):
            run(server.config(model="gpt-4o-mini"), lambda t: t.check())
        # the file's name, with or without .gguf, names the listed model
        for name in ("SmolLM2-135M-Instruct.Q4_1", "SmolLM2-135M-Instruct.Q4_1.gguf"):
            info = run(server.config(model=name), lambda t: t.check())
            assert info.kind == "llamacpp" and info.slots == 2


def test_the_check_starts_at_the_servers_slots_and_a_timeout_for_its_speed():
    with FakeServer("OK", models=("m",), slots=2, tokens_per_s=500.0) as server:
        async def check(teacher):
            await teacher.check()
            return teacher._limit.limit, teacher._request_timeout(2048), teacher.notes

        limit, timeout, notes = run(server.config(concurrency=16, timeout_s=1.0), check)
    assert limit == 2 and any("2 requests at once: concurrency 2 (asked 16)" in n for n in notes)
    assert timeout == pytest.approx(1.5 * 2048 * 2 / 500 + 30)  # max_tokens at the measured speed shared by 2 slots
    assert [r.path for r in server.requests][:2] == ["/v1/models", "/props"]


def test_a_reask_changes_what_it_sends():
    with FakeServer("a reply that is long enough to be cut short", models=("m",)) as server:
        server.fault("length", times=1)
        reply = run(server.config(temperature=0.0, max_tokens=100), lambda t: ask(t, seed=5))
        first, second = [r.body for r in server.chat_requests()]
    assert reply.finish_reason == "stop"
    assert (first["temperature"], first["max_tokens"], first["seed"]) == (0.0, 100, 5)
    # a deterministic server would give the same reply to the same request: another seed, a temperature
    # at which sampling can differ, and after `length` more room
    assert second["temperature"] >= 0.7 and second["max_tokens"] == 200 and second["seed"] != 5


def test_length_growth_is_bounded():
    with FakeServer("x" * 4000, models=("m",)) as server:  # ~1,000 tokens: never fits 16 << 2
        with pytest.raises(TeacherRejected) as info:
            run(server.config(max_tokens=16, output_retries=3), lambda t: ask(t))
        sent = [r.body["max_tokens"] for r in server.chat_requests()]
    assert info.value.reason == "length" and sent == [16, 32, 64]  # never the same room twice
    assert "not asked again: max_tokens is at its bound, 4x the first" in info.value.detail


def test_timeouts_cut_concurrency_and_retries_of_timed_out_requests_do_not_pile_up():
    # 2 slots, 8 requests at concurrency 8, each reply takes 0.4 s: the queue makes most of them time out at 0.6 s
    with FakeServer("OK", models=("m",), slots=2, latency=0.4) as server:
        async def burst(teacher):
            results = await asyncio.gather(*(ask(teacher, f"q{i}") for i in range(8)), return_exceptions=True)
            return results, teacher.stats

        results, stats = run(server.config(concurrency=8, timeout_s=0.6, max_retries=8, retry_base_s=0.01), burst)
    assert all(not isinstance(r, BaseException) for r in results), results
    assert stats.timeouts >= 1 and stats.concurrency_cuts >= 1 and stats.concurrency < 8
    # every request answered; the abandoned work at the server stays bounded (8 asked, a few re-sent)
    assert server.served <= 8 + stats.timeouts


def test_the_circuit_breaker_stops_a_run_that_gets_nothing_at_concurrency_1():
    with FakeServer("OK", models=("m",)) as server:
        server.fault("429", times=None)
        started = time.monotonic()
        with pytest.raises(TextbookError, match=r"answered nothing in 5 rounds at concurrency 1 \(rate_limited"):
            run(server.config(concurrency=4, max_retries=100, retry_base_s=0.01, retry_max_s=0.02),
                lambda t: asyncio.gather(*(ask(t, f"q{i}") for i in range(4))))
    assert time.monotonic() - started < 10 and server.served < 40


def test_reasks_that_never_help_stop_being_sent():
    # a teacher that rambles past any max_tokens (SmolLM2 on llama.cpp): re-asking after `length` cannot help
    with FakeServer("x" * 4000, models=("m",)) as server:
        async def many(teacher):
            results = []
            for i in range(12):
                try:
                    results.append(await ask(teacher, f"q{i}"))
                except TeacherRejected as exc:
                    results.append(exc)
            return results

        results = run(server.config(max_tokens=16, output_retries=2), many)
    assert all(isinstance(r, TeacherRejected) and r.reason == "length" for r in results)
    # 4 items re-asked twice (8 re-asks, none helped), then every later item asked once: 4 * 3 + 8 = 20, not 36
    assert server.served == 20
    assert "re-asks after length stopped: 0 of 8 helped" in results[-1].detail and "(1 attempt)" in results[-1].detail


def test_a_reply_that_filled_the_slots_context_is_not_asked_again_in_the_same_room():
    # llama.cpp with 2,048-token slots and max_tokens 2,048: a `length` reply had all the room there is
    with FakeServer("x" * 20_000, models=("m",), slots=2, context=2048) as server:
        async def one(teacher):
            await teacher.check()
            try:
                await ask(teacher)
            except TeacherRejected as exc:
                return exc

        rejected = run(server.config(max_tokens=2048, output_retries=2), one)
        sent = [r.body["max_tokens"] for r in server.chat_requests() if r.body.get("max_tokens") == 2048]
    assert rejected.reason == "length" and "not asked again: the teacher's slots hold 2048 tokens" in rejected.detail
    assert sent == [2048] and "(1 attempt)" in rejected.detail
    # with room to grow (max_tokens below the context), a `length` reply is still asked again with more
    with FakeServer("x" * 20_000, models=("m",), slots=2, context=2048) as server:
        async def grow(teacher):
            await teacher.check()
            with pytest.raises(TeacherRejected):
                await ask(teacher)

        run(server.config(max_tokens=512, output_retries=2), grow)
        sizes = [r.body["max_tokens"] for r in server.chat_requests() if r.body["messages"][-1]["content"] == "hello"]
    assert sizes == [512, 1024, 2048]
