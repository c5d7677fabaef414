"""Human-readable summaries of shard directories (for `textbook shards`)."""

from __future__ import annotations

import json
from pathlib import Path

from textbook.errors import TextbookError
from textbook.shards import MANIFEST, read_manifest, read_table


def find_shard_dirs(root: Path) -> list[Path]:
    if (root / MANIFEST).is_file():
        return [root]
    found = sorted(p.parent for p in root.rglob(MANIFEST))
    if not found:
        raise TextbookError(f"no {MANIFEST} under {root}: point at a directory written by textbook gen/filter")
    return found


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return str(n)


def describe_shards(root: str | Path, *, head: int = 0) -> str:
    root = Path(root)
    if not root.exists():
        raise TextbookError(f"{root} does not exist")
    lines: list[str] = []
    for directory in find_shard_dirs(root):
        manifest = read_manifest(directory)
        status = "complete" if manifest.get("complete") else "INCOMPLETE (rerun the command to resume)"
        size = sum(s["bytes"] for s in manifest["shards"])
        lines.append(f"{directory}  [{manifest['format']}, {status}]")
        lines.append(f"  rows: {manifest['rows']:,} in {len(manifest['shards'])} shard(s), {_size(size)}")
        lines.append("  schema: " + ", ".join(f"{f['name']}: {f['type']}" for f in manifest["schema"]))
        for key, value in (manifest.get("totals") or {}).items():
            if not isinstance(value, (dict, list)):
                lines.append(f"  {key}: {value:,}" if isinstance(value, int) else f"  {key}: {value}")
        if head:
            table = read_table(directory).slice(0, head)
            for i, row in enumerate(table.to_pylist()):
                lines.append(f"  --- row {i}")
                for key, value in row.items():
                    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, default=str)
                    text = text if len(text) <= 300 else text[:300] + f"… ({len(text):,} chars)"
                    lines.append(f"    {key}: {text}")
        lines.append("")
    return "\n".join(lines).rstrip() + "\n"
