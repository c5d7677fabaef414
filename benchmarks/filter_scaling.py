"""`textbook filter --engine local` against `--engine ray` with 1 and 2 Ray CPUs, in one run (not a test).

Each Ray setting twice: the command starting its own local Ray (`--workers N`), and the command joining a
cluster started beforehand (`ray start --head --num-cpus N`, then `--ray-address`), as on several machines.
For each: wall seconds and docs/s of the whole command, the peak RSS of the largest process (sampled every
0.2 s over every process on the machine that belongs to the run: the driver, its workers, Ray's workers and
raylet), and whether the kept ids are those of the local engine. Ray's overhead shows as the difference
between `ray, 2 CPUs` and `local, 2 workers` (starting a local Ray, ~4 s here, and its workers; the shuffles);
parallel efficiency is docs/s at 2 CPUs / (2 x docs/s at 1 CPU).

    python benchmarks/filter_scaling.py --input web.parquet   # e.g. the 100k corpus of ../shared/bench/make_corpus.py
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import psutil
import pyarrow.parquet as pq

from textbook.shards import read_table


def peak_rss(stop: threading.Event, roots: list[int], out: dict) -> None:
    """Largest RSS of any process descended from `roots` (or named ray::/raylet/gcs), sampled until stopped."""
    while not stop.is_set():
        for proc in psutil.process_iter(["pid", "ppid", "name", "cmdline", "memory_info"]):
            try:
                cmd = " ".join(proc.info["cmdline"] or [])
                ours = proc.info["pid"] in roots or any(p.pid in roots for p in proc.parents())
                if ours or "ray::" in cmd or "raylet" in cmd or "gcs_server" in cmd:
                    rss = proc.info["memory_info"].rss
                    if rss > out.get("rss", 0):
                        out.update(rss=rss, who=(proc.info["name"] or "")[:30])
            except (psutil.NoSuchProcess, psutil.AccessDenied, TypeError):
                continue
        stop.wait(0.2)


def run(input_path: Path, out: Path, engine: str, cpus: int, address: str | None = None) -> dict:
    cmd = [sys.executable, "-m", "textbook", "filter", str(input_path), "--out", str(out), "--workers", str(cpus),
           "--engine", engine, *(["--ray-address", address] if address else [])]
    stop, seen = threading.Event(), {}
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=LOOPBACK if address else None)
    watcher = threading.Thread(target=peak_rss, args=(stop, [proc.pid], seen), daemon=True)
    watcher.start()
    stdout, stderr = proc.communicate()
    seconds = time.perf_counter() - start
    stop.set()
    watcher.join()
    if proc.returncode:
        raise SystemExit(f"{' '.join(cmd)} failed:\n{stderr[-2000:]}")
    report = json.loads((out / "report.json").read_text())
    kept = sorted(read_table(out / "kept", ["id"]).column("id").to_pylist())
    return {"seconds": seconds, "docs_per_s": report["rows"] / seconds, "pass1_s": report["timing"].get("pass1_wall_seconds"),
            "peak_rss_mb": seen.get("rss", 0) / 2**20, "largest": seen.get("who"), "kept": kept}


# a cluster on this machine's loopback only: no token (a real cluster keeps Ray's token authentication on and
# gives the command RAY_AUTH_TOKEN, see the README)
LOOPBACK = {**os.environ, "RAY_AUTH_MODE": "disabled"}


@contextmanager
def ray_cluster(cpus: int):
    """`ray start --head` with `cpus` CPUs on a free port, its address, then `ray stop`."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    ray = str(Path(sys.executable).with_name("ray"))
    subprocess.run([ray, "start", "--head", f"--num-cpus={cpus}", f"--port={port}", "--include-dashboard=false",
                    "--disable-usage-stats"], check=True, capture_output=True, env=LOOPBACK)
    try:
        yield f"127.0.0.1:{port}"
    finally:
        subprocess.run([ray, "stop", "--force"], capture_output=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", type=Path, required=True)
    args = parser.parse_args()
    rows = pq.ParquetFile(args.input).metadata.num_rows
    print(f"machine: {os.cpu_count()} CPUs; {rows:,} documents in {args.input}")
    runs = (("local, 2 workers", "local", 2, False), ("ray, 1 CPU", "ray", 1, False), ("ray, 2 CPUs", "ray", 2, False),
            ("cluster, 1 CPU", "ray", 1, True), ("cluster, 2 CPUs", "ray", 2, True))
    with tempfile.TemporaryDirectory() as tmp:
        results = {}
        for name, engine, cpus, cluster in runs:
            out = Path(tmp) / name.replace(" ", "").replace(",", "-")
            if cluster:  # a running cluster, as on many machines: the command joins it, Ray's start-up is not in it
                with ray_cluster(cpus) as address:
                    results[name] = run(args.input, out, engine, cpus, address)
            else:
                results[name] = run(args.input, out, engine, cpus)
            r = results[name]
            print(f"  {name:<17} {r['seconds']:7.1f} s  {r['docs_per_s']:8,.0f} docs/s  pass 1 {r['pass1_s'] or 0:6.1f} s  "
                  f"peak RSS {r['peak_rss_mb']:6.0f} MB ({r['largest']})")
    base = results["local, 2 workers"]["kept"]
    same = all(r["kept"] == base for r in results.values())
    print(f"  same kept ids in all {len(results)}: {same} ({len(base):,} kept)")
    for what in ("ray", "cluster"):
        one, two = results[f"{what}, 1 CPU"], results[f"{what}, 2 CPUs"]
        print(f"  parallel efficiency 1 -> 2 CPUs, {'a local Ray started by the command' if what == 'ray' else 'a running cluster'}: "
              f"whole command {two['docs_per_s'] / (2 * one['docs_per_s']):.0%}, pass 1 {one['pass1_s'] / (2 * two['pass1_s']):.0%}")
    print(f"  Ray's overhead against the local engine at 2 CPUs: {results['ray, 2 CPUs']['seconds'] - results['local, 2 workers']['seconds']:+.1f} s "
          f"(starting Ray in the command), {results['cluster, 2 CPUs']['seconds'] - results['local, 2 workers']['seconds']:+.1f} s (a running cluster)")


if __name__ == "__main__":
    main()
