"""`--batch` (gen, filter annotate): first attempts through the Batch API (fake server: /v1/files, /v1/batches), replies into the cache,
then the online path as a rerun: the same rows, half the price, nothing submitted twice."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from tests.gen_fixtures import GenReplies
from textbook.gen.config import GenConfig
from textbook.gen.run import generate
from textbook.shards import read_table
from textbook.teacher.batch import BatchRun, Pending
from textbook.teacher.client import Teacher
from textbook.teacher.ledger import Ledger

TREE = {"topic": "Python", "subtopics": [{"topic": t} for t in ("Loops", "Sets", "Closures")]}


@pytest.fixture()
def topics(tmp_path):
    path = tmp_path / "topics.json"
    path.write_text(json.dumps(TREE))
    return path


def ledger(out):
    book = Ledger(out / "teacher-ledger.sqlite")
    try:
        return book.totals()
    finally:
        book.close()


def test_batch_answers_the_plan_at_half_price_and_errors_go_online(tmp_path, topics, fake_teacher):
    fake_teacher.models = ["gpt-4o-mini"]  # priced: the ledger shows the batch price
    fake_teacher.replies = GenReplies()
    fake_teacher.fault("500", times=2)  # two batch lines fail: the online path answers them
    out = tmp_path / "out"
    summary = generate(GenConfig(n=20), fake_teacher.config(model="gpt-4o-mini", retry_base_s=0.01), out=out,
                       topics_file=topics, progress=False, batch=True)
    assert summary.rows + sum(summary.rejected.values()) == 20
    assert fake_teacher.batches_created == 1 and len(fake_teacher.chat_requests()) == 2  # the 2 errors, online
    stages = ledger(out)["stages"]
    batch, online = stages["textbook (batch)"], stages["textbook"]
    assert (batch["sent"], batch["succeeded"], batch["failures"]) == (20, 18, {"batch_error_500": 2})
    assert batch["cost_is"] == "estimated"
    assert online["from_cache"] == 18 and online["sent"] == 2
    per_request = batch["cost_usd"] / 18
    assert per_request == pytest.approx(0.5 * online["cost_usd"] / 2, rel=0.2)  # half the online price per request
    assert any("batch: 20 requests submitted, 18 answered through 1 batch(es) at half price, 2 left to the online path"
               in note for note in summary.notes), summary.notes
    assert (out / "batch" / "state.json").is_file() and (out / "batch" / "requests-0000-output.jsonl").is_file()


def test_a_killed_run_resumes_polling_and_never_submits_twice(tmp_path, topics, fake_teacher):
    fake_teacher.replies = GenReplies()
    fake_teacher.batch_polls = 10_000  # in progress until the test lets it finish
    out = tmp_path / "out"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "TEXTBOOK_"))} | fake_teacher.env()
    cmd = [sys.executable, "-m", "textbook", "gen", "--topics", str(topics), "--n", "12", "--out", str(out), "--batch", "--yes"]
    first = subprocess.Popen(cmd, cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    deadline = time.monotonic() + 60
    while fake_teacher.batches_created == 0 and first.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # polling now
    first.send_signal(signal.SIGKILL)
    first.wait()
    assert first.returncode == -signal.SIGKILL, first.stderr.read().decode()
    state = json.loads((out / "batch" / "state.json").read_text())
    assert [bool(e.get("batch_id")) for e in state["files"]] == [True]
    # the worst moment: the batch was created but the kill came before its id was recorded
    del state["files"][0]["batch_id"]
    (out / "batch" / "state.json").write_text(json.dumps(state))
    fake_teacher.batch_polls = 1
    second = subprocess.run(cmd, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert second.returncode == 0, second.stderr
    assert fake_teacher.batches_created == 1 and fake_teacher.files_uploaded == 1  # adopted, not submitted again
    ids = read_table(out / "textbook", ["plan_id"])["plan_id"].to_pylist()
    ids += read_table(out / "textbook-rejects", ["plan_id"])["plan_id"].to_pylist()
    assert sorted(ids) == list(range(12)) and len(fake_teacher.chat_requests()) == 0


def test_large_plans_split_into_several_batches(tmp_path, fake_teacher):
    fake_teacher.replies = "a reply"

    async def main():
        async with Teacher(fake_teacher.config(), cache_path=tmp_path / "c.sqlite", ledger_path=tmp_path / "l.sqlite",
                           progress=False) as teacher:
            pending = []
            for i in range(10):
                key, body, cached = teacher.first_request([{"role": "user", "content": f"q{i}"}], template_sha="t")
                assert not cached
                pending.append(Pending(key, body, "s"))
            counts = await BatchRun(teacher, tmp_path, poll_s=(0.01, 0.02), max_requests=4).run(pending)
            replies = [await teacher.complete([{"role": "user", "content": f"q{i}"}], template_sha="t") for i in range(10)]
            return counts, replies

    counts, replies = asyncio.run(main())
    assert counts == {"submitted": 10, "answered": 10, "errors": 0, "batches": 3}
    assert all(r.cached and r.text == "a reply" for r in replies) and fake_teacher.chat_requests() == []


@pytest.mark.parametrize("status", ["expired", "failed"])
def test_an_expired_batch_leaves_the_rest_online_and_a_failed_one_stops_with_its_reason(tmp_path, fake_teacher, status):
    from textbook.errors import TextbookError

    fake_teacher.replies = "a reply"
    fake_teacher.batch_status = status

    async def main():
        async with Teacher(fake_teacher.config(), cache_path=tmp_path / "c.sqlite", progress=False) as teacher:
            pending = [Pending(*teacher.first_request([{"role": "user", "content": f"q{i}"}], template_sha="t")[:2], "s")
                       for i in range(6)]
            counts = await BatchRun(teacher, tmp_path, poll_s=(0.01, 0.02)).run(pending)
            replies = [await teacher.complete([{"role": "user", "content": f"q{i}"}], template_sha="t") for i in range(6)]
            return counts, replies

    if status == "failed":
        with pytest.raises(TextbookError, match=r"the batch batch_0000 \(requests-0000.jsonl\) failed: line 1: bad body"):
            asyncio.run(main())
        return
    counts, replies = asyncio.run(main())
    assert counts["answered"] == 3 and sum(r.cached for r in replies) == 3 and len(fake_teacher.chat_requests()) == 3


def test_annotate_scores_through_a_batch(tmp_path, fake_teacher):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from textbook.filter.annotate import annotate
    from textbook.filter.config import AnnotateConfig

    def grade(messages):
        text = messages[-1]["content"]
        return f"Reads well.\nEducational score: {len(text) % 6}"

    fake_teacher.replies = grade
    docs = [{"id": f"d{i}", "text": f"Document {i} explains topic {i % 5} with an example. " * (3 + i % 4)} for i in range(30)]
    pq.write_table(pa.Table.from_pylist(docs), tmp_path / "w.parquet")
    report = annotate([str(tmp_path / "w.parquet")], tmp_path / "labels", AnnotateConfig(n=30, seed=1),
                      fake_teacher.config(), batch=True)
    assert report["scored"] == 30 and fake_teacher.batches_created == 1 and fake_teacher.chat_requests() == []
    assert report["teacher"]["ledger"]["stages"]["annotate (batch)"]["succeeded"] == 30
    assert (tmp_path / "labels" / ".batch" / "state.json").is_file()


def test_gen_settings_paraphrases_then_judges_through_two_batch_rounds(tmp_path, fake_teacher):
    from tests.settings_fixtures import ScriptedTeacher
    from textbook.settings.config import SettingsConfig
    from textbook.settings.run import generate_settings

    fake_teacher.replies = ScriptedTeacher()
    cfg = SettingsConfig(n=200, out=str(tmp_path / "s"), teacher_share=0.5, paraphrases=3, teacher_batch=16)
    summary = generate_settings(cfg, fake_teacher.config(concurrency=8), progress=False, batch=True)
    assert summary.totals["teacher_rows"] == 100 and fake_teacher.batches_created % 2 == 0  # paraphrases, then judges
    stages = ledger(tmp_path / "s")["stages"]
    assert stages["paraphrase (batch)"]["succeeded"] > 0 and stages["judge (batch)"]["succeeded"] > 0
    online = len(fake_teacher.chat_requests())
    batched = stages["paraphrase (batch)"]["sent"] + stages["judge (batch)"]["sent"]
    assert online == 0, (online, batched)  # rounds sized by the yield so far: every first attempt went through a batch
    assert any(w.startswith("batch: ") for w in summary.warnings)
