"""Offline `textbook gen settings` throughput and memory: samples/s and peak RSS, against baselines in the same run.

    python benchmarks/settings_throughput.py                 # 1,000,000 samples (+ a 300k run), auto workers
    python benchmarks/settings_throughput.py --workers 1     # one process

Each measurement runs in a fresh process, so peak RSS is that run's own. Figures printed:
- samples/s of the whole pipeline (render, noise, label, split, cap, Arrow shards, report), wall and CPU;
- the same as a ratio to bare seed rendering (the floor of any template generator), measured in this run,
  so a loaded machine moves both and the ratio stays comparable;
- peak RSS at --small and at --n samples: constant memory means the ratio stays near 1.
Target: >= 20,000 samples/s offline on the 2-core development machine.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time

TARGET = 20_000


def _child(mode: str, n: int, workers: int, out: str) -> None:
    started, cpu0 = time.perf_counter(), time.process_time()
    if mode == "render":
        import random

        from textbook.settings.config import SettingsConfig
        from textbook.settings.pipeline import build_context

        ctx = build_context(SettingsConfig())
        rng = random.Random(0)
        started, cpu0 = time.perf_counter(), time.process_time()
        for _ in range(n):
            ctx.bank.draw(rng, ctx.chooser.pick(rng))
        rows = n
    else:
        from textbook.settings.config import SettingsConfig
        from textbook.settings.run import generate_settings

        summary = generate_settings(SettingsConfig(n=n, out=out, offline=True, workers=workers), progress=False)
        rows = summary.totals["rows"]
    wall = time.perf_counter() - started
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = time.process_time() - cpu0 + kids.ru_utime + kids.ru_stime
    print(json.dumps({"rows": rows, "wall": wall, "cpu": cpu, "rss_mb": own.ru_maxrss / 1024,
                      "children_rss_mb": kids.ru_maxrss / 1024}))


def _measure(mode: str, n: int, workers: int) -> dict:
    out = tempfile.mkdtemp(prefix="settings-bench-")
    try:
        proc = subprocess.run([sys.executable, __file__, "--child", mode, "--n", str(n), "--workers", str(workers),
                               "--out", out], capture_output=True, text=True, check=True)
        return json.loads(proc.stdout.strip().splitlines()[-1])
    finally:
        shutil.rmtree(out, ignore_errors=True)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--small", type=int, default=300_000)
    ap.add_argument("--workers", type=int, default=0, help="0 = the generator's auto choice")
    ap.add_argument("--child", choices=("render", "run"))
    ap.add_argument("--out")
    args = ap.parse_args()
    if args.child:
        _child(args.child, args.n, args.workers, args.out)
        return

    print(f"machine: {os.cpu_count()} cores, load average {os.getloadavg()[0]:.1f} before; python {sys.version.split()[0]}")
    render = _measure("render", 200_000, 1)
    small = _measure("run", args.small, args.workers)
    big = _measure("run", args.n, args.workers)
    render_rate = render["rows"] / render["wall"]
    print(f"{'measurement':<34}{'samples':>11}{'wall s':>9}{'samples/s':>11}{'cpu s':>9}{'peak RSS MB':>13}")
    for name, m in (("baseline: seed rendering only", render), (f"pipeline --n {args.small:,}", small),
                    (f"pipeline --n {args.n:,}", big)):
        rss = max(m["rss_mb"], m["children_rss_mb"])
        print(f"{name:<34}{m['rows']:>11,}{m['wall']:>9.1f}{m['rows'] / m['wall']:>11,.0f}{m['cpu']:>9.1f}{rss:>13.0f}")
    rate = big["rows"] / big["wall"]
    print(f"workers: {args.workers or 'auto'}; load average after: {os.getloadavg()[0]:.1f}")
    print(f"pipeline / rendering-only rate: {rate / render_rate:.2f}x")
    print(f"peak RSS at {args.n:,} / at {args.small:,}: {big['rss_mb'] / small['rss_mb']:.2f}x (constant memory: ~1)")
    print(f"throughput: {rate:,.0f} samples/s wall, {big['rows'] / big['cpu']:,.0f} samples per CPU-second; "
          f"target {TARGET:,}/s: {'met' if rate >= TARGET else 'NOT met'}")


if __name__ == "__main__":
    main()
