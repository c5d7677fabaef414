"""The shards open with datasets, pyarrow.dataset, polars and a torch IterableDataset, as they are."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from textbook.shards import write_records

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "read_shards.py"


@dataclass(slots=True)
class Sample:
    id: int
    text: str
    words: list[str]


@pytest.mark.parametrize("fmt", ["arrow", "arrow-stream", "parquet"])
def test_every_reader_reads_every_format(tmp_path, fmt):
    pytest.importorskip("datasets")
    pytest.importorskip("polars")
    pytest.importorskip("torch")
    write_records(tmp_path, Sample, (Sample(i, f"row {i}", ["x"] * (i % 4)) for i in range(37)), fmt=fmt, max_rows=10)
    out = subprocess.run([sys.executable, str(EXAMPLE), str(tmp_path)], capture_output=True, text=True, timeout=300,
                         env={"HF_DATASETS_CACHE": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert out.returncode == 0, out.stderr
    counts = dict(line.split(None, 1) for line in out.stdout.splitlines())
    assert counts == {"datasets": "37 rows", "pyarrow": "37 rows", "polars": "37 rows", "torch": "37 rows"}


def test_arrow_file_format_opens_with_pyarrow_dataset_directly(tmp_path):
    import pyarrow.dataset as ds

    write_records(tmp_path, Sample, (Sample(i, "t", []) for i in range(5)))
    # Users list the shard files by pattern; manifest.json sits beside them and is not Arrow.
    assert ds.dataset(sorted(str(p) for p in tmp_path.glob("shard-*.arrow")), format="ipc").count_rows() == 5
