"""`textbook filter --engine ray`: pass 1 (heuristics, hashes, band keys, scores) as Ray tasks.

The same `Analyser` as the local engine runs in one Ray actor per CPU of the cluster (built once per actor:
unpickling it per task, classifier weights and all, cost 3x the analysis itself), on the same jobs (input
batches), and the parts come back in input order, so the parts, the decisions and the outputs are those of
`--engine local`: the test checks that the outputs are identical. At most two batches per actor are in
flight, which bounds the driver's memory.

The dedup decisions and pass 2 still run in the driver: at 1B documents the 14 band keys alone are
~112 GB in one process, so that step is the next to spread (a shuffle by band key, then connected
components). Until then this engine scales the expensive part, pass 1, across machines.
"""

from __future__ import annotations

from collections import deque
from typing import Iterable, Iterator

import pyarrow as pa

from textbook.errors import ConfigError
from textbook.filter.analyse import Analyser


def _ray():
    try:
        import ray
    except ImportError:
        raise ConfigError('--engine ray needs Ray: pip install "textbook[ray]"') from None
    return ray


def ray_analyse_all(analyser: Analyser, jobs: Iterable, address: str | None, workers: int
                    ) -> Iterator[tuple[pa.RecordBatch, dict[str, float]]]:
    """Results in job order, each job a Ray task. Joins the cluster at `address`, or starts a local Ray
    with `workers` CPUs (and stops it after)."""
    ray = _ray()
    started = not ray.is_initialized()
    if started:
        if address:
            _reachable(address)
        try:
            ray.init(address=address, num_cpus=None if address else workers, include_dashboard=False,
                     log_to_driver=False, logging_level="ERROR")
        except ConnectionError as exc:
            raise ConfigError(f"no Ray cluster at --ray-address {address} ({exc}): start one with `ray start --head`, "
                              "or leave --ray-address out for a local Ray") from None
    try:
        cpus = max(1, int(ray.cluster_resources().get("CPU", workers)))
        shipped = ray.put(analyser)
        worker = ray.remote(num_cpus=1)(_Worker)
        actors = [worker.remote(shipped) for _ in range(cpus)]
        pending: deque = deque()
        for i, job in enumerate(jobs):
            pending.append(actors[i % cpus].run.remote(job))  # each actor's jobs queue in order on it
            if len(pending) >= 2 * cpus:
                yield ray.get(pending.popleft())
        while pending:
            yield ray.get(pending.popleft())
    finally:
        if started:
            ray.shutdown()


def _reachable(address: str, timeout: float = 5.0) -> None:
    """A HOST:PORT cluster answers on its port, or a one-line error now: Ray itself retries for minutes."""
    import socket

    host, _, port = address.rpartition(":")
    if address.startswith(("ray://", "auto")) or not port.isdigit():
        return
    try:
        socket.create_connection((host or "127.0.0.1", int(port)), timeout=timeout).close()
    except OSError as exc:
        raise ConfigError(f"no Ray cluster at --ray-address {address} ({exc.strerror or exc}): start one with "
                          "`ray start --head`, or leave --ray-address out for a local Ray") from None


class _Worker:
    """A Ray actor holding one Analyser for all the jobs it is given."""

    def __init__(self, analyser: Analyser):
        self.analyser = analyser

    def run(self, job):
        return self.analyser(job)
