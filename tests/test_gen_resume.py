"""Resume after a real `kill -9`: exactly the planned rows, no duplicates, and no cached request sent again."""

from __future__ import annotations

import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

from tests.gen_fixtures import GenReplies
from textbook.shards import read_manifest, read_table

N = 300
CONCURRENCY = 8
TREE = {"topic": "Python", "subtopics": [{"topic": t} for t in ("Loops", "Sets", "Closures", "Decorators", "Generators")]}


def ledger(out: Path) -> dict:
    from textbook.teacher.ledger import Ledger

    book = Ledger(out / "teacher-ledger.sqlite")
    try:
        return book.totals()["total"]
    finally:
        book.close()


def cached_replies(out: Path) -> int:
    with sqlite3.connect(out / "teacher-cache.sqlite") as db:
        return db.execute("SELECT COUNT(*) FROM responses").fetchone()[0]


def test_kill_9_mid_run_then_rerun_completes_exactly(tmp_path, fake_teacher):
    (tmp_path / "topics.json").write_text(json.dumps(TREE))
    # Checkpoint often so the kill lands between checkpoints with rows both durable and not.
    (tmp_path / "textbook.toml").write_text("[gen]\ncheckpoint_rows = 25\ncheckpoint_s = 0.3\n")
    out = tmp_path / "out"
    server = fake_teacher
    server.replies, server.latency = GenReplies(dup_every=13), 0.03
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "TEXTBOOK_"))} | server.env()
    cmd = [sys.executable, "-m", "textbook", "gen", "--topics", "topics.json", "--n", str(N), "--out", str(out),
           "--concurrency", str(CONCURRENCY), "--yes"]

    first = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while server.served < N // 2 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert first.returncode == -signal.SIGKILL, first.stderr.read().decode()
    served_first = server.served
    manifest = read_manifest(out / "textbook")
    assert manifest is not None and not manifest["complete"]  # really killed mid-run
    durable = len(read_table(out / "textbook", ["plan_id"])) + len(read_table(out / "textbook-rejects", ["plan_id"]))
    cached = cached_replies(out)
    assert 0 < durable <= cached < N
    assert served_first - cached <= CONCURRENCY  # only replies in flight at the kill were lost
    # the usage ledger: every paid reply is on it before it is in the cache (so it is never missed)
    first_ledger = ledger(out)
    assert 0 <= first_ledger["succeeded"] - cached <= 1 and 0 <= served_first - first_ledger["sent"] <= CONCURRENCY

    second = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    assert server.served - served_first == N - cached  # every cached reply reused, every other asked once
    assert f"of {N:,} planned" in second.stdout and f"{N - cached:,} requests sent, {cached - durable:,} cache hits" in second.stdout
    # the resumed run added its own requests to the ledger and counted none of the first run's twice
    total = ledger(out)
    assert total["sent"] == first_ledger["sent"] + (server.served - served_first), total
    assert total["from_cache"] == cached - durable and total["failed"] == 0
    assert f"teacher, all runs into this output: {total['sent']:,} requests sent" in second.stdout

    ids = read_table(out / "textbook", ["plan_id"])["plan_id"].to_pylist()
    ids += read_table(out / "textbook-rejects", ["plan_id"])["plan_id"].to_pylist()
    assert len(ids) == N and sorted(ids) == list(range(N))  # exactly the plan: nothing missing, nothing twice
    assert read_manifest(out / "textbook")["complete"] and read_manifest(out / "textbook-rejects")["complete"]
    rejects = read_table(out / "textbook-rejects", ["reason"])["reason"].to_pylist()
    assert rejects and set(rejects) == {"near_duplicate"}
