"""`gen --shard I/N` on N "machines", then `textbook shards merge`: exactly the plan, once; wrong sets refused."""

from __future__ import annotations

import json

import pytest

from tests.gen_fixtures import GenReplies
from textbook.errors import ConfigError, TextbookError
from textbook.gen.config import GenConfig, resolve_gen
from textbook.gen.run import generate
from textbook.merge import merge_slices
from textbook.shards import read_manifest, read_table

TREE = {"topic": "Python", "subtopics": [{"topic": t} for t in ("Loops", "Sets", "Closures", "Decorators")]}
N = 30


def slices(tmp_path, server, k: int, **gen) -> list:
    (tmp_path / "topics.json").write_text(json.dumps(TREE))
    outs = []
    for i in range(k):
        out = tmp_path / f"part-{i}"
        generate(GenConfig(n=N, shard=f"{i}/{k}", **gen), server.config(), out=out, topics_file=tmp_path / "topics.json",
                 progress=False)
        outs.append(out)
    return outs


def plan_ids(out, kind="textbook"):
    return (read_table(out / kind, ["plan_id"])["plan_id"].to_pylist()
            + read_table(out / f"{kind}-rejects", ["plan_id"])["plan_id"].to_pylist())


def test_three_slices_merge_into_exactly_the_plan(tmp_path, fake_teacher):
    fake_teacher.replies = GenReplies(nocode_every=5)
    outs = slices(tmp_path, fake_teacher, 3)
    assert sorted(plan_ids(outs[1])) == [i for i in range(N) if i % 3 == 1]  # a slice is its share of the plan
    report = merge_slices(outs, tmp_path / "merged")
    merged = tmp_path / "merged"
    assert sorted(plan_ids(merged)) == list(range(N))  # all of it, once
    manifest = read_manifest(merged / "textbook")
    assert manifest["complete"] and manifest["rows"] == report["rows"]["textbook"] == read_table(merged / "textbook").num_rows
    # the same plan made whole on one machine has the same items (item i depends only on i)
    whole = tmp_path / "whole"
    generate(GenConfig(n=N), fake_teacher.config(), out=whole, topics_file=tmp_path / "topics.json", progress=False)
    cols = ["plan_id", "topic", "audience", "style", "words"]
    a = sorted(read_table(whole / "textbook", cols).to_pylist(), key=lambda r: r["plan_id"])
    b = sorted(read_table(merged / "textbook", cols).to_pylist(), key=lambda r: r["plan_id"])
    assert a == b


def test_missing_twice_unfinished_or_foreign_slices_are_refused(tmp_path, fake_teacher):
    fake_teacher.replies = GenReplies()
    outs = slices(tmp_path, fake_teacher, 3)
    with pytest.raises(TextbookError, match=r"slice\(s\) 2/3 missing: run `textbook gen ... --shard 2/3`"):
        merge_slices(outs[:2], tmp_path / "m")
    with pytest.raises(TextbookError, match="slice 1/3 is given twice"):
        merge_slices([outs[0], outs[1], outs[1]], tmp_path / "m")
    other = tmp_path / "other"
    generate(GenConfig(n=N, shard="2/3", seed=9), fake_teacher.config(), out=other, topics_file=tmp_path / "topics.json",
             progress=False)
    with pytest.raises(TextbookError, match=r"slices of different plans \(seed: 0 -> 9"):
        merge_slices([outs[0], outs[1], other], tmp_path / "m")
    with pytest.raises(TextbookError, match="is a whole run, not a slice"):
        generate(GenConfig(n=5), fake_teacher.config(), out=tmp_path / "w", topics_file=tmp_path / "topics.json", progress=False)
        merge_slices([tmp_path / "w"], tmp_path / "m")


def test_shard_flag_is_checked_and_needs_one_tree(tmp_path, fake_teacher):
    with pytest.raises(ConfigError, match="give I/N with 0 <= I < N"):
        resolve_gen({"shard": "3/3"}, {})
    fake_teacher.replies = GenReplies()
    with pytest.raises(ConfigError, match="every slice must plan from the same topic tree"):
        generate(GenConfig(topic="gardening", n=5, shard="0/2"), fake_teacher.config(), out=tmp_path / "g", progress=False)


def test_the_ray_example_runs_the_slices_as_ray_tasks_and_merges(tmp_path, fake_teacher):
    import os
    import subprocess
    import sys
    from pathlib import Path

    pytest.importorskip("ray")
    fake_teacher.replies = GenReplies()
    (tmp_path / "topics.json").write_text(json.dumps(TREE))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "TEXTBOOK_"))} | fake_teacher.env()
    example = Path(__file__).resolve().parents[1] / "examples" / "ray_gen_slices.py"
    done = subprocess.run([sys.executable, str(example), "--slices", "3", "--out", "runs", "--num-cpus", "2", "--",
                           "--topics", "topics.json", "--n", str(N)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "merged 3 slices of one plan" in done.stdout
    assert sorted(plan_ids(tmp_path / "runs" / "merged")) == list(range(N))


def test_settings_slices_merge_into_one_dataset_of_n_samples(tmp_path):
    from textbook.settings.config import SettingsConfig
    from textbook.settings.run import generate_settings

    outs = []
    for i in range(2):
        out = tmp_path / f"s-{i}"
        summary = generate_settings(SettingsConfig(n=301, out=str(out), offline=True, shard=f"{i}/2"), progress=False)
        assert summary.totals["rows"] == (151 if i == 0 else 150)  # each its share of --n
        outs.append(out)
    a, b = (set(read_table(o / "settings", ["clean_query"])["clean_query"].to_pylist()) for o in outs)
    assert len(a & b) < 0.2 * min(len(a), len(b))  # other chunks, other seeds (common short phrasings aside)
    report = merge_slices(outs, tmp_path / "merged")
    assert report["rows"]["settings"] == 301 == read_table(tmp_path / "merged" / "settings").num_rows
    assert read_manifest(tmp_path / "merged" / "settings")["totals"]["rows"] == 301
    # one machine, no --shard, draws what it always drew (slice 0 of 1)
    whole = generate_settings(SettingsConfig(n=150, out=str(tmp_path / "w"), offline=True), progress=False)
    again = generate_settings(SettingsConfig(n=150, out=str(tmp_path / "w0"), offline=True, shard="0/1"), progress=False)
    assert read_table(tmp_path / "w" / "settings").to_pylist() == read_table(tmp_path / "w0" / "settings").to_pylist()
    assert whole.totals["rows"] == again.totals["rows"] == 150
