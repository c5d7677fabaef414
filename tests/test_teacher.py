"""The teacher client against the fake server: replies, cache, structured outputs, bad replies, usage and cost."""

from __future__ import annotations

import asyncio
import json

import pytest

from textbook.errors import ConfigError
from textbook.teacher.client import Completion, Teacher, TeacherRejected
from textbook.teacher.config import TeacherConfig

SCHEMA = {"type": "object", "required": ["topics"], "properties": {"topics": {"type": "array", "items": {"type": "string"}}}}


def ask(content: str) -> list[dict]:
    return [{"role": "user", "content": content}]


async def with_teacher(config: TeacherConfig, cache_path, body):
    async with Teacher(config, cache_path=cache_path, progress=False) as teacher:
        return await body(teacher)


def run(config, cache_path, body):
    return asyncio.run(with_teacher(config, cache_path, body))


def test_complete_returns_text_usage_and_params(fake_teacher):
    fake_teacher.replies = {"lists": "Lists are ordered."}
    fake_teacher.api_key = "sk-test-key-0001"
    c = run(fake_teacher.config(), None, lambda t: t.complete(ask("explain lists"), template_sha="t1", seed=7, temperature=0.3))
    assert isinstance(c, Completion)
    assert (c.text, c.finish_reason, c.cached, c.model, c.parsed) == ("Lists are ordered.", "stop", False, "fake-model", None)
    assert c.params == {"temperature": 0.3, "top_p": 0.95, "max_tokens": 2048, "seed": 7}
    assert c.usage.prompt_tokens == len("explain lists") // 4 + 1 and c.usage.completion_tokens == len(c.text) // 4 + 1
    (request,) = fake_teacher.chat_requests()
    assert request.headers["authorization"] == "Bearer sk-test-key-0001"
    assert request.body["messages"] == ask("explain lists") and request.body["seed"] == 7 and "response_format" not in request.body


def test_no_teacher_configured_is_a_config_error():
    with pytest.raises(ConfigError, match="no teacher model configured") as info:
        Teacher(TeacherConfig(), cache_path=None)
    assert info.value.exit_code == 2
    with pytest.raises(ConfigError, match="no API key for api.openai.com"):
        Teacher(TeacherConfig(model="gpt-4o-mini"), cache_path=None)


def test_rerun_is_served_from_the_cache(fake_teacher, tmp_path):
    cache = tmp_path / "teacher.sqlite"
    config = fake_teacher.config()

    async def body(t):
        return await t.map(range(20), lambda i: t.complete(ask(f"question {i}"), template_sha="t", seed=i))

    first = run(config, cache, body)
    sent = len(fake_teacher.chat_requests())
    assert sent == 20 and not any(c.cached for c in first)

    async def again(t):
        out = await body(t)
        return out, t.stats.as_dict()

    second, stats = run(config, cache, again)
    assert len(fake_teacher.chat_requests()) == sent  # nothing sent
    assert all(c.cached for c in second) and [c.text for c in second] == [c.text for c in first]
    assert stats["cache_hits"] == 20 and stats["requests"] == 0 and stats["prompt_tokens"] == 0

    # Anything that changes the request is a miss: sampling params, template hash.
    run(config, cache, lambda t: t.complete(ask("question 0"), template_sha="t", seed=999))
    run(config, cache, lambda t: t.complete(ask("question 0"), template_sha="other", seed=0))
    assert len(fake_teacher.chat_requests()) == sent + 2


def test_no_cache_sends_every_time_and_writes_nothing(fake_teacher, tmp_path):
    cache = tmp_path / "teacher.sqlite"
    config = fake_teacher.config(cache=False)
    for _ in range(2):
        run(config, cache, lambda t: t.complete(ask("same"), template_sha="t"))
    assert len(fake_teacher.chat_requests()) == 2
    assert not cache.exists()


def test_api_key_never_reaches_cache_or_stats(fake_teacher, tmp_path):
    key = "sk-secret-ZX81-do-not-leak"
    fake_teacher.api_key = key
    cache = tmp_path / "teacher.sqlite"

    async def body(t):
        await t.map(range(5), lambda i: t.complete(ask(f"q{i}"), template_sha="t", json_schema=None))
        return json.dumps(t.stats.as_dict()) + t._progress.postfix()

    shown = run(fake_teacher.config(api_key=key), cache, body)
    assert key not in shown
    files = [p for p in tmp_path.iterdir() if p.name.startswith("teacher.sqlite")]
    assert files and all(key.encode() not in p.read_bytes() for p in files)
    assert all(r.headers["authorization"] == f"Bearer {key}" for r in fake_teacher.chat_requests())  # it was used


def test_structured_output_uses_response_format(fake_teacher):
    fake_teacher.replies = '```json\n{"topics": ["loops", "lists"]}\n```'
    c = run(fake_teacher.config(), None, lambda t: t.complete(ask("subtopics"), template_sha="t", json_schema=SCHEMA))
    assert c.parsed == {"topics": ["loops", "lists"]}
    (request,) = fake_teacher.chat_requests()
    assert request.body["response_format"]["type"] == "json_schema"
    assert request.body["response_format"]["json_schema"]["schema"] == SCHEMA


def test_structured_output_falls_back_to_instructions_and_remembers(fake_teacher):
    fake_teacher.response_format = "unsupported"
    fake_teacher.replies = 'Here you go: {"topics": ["a", "b"]} hope it helps'

    async def body(t):
        return [await t.complete(ask(f"subtopics {i}"), template_sha="t", json_schema=SCHEMA) for i in range(3)]

    replies = run(fake_teacher.config(), None, body)
    assert [c.parsed for c in replies] == [{"topics": ["a", "b"]}] * 3
    requests = fake_teacher.chat_requests()
    assert len(requests) == 4  # one 400, then one request per completion: the fallback is remembered
    assert "response_format" in requests[0].body
    for request in requests[1:]:
        assert "response_format" not in request.body
        assert "JSON Schema" in request.body["messages"][-1]["content"]


def test_invalid_json_is_retried_then_rejected_with_raw(fake_teacher):
    fake_teacher.replies = "I would rather not answer in JSON."
    with pytest.raises(TeacherRejected) as info:
        run(fake_teacher.config(output_retries=2), None, lambda t: t.complete(ask("x"), template_sha="t", json_schema=SCHEMA))
    assert info.value.reason == "invalid_json" and info.value.raw == "I would rather not answer in JSON."
    assert len(fake_teacher.chat_requests()) == 3


def test_schema_mismatch_and_validator_reasons(fake_teacher):
    fake_teacher.replies = '{"topics": "not a list"}'
    with pytest.raises(TeacherRejected) as info:
        run(fake_teacher.config(output_retries=0), None, lambda t: t.complete(ask("x"), template_sha="t", json_schema=SCHEMA))
    assert info.value.reason == "schema_mismatch" and "topics" in info.value.detail

    class TooFew(ValueError):
        reason = "too_few_topics"

    def validate(value):
        if len(value["topics"]) < 3:
            raise TooFew("need 3 topics")

    fake_teacher.replies = '{"topics": ["a"]}'
    with pytest.raises(TeacherRejected) as info:
        run(fake_teacher.config(output_retries=1), None,
            lambda t: t.complete(ask("y"), template_sha="t", json_schema=SCHEMA, validate=validate))
    assert info.value.reason == "too_few_topics" and info.value.raw == '{"topics": ["a"]}'


def test_validator_failure_is_asked_again_until_good(fake_teacher):
    answers = iter(["no code here", "```python\nprint(1)\n```"])
    fake_teacher.replies = lambda messages: next(answers)

    def needs_code(text):
        if "```" not in text:
            raise ValueError("no code block")

    async def body(t):
        c = await t.complete(ask("teach"), template_sha="t", validate=needs_code)
        return c, t.stats

    c, stats = run(fake_teacher.config(), None, body)
    assert "print(1)" in c.text and stats.retries == 1 and stats.requests == 2


@pytest.mark.parametrize("kind", ["length", "content_filter"])
def test_length_and_content_filter_are_failures_never_data(fake_teacher, kind):
    fake_teacher.replies = "A complete answer that the fault cuts short."
    fake_teacher.fault(kind, times=None)
    with pytest.raises(TeacherRejected) as info:
        run(fake_teacher.config(output_retries=2), None, lambda t: t.complete(ask("x"), template_sha="t"))
    assert info.value.reason == kind and len(fake_teacher.chat_requests()) == 3
    if kind == "length":
        assert info.value.raw == "A complete answer that the fault cuts short."[:22]
    fake_teacher.clear_faults()
    fake_teacher.fault(kind, times=1)
    c = run(fake_teacher.config(), None, lambda t: t.complete(ask("x"), template_sha="t"))
    assert c.finish_reason == "stop" and c.text == "A complete answer that the fault cuts short."


def test_rejected_attempts_are_replayed_from_the_cache(fake_teacher, tmp_path):
    fake_teacher.fault("length", times=None)
    cache = tmp_path / "teacher.sqlite"
    for _ in range(2):
        with pytest.raises(TeacherRejected, match="length"):
            run(fake_teacher.config(output_retries=1), cache, lambda t: t.complete(ask("x"), template_sha="t"))
    assert len(fake_teacher.chat_requests()) == 2  # the rerun paid for nothing


def test_map_keeps_order_bounds_concurrency_and_returns_rejects(fake_teacher):
    fake_teacher.latency = 0.02
    fake_teacher.replies = lambda messages: messages[-1]["content"].upper()
    fake_teacher.fault("length", times=None, match="bad")
    prompts = [f"item {i}" if i % 10 else f"bad {i}" for i in range(60)]

    async def body(t):
        return await t.map(prompts, lambda p: t.complete(ask(p), template_sha="t")), t.stats

    results, stats = run(fake_teacher.config(concurrency=8, output_retries=0), None, body)
    for prompt, result in zip(prompts, results):
        if prompt.startswith("bad"):
            assert isinstance(result, TeacherRejected) and result.reason == "length"
        else:
            assert result.text == prompt.upper()
    assert fake_teacher.peak_in_flight <= 8
    assert stats.rejected == 6 and stats.completed == 54



def test_a_freed_slot_is_taken_before_the_reply_that_freed_it_is_handed_over(fake_teacher):
    # One slot, two requests: when the first reply comes back, the second request must already have
    # taken the slot (stats.requests counts sends) before complete() returns the first reply to its
    # caller, whose parsing and writing would otherwise keep the slot idle.
    fake_teacher.latency = 0.02

    async def body(t):
        seen = {}

        async def one(i):
            await t.complete(ask(f"q{i}"), template_sha="t")
            seen.setdefault("sent when the first reply was handed over", t.stats.requests)

        await asyncio.gather(one(0), one(1))
        return seen

    seen = run(fake_teacher.config(concurrency=1), None, body)
    assert seen == {"sent when the first reply was handed over": 2}
    assert fake_teacher.peak_in_flight == 1

def test_usage_and_cost_are_counted(fake_teacher):
    fake_teacher.models = ["gpt-4o-mini"]
    fake_teacher.replies = "x" * 400  # 101 completion tokens

    async def body(t):
        await t.map(range(10), lambda i: t.complete(ask("y" * 396), template_sha="t", seed=i))  # 100 prompt tokens
        return t.stats.as_dict(), t._progress.postfix()

    stats, postfix = run(fake_teacher.config(model="gpt-4o-mini"), None, body)
    assert stats["prompt_tokens"] == 1000 and stats["completion_tokens"] == 1010
    assert stats["cost_usd"] == pytest.approx((1000 * 0.15 + 1010 * 0.60) / 1e6)
    assert stats["priced"] and "$0.00" in postfix and "1.0k in" in postfix


def test_unsupported_parameters_are_adapted_once(fake_teacher):
    fake_teacher.fault("400", param="max_tokens", code="unsupported_parameter",
                       message="Unsupported parameter: 'max_tokens' is not supported with this model. Use 'max_completion_tokens' instead.")
    fake_teacher.fault("400", param="temperature", code="unsupported_value",
                       message="Unsupported value: 'temperature' does not support 0.8 with this model.")

    async def body(t):
        return [await t.complete(ask(f"q{i}"), template_sha="t") for i in range(2)]

    first, second = run(fake_teacher.config(), None, body)
    last = fake_teacher.chat_requests()[-1].body
    assert "max_tokens" not in last and last["max_completion_tokens"] == 2048 and "temperature" not in last
    assert second.params == {"top_p": 0.95, "max_completion_tokens": 2048}
    assert len(fake_teacher.chat_requests()) == 4


def test_other_bad_requests_are_rejected_at_once(fake_teacher):
    fake_teacher.fault("400", message="This model's maximum context length is 8192 tokens.", param="messages")
    with pytest.raises(TeacherRejected) as info:
        run(fake_teacher.config(), None, lambda t: t.complete(ask("huge"), template_sha="t"))
    assert info.value.reason == "bad_request" and "context length" in info.value.detail and info.value.raw is None
    assert len(fake_teacher.chat_requests()) == 1


def test_fake_server_serves_64_requests_at_once(fake_teacher):
    fake_teacher.latency = 0.1
    run(fake_teacher.config(concurrency=64), None, lambda t: t.map(range(128), lambda i: t.complete(ask(f"q{i}"), template_sha="t")))
    assert fake_teacher.peak_in_flight == 64 and fake_teacher.served == 128


def test_progress_bar_shows_tokens_and_cost_on_stderr(fake_teacher, capsys):
    fake_teacher.models = ["gpt-4o"]

    async def body():
        async with Teacher(fake_teacher.config(model="gpt-4o"), cache_path=None, progress=True, progress_desc="demo") as t:
            await t.map(range(3), lambda i: t.complete(ask(f"q{i}"), template_sha="t"))

    asyncio.run(body())
    err = capsys.readouterr().err
    assert "demo" in err and "3/3" in err and "tok " in err and "$0.00" in err and "hit 0" in err


def test_azure_prompt_filter_is_a_content_filter_reject(fake_teacher):
    fake_teacher.fault("400", code="content_filter", message="The response was filtered due to the prompt triggering "
                       "Azure OpenAI's content management policy.")
    with pytest.raises(TeacherRejected) as info:
        run(fake_teacher.config(), None, lambda t: t.complete(ask("x"), template_sha="t"))
    assert info.value.reason == "content_filter" and len(fake_teacher.chat_requests()) == 1
