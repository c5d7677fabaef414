"""Every output directory is a Hugging Face dataset as it is: its README.md card names each stream as a config."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from textbook.card import features, size_category
from textbook.filter.config import FilterRun, load_preset
from textbook.filter.run import run_filter
from textbook.settings.config import SettingsConfig
from textbook.settings.run import generate_settings
from textbook.shards import read_table

datasets = pytest.importorskip("datasets")


def front_matter(path) -> dict:
    text = path.read_text(encoding="utf-8")
    assert text.startswith("---\nlicense: other")
    return yaml.safe_load(text.split("---\n")[1])


def test_filter_output_loads_through_its_card(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    lines = (Path(__file__).parent / "data" / "labels" / "heldout.jsonl").read_text(encoding="utf-8").splitlines()[:60]
    docs = [{"id": r["id"], "text": r["text"]} for r in map(json.loads, lines)]
    pq.write_table(pa.Table.from_pylist(docs), tmp_path / "web.parquet")
    out = tmp_path / "f"
    run_filter([str(tmp_path / "web.parquet")], out, FilterRun(workers=1, format="parquet"), load_preset("default"))
    card = front_matter(out / "README.md")
    assert [c["config_name"] for c in card["configs"]] == ["kept", "removed"] and card["size_categories"] == ["n<1K"]
    for name in ("kept", "removed"):
        ds = datasets.load_dataset(str(out), name, split="train")
        assert ds.num_rows == read_table(out / name).num_rows and set(ds.column_names) == set(read_table(out / name).column_names)
    assert "reason" in datasets.load_dataset(str(out), "removed", split="train").column_names


def test_settings_output_loads_through_its_card_with_its_features(tmp_path):
    out = tmp_path / "s"
    generate_settings(SettingsConfig(n=200, out=str(out), offline=True), progress=False)
    card = front_matter(out / "README.md")
    info = {i["config_name"]: i for i in card["dataset_info"]}
    assert info["settings"]["splits"][0]["num_examples"] == 200
    assert {"name": "noise_ops", "list": "string"} in info["settings"]["features"]
    ds = datasets.load_dataset(str(out), "settings", split="train")
    assert ds.num_rows == 200 and ds.features["noise_ops"].feature.dtype == "string"
    assert "## Provenance" in (out / "README.md").read_text()


def test_size_categories_and_unsayable_features():
    import pyarrow as pa

    assert [size_category(n) for n in (0, 999, 1000, 250_000)] == ["n<1K", "n<1K", "1K<n<10K", "100K<n<1M"]
    assert features(pa.schema([("a", pa.int64()), ("b", pa.float32())])) == [{"name": "a", "dtype": "int64"},
                                                                            {"name": "b", "dtype": "float32"}]
    assert features(pa.schema([("s", pa.struct([("x", pa.int8())]))])) is None  # left out rather than said wrong


def test_gen_output_loads_through_its_card_rows_and_rejects(tmp_path, fake_teacher):
    from tests.gen_fixtures import GenReplies
    from textbook.gen.config import GenConfig
    from textbook.gen.run import generate

    fake_teacher.replies = GenReplies(nocode_every=3)
    (tmp_path / "topics.json").write_text(json.dumps({"topic": "Python", "subtopics": [{"topic": "Loops"}, {"topic": "Sets"}]}))
    out = tmp_path / "g"
    summary = generate(GenConfig(n=12), fake_teacher.config(), out=out, topics_file=tmp_path / "topics.json", progress=False)
    text = (out / "README.md").read_text()
    assert "## Teacher usage" in text and "requests sent" in text and '"template"' in text
    rows = datasets.load_dataset(str(out), "textbook", split="train")
    rejects = datasets.load_dataset(str(out), "textbook-rejects", split="train")
    assert rows.num_rows == summary.rows and rejects.num_rows == sum(summary.rejected.values()) > 0
    assert set(rejects["reason"]) == {"parse_no_code"}
