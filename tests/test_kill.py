"""Kill any command anywhere: `kill -9` at seeded points over the whole run, rerun, and get exactly what an
uninterrupted run writes: the same rows, no id twice, no process left running, no temp file or lock left.
A second launch into the same --out is refused while the first runs (tests/killer.py)."""

from __future__ import annotations

import json
import random
from collections import Counter
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from tests.fakeserver import last_user_message
from tests.killer import Killed, clean_env, kill_anywhere, leftovers, timed
from textbook.shards import read_manifest, read_table

ROOT = Path(__file__).resolve().parents[1]
LABELS = ROOT / "tests" / "data" / "labels"


def check(killed: Killed, out: Path, what: str) -> None:
    print(f"\n{what}: {killed.landed} of {killed.tried} kill points landed mid-run")  # for `pytest -s`
    assert killed.landed >= 2, f"{what}: only {killed.landed} of {killed.tried} kill points landed mid-run"
    assert not killed.orphans, f"{what}: processes outlived the killed run: {killed.orphans}"
    assert "is being written by another run (pid " in killed.second_run or not killed.second_run
    assert not leftovers(out), f"{what}: left behind {leftovers(out)}"


def rows(directory: Path, drop: tuple[str, ...] = ()) -> list[str]:
    """Every row of a shard directory as a sortable string (columns in `drop` left out: clocks, cache flags)."""
    manifest = read_manifest(directory)
    assert manifest is not None and manifest["complete"], f"{directory} is not complete"
    table = read_table(directory)
    table = table.select([c for c in table.column_names if c not in drop])
    print(f"{directory.parent.name}/{directory.name}: {table.num_rows} rows compared")
    return sorted((json.dumps(r, sort_keys=True, default=str) for r in table.to_pylist()))


def no_id_twice(directories: list[Path], column: str) -> int:
    ids = [v for d in directories for v in read_table(d, [column]).column(0).to_pylist()]
    twice = [k for k, c in Counter(ids).items() if c > 1]
    assert not twice, f"ids written twice: {twice[:5]}"
    return len(ids)


def web_corpus(path: Path, n: int, seed: int = 0) -> None:
    """n distinct documents recombined from paragraphs of real web and textbook pages (tests/data/labels),
    with an exact and a near copy every so often so the dedup stages have work."""
    docs = [json.loads(line)["text"] for f in ("heldout.jsonl", "train.jsonl")
            for line in (LABELS / f).read_text(encoding="utf-8").splitlines()]
    paragraphs = [p for d in docs for p in d.split("\n") if len(p.split()) >= 8]
    rng = random.Random(seed)
    out = []
    for i in range(n):
        if i % 17 == 16:
            text = out[i - 5]["text"]  # an exact copy
        elif i % 23 == 22:
            words = out[i - 7]["text"].split(" ")
            words[len(words) // 2] = "zebra"
            text = " ".join(words)  # a near copy
        else:
            text = "\n".join(rng.sample(paragraphs, rng.randint(3, 9)))
        out.append({"id": f"doc-{i}", "text": text, "url": f"https://example.org/{i}"})
    pq.write_table(pa.Table.from_pylist(out), path, row_group_size=500)


def test_filter_both_passes(tmp_path):
    web_corpus(tmp_path / "web.parquet", 2000)
    # Small shards and frequent checkpoints, so shards are sealed between checkpoints (the write pass's
    # duplicated rows came from there) and kills land between both.
    (tmp_path / "textbook.toml").write_text("[filter]\nshard_bytes = 300000\ncheckpoint_rows = 700\nbatch_size = 200\n")
    argv = ["filter", "web.parquet", "--preset", "fineweb"]
    t = timed([*argv, "--out", "straight"], tmp_path)
    killed = kill_anywhere([*argv, "--out", "killed"], tmp_path, out=tmp_path / "killed", duration=t, points=5, seed=13)
    check(killed, tmp_path / "killed", "filter")
    for part in ("kept", "removed"):
        assert rows(tmp_path / "killed" / part) == rows(tmp_path / "straight" / part)
    assert no_id_twice([tmp_path / "killed" / "kept", tmp_path / "killed" / "removed"], "id") == 2000
    report = json.loads((tmp_path / "killed" / "report.json").read_text())
    assert report["kept_plus_removed_equals_input"] and report["rows"] == 2000


def test_filter_on_ray(tmp_path):
    """--engine ray: kills land in the analysis, the shuffles and the piece writers; the local Ray the run started
    dies with it (the reaper), and the finished output is the uninterrupted local engine's."""
    pytest.importorskip("ray")
    web_corpus(tmp_path / "web.parquet", 2000)
    (tmp_path / "textbook.toml").write_text("[filter]\nshard_bytes = 300000\nbatch_size = 200\n")
    argv = ["filter", "web.parquet", "--preset", "fineweb", "--workers", "2"]
    timed([*argv, "--out", "straight"], tmp_path)
    ray = [*argv, "--engine", "ray"]
    t_ray = timed([*ray, "--out", "once"], tmp_path)
    killed = kill_anywhere([*ray, "--out", "killed"], tmp_path, out=tmp_path / "killed", duration=t_ray, points=3, seed=5,
                           startup=3.0)
    check(killed, tmp_path / "killed", "filter --engine ray")
    for part in ("kept", "removed"):
        assert read_table(tmp_path / "killed" / part).to_pylist() == read_table(tmp_path / "straight" / part).to_pylist()


def test_gen_settings_offline(tmp_path):
    (tmp_path / "textbook.toml").write_text("[settings]\ncheckpoint_chunks = 1\n")
    argv = ["gen", "settings", "--offline", "--n", "20000"]
    env = clean_env()
    t = timed([*argv, "--out", "straight"], tmp_path, env)
    killed = kill_anywhere([*argv, "--out", "killed"], tmp_path, out=tmp_path / "killed", duration=t, points=4, seed=3,
                           env=env)
    check(killed, tmp_path / "killed", "gen settings --offline")
    for part in ("settings", "settings-removed"):
        assert rows(tmp_path / "killed" / part) == rows(tmp_path / "straight" / part)
    assert read_table(tmp_path / "killed" / "settings").num_rows == 20000


TREE = {"topic": "Python", "subtopics": [{"topic": t} for t in ("Loops", "Sets", "Closures", "Decorators", "Generators")]}
CLOCKS = ("cached", "latency_s", "created_at", "run_s")  # when and how fast, not what


@pytest.mark.parametrize("kind", ["textbook", "exercises"])
def test_gen_with_a_teacher(tmp_path, fake_teacher, kind):
    from tests.gen_fixtures import GenReplies

    (tmp_path / "topics.json").write_text(json.dumps(TREE))
    (tmp_path / "textbook.toml").write_text("[gen]\ncheckpoint_rows = 20\ncheckpoint_s = 0.2\n")
    fake_teacher.replies, fake_teacher.latency = GenReplies(fail_every=7), 0.02
    env = clean_env() | fake_teacher.env()
    argv = ["gen", "--kind", kind, "--topics", "topics.json", "--n", "80", "--concurrency", "8", "--yes"]
    t = timed([*argv, "--out", "straight"], tmp_path, env)
    killed = kill_anywhere([*argv, "--out", "killed"], tmp_path, out=tmp_path / "killed", duration=t, points=4, seed=5,
                           env=env)
    check(killed, tmp_path / "killed", f"gen --kind {kind}")
    for part in (kind, f"{kind}-rejects"):
        assert rows(tmp_path / "killed" / part, CLOCKS) == rows(tmp_path / "straight" / part, CLOCKS)
    assert no_id_twice([tmp_path / "killed" / kind, tmp_path / "killed" / f"{kind}-rejects"], "plan_id") == 80


def test_gen_settings_with_a_teacher(tmp_path, fake_teacher):
    from tests.settings_fixtures import ScriptedTeacher

    (tmp_path / "textbook.toml").write_text("[settings]\nteacher_batch = 16\ncheckpoint_chunks = 1\n")
    fake_teacher.replies, fake_teacher.latency = ScriptedTeacher(), 0.02
    env = clean_env() | fake_teacher.env()
    argv = ["gen", "settings", "--n", "2000", "--teacher-share", "0.1", "--paraphrases", "3", "--concurrency", "8"]
    t = timed([*argv, "--out", "straight"], tmp_path, env)
    killed = kill_anywhere([*argv, "--out", "killed"], tmp_path, out=tmp_path / "killed", duration=t, points=4, seed=7,
                           env=env)
    check(killed, tmp_path / "killed", "gen settings")
    for part in ("settings", "settings-removed"):
        assert rows(tmp_path / "killed" / part) == rows(tmp_path / "straight" / part)


def test_filter_annotate(tmp_path, fake_teacher):
    web_corpus(tmp_path / "web.parquet", 300)
    def grade(messages):  # a teacher that reads: the score depends on the document (and it refuses one word)
        text = last_user_message(messages)
        return "I refuse to grade this." if "zebra" in text else f"Clear and structured.\nEducational score: {len(text) % 6}"

    fake_teacher.replies = grade
    fake_teacher.latency = 0.02
    env = clean_env() | fake_teacher.env()
    argv = ["filter", "annotate", "web.parquet", "--n", "200", "--concurrency", "4"]
    t = timed([*argv, "--out", "straight"], tmp_path, env)
    killed = kill_anywhere([*argv, "--out", "killed"], tmp_path, out=tmp_path / "killed", duration=t, points=4, seed=9,
                           env=env)
    check(killed, tmp_path / "killed", "filter annotate")
    assert rows(tmp_path / "killed") == rows(tmp_path / "straight")
    assert no_id_twice([tmp_path / "killed"], "id") == 200


TRAIN = ["train", "--preset", "mu-tiny", "--vocab-size", "300", "--batch-size", "8", "--lr", "1e-2", "--warmup-steps", "10",
         "--max-steps", "30", "--checkpoint-every", "10", "--log-every", "10", "--data", "data", "--task", "settings"]


def _torch_env() -> dict[str, str]:
    return clean_env() | {"OMP_NUM_THREADS": "1"}  # one thread: the same arithmetic in every process


def test_train_then_export(tmp_path):
    pytest.importorskip("onnxruntime")
    from safetensors.numpy import load_file

    from tests.mu_fixtures import write_settings

    write_settings(tmp_path / "data", repeat=4, splits=("train", "validation", "test"))
    env = _torch_env()
    t = timed([*TRAIN, "--out", "straight"], tmp_path, env)
    killed = kill_anywhere([*TRAIN, "--out", "killed"], tmp_path, out=tmp_path / "killed", duration=t, points=2, seed=11,
                           env=env, rerun=[*TRAIN, "--out", "killed", "--resume"], startup=2.5)
    check(killed, tmp_path / "killed", "train")
    a, b = load_file(tmp_path / "straight" / "model.safetensors"), load_file(tmp_path / "killed" / "model.safetensors")
    assert a.keys() == b.keys() and all((a[k] == b[k]).all() for k in a)  # exactly the uninterrupted run's weights
    from textbook.mu.neighbours import load_neighbours  # and its retrieval index, built last: a kill there is resumed too

    x, y = load_neighbours(tmp_path / "straight"), load_neighbours(tmp_path / "killed")
    assert x.heads == y.heads and (x.head_ids == y.head_ids).all() and (x.vectors == y.vectors).all()
    assert x.calls == y.calls and (x.call_ids == y.call_ids).all()
    assert x.words.vocabulary == y.words.vocabulary and (x.words.docs == y.words.docs).all() and (x.words.weights == y.words.weights).all()
    log = [json.loads(line) for line in (tmp_path / "killed" / "log.jsonl").read_text().splitlines()]
    steps = [r["step"] for r in log if "loss" in r]
    assert steps == list(range(10, 31, 10))  # each logged step once, in order
    assert [r["step"] for r in log if "val_loss" in r] == steps

    argv = ["export", "straight", "--quantize", "int8", "--calibration", "data", "--max-source-len", "24",
            "--calibration-samples", "8", "--parity-samples", "8"]
    t = timed([*argv, "--out", "exported"], tmp_path, env)
    killed = kill_anywhere([*argv, "--out", "killed-export"], tmp_path, out=tmp_path / "killed-export", duration=t,
                           points=2, seed=17, env=env, startup=2.5)
    check(killed, tmp_path / "killed-export", "export")
    a = json.loads((tmp_path / "exported" / "export.json").read_text())
    b = json.loads((tmp_path / "killed-export" / "export.json").read_text())
    assert {k: v["sha256"] for k, v in a["variants"].items()} == {k: v["sha256"] for k, v in b["variants"].items()}
    assert a["parity"] == b["parity"]  # the same graphs, byte for byte, and the same answers
    assert sorted(p.name for p in (tmp_path / "killed-export").iterdir()) == sorted(p.name for p in (tmp_path / "exported").iterdir())
