"""Throughput, memory and accuracy of `textbook filter`, side by side with its peers, in one run.

Sections (all on this machine, in one invocation; ratios are against peers measured in the same run):
  dedup       near-duplicate detection on the corpus ../shared/bench/make_corpus.py builds (real text,
              planted near-duplicates with known Jaccard). Methods, each a child process under
              /usr/bin/time -v, scored by ../shared/bench/bench_dedup.py's own `evaluate`:
                naive, fast        the datasketch peers, run by bench_dedup.py itself
                textbook           textbook.minhash streaming: Parquet batches -> signatures in 2 forked
                                   workers -> 14 band keys per doc (the only thing kept) -> components
                textbook-cli       `textbook filter --preset dedup-only`: the same plus writing kept/ and
                                   removed/ shards and the report (like datatrove's filter stage)
                textbook-16x7-verify  the same 112 permutations read as 16 bands x 7 rows, a candidate pair
                                   linked only if its signatures estimate Jaccard >= 0.5 (high-recall.yaml)
              plus any bench_dedup.py method named in --peers (datatrove, textdedup need their venvs).
  classifier  held-out accuracy (tests/data/labels/heldout.jsonl: DCLM human labels, web textbook vs web
              pages) and scoring docs/s with 2 processes, for the bundled classifier and two peers
              trained here on the same split: sklearn HashingVectorizer (word 1-2 + char 3-5 grams) +
              logistic regression, and all-MiniLM-L6-v2 embeddings + logistic regression.
  e2e         `textbook filter` with the default preset (heuristics + dedup + classifier + writing).
  scale       textbook dedup on 1M documents built with make_corpus.py's recipe (make_big_corpus): docs/s, RSS.

Usage (heavy: run it alone on the machine):
  python benchmarks/filter_throughput.py --work peers-work --n 100000 --sections dedup,classifier,e2e,scale
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(os.environ.get("TEXTBOOK_BENCH_DIR", ROOT.parent / "shared" / "bench"))


def bench_dedup():
    sys.path.insert(0, str(BENCH))
    import bench_dedup as bd  # noqa: E402  (the peers' harness: its workers, scoring and PSS sampler)

    return bd


# ------------------------------------------------------------------ our workers (child processes)
_HASHER = None  # built in the parent before the workers fork, so they inherit it
_BANDS, _ROWS, _KEEP_SIGS = 14, 8, False


def _keys_of(texts):
    from textbook.minhash import band_keys

    sigs = _HASHER.signatures(texts)
    return band_keys(sigs, _BANDS, _ROWS), (sigs if _KEEP_SIGS else None)


def run_textbook(inp: str, out: str, procs: int, verify: float = 0.0) -> None:
    """Stream the corpus in batches; only ids and 14 band keys per document are held (plus the
    signatures when `verify` > 0: 16 x 7 bands, pairs kept if estimated Jaccard >= verify)."""
    import numpy as np
    import pyarrow.parquet as pq

    from textbook.minhash import MinHasher, cluster_band_keys, estimate_jaccard
    from textbook.workers import mp_context

    global _HASHER, _BANDS, _ROWS, _KEEP_SIGS
    bd = bench_dedup()
    t0 = time.perf_counter()
    _HASHER = MinHasher()
    if verify:
        _BANDS, _ROWS, _KEEP_SIGS = 16, 7, True
    ids, keys, sigs = [], [], []
    f = pq.ParquetFile(inp, pre_buffer=False)  # the default keeps every chunk read: memory would grow
    batches = (b for b in f.iter_batches(batch_size=1000, columns=["id", "text"]))

    def texts():
        for b in batches:
            ids.extend(b.column(0).to_pylist())
            yield b.column(1).to_pylist()

    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(procs, mp_context=mp_context()) as pool:
        pending = []  # a bounded number of batches in flight: memory stays flat
        for chunk in texts():
            pending.append(pool.submit(_keys_of, chunk))
            if len(pending) >= 2 * procs:
                k, s = pending.pop(0).result()
                keys.append(k)
                sigs.append(s)
        for f in pending:
            k, s = f.result()
            keys.append(k)
            sigs.append(s)
    t1 = time.perf_counter()
    veto = None
    if verify:
        all_sigs = np.concatenate(sigs)
        veto = lambda i, j: estimate_jaccard(all_sigs[i], all_sigs[j]) >= verify  # noqa: E731
    rep = cluster_band_keys(np.concatenate(keys), veto)
    t2 = time.perf_counter()
    sizes = np.bincount(rep, minlength=len(rep))
    members = np.flatnonzero(sizes[rep] > 1)
    clusters = {ids[i]: int(rep[i]) for i in members}
    bd.write_clusters(out, clusters, {"read+signatures+keys": t1 - t0, "clusters": t2 - t1, "tool_s": t2 - t0,
                                      "processes": procs})


def run_textbook_cli(inp: str, out: str, procs: int) -> None:
    """The product path: `textbook filter --preset dedup-only`, writing kept/ + removed/ + report."""
    import shutil

    import pyarrow.compute as pc

    from textbook.filter.config import FilterRun, load_preset
    from textbook.filter.run import run_filter
    from textbook.shards import read_table

    bd = bench_dedup()
    work = Path(out).parent / "filter-out"
    shutil.rmtree(work, ignore_errors=True)
    t0 = time.perf_counter()
    run_filter([inp], work, FilterRun(workers=procs, preset="dedup-only"), load_preset("dedup-only"))
    t1 = time.perf_counter()
    clusters = {}
    for sub in ("kept", "removed"):
        t = read_table(work / sub, ["id", "cluster_id", "duplicates"] if sub == "kept" else ["id", "cluster_id"])
        if sub == "kept":
            t = t.filter(pc.greater(t.column("duplicates"), 0))
        for i, c in zip(t.column("id").to_pylist(), t.column("cluster_id").to_pylist()):
            if c is not None:
                clusters[i] = c
    bd.write_clusters(out, clusters, {"tool_s": t1 - t0, "processes": procs})


OURS = {"textbook": run_textbook, "textbook-cli": run_textbook_cli,
        "textbook-16x7-verify": lambda inp, out, procs: run_textbook(inp, out, procs, verify=0.5)}


def run_child(method: str, inp: str, workdir: Path, procs: int) -> tuple[Path, dict]:
    """bench_dedup.run_method for our methods (same /usr/bin/time -v and PSS sampling)."""
    bd = bench_dedup()
    if method not in OURS:
        return bd.run_method(method, inp, workdir, procs)
    out = workdir / method / "clusters.parquet"
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = ["/usr/bin/time", "-v", sys.executable, str(Path(__file__).resolve()), "_worker", method, inp, str(out), str(procs)]
    t0 = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    stop, peak = threading.Event(), [0]
    th = threading.Thread(target=bd.sample_pss, args=(proc.pid, stop, peak), daemon=True)
    th.start()
    stdout, stderr = proc.communicate()
    wall = time.perf_counter() - t0
    stop.set()
    th.join()
    (out.parent / "stderr.log").write_text(stderr)
    if proc.returncode != 0:
        raise RuntimeError(f"{method} failed (rc {proc.returncode}):\n{stderr[-3000:]}")
    m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", stderr)
    stages = json.loads(out.with_suffix(".json").read_text())
    return out, {"process_s": round(wall, 2), "max_rss_mb": round(int(m.group(1)) / 1024, 1) if m else None,
                 "peak_pss_mb": round(peak[0] / 2**20, 1), "stages": {k: round(v, 2) for k, v in stages.items()}}


# ------------------------------------------------------------------ sections
def make_corpus(n: int, work: Path, seed: int = 0) -> tuple[str, str]:
    corpus = work / "corpus" / f"seed{seed}"
    path = corpus / f"corpus-{n}.parquet"
    if not path.exists():
        subprocess.run([sys.executable, str(BENCH / "make_corpus.py"), "--n", str(n), "--out", str(corpus),
                        "--seed", str(seed)], check=True, stdout=subprocess.DEVNULL)
    return str(path), str(corpus / f"pairs-{n}.parquet")


def section_dedup(args, work: Path) -> dict:
    import pyarrow.parquet as pq

    bd = bench_dedup()
    corpus, pairs_path = make_corpus(args.n, work)
    pairs = pq.read_table(pairs_path)
    results = {"corpus": corpus, "n": args.n, "procs": args.procs, "methods": {}}
    methods = ["naive", "fast", "textbook", "textbook-cli", "textbook-16x7-verify"] + [m for m in args.peers.split(",") if m]
    if args.skip_naive:
        methods.remove("naive")
    for method in methods:
        inp = bd.shard(corpus, args.procs, work) if method.startswith("datatrove") else corpus
        print(f"[{time.strftime('%H:%M:%S')}] dedup: {method} on {args.n} docs ...", flush=True)
        try:
            out, perf = run_child(method, inp, work / "dedup", args.procs)
        except RuntimeError as exc:
            results["methods"][method] = {"error": str(exc)[-2000:]}
            print(exc, flush=True)
            continue
        perf["docs_per_s"] = round(args.n / perf["stages"]["tool_s"], 1)
        perf.update(bd.evaluate(out, corpus, pairs))
        perf.pop("recall_by_edit_rate", None)
        results["methods"][method] = perf
        print(json.dumps({method: {k: perf[k] for k in ("docs_per_s", "max_rss_mb", "peak_pss_mb", "precision",
                                                        "recall@0.8")}}), flush=True)
    base = {m: results["methods"].get(m, {}).get("docs_per_s") for m in ("naive", "fast")}
    for perf in results["methods"].values():
        for name, v in base.items():
            if v and "docs_per_s" in perf:
                perf[f"vs_{name}"] = round(perf["docs_per_s"] / v, 2)
    return results


def make_big_corpus(n: int, path: Path, seed: int = 0) -> None:
    """make_corpus.py's recipe without its slow pairwise statistics, streamed to Parquet: documents of
    3-12 random paragraphs of the real text (no paragraph over 35% of a document), and after every
    tenth an edited copy of a recent one (2/5/10/20% word edits, its edit_copy)."""
    import random

    import pyarrow as pa
    import pyarrow.parquet as pq

    sys.path.insert(0, str(BENCH))
    import make_corpus as mc  # noqa: E402

    rng = random.Random(seed)
    pool = mc.paragraph_pool()
    lens = [len(p.split()) for p in pool]
    vocab = sorted({w for p in pool for w in mc.WORD.findall(p)})
    rates = (0.02, 0.05, 0.10, 0.20)
    writer, ids, texts, recent = None, [], [], []
    for i in range(n):
        if i % 11 == 10 and recent:
            text, _, _ = mc.edit_copy(rng.choice(recent), rates[(i // 11) % 4], vocab, rng)
        else:
            picks = rng.sample(range(len(pool)), rng.randint(3, 12))
            while max(lens[j] for j in picks) > 0.35 * sum(lens[j] for j in picks):
                picks = rng.sample(range(len(pool)), len(picks))
            text = "\n\n".join(pool[j] for j in picks)
            recent = (recent + [text])[-1000:]
        ids.append(f"big-{i:07d}")
        texts.append(text)
        if len(ids) == 100_000 or i == n - 1:
            table = pa.table({"id": ids, "text": texts})
            writer = writer or pq.ParquetWriter(path, table.schema)
            writer.write_table(table, row_group_size=10_000)
            ids, texts = [], []
    writer.close()


def section_scale(args, work: Path) -> dict:
    """1M documents; ours only (the datasketch peers hold every signature as Python objects: the fast
    path's 1.6 GB at 100k would be ~16 GB here)."""
    big = work / "corpus" / "big-1000000.parquet"
    if not big.exists():
        print(f"[{time.strftime('%H:%M:%S')}] scale: building 1,000,000 documents ...", flush=True)
        make_big_corpus(1_000_000, big)
    out = {}
    for method in ("textbook", "textbook-cli"):
        print(f"[{time.strftime('%H:%M:%S')}] scale: {method} on 1,000,000 docs ...", flush=True)
        _, perf = run_child(method, str(big), work / "scale", args.procs)
        perf["docs_per_s"] = round(1_000_000 / perf["stages"]["tool_s"], 1)
        out[method] = perf
        print(json.dumps({method: perf}), flush=True)
    return out


def section_e2e(args, work: Path) -> dict:
    corpus, _ = make_corpus(args.n, work)
    out = {}
    for name, preset in (("default preset", "default"),):
        print(f"[{time.strftime('%H:%M:%S')}] e2e: textbook filter --preset {preset} on {args.n} docs ...", flush=True)
        target = work / "e2e" / preset
        subprocess.run(["rm", "-rf", str(target)], check=True)
        cmd = ["/usr/bin/time", "-v", sys.executable, "-m", "textbook", "filter", corpus, "--out", str(target),
               "--preset", preset, "--workers", str(args.procs)]
        t0 = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        wall = time.perf_counter() - t0
        if proc.returncode:
            raise RuntimeError(proc.stderr[-3000:])
        m = re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr)
        report = json.loads((target / "report.json").read_text())
        out[name] = {"process_s": round(wall, 2), "docs_per_s_process": round(args.n / wall, 1),
                     "docs_per_s_tool": report["timing"]["docs_per_s"], "max_rss_mb": round(int(m.group(1)) / 1024, 1),
                     "kept": report["kept"], "removed_by_stage": report["removed_by_stage"],
                     "stages": report["timing"]["stages"]}
        print(json.dumps(out[name]), flush=True)
    return out


def section_classifier(args, work: Path) -> dict:
    from classifier_peers import compare  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

    corpus, _ = make_corpus(args.n, work)
    return compare(corpus, procs=args.procs, n_speed=args.n_speed, minilm_docs=args.minilm_docs)


def main() -> None:
    if len(sys.argv) > 1 and sys.argv[1] == "_worker":
        method, inp, out, procs = sys.argv[2:6]
        OURS[method](inp, out, int(procs))
        return
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--work", default="peers-work", help="scratch directory (corpora, outputs)")
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--procs", type=int, default=2)
    ap.add_argument("--sections", default="dedup,classifier,e2e")
    ap.add_argument("--peers", default="", help="more bench_dedup.py methods, e.g. datatrove,textdedup (need their venvs)")
    ap.add_argument("--skip-naive", action="store_true", help="leave out naive datasketch (~4 min at 100k)")
    ap.add_argument("--n-speed", type=int, default=20_000, help="documents scored for classifier docs/s")
    ap.add_argument("--minilm-docs", type=int, default=400, help="documents scored for the MiniLM peer's docs/s")
    ap.add_argument("--out", default=None, help="results JSON (default: WORK/filter-throughput.json)")
    args = ap.parse_args()
    work = Path(args.work).resolve()
    work.mkdir(parents=True, exist_ok=True)
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    results = {"machine": {"cpus": os.cpu_count()}, "started": time.strftime("%Y-%m-%dT%H:%M:%S")}
    for name in args.sections.split(","):
        results[name] = {"dedup": section_dedup, "classifier": section_classifier, "e2e": section_e2e,
                         "scale": section_scale}[name](args, work)
        path = Path(args.out or work / "filter-throughput.json")
        path.write_text(json.dumps(results, indent=2))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
