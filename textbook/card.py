"""A dataset card for every output directory: OUT/README.md in the Hugging Face format.

YAML front matter with one config per stream (its kept rows and its rejects each), their data files (the
shards each manifest lists, no glob: a shard a killed run left unlisted is never read) and features,
the size category and a licence to fill in; below it, the provenance the manifests already hold (config,
teacher, templates, counts, the usage ledger). So `datasets.load_dataset(OUT, CONFIG)` and
`huggingface-cli upload REPO OUT` take the directory as it is.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from textbook import __version__
from textbook.shards import atomic_write_bytes, read_manifest

CARD = "README.md"
_SIZES = ((1_000, "n<1K"), (10_000, "1K<n<10K"), (100_000, "10K<n<100K"), (1_000_000, "100K<n<1M"),
          (10_000_000, "1M<n<10M"), (100_000_000, "10M<n<100M"), (1_000_000_000, "100M<n<1B"))
_DTYPES = {"int8", "int16", "int32", "int64", "uint8", "uint16", "uint32", "uint64", "bool", "string", "large_string",
           "binary", "large_binary"}


def size_category(rows: int) -> str:
    return next((name for limit, name in _SIZES if rows < limit), "n>1B")


def _dtype(t: pa.DataType) -> str | None:
    if pa.types.is_float64(t):
        return "float64"
    if pa.types.is_float32(t):
        return "float32"
    return str(t) if str(t) in _DTYPES else None


def features(schema: pa.Schema) -> list[dict[str, Any]] | None:
    """The schema as a card's `features` (datasets >= 4 YAML); None when a column has a type it cannot say."""
    out = []
    for f in schema:
        if pa.types.is_list(f.type) or pa.types.is_large_list(f.type):
            inner = _dtype(f.type.value_type)
            if inner is None:
                return None
            out.append({"name": f.name, "list": inner})
        elif (dtype := _dtype(f.type)) is not None:
            out.append({"name": f.name, "dtype": dtype})
        else:
            return None
    return out


def _schema(directory: Path, first: str) -> pa.Schema:
    path = directory / first
    if path.suffix == ".parquet":
        return pq.read_schema(path)
    with pa.memory_map(str(path)) as source:
        try:
            return pa.ipc.open_file(source).schema
        except pa.ArrowInvalid:  # arrow-stream
            source.seek(0)
            return pa.ipc.open_stream(source).schema


def write_card(out: str | Path, title: str, streams: dict[str, str], *, about: str, tags: list[str],
               provenance: dict[str, Any] | None = None, ledger_lines: list[str] | None = None) -> Path:
    """OUT/README.md for the shard directories `streams` (config name -> directory relative to OUT, "" for OUT)."""
    out = Path(out)
    configs, infos, rows_total, table = [], [], 0, []
    for name, rel in streams.items():
        directory = out / rel if rel else out
        manifest = read_manifest(directory)
        if manifest is None or not manifest["shards"]:
            continue
        files = [f"{rel}/{s['file']}" if rel else s["file"] for s in manifest["shards"]]
        configs.append({"config_name": name, **({"default": True} if not configs else {}),
                        "data_files": [{"split": "train", "path": files}]})
        feats = features(_schema(directory, manifest["shards"][0]["file"]))
        if feats is not None:
            infos.append({"config_name": name, "features": feats,
                          "splits": [{"name": "train", "num_examples": manifest["rows"]}]})
        rows_total += manifest["rows"] if not name.endswith(("rejects", "removed")) else 0
        table.append(f"| `{name}` | `{rel or '.'}` | {manifest['rows']:,} | {len(files)} | {manifest['format']} |")
    front = {"pretty_name": title, "size_categories": [size_category(rows_total)], "tags": ["textbook", *tags],  # the toolkit's name; the caller says what the data is
             "configs": configs}
    if infos:
        front["dataset_info"] = infos
    first = configs[0]["config_name"] if configs else "default"
    body = [
        f"# {title}", "", about, "",
        f"Made by textbook {__version__}. Each stream is one config; rows that were removed or rejected are their own",
        "config, with the reason, so nothing is lost and every filter decision can be checked.", "",
        "| config | directory | rows | files | format |", "|---|---|---|---|---|", *table, "",
        "```python", "from datasets import load_dataset", "",
        f'ds = load_dataset("{out.name}", "{first}", split="train")  # this directory, or the repo it was uploaded to', "```", "",
        "## Licence", "",
        "Set `license:` above before sharing: the licence of the inputs, and for generated data the teacher's terms.", "",
    ]
    if ledger_lines:
        body += ["## Teacher usage", "", "```", *[line.strip() for line in ledger_lines], "```", ""]
    if provenance:
        body += ["## Provenance", "", "What made this data (the manifests hold the same):", "", "```json",
                 json.dumps(provenance, indent=2, ensure_ascii=False, default=str), "```", ""]
    text = ("---\nlicense: other  # set it: see Licence below\n"
            + yaml.safe_dump(front, sort_keys=False, allow_unicode=True, width=1000) + "---\n\n" + "\n".join(body))
    path = out / CARD
    atomic_write_bytes(path, text.encode())
    return path
