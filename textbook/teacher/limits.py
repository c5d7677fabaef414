"""Client-side limits on the teacher: token buckets (requests/min, tokens/min) and an adaptive concurrency cap.

All of it lives on one asyncio event loop, so plain counters need no locks; only waiters queue.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from typing import Any

# A bucket holds this many seconds of its rate. A whole minute would let a run open with a minute's
# quota in one burst, and providers enforce per-minute limits over shorter windows (OpenAI: "60,000
# requests/minute may be enforced as 1,000 requests/second"), so the burst is kept to a tenth of it.
BURST_S = 6.0


class TokenBucket:
    """Refills `per_minute / 60` per second up to a burst; `acquire(n)` waits until `n` fit.

    A request bigger than the whole bucket (a long prompt on a small tokens/min quota) goes through
    once the bucket is full and leaves it in debt, instead of waiting forever.
    """

    def __init__(self, per_minute: float):
        self.rate = per_minute / 60.0
        self.capacity = max(1.0, self.rate * BURST_S)
        self.level = self.capacity
        self._updated = time.monotonic()
        self._lock = asyncio.Lock()  # first come, first served among waiters

    def _refill(self) -> None:
        now = time.monotonic()
        self.level = min(self.capacity, self.level + (now - self._updated) * self.rate)
        self._updated = now

    async def acquire(self, n: float = 1.0) -> None:
        async with self._lock:
            self._refill()
            need = min(n, self.capacity)
            while self.level < need:
                await asyncio.sleep((need - self.level) / self.rate)
                self._refill()
            self.level -= n

    def refund(self, n: float) -> None:
        """Give back an over-estimate (n > 0) or charge an under-estimate (n < 0) once usage is known."""
        self._refill()
        self.level = min(self.capacity, self.level + n)


class AdaptiveConcurrency:
    """At most `limit` requests in flight; AIMD like TCP congestion control.

    Overload halves the limit, once per window: a 429, and also a request that timed out, since a
    local server (llama.cpp, vLLM, Ollama) shows overload as a queue, not as 429s. Failures of
    requests sent before the last cut are the same congestion event, so 64 simultaneous 429s cut
    once, not 64 times. After `limit` successes in a row the limit grows by one, back up to `maximum`.
    A Retry-After pauses every new send until it has passed, so the run waits as told instead of
    sending its other requests into the same wall. `stalled` counts the cuts that found the limit
    already at its minimum since the last success: the circuit breaker's input.
    """

    def __init__(self, maximum: int, minimum: int = 1):
        self.maximum = max(1, maximum)
        self.minimum = max(1, min(minimum, self.maximum))
        self.limit = self.maximum
        self.in_flight = 0
        self.epoch = 0  # bumped at every cut
        self.cuts = 0
        self._streak = 0
        self.stalled = 0
        self._paused_until = 0.0
        self._waiters: deque[asyncio.Future] = deque()

    async def acquire(self) -> int:
        """Take a slot; returns the epoch it was taken in (pass it to `rate_limited`)."""
        while (wait := self._paused_until - time.monotonic()) > 0:
            await asyncio.sleep(wait)
        if self.in_flight < self.limit and not self._waiters:
            self.in_flight += 1
            return self.epoch
        waiter = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                self.release()  # the slot was handed over just as we were cancelled
            else:
                self._waiters.remove(waiter)
            raise
        return self.epoch

    def release(self) -> None:
        self.in_flight -= 1
        self._wake()

    def _wake(self) -> None:
        while self._waiters and self.in_flight < self.limit:
            waiter = self._waiters.popleft()
            if not waiter.done():
                self.in_flight += 1
                waiter.set_result(None)

    def succeeded(self) -> None:
        self.stalled = 0
        self._streak += 1
        if self._streak >= self.limit and self.limit < self.maximum:
            self.limit += 1
            self._streak = 0
            self._wake()

    def overloaded(self, epoch: int, retry_after: float | None = None) -> None:
        """A 429 or a timeout of a request sent in `epoch`."""
        self._streak = 0
        if retry_after:
            self._paused_until = max(self._paused_until, time.monotonic() + retry_after)
        if epoch == self.epoch:
            self.stalled += self.limit == self.minimum
            self.limit = max(self.minimum, self.limit // 2)
            self.epoch += 1
            self.cuts += 1


class ReaskBudget:
    """Whether re-asking after a failure of a given kind still pays, learnt from this run's own re-asks.

    A re-ask is paid. When the teacher cannot do what the checks want (a small model that rambles past any
    max_tokens, or never writes the required JSON), every re-ask fails too: after `trial` re-asks for one
    reason in one stage (a judge's `length` is not a paraphrase's) with fewer than `floor` of them accepted,
    that reason is rejected at once in that stage for the rest of the run.
    """

    def __init__(self, trial: int = 8, floor: float = 0.125):
        self.trial, self.floor = trial, floor
        self.tried: dict[str, int] = {}
        self.helped: dict[str, int] = {}

    def worth(self, stage: str, reason: str | None) -> bool:
        key = f"{stage}:{reason}"
        tried = self.tried.get(key, 0)
        return tried < self.trial or self.helped.get(key, 0) >= self.floor * tried

    def record(self, stage: str, reason: str | None, helped: bool) -> None:
        key = f"{stage}:{reason}"
        self.tried[key] = self.tried.get(key, 0) + 1
        self.helped[key] = self.helped.get(key, 0) + helped

    def describe(self, stage: str, reason: str | None) -> str:
        key = f"{stage}:{reason}"
        return f"re-asks after {reason} stopped: {self.helped.get(key, 0)} of {self.tried.get(key, 0)} helped in this run"


def backoff(attempt: int, base: float, cap: float) -> float:
    """Exponential backoff with full jitter (AWS Architecture Blog, "Exponential Backoff And Jitter"):
    a uniform wait in [0, min(cap, base * 2**attempt)] spreads retrying clients apart."""
    return random.uniform(0.0, min(cap, base * (2.0 ** min(attempt, 30))))


def estimate_tokens(body: dict[str, Any]) -> int:
    """Tokens a request may use, for the tokens/min bucket before usage is known: ~4 characters per
    prompt token (OpenAI's rule of thumb) plus the whole completion budget; corrected on reply."""
    chars = sum(len(m.get("content") or "") if isinstance(m.get("content"), str) else 0 for m in body["messages"])
    return chars // 4 + 1 + int(body.get("max_tokens") or body.get("max_completion_tokens") or 0)
