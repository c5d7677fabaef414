"""`textbook gen` end to end against the fake OpenAI-compatible server: rows, rejects, provenance, cache, resume."""

from __future__ import annotations

import gc
import json
from pathlib import Path

import pytest

from tests.fakeserver import FakeServer
from tests.gen_fixtures import GenReplies
from textbook.errors import TextbookError
from textbook.gen.config import GenConfig
from textbook.gen.plan import Axes, build_plan, load_vocabulary
from textbook.gen.run import generate
from textbook.prompts import Prompts
from textbook.shards import read_manifest, read_table
from textbook.teacher.config import TeacherConfig

KEY = "sk-gen-test-key-0123456789abcdef"
TREE = {"topic": "Python", "subtopics": [{"topic": "Loops"}, {"topic": "Sets"}, {"topic": "Poisoned topic"}]}


@pytest.fixture
def server(fake_teacher):
    fake_teacher.replies = GenReplies(fail_every=4, dup_every=9, nocode_every=11)
    fake_teacher.api_key = KEY
    return fake_teacher


def teacher(server: FakeServer, **kw) -> TeacherConfig:
    return server.config(concurrency=8, **kw)


def topics_file(tmp_path: Path) -> Path:
    path = tmp_path / "my-topics.json"
    path.write_text(json.dumps(TREE))
    return path


def plan_ids(out: Path, kind: str) -> list[int]:
    return read_table(out / kind, ["plan_id"])["plan_id"].to_pylist() + read_table(out / f"{kind}-rejects", ["plan_id"])["plan_id"].to_pylist()


def test_textbook_run_writes_rows_rejects_provenance_and_topics(server, tmp_path):
    out = tmp_path / "run"
    summary = generate(GenConfig(n=60, depth=2, breadth=3), teacher(server), out=out, progress=False)
    assert gc.get_freeze_count() == 0  # the run froze its long-lived objects for the GC, and gave them back

    tree = json.loads((out / "topics.json").read_text())  # the teacher's expansion, saved to edit and reuse
    assert [c["topic"] for c in tree["subtopics"]] == ["python part 1", "python part 2", "python part 3"]
    assert all(len(c["subtopics"]) == 3 for c in tree["subtopics"])

    ids = plan_ids(out, "textbook")
    assert sorted(ids) == list(range(60))  # kept + rejected = planned, each exactly once
    rows = read_table(out / "textbook").to_pylist()
    rejects = read_table(out / "textbook-rejects").to_pylist()
    reasons = {r["reason"] for r in rejects}
    assert {"near_duplicate", "parse_no_code"} <= reasons
    assert summary.rows == len(rows) and sum(summary.rejected.values()) == len(rejects)
    dup = next(r for r in rejects if r["reason"] == "near_duplicate")
    assert dup["detail"].startswith("near-duplicate of plan_id") and "word for word" in dup["raw"]

    sha = Prompts().get("textbook").sha256
    vocab = load_vocabulary()
    axes = Axes(GenConfig().audiences, GenConfig().textbook_styles, GenConfig().difficulties, 3)
    plan = {i.plan_id: i for i in build_plan(tree, n=60, seed=0, axes=axes, vocabulary=vocab, function_names=False)}
    for row in rows:
        item = plan[row["plan_id"]]
        assert row["topic_path"] == list(item.topic_path) and row["audience"] == item.audience and row["words"] == list(item.words)
        assert row["template"] == "textbook" and row["template_sha"] == sha and row["model"] == "fake-model"
        assert json.loads(row["sampling"]) == {"temperature": 0.8, "top_p": 0.95, "max_tokens": 2048, "seed": item.seed}
        assert row["prompt_tokens"] > 0 and row["completion_tokens"] > 0 and row["created_at"].endswith("+00:00")
        assert not row["text"].startswith("Sure") and "Happy coding" not in row["text"]  # boilerplate stripped
        assert row["text"].startswith("## ") and "```python" in row["text"]

    manifest = read_manifest(out / "textbook")
    assert manifest["complete"] and manifest["totals"]["rows"] == len(rows) and manifest["totals"]["planned"] == 60
    assert manifest["config"]["teacher"]["model"] == "fake-model" and "api_key" not in manifest["config"]["teacher"]
    assert manifest["totals"]["prompt_tokens"] == sum(r["prompt_tokens"] for r in rows + rejects)
    for path in out.rglob("*"):  # the key is in no output, cache included
        assert not path.is_file() or KEY.encode() not in path.read_bytes(), path


def test_exercises_are_executed_and_failures_rejected(server, tmp_path):
    out = tmp_path / "ex"
    generate(GenConfig(kind="exercises", n=16, exec_workers=2), teacher(server), out=out, topics_file=topics_file(tmp_path), progress=False)
    assert sorted(plan_ids(out, "exercises")) == list(range(16))
    rows = read_table(out / "exercises").to_pylist()
    rejects = read_table(out / "exercises-rejects").to_pylist()
    assert rows and rejects
    for row in rows:
        assert f"def {row['function_name']}(" in row["solution"] and f"def {row['function_name']}(" in row["prompt"]
        assert row["tests"].startswith(f"def test_{row['function_name']}") and row["run_s"] > 0
        assert "reverse=True" in row["solution"]  # the planted wrong solutions (reverse=False) all failed
    for reject in rejects:
        assert reject["reason"] == "exec_failed" and "AssertionError" in reject["detail"]
        assert "reverse=False" in reject["raw"]


def test_rerun_is_served_from_the_cache_and_no_cache_pays_again(server, tmp_path):
    topics = topics_file(tmp_path)
    out = tmp_path / "a"
    generate(GenConfig(n=30), teacher(server), out=out, topics_file=topics, progress=False)
    sent = server.served
    assert sent == 30
    # Lose every row (as a kill before the first checkpoint would): the replies are still cached.
    for name in ("textbook", "textbook-rejects"):
        for f in (out / name).iterdir():
            f.unlink()
    summary = generate(GenConfig(n=30), teacher(server), out=out, topics_file=topics, progress=False)
    assert server.served == sent and summary.this_run["cache_hits"] == 30 and summary.this_run["requests"] == 0
    assert sorted(plan_ids(out, "textbook")) == list(range(30))
    summary = generate(GenConfig(n=30), teacher(server, cache=False), out=tmp_path / "b", topics_file=topics, progress=False)
    assert server.served == sent + 30 and summary.this_run["cache_hits"] == 0


def test_larger_n_extends_an_output_and_another_plan_is_refused(server, tmp_path):
    topics, out = topics_file(tmp_path), tmp_path / "grow"
    generate(GenConfig(n=12), teacher(server), out=out, topics_file=topics, progress=False)
    summary = generate(GenConfig(n=25), teacher(server), out=out, topics_file=topics, progress=False)
    assert sorted(plan_ids(out, "textbook")) == list(range(25)) and server.served == 25
    assert summary.planned == 25 and summary.rows + sum(summary.rejected.values()) == 25
    with pytest.raises(TextbookError, match=r"other inputs or settings \(seed: 0 -> 3"):
        generate(GenConfig(n=25, seed=3), teacher(server), out=out, topics_file=topics, progress=False)
    with pytest.raises(TextbookError, match="more than --n"):
        generate(GenConfig(n=5), teacher(server), out=out, topics_file=topics, progress=False)


def test_teacher_failures_become_rejects_with_the_raw_reply(server, tmp_path):
    server.fault("length", times=None, match="Poisoned topic")  # every attempt for that leaf is cut short
    out = tmp_path / "faults"
    generate(GenConfig(n=9), teacher(server), out=out, topics_file=topics_file(tmp_path), progress=False)
    rejects = read_table(out / "textbook-rejects").to_pylist()
    cut = [r for r in rejects if r["reason"] == "teacher_length"]
    assert len(cut) == 3 and all(r["topic"] == "Poisoned topic" and r["raw"] for r in cut)
    assert sorted(plan_ids(out, "textbook")) == list(range(9))


def test_a_declined_confirmation_sends_nothing(server, tmp_path):
    asked = []

    def decline(what: str) -> bool:
        asked.append(what)
        return False

    with pytest.raises(TextbookError, match="cancelled"):
        generate(GenConfig(n=10), teacher(server), out=tmp_path / "no", topics_file=topics_file(tmp_path), confirm=decline)
    assert asked == ["10 requests to fake-model (0 already done)"] and server.served == 0


def test_a_saved_tree_about_another_topic_is_not_reused_silently(server, tmp_path):
    out = tmp_path / "o"
    generate(GenConfig(n=3), teacher(server), out=out, topics_file=topics_file(tmp_path), progress=False)
    with pytest.raises(TextbookError, match="is about 'Python', not 'rust'"):
        generate(GenConfig(topic="rust", n=3), teacher(server), out=out, progress=False)


def test_resume_when_only_the_rejects_were_made_durable(server, tmp_path):
    """A kill between the rejects' and the rows' first checkpoint: rejects stay, rows are redone from the cache."""
    topics, out = topics_file(tmp_path), tmp_path / "half"
    generate(GenConfig(n=40), teacher(server), out=out, topics_file=topics, progress=False)
    rejected = read_table(out / "textbook-rejects", ["plan_id"])["plan_id"].to_pylist()
    assert rejected
    for f in (out / "textbook").iterdir():
        f.unlink()
    (out / "textbook").rmdir()
    summary = generate(GenConfig(n=40), teacher(server), out=out, topics_file=topics, progress=False)
    ids = plan_ids(out, "textbook")
    assert len(ids) == 40 and sorted(ids) == list(range(40))
    assert summary.this_run["requests"] == 0 and summary.this_run["cache_hits"] == 40 - len(rejected)


def test_credentials_in_the_base_url_reach_no_file(server, tmp_path, capsys, monkeypatch):
    """`--base-url http://user:PASS@host/v1`: the run works, and no manifest, shard, cache or topic file under
    --out holds the password or the API key (public_dict strips URLs; the cache keys on content only)."""
    from tests.clirun import run_cli

    for name in ("OPENAI_API_KEY", "OPENAI_BASE_URL", "TEXTBOOK_MODEL"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.chdir(tmp_path)  # no stray textbook.toml
    server.api_key = None  # the client sends the URL's user:password as Basic auth; this server takes any
    url = server.url.replace("http://", "http://user:SECRETPASS@")
    code, out, err = run_cli(capsys, "gen", "--topic", "python", "--n", "12", "--depth", "1", "--breadth", "2",
                             "--out", "o", "--model", "fake-model", "--base-url", url, "--api-key", KEY, "--yes")
    assert code == 0, err
    assert "of 12 planned" in out
    for kind in ("textbook", "textbook-rejects"):
        assert read_manifest(tmp_path / "o" / kind)["config"]["teacher"]["base_url"] == server.url  # where it went, not how
    files = [p for p in (tmp_path / "o").rglob("*") if p.is_file()]
    assert any(p.name == "teacher-cache.sqlite" for p in files)
    for path in files:
        data = path.read_bytes()
        for secret in (b"SECRETPASS", KEY.encode()):
            assert secret not in data, f"{secret!r} in {path}"
    assert "SECRETPASS" not in out + err


@pytest.mark.parametrize("fault, reasons, fix", [
    (None, "parse_too_short 8", "read the raw replies among the rejects"),  # a polite refusal, no section
    ("length", "teacher_length 8", "raise max_tokens in [teacher] of textbook.toml"),  # every reply cut short
])
def test_a_teacher_that_gives_nothing_usable_fails_the_run_and_keeps_the_rejects(server, tmp_path, capsys, monkeypatch,
                                                                                fault, reasons, fix):
    from tests.clirun import run_cli

    monkeypatch.chdir(tmp_path)
    (tmp_path / "textbook.toml").write_text("[teacher]\nretry_base_s = 0.01\nretry_max_s = 0.05\n")
    for name, value in server.env().items():
        monkeypatch.setenv(name, value)
    server.replies = "Sorry, I would rather not write that."
    if fault:
        server.fault(fault, times=None)
    args = ["gen", "--topic", "python", "--topics", str(topics_file(tmp_path)), "--n", "8", "--out", "o", "--yes"]
    code, out, err = run_cli(capsys, *args)
    assert code == 1 and err.count("\n") == 1 and "Traceback" not in err, err
    assert err.startswith(f"error: the teacher gave nothing usable: 8 of 8 planned rows rejected ({reasons}; "
                          f"see o/textbook-rejects): {fix}"), err
    rejects = read_table(tmp_path / "o/textbook-rejects").to_pylist()  # saved, with the raw replies
    assert len(rejects) == 8 and all(r["raw"].startswith("Sorry") for r in rejects)
    assert read_manifest(tmp_path / "o/textbook")["complete"] and (tmp_path / "o/teacher-cache.sqlite").is_file()
    served = server.served
    code, _, err = run_cli(capsys, *args)  # a rerun resumes (nothing asked again) and says the same
    assert code == 1 and "nothing usable" in err and server.served == served


def test_a_host_that_froze_its_own_objects_keeps_them_frozen():
    import gc

    from textbook.gen.run import _frozen_heap

    with _frozen_heap():  # on its own: freezes for the run, releases after
        assert gc.get_freeze_count() > 0
    assert gc.get_freeze_count() == 0
    gc.freeze()  # a host (a server, a notebook) froze its objects
    try:
        frozen = gc.get_freeze_count()
        with _frozen_heap():
            pass
        # a library call must not unfreeze them (unfreezing empties the permanent generation; a few of its
        # objects may be freed meanwhile by other threads of the test process)
        assert gc.get_freeze_count() >= frozen - 1000
    finally:
        gc.unfreeze()
