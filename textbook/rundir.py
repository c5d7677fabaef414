"""A run's output directory: one writer at a time, and a rerun that says what changed.

`RunDir` is what every stage's run holds while it writes into OUT:
- the lock (`RunLock`): an advisory `flock` on `OUT/.lock`. The kernel drops it when the holder dies,
  however it dies, so a second launch into the same --out is refused at once (naming the run that
  holds it), while a rerun after `kill -9` finds a stale file it can take;
- the fingerprint (`OUT/run.json`): what decides the run's content (inputs, settings, model). A rerun
  with the same one resumes; with another it stops and `differences` names what differs, so "other
  inputs or settings" never leaves the user guessing;
- the completion mark (in run.json), so a finished run is not redone.
"""

from __future__ import annotations

import fcntl
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from textbook.config import config_file_used, strip_credentials
from textbook.errors import TextbookError

LOCK = ".lock"


def output_dir(out: str | Path, flag: str = "--out") -> Path:
    """`out` as a directory to write into (created); a clear error when it is a file."""
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise TextbookError(f"{flag} {out} is a file, not a directory: pass a directory (new or from an earlier run)")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):  # a parent is a file
        raise TextbookError(f"{flag} {out}: a part of that path is a file: pass a directory") from None
    except PermissionError:
        raise TextbookError(f"{flag} {out}: no permission to create it: pass a directory you can write to") from None
    return out


class RunLock:
    """`with RunLock(out):` the calling process is the only one writing into `out`."""

    def __init__(self, out: str | Path, flag: str = "--out"):
        self.out, self.flag = Path(out), flag
        self.path = self.out / LOCK
        self._fd: int | None = None

    def __enter__(self) -> "RunLock":
        output_dir(self.out, self.flag)
        while True:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = _read(fd)
                os.close(fd)
                raise TextbookError(
                    f"{self.out} is being written by another run ({holder}): wait for it to finish, "
                    f"or pass another {self.flag}"
                ) from None
            # The holder we waited on may have removed the file as it let go: a lock on an unlinked
            # file guards nothing, so lock the file that is there now.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        info = {"pid": os.getpid(), "host": socket.gethostname(), "command": _command(),
                "started": time.strftime("%Y-%m-%d %H:%M:%S")}
        os.write(fd, (json.dumps(info) + "\n").encode())
        self._fd = fd
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._fd is None:
            return
        try:  # removed while still held, so a waiting process re-checks and locks a fresh file
            os.unlink(self.path)
        except FileNotFoundError:
            pass
        os.close(self._fd)
        self._fd = None


class RunDir:
    """`with RunDir(out) as rd:` the lock on `out`; `rd.claim(fingerprint)` then checks or records
    what the run is, and `rd.finish()` marks it complete."""

    RECORD = "run.json"

    def __init__(self, out: str | Path, flag: str = "--out"):
        self.out = Path(out)
        self.path = self.out / self.RECORD
        self._lock = RunLock(out, flag)
        self.record: dict[str, Any] = {}

    def __enter__(self) -> "RunDir":
        self._lock.__enter__()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._lock.__exit__(*exc)

    def claim(self, fingerprint: dict[str, Any], what: str = "a run", *, fresh: bool = False) -> bool:
        """Record `fingerprint` for a new run, or check a rerun against the recorded one (a TextbookError
        naming what differs when it does not match). True when the recorded run is complete.
        `fresh`: the caller knows nothing of an earlier run is kept, so the record is replaced."""
        from textbook.shards import atomic_write_json

        new = json.loads(json.dumps(fingerprint, default=str))  # as it reads back from the file
        if self.path.is_file() and not fresh:
            try:
                self.record = json.loads(self.path.read_text(encoding="utf-8"))
                old = self.record["fingerprint"]
            except (ValueError, KeyError, TypeError):
                raise TextbookError(f"{self.path} is damaged: delete {self.out} to start over") from None
            if old != new:
                raise TextbookError(
                    f"{self.out} holds {what} with other inputs or settings ({'; '.join(differences(old, new))}): "
                    "rerun with the original ones, use another --out, or delete it to start over"
                )
            return bool(self.record.get("complete"))
        self.record = {"fingerprint": new, "complete": False, "command": _command(), "config_file": _config_file()}
        atomic_write_json(self.path, self.record)
        return False

    def finish(self, **facts: Any) -> None:
        """Mark the run complete (with any facts worth keeping beside the fingerprint)."""
        from textbook.shards import atomic_write_json

        self.record.update(facts, complete=True, finished=time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                           last_command=_command(), last_config_file=_config_file())
        atomic_write_json(self.path, self.record)


def _command() -> str:
    """The command line, as the lock file and the refusal show it: never a key, never a URL's credentials."""
    argv = list(sys.argv)
    if argv and argv[0].endswith(("__main__.py", "textbook")):
        argv[0] = "textbook"
    shown = []
    for i, arg in enumerate(argv):
        if arg.startswith("--api-key="):
            arg = "--api-key=REDACTED"
        elif i and argv[i - 1] == "--api-key":
            arg = "REDACTED"
        shown.append(strip_credentials(arg))
    return " ".join(shown)[:200]


def _config_file() -> str | None:
    """The config file the running command reads (its --config, else ./textbook.toml when present)."""
    args = sys.argv[1:]
    for i, arg in enumerate(args):
        if arg == "--config" and i + 1 < len(args):
            return config_file_used(args[i + 1])
        if arg.startswith("--config="):
            return config_file_used(arg.split("=", 1)[1])
    return config_file_used(None)


def _read(fd: int) -> str:
    try:
        info = json.loads(os.pread(fd, 4096, 0).decode() or "{}")
    except (OSError, ValueError):
        info = {}
    if not info:
        return "a process that has not said which"
    return f"pid {info.get('pid')} on {info.get('host')}, `{info.get('command')}`, started {info.get('started')}"


def differences(old: Any, new: Any, path: str = "", limit: int = 4) -> list[str]:
    """Human-readable differences between two JSON-like values, e.g. `config.threshold: 3 -> 2.5`."""
    found: list[str] = []
    _diff(old, new, path, found)
    return found[:limit] + ([f"and {len(found) - limit} more"] if len(found) > limit else [])


def _diff(old: Any, new: Any, path: str, found: list[str]) -> None:
    if isinstance(old, dict) and isinstance(new, dict):
        for key in list(old) + [k for k in new if k not in old]:
            where = f"{path}.{key}" if path else str(key)
            if key not in new:
                found.append(f"{where} is gone")
            elif key not in old:
                found.append(f"{where} is new")
            else:
                _diff(old[key], new[key], where, found)
    elif isinstance(old, list) and isinstance(new, list) and len(old) == len(new):
        for i, (a, b) in enumerate(zip(old, new)):
            # entries that name a file are named by it: inputs[web.parquet], not inputs[3]
            same_file = isinstance(a, dict) and isinstance(b, dict) and "path" in a and a["path"] == b.get("path")
            name = Path(a["path"]).name if same_file else i
            _diff(a, b, f"{path}[{name}]", found)
    elif old != new:
        found.append(f"{path or 'value'}: {_short(old)} -> {_short(new)}")


def _short(value: Any) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= 60 else text[:57] + "..."
