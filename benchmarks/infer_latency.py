"""Inference latency of an exported Mu: fp32 against its quantized variants, in the same run.

    python benchmarks/infer_latency.py --run runs/settings --data out/settings/settings --out export/bench

Exports RUN (fp32 + int8 + a16w8 + dynamic; reuses OUT when it already holds an export of the same
weights), then times the test split's queries one request at a time, every variant interleaved. Prints
first-token latency, decode tokens/s, end-to-end p50/p95, model size, the held-out parity of the
export (exact match against PyTorch), and issue 6's targets for mu-small on a 2-core CPU:
end-to-end p50 < 100 ms; quantized >= 1.5x faster than fp32 and <= 30% of its size; exact-match
drop <= 1 point (a16w8) and <= 2 points (int8).
"""

from __future__ import annotations

import argparse
import os
import platform
from pathlib import Path

from textbook.export.bench import benchmark, format_bench
from textbook.export.config import ExportConfig
from textbook.export.exporter import export_run, format_summary, sha256_file
from textbook.export.runner import MANIFEST, read_export_manifest
from textbook.export.samples import read_samples


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--run", type=Path, required=True, help="trained Mu run (textbook train --out)")
    ap.add_argument("--data", type=Path, required=True, help="settings shards (query, target, split)")
    ap.add_argument("--out", type=Path, required=True, help="export directory (reused when up to date)")
    ap.add_argument("--requests", type=int, default=200, help="test queries timed per variant")
    ap.add_argument("--max-source-len", type=int, default=32)
    ap.add_argument("--max-target-len", type=int, default=32)
    ap.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads (0 = one per core)")
    args = ap.parse_args()

    fresh = (args.out / MANIFEST).is_file() and read_export_manifest(args.out).get("weights_sha256") == sha256_file(args.run / "model.safetensors")
    if fresh:
        manifest = read_export_manifest(args.out)
    else:
        cfg = ExportConfig(quantize=("int8", "a16w8", "dynamic"), calibration=str(args.data),
                           max_source_len=args.max_source_len, max_target_len=args.max_target_len)
        manifest = export_run(args.run, args.out, cfg)
    print(format_summary(manifest, args.out))
    queries = [s.query for s in read_samples(args.data, split="test", limit=args.requests, seed=1)]
    rows = benchmark(args.out, queries, threads=args.threads)
    print(f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, {args.threads} ONNX Runtime thread(s), "
          f"load average {os.getloadavg()[0]:.1f}")
    print(format_bench(rows))

    by = {r.variant: r for r in rows}
    fp32 = by["fp32"]
    print("targets (mu-small, 2-core CPU):")
    for r in rows:
        print(f"  {r.variant:<8} e2e p50 {r.e2e_ms_p50:6.1f} ms < 100 ms: {'yes' if r.e2e_ms_p50 < 100 else 'NO'}")
    for name in ("int8", "a16w8", "dynamic"):
        if name not in by:
            continue
        r, p = by[name], manifest["parity"].get(name, {})
        speed, size = fp32.e2e_ms_p50 / r.e2e_ms_p50, r.bytes / fp32.bytes
        drop = p.get("drop_points")
        limit = p.get("max_drop_points")
        print(f"  {name:<8} speedup {speed:4.2f}x >= 1.5x: {'yes' if speed >= 1.5 else 'NO'};  size {size:4.0%} <= 30%: "
              f"{'yes' if size <= 0.30 else 'NO'};  exact-match drop "
              + (f"{drop:+.1f} pts <= {limit:.0f}: {'yes' if drop <= limit else 'NO'}" if drop is not None else "n/a"))


if __name__ == "__main__":
    main()
