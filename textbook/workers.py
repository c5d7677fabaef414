"""Worker processes that never outlive the run that started them.

A `kill -9` of a run cannot run its clean-up, so each worker asks the kernel to kill it when its
parent dies (Linux `prctl(PR_SET_PDEATHSIG)`), and exits at once if the parent is already gone (the
parent may die between the fork and that call). Without this, a killed `textbook filter` left its
workers (~240 MB each) running for good, still holding the run's lock on --out.
"""

from __future__ import annotations

import ctypes
import multiprocessing
import os
import signal
import sys
from concurrent.futures import ProcessPoolExecutor
from typing import Any, Callable

_PR_SET_PDEATHSIG = 1  # <linux/prctl.h>
# Looked up once, here, so a forked child before exec makes only the FFI call (no imports, no locks).
_PRCTL = ctypes.CDLL(None, use_errno=True).prctl if sys.platform.startswith("linux") else None


def mp_context():
    """fork where the OS has it: workers start in milliseconds and callers need no `__main__` guard
    (spawn/forkserver re-import the caller's script). The workers only run numpy on their inputs."""
    return multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")


def kill_me_with_parent() -> None:
    """Ask the kernel for SIGKILL when this process's parent dies (Linux; elsewhere nothing). Also a
    `preexec_fn`: the setting survives exec."""
    if _PRCTL is not None:
        _PRCTL(_PR_SET_PDEATHSIG, signal.SIGKILL)


def die_with_parent(parent: int, init: Callable[..., Any] | None = None, *args: Any) -> None:
    """Pool initializer: SIGKILL this process when `parent` dies, then run the caller's own `init`."""
    kill_me_with_parent()
    if os.getppid() != parent:  # it died before the call above

        os._exit(1)
    if init is not None:
        init(*args)


def process_pool(workers: int, init: Callable[..., Any] | None = None, *args: Any) -> ProcessPoolExecutor:
    """A process pool whose workers die with this process and then run `init(*args)` (fork hands the
    arguments over as they are; spawn pickles them)."""
    return ProcessPoolExecutor(workers, mp_context=mp_context(), initializer=die_with_parent,
                               initargs=(os.getpid(), init, *args))


def worker_pool(workers: int, init: Callable[..., Any] | None = None, *args: Any):
    """A `multiprocessing.Pool` whose workers die with this process and then run `init(*args)`."""
    return mp_context().Pool(workers, initializer=die_with_parent, initargs=(os.getpid(), init, *args))
