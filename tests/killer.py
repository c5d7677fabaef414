"""The kill-anywhere harness: run a real `textbook` command, `kill -9` it at seeded points spread over its
run, rerun it until it finishes, and hand back what the tests compare with an uninterrupted run.

Kill points are stratified over the uninterrupted run's duration T: the i-th of k lands at a seeded
moment in [i/k, (i+1)/k) of T, measured as progress through the work (each rerun resumes where the
last one stopped, so its own clock starts at the previous point, plus start-up). Before each kill the
harness notes the command's child processes and then checks that every one of them is gone. In the
first cycle it also launches the same command into the same --out while the first one runs: that one
must refuse at once, naming the run that holds the directory.
"""

from __future__ import annotations

import fcntl
import os
import random
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path

import psutil

STARTUP_S = 0.6  # python + textbook's imports before any work (torch commands add their own)


@dataclass
class Killed:
    """What a kill-anywhere run did: kill points tried and landed (the process was still working)."""

    tried: int = 0
    landed: int = 0
    orphans: list[str] = field(default_factory=list)
    second_run: str = ""  # what a second launch into the same --out said


def textbook(argv: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: float = 120) -> subprocess.CompletedProcess:
    """Run `python -m textbook ARGV` to the end (it must succeed)."""
    proc = subprocess.run([sys.executable, "-m", "textbook", *argv], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
    assert proc.returncode == 0, f"textbook {' '.join(argv)} exited {proc.returncode}: {proc.stderr[-2000:]}"
    return proc


def timed(argv: list[str], cwd: Path, env: dict[str, str] | None = None) -> float:
    """Seconds an uninterrupted run takes (it must succeed)."""
    t = time.monotonic()
    textbook(argv, cwd, env)
    return time.monotonic() - t


def kill_anywhere(argv: list[str], cwd: Path, *, out: Path, duration: float, points: int, seed: int,
                  env: dict[str, str] | None = None, rerun: list[str] | None = None, startup: float = STARTUP_S) -> Killed:
    """Kill `textbook ARGV` at `points` seeded moments of a run that takes `duration` seconds, then finish it
    with `rerun` (default: the same ARGV)."""
    rng = random.Random(seed)
    fractions = [(i + rng.random()) / points for i in range(points)]
    killed = Killed()
    # First a second launch while the first run holds --out; the first run is then killed where it is.
    proc = subprocess.Popen([sys.executable, "-m", "textbook", *argv], cwd=cwd, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    killed.tried += 1
    killed.second_run = _second_launch(argv, cwd, env, out, proc)
    _kill(proc, killed)
    done = 0.0
    for fraction in fractions:
        # a resumed run first re-reads what is done: 0.8 keeps the later points inside the run
        delay = startup + max(0.05, 0.8 * (fraction - done) * max(duration - startup, 0.1))
        proc = subprocess.Popen([sys.executable, "-m", "textbook", *(rerun or argv)],
                                cwd=cwd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        killed.tried += 1
        try:
            proc.wait(timeout=delay)
        except subprocess.TimeoutExpired:
            _kill(proc, killed)
            done = fraction
        else:
            assert proc.returncode == 0, f"a rerun exited {proc.returncode}: {proc.stderr.read()[-2000:]}"
            break  # finished before the kill: later points would only find a complete run
        finally:
            proc.stderr.close()
    textbook(rerun or argv, cwd, env)
    return killed


def _kill(proc: subprocess.Popen, killed: Killed) -> bool:
    """kill -9 a running command; note it and any child process that outlives it."""
    if proc.poll() is not None:
        return False
    try:
        children = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        children = []
    proc.kill()
    proc.wait()
    killed.landed += 1
    killed.orphans += _survivors(children)
    return True


def _second_launch(argv: list[str], cwd: Path, env, out: Path, first: subprocess.Popen) -> str:
    """Start the same command into the same --out while `first` holds it; return what it said.

    `first` is stopped (SIGSTOP) meanwhile: a run that has just let go of its lock can take a while to exit, and
    a second run started in that window legitimately runs to the end. Stopped, the holder cannot let go."""
    deadline = time.monotonic() + 30
    while not _written(out / ".lock") and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)  # until the holder has written who it is (stopped before that, it is "a process that has not said which")
    if first.poll() is not None:
        return ""
    first.send_signal(signal.SIGSTOP)
    try:
        if not _held(out / ".lock"):
            return ""  # it had let go already (finishing): nothing to test this time
        t = time.monotonic()
        second = subprocess.run([sys.executable, "-m", "textbook", *argv], cwd=cwd, env=env, capture_output=True, text=True,
                                timeout=60)
    finally:
        first.send_signal(signal.SIGCONT)
    assert second.returncode == 1, f"a second run into {out} exited {second.returncode}: {second.stderr[-1000:]}"
    assert time.monotonic() - t < 15
    return second.stderr


def _written(lock: Path) -> bool:
    try:
        return lock.stat().st_size > 0
    except FileNotFoundError:
        return False


def _held(lock: Path) -> bool:
    """Whether some process holds the flock on `lock` (textbook/rundir.py's RunLock)."""
    try:
        fd = os.open(lock, os.O_RDWR)
    except FileNotFoundError:
        return False
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return True
    finally:
        os.close(fd)  # closing drops a lock taken here
    return False


def _survivors(children: list[psutil.Process], wait: float = 10.0) -> list[str]:
    """Children of a killed run still alive after `wait` seconds (a sandboxed exercise may need its timeout)."""
    gone, alive = psutil.wait_procs(children, timeout=wait)
    return [" ".join(p.cmdline()[:4]) for p in alive if p.is_running() and p.status() != psutil.STATUS_ZOMBIE]


def leftovers(out: Path) -> list[str]:
    """Temp files and locks a finished run should not leave behind."""
    return sorted(str(p.relative_to(out)) for p in out.rglob("*") if p.name.endswith(".tmp") or p.name == ".lock")


def clean_env() -> dict[str, str]:
    """The environment without teacher settings a developer's shell may carry."""
    return {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "TEXTBOOK_"))}
