"""`textbook gen` on a Ray cluster: N slices of one plan as N Ray tasks, then one merged output.

Each task runs `textbook gen ... --shard I/N --out OUT/part-I` (its own cache, ledger and shards: a task
that dies is rerun by Ray or by you, and resumes where it stopped), then the driver runs
`textbook shards merge`. OUT must be on storage every node sees (NFS, a shared volume); elsewhere, copy the
part directories to one place and merge there.

    ray start --head                         # or: connect to an existing cluster with --address
    python examples/ray_gen_slices.py --slices 8 --out runs/python -- \
        --topics topics.json --n 100000 --model gpt-4o-mini

Everything after `--` is passed to `textbook gen` as it is (every slice gets the same options; --topics is
required, so that all slices plan from one tree). Without Ray the same pattern is a loop of shells or a
Slurm array (README, "Beyond one machine").
"""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path


def run_slice(i: int, n: int, out: str, gen_args: list[str]) -> tuple[int, int, str]:
    """One slice, as a subprocess: (slice, exit code, last lines of its output)."""
    cmd = [sys.executable, "-m", "textbook", "gen", *gen_args, "--shard", f"{i}/{n}", "--out", f"{out}/part-{i}", "--yes"]
    done = subprocess.run(cmd, capture_output=True, text=True)
    return i, done.returncode, (done.stdout + done.stderr)[-2000:]


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ours, gen_args = (argv[: argv.index("--")], argv[argv.index("--") + 1:]) if "--" in argv else (argv, [])
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slices", type=int, required=True, help="N: slices of the plan, one Ray task each")
    parser.add_argument("--out", required=True, help="shared directory: OUT/part-I per slice, OUT/merged at the end")
    parser.add_argument("--address", default=None, help="Ray cluster address (default: start or join a local one)")
    parser.add_argument("--num-cpus", type=int, default=None, help="for a local Ray only: CPUs it may use")
    args = parser.parse_args(ours)

    import ray  # pip install "textbook[ray]"

    ray.init(address=args.address, num_cpus=args.num_cpus if args.address is None else None)
    task = ray.remote(num_cpus=1, max_retries=2)(run_slice)  # a lost node's slice reruns and resumes
    results = ray.get([task.remote(i, args.slices, str(Path(args.out).resolve()), gen_args) for i in range(args.slices)])
    failed = [(i, tail) for i, code, tail in sorted(results) if code != 0]
    for i, tail in failed:
        print(f"slice {i}/{args.slices} failed:\n{tail}", file=sys.stderr)
    if failed:
        print("rerun this command: finished slices are not redone", file=sys.stderr)
        return 1
    parts = [str(Path(args.out) / f"part-{i}") for i in range(args.slices)]
    merged = subprocess.run([sys.executable, "-m", "textbook", "shards", "merge", *parts, "--out", str(Path(args.out) / "merged")])
    return merged.returncode


if __name__ == "__main__":
    sys.exit(main())
