"""Throughput of `textbook gen` against the fake OpenAI-compatible server (tests.fakeserver), not a test.

Two figures, each with its baseline measured in the same run:
1. Latency-bound: a fixed server latency L and concurrency C bound any client at C / L requests/s.
   Target: the whole pipeline (render, teacher client, cache, parse, boilerplate, MinHash dedup, shards)
   reaches >= 90% of that bound at C = 64, L = 200 ms. Baseline: a bare-socket client (no SDK, no
   pipeline) against the same server, i.e. what this server and machine allow any client.
2. Pipeline overhead at zero latency: samples/s of the whole pipeline (target >= 500/s on 2 cores),
   beside the teacher client alone (same requests, `Teacher.complete` only), so the difference is
   what render/parse/dedup/writing cost per sample.
Plus, for information, verified exercises/s at zero latency (bounded by the sandbox: one fresh
interpreter per exercise).
4. `gen settings` paraphrase + judge: each item's judge runs as soon as its paraphrase is back, items
   concurrently; the figure is teacher samples/s with the next teacher batch asked ahead (LOOKAHEAD 1)
   against the same run with a barrier between batches (LOOKAHEAD 0), at the same concurrency, against a
   server whose latency varies (jitter): the slowest items of a batch no longer leave slots idle.

The server runs in its own process so it does not share this process's GIL or core time slices with
the client more than the machine forces it to.

    python benchmarks/gen_throughput.py [--n 3000] [--latency 0.2] [--concurrency 64]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `tests` (the fake server) from a checkout

from textbook.gen.config import GenConfig  # noqa: E402
from textbook.gen.run import generate  # noqa: E402
from textbook.teacher.config import TeacherConfig  # noqa: E402

TREE = {"topic": "Python", "subtopics": [{"topic": f"Subject {i}", "subtopics": []} for i in range(24)]}


def _serve(latency: float, conn, stop, replies: str = "gen", jitter: float = 0.0) -> None:
    from tests.fakeserver import FakeServer
    from tests.gen_fixtures import GenReplies
    from tests.settings_fixtures import ScriptedTeacher

    script = GenReplies() if replies == "gen" else ScriptedTeacher()
    with FakeServer(script, latency=latency, jitter=jitter, record=False) as server:
        conn.send(server.url)
        stop.wait()


class Server:
    """The fake server with scripted gen replies, in a child process."""

    def __init__(self, latency: float, replies: str = "gen", jitter: float = 0.0):
        ctx = mp.get_context("spawn")
        parent, child = ctx.Pipe()
        self.stop = ctx.Event()
        self.proc = ctx.Process(target=_serve, args=(latency, child, self.stop, replies, jitter), daemon=True)
        self.proc.start()
        self.url = parent.recv()

    def close(self) -> None:
        self.stop.set()
        self.proc.join(10)


def pipeline(url: str, kind: str, n: int, concurrency: int) -> tuple[float, float]:
    """Wall and CPU seconds (this process) for `textbook gen` to produce n planned rows into a fresh directory."""
    with tempfile.TemporaryDirectory() as tmp:
        topics = Path(tmp) / "topics.json"
        topics.write_text(json.dumps(TREE))
        teacher = TeacherConfig(base_url=url, model="fake-model", api_key="sk-bench", concurrency=concurrency)
        start, cpu = time.perf_counter(), time.process_time()
        summary = generate(GenConfig(kind=kind, n=n), teacher, out=Path(tmp) / "out", topics_file=topics, progress=False)
        seconds, cpu = time.perf_counter() - start, time.process_time() - cpu
        assert summary.rows + sum(summary.rejected.values()) == n, summary
        if summary.rejected:
            print(f"    (rejects: {summary.rejected})")
        return seconds, cpu


def teacher_only(url: str, n: int, concurrency: int) -> tuple[float, float]:
    """Wall and CPU seconds for the bare teacher client to complete the same requests (no cache, no pipeline)."""
    from textbook.gen import section
    from textbook.gen.plan import Axes, build_plan, load_vocabulary
    from textbook.prompts import Prompts
    from textbook.teacher.client import Teacher

    gen = GenConfig(n=n)
    axes = Axes(gen.audiences, gen.styles, gen.difficulties, gen.words_per_prompt)
    plan = build_plan(TREE, n=n, seed=1, axes=axes, vocabulary=load_vocabulary(), function_names=False)
    requests = [section.render(Prompts(), item) for item in plan]

    async def run() -> tuple[float, float]:
        config = TeacherConfig(base_url=url, model="fake-model", api_key="sk-bench", concurrency=concurrency, cache=False)
        async with Teacher(config, cache_path=None, progress=False) as teacher:
            start, cpu = time.perf_counter(), time.process_time()
            await teacher.map(requests, lambda r: teacher.complete(r.messages, template_sha=r.template_sha))
            return time.perf_counter() - start, time.process_time() - cpu

    return asyncio.run(run())


def raw_client(url: str, n: int, concurrency: int) -> float:
    """Requests/s of a minimal client (bare asyncio sockets, one keep-alive connection per slot, no SDK, no
    pipeline) sending the same textbook prompts: what this server and machine allow any client."""
    from urllib.parse import urlsplit

    from textbook.gen import section
    from textbook.gen.plan import Axes, build_plan, load_vocabulary
    from textbook.prompts import Prompts

    gen = GenConfig(n=n)
    axes = Axes(gen.audiences, gen.styles, gen.difficulties, gen.words_per_prompt)
    prompts = Prompts()
    bodies = [json.dumps({"model": "fake-model", "messages": section.render(prompts, item).messages}).encode()
              for item in build_plan(TREE, n=n, seed=1, axes=axes, vocabulary=load_vocabulary(), function_names=False)]
    where = urlsplit(url)
    path = f"{where.path}/chat/completions".encode()

    async def connection(todo) -> None:
        reader, writer = await asyncio.open_connection(where.hostname, where.port)
        for body in todo:
            writer.write(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n%s"
                         % (path, len(body), body))
            head = await reader.readuntil(b"\r\n\r\n")
            length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
            await reader.readexactly(length)
        writer.close()

    async def run() -> float:
        start = time.perf_counter()
        await asyncio.gather(*(connection(bodies[i::concurrency]) for i in range(concurrency)))
        return time.perf_counter() - start

    return n / asyncio.run(run())


def settings_teacher(url: str, n: int, concurrency: int, lookahead: int) -> float:
    """Teacher samples/s of `gen settings` (all samples from the teacher: paraphrase + judge per item)."""
    import textbook.settings.run as settings_run
    from textbook.settings.config import SettingsConfig

    settings_run.LOOKAHEAD = lookahead
    with tempfile.TemporaryDirectory() as tmp:
        cfg = SettingsConfig(n=n, out=str(Path(tmp) / "s"), teacher_share=1.0, paraphrases=3, teacher_batch=32)
        teacher = TeacherConfig(base_url=url, model="fake-model", api_key="sk-bench", concurrency=concurrency)
        start = time.perf_counter()
        summary = settings_run.generate_settings(cfg, teacher, progress=False)
        seconds = time.perf_counter() - start
    return summary.totals["teacher_rows"] / seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=3000, help="rows per measurement")
    parser.add_argument("--latency", type=float, default=0.2)
    parser.add_argument("--concurrency", type=int, default=64)
    parser.add_argument("--exercises", type=int, default=200, help="exercises for the sandbox figure (0 = skip)")
    parser.add_argument("--settings", type=int, default=1500, help="samples for the settings figure (0 = skip)")
    parser.add_argument("--only-settings", action="store_true", help="run figure 4 alone")
    args = parser.parse_args()
    c, lat, n = args.concurrency, args.latency, args.n
    # Wall-clock figures depend on what else runs on the machine; CPU seconds per sample do much less.
    print(f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f} at start")

    if args.settings:
        settings_figure(args.settings, lat)
        if args.only_settings:
            return
    print(f"1. latency-bound: concurrency {c}, server latency {lat * 1000:.0f} ms, {n:,} textbook rows")
    server = Server(lat)
    try:
        seconds, _ = pipeline(server.url, "textbook", n, c)
        raw = raw_client(server.url, n, c)
    finally:
        server.close()
    bound = c / lat
    achieved = n / seconds
    print(f"   bound (concurrency / latency): {bound:,.0f} requests/s")
    print(f"   pipeline achieved:             {achieved:,.0f} requests/s in {seconds:.1f} s (whole command, start-up included)")
    print(f"   ratio: {achieved / bound:.1%} of the bound (target >= 90%)")
    print(f"   baseline, bare-socket client:  {raw:,.0f} requests/s = {raw / bound:.1%} of the bound "
          f"(what this server and machine allow any client); pipeline / baseline: {achieved / raw:.1%}")

    print(f"2. zero latency: concurrency {c}, {n:,} rows")
    server = Server(0.0)
    try:
        bare, bare_cpu = teacher_only(server.url, n, c)
        seconds, cpu = pipeline(server.url, "textbook", n, c)
        ex_seconds = pipeline(server.url, "exercises", args.exercises, c)[0] if args.exercises else None
    finally:
        server.close()
    print(f"   teacher client alone:  {n / bare:,.0f} requests/s; {bare_cpu / n * 1000:.2f} ms CPU each")
    print(f"   whole pipeline:        {n / seconds:,.0f} samples/s; {cpu / n * 1000:.2f} ms CPU each (target >= 500/s)")
    print(f"   pipeline's own CPU:    {(cpu - bare_cpu) / n * 1000:.2f} ms per sample (render, cache, parse, boilerplate, "
          f"MinHash dedup, shards, start-up); pipeline / client-alone rate: {bare / seconds:.2f}")
    print(f"   ratio vs target: {n / seconds / 500:.2f}x (CPU-bound ceiling of this process on one free core: "
          f"{n / cpu:,.0f} samples/s)")
    if ex_seconds is not None:
        print(f"3. exercises (each executed in the sandbox): {args.exercises / ex_seconds:,.1f} verified exercises/s")
    print(f"machine load average {os.getloadavg()[0]:.1f} at the end")

def settings_figure(n: int, latency: float, concurrency: int = 16, jitter: float = 0.9) -> None:
    print(f"4. gen settings, paraphrase + judge per item: {n:,} teacher samples, concurrency {concurrency}, "
          f"latency {latency * 1000:.0f} ms +-{jitter:.0%}")
    server = Server(latency, "settings", jitter)
    try:
        barrier = settings_teacher(server.url, n, concurrency, lookahead=0)
        ahead = settings_teacher(server.url, n, concurrency, lookahead=1)
    finally:
        server.close()
    print(f"   barrier between teacher batches (LOOKAHEAD 0): {barrier:,.1f} samples/s")
    print(f"   next batch asked ahead (LOOKAHEAD 1):          {ahead:,.1f} samples/s = {ahead / barrier:.2f}x")


if __name__ == "__main__":
    main()
