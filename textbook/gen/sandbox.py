"""Run untrusted generated code (exercise solution + tests) in a separate, limited process. Never in-process.

Each run gets:
- a fresh temporary working directory, deleted afterwards;
- an environment with no secrets: only PATH, LANG, HOME (the temp dir) and thread caps; the parent's
  OPENAI_API_KEY and everything else are not inherited;
- `python -I -S`: isolated mode (ignores PYTHON* variables, no user site, no cwd on sys.path) and no
  site-packages, so generated code sees the standard library only;
- hard rlimits the code cannot raise back: CPU seconds (SIGXCPU, then SIGKILL a second later),
  address space (MemoryError), file size, no core dumps; plus a wall-clock timeout that kills the whole
  process group (sleeping or blocked code uses no CPU);
- where the kernel allows unprivileged namespaces (`unshare --user --net --pid --mount-proc`,
  probed once): no network at all, and a private /proc, so the child cannot read other processes'
  environments (`/proc/<pid>/environ` of the parent or the shell holding OPENAI_API_KEY).
  Without namespaces the network is reachable and /proc is shared: `isolation()` says which applies.
What it does not do: hide files the invoking user can read. For hostile teachers run gen in a
container or VM, or as a user without access to secrets.
"""

from __future__ import annotations

import asyncio
import functools
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass

from textbook.workers import kill_me_with_parent

# Runs in the child: set the limits, fork, exec the script with a fresh interpreter in the grandchild
# (rlimits survive exec) and report how it ended as an exit status (128 + signal when killed). The
# fork matters inside a pid namespace: there the launcher is pid 1, which ignores signals it has no
# handler for, and whose exit takes every process the code left behind with it.
_LAUNCHER = """
import os, resource, sys
cpu, mem, fsize = (int(v) for v in sys.argv[1:4])
resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))  # SIGXCPU at the soft limit, SIGKILL one second later
for kind, value in ((resource.RLIMIT_AS, mem), (resource.RLIMIT_FSIZE, fsize), (resource.RLIMIT_CORE, 0)):
    resource.setrlimit(kind, (value, value))
pid = os.fork()
if pid == 0:
    if sys.platform.startswith("linux"):  # the code dies with this launcher, as it dies with the run
        import ctypes
        ctypes.CDLL(None).prctl(1, 9)  # PR_SET_PDEATHSIG, SIGKILL
    os.execv(sys.executable, [sys.executable, "-I", "-S", sys.argv[4]])
_, status = os.waitpid(pid, 0)
os._exit(128 + os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status))
"""
_OUTPUT_LIMIT = 4000  # characters of stderr/stdout kept as the error detail


@dataclass(frozen=True, slots=True)
class Limits:
    timeout_s: float = 10.0  # wall clock
    cpu_s: int = 5
    memory_mb: int = 512  # address space, so it also bounds what the interpreter maps
    file_mb: int = 16


@dataclass(frozen=True, slots=True)
class Outcome:
    ok: bool
    reason: str  # passed | failed | timeout | memory | killed
    detail: str  # the tail of stderr (the traceback), or what killed it
    seconds: float


def _env(home: str) -> dict[str, str]:
    # Built from scratch: nothing of the parent's environment (API keys, tokens, proxies) is passed on.
    return {
        "PATH": "/usr/local/bin:/usr/bin:/bin",
        "LANG": "C.UTF-8",
        "HOME": home,
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONHASHSEED": "0",
        "OMP_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1",
    }


@functools.cache
def _unshare() -> tuple[str, ...]:
    """The namespace prefix, if this kernel lets us create namespaces; () otherwise."""
    exe = shutil.which("unshare")
    if not exe:
        return ()
    prefix = (exe, "--user", "--map-root-user", "--net", "--pid", "--fork", "--mount-proc", "--kill-child")
    try:
        probe = subprocess.run([*prefix, sys.executable, "-I", "-S", "-c", "pass"], capture_output=True, timeout=10, env=_env("/"))
    except (OSError, subprocess.SubprocessError):
        return ()
    return prefix if probe.returncode == 0 else ()


def isolation() -> str:
    """What isolation this machine gives generated code (for the run summary and docs)."""
    base = "separate process, clean environment, rlimits, temp dir"
    return base + (", no network, private /proc" if _unshare() else " (no network/pid namespaces on this machine)")


def _classify(returncode: int, stderr: str, limits: Limits) -> tuple[str, str]:
    tail = stderr[-_OUTPUT_LIMIT:].strip()
    if returncode == 0:
        return "passed", ""
    if "MemoryError" in stderr:
        return "memory", tail or f"exceeded {limits.memory_mb} MB"
    signum = -returncode if returncode < 0 else returncode - 128 if returncode > 128 else 0
    if signum == signal.SIGXCPU:
        return "timeout", f"exceeded {limits.cpu_s} s of CPU time"
    if signum == signal.SIGKILL:
        return "killed", tail or "killed (SIGKILL): out of memory or over a limit"
    if signum in (signal.SIGSEGV, signal.SIGABRT, signal.SIGBUS):
        return "killed", tail or f"crashed with signal {signal.Signals(signum).name}"
    return "failed", tail or f"exit status {returncode}"


async def run_code(code: str, limits: Limits = Limits()) -> Outcome:
    """Run `code` as a script in the sandbox; passed means exit status 0 within the limits."""
    start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="textbook-sandbox-") as tmp:
        script = os.path.join(tmp, "main.py")
        with open(script, "w", encoding="utf-8") as fh:
            fh.write(code)
        argv = [
            *_unshare(), sys.executable, "-I", "-S", "-c", _LAUNCHER,
            str(limits.cpu_s), str(limits.memory_mb << 20), str(limits.file_mb << 20), script,
        ]
        proc = await asyncio.create_subprocess_exec(
            *argv, cwd=tmp, env=_env(tmp), stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE, start_new_session=True,
            # a kill -9 of the run takes the sandbox with it (the launcher, or `unshare`, whose
            # --kill-child then ends the whole namespace)
            preexec_fn=kill_me_with_parent,
        )
        try:
            stdout, stderr = await asyncio.wait_for(proc.communicate(), timeout=limits.timeout_s)
        except asyncio.TimeoutError:
            _kill_group(proc.pid)
            await proc.wait()
            return Outcome(False, "timeout", f"still running after {limits.timeout_s:g} s (wall clock)", time.perf_counter() - start)
        finally:
            if proc.returncode is None:  # cancelled: never leave a child behind
                _kill_group(proc.pid)
        _kill_group(proc.pid)  # anything the code forked into the background dies with it
    # Tracebacks name the script by its temp path: the same failure reads the same in every run.
    text = (stderr.decode("utf-8", "replace") or stdout.decode("utf-8", "replace")).replace(f"{tmp}/", "")
    reason, detail = _classify(proc.returncode, text, limits)
    return Outcome(reason == "passed", reason, detail, time.perf_counter() - start)


def _kill_group(pid: int) -> None:
    try:
        os.killpg(pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
