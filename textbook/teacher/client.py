"""The teacher client: any OpenAI-compatible endpoint through one shared `openai.AsyncOpenAI`.

The SDK's own retries are off (`max_retries=0`): retrying is done here so that it can also cover
bad replies, feed the adaptive concurrency limit, honour Retry-After for the whole run, and tell a
request that is poison (rejected, the run goes on) from an endpoint that is gone (the run stops).
Requests go through `client.post(..., cast_to=httpx2.Response)` and the JSON is read here: the
typed `chat.completions.create` path cost 0.5-1 ms more per request here (parameter transformation
and pydantic parsing; measured against the fake server at 8 and 64 requests in flight), and reading
the body ourselves is what lets a malformed reply be retried like any other failure.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import random
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Awaitable, Callable, Iterable, TypeVar

import httpx2
import openai

from textbook.errors import ConfigError, TextbookError
from textbook.teacher.cache import ResponseCache, cache_key
from textbook.teacher.check import MODEL_FLAGS, ServerInfo, auth_error, check_endpoint, public_url, quota_error
from textbook.teacher.config import TeacherConfig, require_teacher
from textbook.teacher.ledger import CACHE, OK, REJECTED, Ledger
from textbook.teacher.failures import connection_reason, error_field, one_line, retry_after, server_message
from textbook.teacher.limits import AdaptiveConcurrency, ReaskBudget, TokenBucket, backoff, estimate_tokens
from textbook.teacher.pricing import price_for
from textbook.teacher.stats import Progress, TeacherStats
from textbook.teacher.structured import BadReply, accept, rejects_response_format, response_format, with_instructions
from textbook.teacher.transport import http_client

log = logging.getLogger(__name__)
J = TypeVar("J")
R = TypeVar("R")

MAX_RETRY_AFTER_S = 600.0  # a server asking for longer (a daily quota) stops the run instead of stalling it
RETRY_TEMPERATURE = 0.7  # a re-ask sent at a lower temperature gets the same reply back from a deterministic server
MAX_TOKENS_GROWTH = 4  # after `length`, a re-ask may get up to this many times the first max_tokens
_REFIT = object()  # the request was adapted to what the server supports: send it again at once


@dataclass(frozen=True, slots=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens


@dataclass(frozen=True, slots=True)
class Completion:
    text: str  # the reply as sent (for JSON requests: before parsing)
    parsed: Any  # the JSON value when a json_schema was given, else None
    usage: Usage
    finish_reason: str
    cached: bool
    model: str  # the model that answered, as the server names it
    params: dict[str, Any] = field(default_factory=dict)  # sampling parameters as sent
    latency_s: float = 0.0  # seconds from first send to the accepted reply (as first measured, for cache hits)


class TeacherRejected(Exception):
    """A request that failed for good; the caller keeps it in its rejects.

    `reason` is short and countable ("length", "content_filter", "invalid_json", "schema_mismatch",
    "invalid_output" or a validator's own `reason`, "bad_request", "server_error", ...), `detail`
    says more, `raw` is the last reply text (None when the teacher sent none).
    """

    def __init__(self, reason: str, raw: str | None = None, *, detail: str = "", usage: "Usage | None" = None,
                 params: dict[str, Any] | None = None):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.raw = raw
        self.detail = detail
        self.usage = usage or Usage()  # what every attempt's reply cost together (paid: the reject row says so)
        self.params = params or {}  # the sampling parameters of the last attempt


class Teacher:
    """`async with Teacher(config, cache_path=...) as teacher:` then `check()`, `complete(...)`, `map(...)`."""

    def __init__(self, config: TeacherConfig, *, cache_path: Path | None, ledger_path: Path | None = None,
                 progress_desc: str = "teacher", progress: bool | None = None):
        self.config = require_teacher(config)
        price = price_for(config.model, config.price_file)
        self._price = price or (0.0, 0.0)
        self.stats = TeacherStats(priced=price is not None, concurrency=config.concurrency)
        self._cache_path = Path(cache_path) if cache_path is not None and config.cache else None
        self._ledger_path = Path(ledger_path) if ledger_path is not None else None
        self.ledger: Ledger | None = None
        self._progress_desc, self._progress_enabled = progress_desc, progress
        self._limit = AdaptiveConcurrency(config.concurrency)
        self._timeout_s = config.timeout_s  # raised by check() for a server too slow to finish max_tokens in it
        self._tokens_per_s: float | None = None
        self._timed_out_retry = asyncio.Semaphore(1)  # one retry of a timed-out request in flight at a time
        self._reasks = ReaskBudget()
        self.server = ServerInfo()
        self.notes: list[str] = []  # what the run adapted to, for its summary
        self._rpm = TokenBucket(config.requests_per_minute) if config.requests_per_minute > 0 else None
        self._tpm = TokenBucket(config.tokens_per_minute) if config.tokens_per_minute > 0 else None
        # What this endpoint turned out not to support, learnt from its 400s and remembered for the run.
        self._structured = True
        self._max_tokens_field = "max_tokens"
        self._dropped: set[str] = set()
        self._last_success = 0.0
        self._client: openai.AsyncOpenAI | None = None
        self._cache: ResponseCache | None = None
        self._progress: Progress | None = None

    # ---- lifecycle ---------------------------------------------------------------------------------
    async def __aenter__(self) -> Teacher:
        cfg = self.config
        timeout = httpx2.Timeout(cfg.timeout_s, connect=min(10.0, cfg.timeout_s))
        base_url = cfg.base_url or "https://api.openai.com/v1"
        self._client = openai.AsyncOpenAI(
            api_key=cfg.api_key or "no-key",  # local servers take any key; the SDK insists on one
            base_url=base_url,
            max_retries=0,
            timeout=timeout,
            http_client=http_client(cfg.concurrency, timeout, base_url),
        )
        self._cache = ResponseCache(self._cache_path) if self._cache_path else None
        self.ledger = Ledger(self._ledger_path) if self._ledger_path else None
        self._progress = Progress(self.stats, self._progress_desc, self._progress_enabled)
        return self

    async def __aexit__(self, *exc: object) -> None:
        if self._progress is not None:
            self._progress.close()
        if self._client is not None:
            await self._client.close()
        if self._cache is not None:
            self._cache.close()
        if self.ledger is not None:
            self.ledger.close()
        self._client = self._cache = self._progress = self.ledger = None

    @property
    def client(self) -> openai.AsyncOpenAI:
        """The open client (for the Batch API's files and batches: textbook.teacher.batch)."""
        return self._client

    @property
    def url(self) -> str:
        return public_url(self.config.base_url or "https://api.openai.com/v1")

    async def check(self) -> ServerInfo:
        """Fail fast, in seconds, with one line on what to fix: unreachable endpoint, bad key, unknown model.
        Then start from what the server can take (its slots, its speed) rather than from the defaults."""
        self.server = info = await check_endpoint(self._client, self.config)
        cfg = self.config
        if info.slots and info.slots < self._limit.maximum:
            # More requests than slots wait in the server's queue, and the wait counts against the timeout:
            # 16 in flight on 2 slots cost 94 retries and 15 timeouts for 16 sections (llama.cpp, 1 thread).
            self._limit = AdaptiveConcurrency(info.slots)
            self.stats.concurrency = info.slots
            self.notes.append(f"the teacher serves {info.slots} requests at once: concurrency {info.slots} (asked {cfg.concurrency})")
        if info.tokens_per_s:
            self._tokens_per_s = info.tokens_per_s
            need = self._request_timeout(cfg.max_tokens)
            if need > cfg.timeout_s:
                self.notes.append(f"the teacher writes ~{info.tokens_per_s:.0f} tokens/s: timeout {need:.0f}s for "
                                  f"max_tokens {cfg.max_tokens} (asked {cfg.timeout_s:g}s)")
        if info.context and cfg.max_tokens >= info.context:
            self.notes.append(f"max_tokens {cfg.max_tokens} does not fit the teacher's {info.context}-token context per "
                              "slot: replies stop at what is left after the prompt")
        for note in self.notes:
            log.warning("%s", note)
        return info

    def _request_timeout(self, max_tokens: int) -> float:
        """The configured timeout, or longer when the measured speed says max_tokens takes longer. The speed
        was measured on one request; on a CPU server the requests in flight share it (x concurrency), and
        the margin (x1.5 + 30 s) covers reading the prompt."""
        if not self._tokens_per_s:
            return self._timeout_s
        return max(self._timeout_s, 1.5 * max_tokens * self._limit.maximum / self._tokens_per_s + 30.0)

    # ---- completions ---------------------------------------------------------------------------------
    async def complete(
        self,
        messages: list[dict],
        *,
        template_sha: str,
        json_schema: dict | None = None,
        validate: Callable[[Any], Any] | None = None,
        temperature: float | None = None,
        max_tokens: int | None = None,
        seed: int | None = None,
        stage: str = "teacher",
    ) -> Completion:
        """One reply that passed every check. `validate` gets the parsed JSON (or the text when no schema
        is given) and raises ValueError to have the reply asked again; its return value is ignored.
        Raises TeacherRejected when no acceptable reply came.

        Every reply is cached under (request, attempt number), the bad ones too: a rerun replays the
        same attempts from the cache and pays for none of them, and a fixed validator re-judges them.
        `stage` names the work on the usage ledger (paraphrase, judge, annotate, ...).
        """
        cfg = self.config
        params = self._params(temperature, max_tokens, seed)
        started = time.monotonic()
        reason = detail = raw = None
        first = dict(params)
        spent = [0, 0]
        sent: dict[str, Any] = {}
        try:
            for attempt in range(cfg.output_retries + 1):
                if attempt:
                    if not self._reasks.worth(stage, reason):
                        detail = f"{detail}; {self._reasks.describe(stage, reason)}"
                        attempt -= 1  # this one was not made
                        break
                    last_room = params["max_tokens"]
                    params = _reask(first, params, reason, attempt)
                    if self.server.context:  # more room than a slot holds cannot help
                        params["max_tokens"] = min(params["max_tokens"], max(first["max_tokens"], self.server.context))
                    if reason == "length" and params["max_tokens"] <= last_room:
                        # the reply filled all the room the server gives: asking again in the same room cannot help
                        room = (f"the teacher's slots hold {self.server.context} tokens" if self.server.context
                                else f"max_tokens is at its bound, {MAX_TOKENS_GROWTH}x the first")
                        detail = f"{detail}; not asked again: {room}"
                        attempt -= 1
                        break
                key = hit = None
                if self._cache is not None:
                    key = cache_key(cfg.model, messages, params, template_sha, json_schema, attempt)
                    hit = self._cache.get(key)
                if hit is not None:
                    text, finish, model, sent = hit["text"], hit["finish_reason"], hit["model"], hit["params"]
                    usage, latency = Usage(*hit["usage"]), hit["latency_s"]
                else:
                    if attempt:
                        self.stats.retries += 1
                    text, finish, usage, model, sent = await self._send(messages, params, json_schema, stage, attempt > 0)
                    latency = time.monotonic() - started
                    if key is not None:
                        self._cache.put(key, {"text": text, "finish_reason": finish, "model": model, "params": sent,
                                              "usage": [usage.prompt_tokens, usage.completion_tokens], "latency_s": latency})
                    # Step aside twice before the caller parses and writes this reply, so that the request
                    # which took over the freed slot is sent first. Once is not enough: the wake-ups of
                    # that request and this continuation would alternate in the loop's FIFO with those of
                    # the other replies of the same loop turn, and each waiting request would sit behind
                    # their processing. Measured at c=64 / 200 ms latency: slot hand-over 5.0 -> 1.1 ms,
                    # 62.1 -> 63.2 slots busy, and the replies stop arriving in bursts (latency 215 -> 207 ms).
                    # After the cache write (no fsync: WAL, synchronous=NORMAL): the next request is not
                    # sent before this paid reply is durable, so a kill loses only the replies in flight.
                    await asyncio.sleep(0)
                    await asyncio.sleep(0)
                spent[0] += usage.prompt_tokens
                spent[1] += usage.completion_tokens
                try:
                    if finish in ("length", "content_filter"):
                        limit = f" at max_tokens={sent.get(self._max_tokens_field)}" if finish == "length" else ""
                        raise BadReply(finish, f"the reply stopped with finish_reason={finish}{limit}")
                    parsed = accept(text, json_schema, validate)
                except BadReply as bad:
                    if attempt:
                        self._reasks.record(stage, reason, False)
                    reason, detail, raw = bad.reason, bad.detail, text
                    continue
                if attempt:
                    self._reasks.record(stage, reason, True)
                self.stats.completed += 1
                self.stats.cache_hits += hit is not None
                if hit is not None and self.ledger is not None:
                    self.ledger.record(stage, CACHE)
                return Completion(text, parsed, usage, finish, hit is not None, model, sent, latency)
            tries = attempt + 1
            raise TeacherRejected(reason, raw, detail=f"{detail} ({tries} attempt{'s' if tries > 1 else ''})",
                                  usage=Usage(*spent), params=sent)
        except TeacherRejected as exc:
            if not exc.usage.total_tokens:  # a request that failed for good after earlier paid attempts
                exc.usage, exc.params = Usage(*spent), exc.params or sent
            self.stats.rejected += 1
            if self.ledger is not None:
                self.ledger.record(stage, REJECTED)
            raise
        finally:
            self._progress.advance()

    async def map(self, jobs: Iterable[J], fn: Callable[[J], Awaitable[R]]) -> list[R | TeacherRejected]:
        """`[await fn(job) for job in jobs]`, concurrently (bounded), in order. A job whose fn raises
        TeacherRejected gets the exception as its result; any other exception stops the rest and is raised."""
        jobs = list(jobs)
        self._progress.set_total((self._progress.bar.total or 0) + len(jobs))
        results: list[Any] = [None] * len(jobs)
        pending = iter(enumerate(jobs))

        async def worker() -> None:
            for i, job in pending:
                try:
                    results[i] = await fn(job)
                except TeacherRejected as exc:
                    results[i] = exc

        # Twice the concurrency: workers busy with their own CPU work still leave every slot in use.
        tasks = [asyncio.ensure_future(worker()) for _ in range(min(len(jobs), 2 * self.config.concurrency))]
        try:
            await asyncio.gather(*tasks)
        except BaseException:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        return results

    # ---- one request, with transport retries -------------------------------------------------------
    def _params(self, temperature: float | None, max_tokens: int | None, seed: int | None) -> dict[str, Any]:
        """The sampling parameters of a request's first attempt (part of its cache key)."""
        cfg = self.config
        params: dict[str, Any] = {
            "temperature": cfg.temperature if temperature is None else temperature,
            "top_p": cfg.top_p,
            "max_tokens": cfg.max_tokens if max_tokens is None else max_tokens,
        }
        if seed is not None:
            params["seed"] = seed
        return params

    def first_request(self, messages: list[dict], *, template_sha: str, json_schema: dict | None = None,
                      temperature: float | None = None, max_tokens: int | None = None, seed: int | None = None,
                      stage: str = "teacher", **_: Any) -> tuple[bytes, dict[str, Any], bool]:
        """(cache key, body, already cached) of the first attempt `complete` would make with these arguments:
        what the Batch API sends in its place (textbook.teacher.batch), so that `complete` then replays it."""
        params = self._params(temperature, max_tokens, seed)
        key = cache_key(self.config.model, messages, params, template_sha, json_schema, 0)
        cached = self._cache is not None and self._cache.has(key)
        return key, self._body(messages, params, json_schema), cached

    def store_batch_reply(self, key: bytes, body: dict[str, Any], content: bytes, *, stage: str, ref: str,
                          price_factor: float) -> None:
        """A Batch API reply to the request `body`: on the ledger (once per `ref`, at the batch price), then
        in the cache under `key`, where `complete` finds it as its first attempt."""
        text, finish, prompt_tokens, completion_tokens, model, reported = _read_reply(content)
        estimated = price_factor * (prompt_tokens * self._price[0] + completion_tokens * self._price[1]) / 1e6
        if self.ledger is not None:
            self.ledger.record(stage, OK, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                               cost_usd=reported if reported is not None else (estimated if self.stats.priced else None),
                               cost_reported=reported is not None, ref=ref)
        if self._cache is not None:
            sent = {k: v for k, v in body.items() if k not in ("model", "messages", "response_format")}
            self._cache.put(key, {"text": text, "finish_reason": finish, "model": model or self.config.model, "params": sent,
                                  "usage": [prompt_tokens, completion_tokens], "latency_s": 0.0})

    def _body(self, messages: list[dict], params: dict[str, Any], schema: dict | None) -> dict[str, Any]:
        body: dict[str, Any] = {"model": self.config.model, "messages": messages}
        for name, value in params.items():
            if name not in self._dropped:
                body[self._max_tokens_field if name == "max_tokens" else name] = value
        if schema is not None:
            if self._structured:
                body["response_format"] = response_format(schema)
            else:
                body["messages"] = with_instructions(messages, schema)
        return body

    async def _send(self, messages: list[dict], params: dict[str, Any], schema: dict | None, stage: str, reask: bool):
        """(text, finish_reason, usage, model, sampling params sent) of one answered request."""
        cfg = self.config
        tries = 0  # failures that count against max_retries
        failures = 0  # all failures of this request (sets the backoff)
        since = time.monotonic()  # the run made progress if some request succeeded after this
        first_failure = 0.0
        timed_out = False
        timeout = self._request_timeout(params["max_tokens"])
        while True:
            body = self._body(messages, params, schema)
            estimate = estimate_tokens(body) if self._tpm else 0
            # The server may still be working on a request we gave up on: its retries go one at a time,
            # so abandoned work at the server never grows with the number of requests that timed out.
            async with self._timed_out_retry if timed_out else contextlib.nullcontext():
                epoch = await self._limit.acquire()
                try:
                    if self._rpm:
                        await self._rpm.acquire()
                    if self._tpm:
                        await self._tpm.acquire(estimate)
                    self.stats.requests += 1
                    try:
                        # Serialised here (C json encoder): the SDK would deep-copy and re-encode the dict.
                        content = json.dumps(body, ensure_ascii=False).encode()
                        response = await self._client.post("/chat/completions", content=content, cast_to=httpx2.Response,
                                                           options={"timeout": timeout})
                        reply = _read_reply(response.content)
                    except openai.APIStatusError as exc:
                        failure = self._status_failure(exc, body, epoch)
                    except openai.APIConnectionError as exc:  # APITimeoutError included
                        reason = connection_reason(exc)
                        if reason == "timed out":
                            # A queue at the server is overload as much as a 429 is: fewer in flight.
                            self._limit.overloaded(epoch)
                            self.stats.concurrency, self.stats.concurrency_cuts = self._limit.limit, self._limit.cuts
                            self.stats.timeouts += 1
                            failure = ("timeout", f"no reply within {timeout:.0f}s", None)
                        else:
                            failure = ("connection", reason, None)
                    except BadReply as bad:
                        failure = (bad.reason, bad.detail, None)
                    else:
                        failure = None
                        result = self._succeeded(reply, body, estimate, stage, reask or failures > 0)
                finally:
                    self._limit.release()
            if failure is not None and self.ledger is not None:
                self.ledger.record(stage, "adapted" if failure is _REFIT else failure[0], retry=reask or failures > 0)
            if failure is None:
                return result
            if failure is _REFIT:
                continue
            kind, detail, wait = failure
            failures += 1
            timed_out = timed_out or kind == "timeout"
            first_failure = first_failure or time.monotonic()
            if self._limit.stalled >= cfg.circuit_breaker:
                raise self._broken(kind, detail)
            # A 429 while other requests get through is the server pacing the run, not this request
            # failing: it does not use up the request's retries. Everything else does.
            if not (kind == "rate_limited" and self._last_success > since):
                tries += 1
            since = time.monotonic()
            if tries > cfg.max_retries:
                raise self._gave_up(kind, detail, failures, first_failure)
            self.stats.retries += 1
            if wait is None:
                wait = backoff(failures - 1, cfg.retry_base_s, cfg.retry_max_s)
            else:  # honour Retry-After; the jitter keeps the requests it paused from returning all at once
                wait += random.uniform(0.0, 0.1 * wait)
            await asyncio.sleep(wait)

    def _broken(self, kind: str, detail: str) -> TextbookError:
        """The circuit breaker: overload went on at concurrency 1, round after round, with nothing answered."""
        rounds = self._limit.stalled
        return TextbookError(
            f"the teacher at {self.url} answered nothing in {rounds} rounds at concurrency 1 ({kind}: {detail}): it is "
            "overloaded or rate-limited; rerun later to resume (replies so far are cached), or lower "
            "requests_per_minute / raise timeout_s in [teacher]"
        )

    def _succeeded(self, reply: tuple, body: dict[str, Any], estimate: int, stage: str, retry: bool):
        text, finish, prompt_tokens, completion_tokens, model, reported = reply
        self._last_success = time.monotonic()
        self._limit.succeeded()
        stats = self.stats
        stats.concurrency = self._limit.limit
        stats.prompt_tokens += prompt_tokens
        stats.completion_tokens += completion_tokens
        estimated = (prompt_tokens * self._price[0] + completion_tokens * self._price[1]) / 1e6
        stats.cost_usd += estimated if reported is None else reported
        if self.ledger is not None:  # before the reply reaches the cache: a paid reply is never off the ledger
            cost = reported if reported is not None else (estimated if stats.priced else None)
            self.ledger.record(stage, OK, retry=retry, prompt_tokens=prompt_tokens, completion_tokens=completion_tokens,
                               cost_usd=cost, cost_reported=reported is not None)
        if self._tpm and (prompt_tokens or completion_tokens):
            self._tpm.refund(estimate - prompt_tokens - completion_tokens)
        sent = {k: v for k, v in body.items() if k not in ("model", "messages", "response_format")}
        return text, finish, Usage(prompt_tokens, completion_tokens), model or self.config.model, sent

    def _status_failure(self, exc: openai.APIStatusError, body: dict[str, Any], epoch: int):
        """What an HTTP error means: a retryable (kind, detail, wait), _REFIT, or an exception raised here."""
        status, where, model = exc.status_code, self.url, self.config.model
        said = server_message(exc.body, self.config.api_key)
        wait = retry_after(exc.response.headers)
        if wait is not None and wait > MAX_RETRY_AFTER_S:
            raise TextbookError(f"the teacher at {where} asks to wait {wait:.0f}s before retrying ({status}: {said}): "
                                "rerun later; replies so far are cached")
        if status == 429:
            if (exhausted := quota_error(exc.body, where)) is not None:
                raise exhausted
            self.stats.rate_limited += 1
            self._limit.overloaded(epoch, wait)
            self.stats.concurrency, self.stats.concurrency_cuts = self._limit.limit, self._limit.cuts
            return ("rate_limited", f"429: {said}", wait)
        if status >= 500 or status in (408, 409):
            return ("server_error", f"{status}: {said}", wait)
        if status in (401, 403):
            raise auth_error(status, said, where)
        if status == 404:
            raise ConfigError(
                f"the teacher at {where} answered 404 for model {model!r} ({said}): check {MODEL_FLAGS} and the base URL"
            )
        param = error_field(exc.body, "param")
        if "response_format" in body and rejects_response_format(status, said, param):
            self._structured = False
            log.warning("the teacher does not take response_format (%s): asking for JSON in the prompt instead", said)
            return _REFIT
        lowered = said.lower()
        if param == "max_tokens" and "max_completion_tokens" in lowered and "max_tokens" in body:
            self._max_tokens_field = "max_completion_tokens"  # OpenAI reasoning models
            return _REFIT
        if param in ("temperature", "top_p", "seed") and param in body and "support" in lowered:
            self._dropped.add(param)  # e.g. reasoning models take only the default temperature
            log.warning("the teacher does not take %s (%s): sending requests without it", param, said)
            return _REFIT
        # Azure filters prompts with a 400 whose code is content_filter: the same verdict as finish_reason's.
        reason = "content_filter" if error_field(exc.body, "code") == "content_filter" else "bad_request"
        raise TeacherRejected(reason, None, detail=f"{status}: {said}")

    def _gave_up(self, kind: str, detail: str, failures: int, first_failure: float) -> Exception:
        where, attempts = self.url, f"{failures} attempt{'s' if failures > 1 else ''}"
        if kind == "rate_limited":
            return TextbookError(f"the teacher at {where} kept answering 429 (rate limited) over {attempts}: lower "
                                 "--concurrency or set requests_per_minute / tokens_per_minute; replies so far are cached")
        if self._last_success > first_failure:
            # Other requests were answered while this one kept failing: it is the problem, not the endpoint.
            return TeacherRejected(kind, None, detail=f"{detail} ({attempts})")
        return TextbookError(f"the teacher at {where} failed {attempts} in a row ({kind}: {detail}): is it still up? "
                             "rerun to resume; replies so far are cached")


def _reask(first: dict[str, Any], last: dict[str, Any], reason: str | None, attempt: int) -> dict[str, Any]:
    """The parameters of re-ask `attempt`: never the same request again. Another seed, a temperature at
    which sampling can differ, and after `length` twice the room (up to MAX_TOKENS_GROWTH times the first)."""
    params = dict(last)
    params["seed"] = (first.get("seed") or 0) + attempt * 1_000_003
    params["temperature"] = max(first["temperature"], RETRY_TEMPERATURE)
    if reason == "length":
        params["max_tokens"] = min(2 * last["max_tokens"], MAX_TOKENS_GROWTH * first["max_tokens"])
    return params


def _read_reply(content: bytes) -> tuple[str, str, int, int, str | None, float | None]:
    """(text, finish_reason, prompt_tokens, completion_tokens, model, cost the provider reports) of a chat completion."""
    try:
        data = json.loads(content)
        choice = data["choices"][0]
        text = choice["message"].get("content") or ""
        finish = choice.get("finish_reason") or "stop"
        usage = data.get("usage") or {}
        cost = usage.get("cost")  # OpenRouter and LiteLLM report what the request cost
        return (text, finish, int(usage.get("prompt_tokens") or 0), int(usage.get("completion_tokens") or 0),
                data.get("model"), float(cost) if isinstance(cost, (int, float)) and not isinstance(cost, bool) else None)
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        start = one_line(content[:120].decode("utf-8", "replace"))
        raise BadReply("malformed_response", f"not a chat completion: {start}") from None
