"""Read textbook shards with the usual tools, as they are: no converter, no textbook import needed.

    python examples/read_shards.py runs/demo/prompts

`arrow` shards (the default, Arrow IPC file format) open with datasets.load_dataset("arrow"),
pyarrow.dataset and polars; `--format arrow-stream` shards open with datasets.Dataset.from_file too
(the format datasets itself writes); `--format parquet` opens everywhere.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path


def shard_files(directory: Path) -> list[str]:
    manifest = json.loads((directory / "manifest.json").read_text())
    return [str(directory / s["file"]) for s in manifest["shards"]], manifest["format"]


def with_datasets(directory: Path) -> int:
    import datasets

    files, fmt = shard_files(directory)
    if fmt == "arrow-stream":  # memory-mapped, zero copy: the format datasets writes itself
        return sum(datasets.Dataset.from_file(f).num_rows for f in files)
    return datasets.load_dataset("parquet" if fmt == "parquet" else "arrow", data_files=files, split="train").num_rows


def with_pyarrow(directory: Path) -> int:
    import pyarrow.dataset as ds

    files, fmt = shard_files(directory)
    if fmt == "arrow-stream":  # pyarrow.dataset reads only the IPC file format; stream files open directly
        import pyarrow as pa

        return sum(pa.ipc.open_stream(pa.memory_map(f)).read_all().num_rows for f in files)
    return ds.dataset(files, format="parquet" if fmt == "parquet" else "ipc").count_rows()


def with_polars(directory: Path) -> int:
    import polars as pl

    files, fmt = shard_files(directory)
    if fmt == "parquet":
        return pl.scan_parquet(files).select(pl.len()).collect().item()
    if fmt == "arrow-stream":
        return sum(pl.read_ipc_stream(f).height for f in files)
    return pl.scan_ipc(files).select(pl.len()).collect().item()


def with_torch(directory: Path) -> int:
    """A torch IterableDataset that streams rows shard by shard and splits shards across workers."""
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch
    from torch.utils.data import DataLoader, IterableDataset, get_worker_info

    files, fmt = shard_files(directory)

    class Shards(IterableDataset):
        def __iter__(self):
            info = get_worker_info()
            mine = files if info is None else files[info.id :: info.num_workers]
            for f in mine:
                if fmt == "parquet":
                    batches = pq.ParquetFile(f).iter_batches()
                else:
                    source = pa.memory_map(f)
                    reader = pa.ipc.open_stream(source) if fmt == "arrow-stream" else pa.ipc.open_file(source)
                    batches = reader if fmt == "arrow-stream" else (reader.get_batch(i) for i in range(reader.num_record_batches))
                for batch in batches:
                    yield from batch.to_pylist()

    loader = DataLoader(Shards(), batch_size=8, collate_fn=list)
    return sum(len(batch) for batch in loader)


if __name__ == "__main__":
    directory = Path(sys.argv[1])
    for name, fn in [("datasets", with_datasets), ("pyarrow", with_pyarrow), ("polars", with_polars), ("torch", with_torch)]:
        print(f"{name:9s} {fn(directory):,} rows")
