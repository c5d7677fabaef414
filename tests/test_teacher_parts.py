"""The teacher's pieces on their own: JSON extraction, Retry-After, prices, token buckets, AIMD, redaction."""

from __future__ import annotations

import asyncio
import email.utils
import socket
import time

import pytest

from textbook.errors import ConfigError, TextbookError
from textbook.teacher.cache import ResponseCache, cache_key
from textbook.teacher.failures import connection_reason, one_line, retry_after, server_message
from textbook.teacher.limits import AdaptiveConcurrency, TokenBucket, backoff
from textbook.teacher.pricing import price_for
from textbook.teacher.structured import check_schema, extract_json, rejects_response_format, with_instructions


# ---- structured outputs ------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text, value",
    [
        ('{"a": 1}', {"a": 1}),
        ('  [1, 2]\n', [1, 2]),
        ('```json\n{"a": "x"}\n```', {"a": "x"}),
        ('Sure! Here it is:\n```\n{"a": [1, {"b": 2}]}\n```\nAnything else?', {"a": [1, {"b": 2}]}),
        ('The answer is {"a": "} tricky {"} and that is all.', {"a": "} tricky {"}),
        ('noise {not json} then {"ok": true}', {"ok": True}),
    ],
)
def test_extract_json_is_tolerant(text, value):
    assert extract_json(text) == value


@pytest.mark.parametrize("text", ["", "   ", "no json here", '{"a": 1', "```json\n{oops}\n```"])
def test_extract_json_raises_value_error(text):
    with pytest.raises(ValueError):
        extract_json(text)


def test_check_schema_names_the_place():
    schema = {"type": "object", "required": ["items"], "properties": {"items": {"type": "array", "items": {"type": "string"}}}}
    check_schema({"items": ["a", "b"]}, schema)
    with pytest.raises(ValueError, match="items/1"):
        check_schema({"items": ["a", 2]}, schema)
    with pytest.raises(ValueError, match="required"):
        check_schema({}, schema)


def test_with_instructions_appends_schema_without_mutating():
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "list fruit"}]
    out = with_instructions(messages, {"type": "array"})
    assert messages[1]["content"] == "list fruit"
    assert out[1]["content"].startswith("list fruit") and '{"type": "array"}' in out[1]["content"]
    assert out[0] == messages[0]


def test_rejects_response_format():
    assert rejects_response_format(400, "response_format is not supported", None)
    assert rejects_response_format(400, "Unrecognized request argument", "response_format")
    assert rejects_response_format(400, "json_schema type not allowed", None)
    assert not rejects_response_format(400, "maximum context length exceeded", "messages")
    assert not rejects_response_format(500, "response_format broke us", None)


# ---- Retry-After -------------------------------------------------------------------------------------
def test_retry_after_forms():
    assert retry_after({"retry-after": "2"}) == 2.0
    assert retry_after({"retry-after": "0.25"}) == 0.25
    assert retry_after({"retry-after-ms": "150", "retry-after": "9"}) == 0.15  # ms is the precise one
    assert retry_after({}) is None
    assert retry_after({"retry-after": "soon"}) is None
    assert retry_after({"retry-after": "-3"}) == 0.0
    now = 1_700_000_000.0
    date = email.utils.formatdate(now + 7, usegmt=True)
    assert retry_after({"retry-after": date}, now=now) == pytest.approx(7.0, abs=1.0)
    assert retry_after({"retry-after": email.utils.formatdate(now - 60, usegmt=True)}, now=now) == 0.0


# ---- pricing ---------------------------------------------------------------------------------------------
def test_prices_by_family_and_prefix():
    assert price_for("gpt-4o") == (2.50, 10.00)
    assert price_for("gpt-4o-2024-08-06") == (2.50, 10.00)
    assert price_for("gpt-4o-mini-2024-07-18") == (0.15, 0.60)  # the longest family wins
    assert price_for("gpt-4-0613") == (30.00, 60.00)
    assert price_for("openai/gpt-4.1-mini") == (0.40, 1.60)
    assert price_for("llama3.1:8b") is None


def test_price_file_overrides(tmp_path):
    toml = tmp_path / "prices.toml"
    toml.write_text('[gpt-4o]\ninput = 1.0\noutput = 2.0\n\n["my-deployment"]\ninput = 3\noutput = 4\n')
    assert price_for("gpt-4o", toml) == (1.0, 2.0)
    assert price_for("my-deployment", toml) == (3.0, 4.0)
    js = tmp_path / "prices.json"
    js.write_text('{"local": {"input": 0, "output": 0.5}}')
    assert price_for("local", js) == (0.0, 0.5)
    js.write_text('{"local": {"input": "free"}}')
    with pytest.raises(ConfigError, match="numeric `input` and `output`"):
        price_for("local", js)
    with pytest.raises(ConfigError, match="cannot be read"):
        price_for("x", tmp_path / "missing.toml")


# ---- limits ------------------------------------------------------------------------------------------------
def test_token_bucket_paces_after_the_burst():
    async def main():
        bucket = TokenBucket(per_minute=6000)  # 100/s, burst of 6 s = 600
        start = time.monotonic()
        for _ in range(int(bucket.capacity)):
            await bucket.acquire()
        burst = time.monotonic() - start
        for _ in range(20):
            await bucket.acquire()
        return burst, time.monotonic() - start

    burst, total = asyncio.run(main())
    assert total - burst >= 0.18  # 20 more at 100/s: no faster than the rate (lower bound only)


def test_token_bucket_lets_an_oversized_request_through_into_debt():
    async def main():
        bucket = TokenBucket(per_minute=600)  # capacity 60
        await asyncio.wait_for(bucket.acquire(500), 1.0)  # bigger than the bucket: passes when full
        assert bucket.level < 0
        bucket.refund(1000)
        assert bucket.level == bucket.capacity

    asyncio.run(main())


def test_adaptive_concurrency_halves_once_per_window_and_ramps_up():
    limit = AdaptiveConcurrency(16)
    limit.overloaded(epoch=0)
    assert limit.limit == 8
    limit.overloaded(epoch=0)  # another 429 from a request sent before the cut: same event
    assert limit.limit == 8
    limit.overloaded(epoch=limit.epoch, retry_after=None)
    assert limit.limit == 4 and limit.cuts == 2
    for _ in range(4):
        limit.succeeded()
    assert limit.limit == 5  # +1 after a window of successes
    for _ in range(200):
        limit.succeeded()
    assert limit.limit == 16  # never above the configured maximum
    for _ in range(10):
        limit.overloaded(epoch=limit.epoch)
    assert limit.limit == 1  # never below one


def test_adaptive_concurrency_bounds_in_flight():
    async def main():
        limit = AdaptiveConcurrency(3)
        peak = 0

        async def job():
            nonlocal peak
            await limit.acquire()
            peak = max(peak, limit.in_flight)
            await asyncio.sleep(0.005)
            limit.release()

        await asyncio.gather(*(job() for _ in range(30)))
        limit.overloaded(epoch=limit.epoch)  # limit 1 from now on
        peak = 0
        await asyncio.gather(*(job() for _ in range(10)))
        return peak

    assert asyncio.run(main()) == 1


def test_adaptive_concurrency_pauses_for_retry_after():
    async def main():
        limit = AdaptiveConcurrency(4)
        limit.overloaded(epoch=0, retry_after=0.2)
        start = time.monotonic()
        await limit.acquire()
        return time.monotonic() - start

    assert asyncio.run(main()) >= 0.19


def test_backoff_is_full_jitter_under_the_cap():
    for attempt in range(12):
        for _ in range(50):
            assert 0.0 <= backoff(attempt, 0.5, 8.0) <= min(8.0, 0.5 * 2**attempt)


# ---- messages and secrets ----------------------------------------------------------------------------------
def test_one_line_redacts_keys_and_folds_lines():
    text = one_line("bad key sk-live-abcdef123456\nsee   docs", secret="hunter2-secret")
    assert "\n" not in text and "sk-live-abcdef123456" not in text and "see docs" in text
    assert "hunter2-secret" not in one_line("your key hunter2-secret is wrong", secret="hunter2-secret")
    assert server_message({"message": "model not found"}) == "model not found"
    assert server_message({"error": "model 'x' not found"}) == "model 'x' not found"
    assert server_message(None) == "no message"


def test_connection_reason_reads_the_chain():
    def chained(*excs):
        for outer, inner in zip(excs, excs[1:]):
            outer.__cause__ = inner
        return excs[0]

    assert connection_reason(chained(RuntimeError("Connection error."), OSError("x"), ConnectionRefusedError(111, "refused"))) == "connection refused"
    assert connection_reason(chained(RuntimeError("Connection error."), socket.gaierror(-2, "Name or service not known"))) == "host name not found"
    assert "ReadError" in connection_reason(chained(RuntimeError("Connection error."), type("ReadError", (Exception,), {})("peer closed")))


# ---- cache ------------------------------------------------------------------------------------------------------
def test_cache_key_covers_every_part():
    base = dict(model="m", messages=[{"role": "user", "content": "hi"}], params={"temperature": 0.5}, template_sha="t", json_schema=None)
    key = cache_key(**base)
    assert len(key) == 32 and cache_key(**base) == key
    for change in (dict(model="n"), dict(messages=[{"role": "user", "content": "ho"}]), dict(params={"temperature": 0.6}),
                   dict(template_sha="u"), dict(json_schema={"type": "object"})):
        assert cache_key(**{**base, **change}) != key
    assert cache_key(**base, attempt=1) != key


def test_cache_round_trip_and_corrupt_file(tmp_path):
    cache = ResponseCache(tmp_path / "c" / "teacher.sqlite")
    cache.put(b"k" * 32, {"text": "héllo"})
    assert cache.get(b"k" * 32) == {"text": "héllo"} and cache.get(b"x" * 32) is None
    cache.close()
    bad = tmp_path / "bad.sqlite"
    bad.write_bytes(b"this is not a database at all" * 100)
    with pytest.raises(TextbookError, match="--no-cache"):
        ResponseCache(bad)


def test_proxy_or_url_credentials_keep_the_sdk_default_client(monkeypatch):
    import httpx2

    from openai._vendor.httpx_aiohttp import AiohttpTransport

    from textbook.teacher.transport import http_client

    for name in ("HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY", "http_proxy", "https_proxy", "all_proxy"):
        monkeypatch.delenv(name, raising=False)
    client = http_client(20, httpx2.Timeout(5.0))
    assert isinstance(client._transport, AiohttpTransport) and client._transport.limits.max_connections == 20
    assert http_client(20, httpx2.Timeout(5.0), "http://user:pw@127.0.0.1:8000/v1") is None  # aiohttp refuses URL credentials
    monkeypatch.setenv("HTTPS_PROXY", "http://proxy.example:3128")
    assert http_client(20, httpx2.Timeout(5.0)) is None  # the default client honours the proxy; ours would not
