"""A watcher that kills what a run started when the run is killed and cannot clean up.

A local Ray started by `ray.init()` runs its own processes (GCS, raylet, the dashboard and runtime-env
agents); after a `kill -9` of the driver the agents live on for good (measured with Ray 2.60). The reaper
is a small forked process that, every half second while the run lives, notes the run's descendants; when
the run dies without saying goodbye, it kills the ones it last saw (checking each one's start time, so
a reused PID is spared). A run that ends normally tells it to leave everything alone.
"""

from __future__ import annotations

import os
import select
import signal
import time
import uuid
from contextlib import contextmanager
from typing import Iterator

MARKER = "TEXTBOOK_RUN_MARKER"  # its value names one run's processes


@contextmanager
def reaper() -> Iterator[None]:
    try:
        import psutil
    except ImportError:  # without psutil nothing is watched (Ray's own clean-up still runs on a normal exit)
        yield
        return
    read, write = os.pipe()
    parent = os.getpid()
    marker = uuid.uuid4().hex
    os.environ[MARKER] = marker  # inherited by everything the run starts from here on
    pid = os.fork()
    if pid == 0:  # the reaper
        os.close(write)
        try:
            _watch(psutil, parent, read, marker)
        finally:
            os._exit(0)
    os.close(read)
    try:
        yield
    finally:
        os.environ.pop(MARKER, None)
        os.write(write, b"x")  # a normal end: leave everything alone
        os.close(write)
        os.waitpid(pid, 0)


def _watch(psutil, parent: int, read: int, marker: str) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is for the run, which cleans up itself
    me = os.getpid()
    seen: dict[int, float] = {}
    while True:
        ready, _, _ = select.select([read], [], [], 0.2)
        if ready:
            if os.read(read, 1):  # the run said goodbye
                return
            break  # EOF without a word: the run died
        try:
            procs = psutil.Process(parent).children(recursive=True)
        except psutil.NoSuchProcess:
            break
        seen = {p.pid: p.create_time() for p in procs if p.pid != me and p.is_running()}
    for pid, started in seen.items():
        try:
            proc = psutil.Process(pid)
            if proc.create_time() == started:
                proc.kill()
        except psutil.Error:
            continue
    deadline = time.monotonic() + 2.0
    while time.monotonic() < deadline:
        for proc in psutil.process_iter():
            if proc.pid == me:
                continue
            try:
                if proc.environ().get(MARKER) == marker:
                    proc.kill()
            except psutil.Error:
                continue
        time.sleep(0.2)
