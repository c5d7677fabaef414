"""The teacher's response cache: SQLite, keyed by what was asked, so a rerun or a crash never pays twice.

Every paid reply is committed before it is handed to the caller (WAL journal, one small transaction,
~0.1 ms), so a `kill -9` loses nothing that was paid for. The key is a hash of the request's
content only; the API key, base URL and headers never reach the file.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path
from typing import Any

from textbook.errors import TextbookError

# Bump when the stored value's shape changes: old entries then simply stop matching.
KEY_VERSION = "textbook-teacher-cache/1"
CACHE_FILE = "teacher-cache.sqlite"  # OUT/<this> for every command that asks a teacher


def cache_key(
    model: str, messages: list[dict], params: dict[str, Any], template_sha: str, json_schema: dict | None, attempt: int = 0
) -> bytes:
    """sha256 of (model, messages, sampling params, template hash, JSON schema, attempt), canonical JSON.

    `attempt` numbers the re-asks after a bad reply, so each one is cached (and replayed) on its own."""
    blob = json.dumps(
        [KEY_VERSION, model, messages, params, template_sha, json_schema, attempt],
        sort_keys=True, ensure_ascii=False, separators=(",", ":"),
    )
    return hashlib.sha256(blob.encode()).digest()


def connect(path: Path) -> sqlite3.Connection:
    """A SQLite file where each statement commits on its own and survives a process crash (the cache, the
    ledger): autocommit, WAL with synchronous=NORMAL (fsyncs at checkpoints), and a wait for another run
    sharing the file that holds the write lock."""
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path, isolation_level=None)
    db.execute("PRAGMA busy_timeout = 5000")
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = NORMAL")
    return db


class ResponseCache:
    """get/put of JSON values by 32-byte key. Used from one event loop thread: calls never interleave."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        try:
            self._db = connect(self.path)  # each put is durable
            self._db.execute(
                "CREATE TABLE IF NOT EXISTS responses (key BLOB PRIMARY KEY, value TEXT NOT NULL, created REAL NOT NULL)"
                " WITHOUT ROWID"
            )
        except sqlite3.DatabaseError as exc:
            raise TextbookError(
                f"teacher cache {self.path} cannot be used ({exc}): delete it, point the run elsewhere, or pass --no-cache"
            ) from None

    def get(self, key: bytes) -> dict[str, Any] | None:
        row = self._db.execute("SELECT value FROM responses WHERE key = ?", (key,)).fetchone()
        return json.loads(row[0]) if row else None

    def has(self, key: bytes) -> bool:
        """Whether a reply is cached under `key`, without reading (or parsing) it."""
        return self._db.execute("SELECT 1 FROM responses WHERE key = ?", (key,)).fetchone() is not None

    def put(self, key: bytes, value: dict[str, Any]) -> None:
        self._db.execute(
            "INSERT OR REPLACE INTO responses (key, value, created) VALUES (?, ?, ?)",
            (key, json.dumps(value, ensure_ascii=False), time.time()),
        )

    def close(self) -> None:
        self._db.close()
