"""What a run asked of the teacher and what it cost: counters, and a live progress bar that shows them."""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass

from textbook.progress import progress_bar

POSTFIX_EVERY_S = 0.5  # formatting the postfix on every reply would cost more than the reply's bookkeeping


@dataclass(slots=True)
class TeacherStats:
    requests: int = 0  # HTTP chat requests sent, retries included
    cache_hits: int = 0  # completions answered from the cache (nothing sent, nothing paid)
    retries: int = 0  # requests sent again: transport failures and bad replies
    rate_limited: int = 0  # 429s received
    timeouts: int = 0  # requests abandoned after the timeout (the server may have worked on them)
    rejected: int = 0  # completions that ended in TeacherRejected
    completed: int = 0  # completions returned (cache hits included)
    prompt_tokens: int = 0  # paid in this run, retries included
    completion_tokens: int = 0
    cost_usd: float = 0.0  # 0 when the model is unpriced (see `priced`)
    priced: bool = True
    concurrency: int = 0  # the adaptive limit now
    concurrency_cuts: int = 0  # times overload (a 429, a timeout) halved it

    def as_dict(self) -> dict:
        out = asdict(self)
        out["cost_usd"] = round(self.cost_usd, 6)
        return out


def _short(n: float) -> str:
    for unit, size in (("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(int(n))


class Progress:
    """A progress bar (textbook.progress) whose postfix carries tokens, cost, cache hits, retries, rejects."""

    def __init__(self, stats: TeacherStats, desc: str, enabled: bool | None):
        self.stats = stats
        self.bar = progress_bar(desc=desc, unit="req", show=enabled)
        self._next_postfix = 0.0

    def set_total(self, total: int | None) -> None:
        self.bar.total = total
        self.bar.refresh()

    def postfix(self) -> str:
        s = self.stats
        cost = f"${s.cost_usd:.2f}" if s.priced else "$?"
        return (f"tok {_short(s.prompt_tokens)} in/{_short(s.completion_tokens)} out {cost}"
                f" hit {s.cache_hits} retry {s.retries} rej {s.rejected} conc {s.concurrency}")

    def advance(self) -> None:
        now = time.monotonic()
        if now >= self._next_postfix:
            self._next_postfix = now + POSTFIX_EVERY_S
            self.bar.set_postfix_str(self.postfix(), refresh=False)
        self.bar.update(1)

    def close(self) -> None:
        if not self.bar.disable:
            self.bar.set_postfix_str(self.postfix(), refresh=False)
        self.bar.close()
