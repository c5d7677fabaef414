"""The exercise sandbox: generated code runs in a limited child process, never in this one."""

from __future__ import annotations

import asyncio
import os
import socket

from textbook.gen import sandbox
from textbook.gen.sandbox import Limits, run_code

FAST = Limits(timeout_s=5.0, cpu_s=1, memory_mb=256)
SECRET = "sk-test-secret-do-not-leak-0123456789"


def run(code: str, limits: Limits = FAST):
    return asyncio.run(run_code(code, limits))


def test_passing_code_passes():
    out = run("def add(a, b):\n    return a + b\n\nassert add(2, 3) == 5\nprint('ok')\n")
    assert out.ok and out.reason == "passed" and out.detail == ""


def test_failing_assertion_reports_the_traceback():
    out = run("def add(a, b):\n    return a - b\n\nassert add(2, 3) == 5, 'add is wrong'\n")
    assert not out.ok and out.reason == "failed"
    assert "AssertionError: add is wrong" in out.detail


def test_infinite_loop_is_stopped_by_the_cpu_limit():
    out = run("while True:\n    pass\n")
    assert not out.ok and out.reason == "timeout" and "CPU" in out.detail
    assert out.seconds < FAST.timeout_s


def test_sleeping_code_is_stopped_by_the_wall_clock():
    out = run("import time\ntime.sleep(60)\n", Limits(timeout_s=1.0, cpu_s=1, memory_mb=256))
    assert not out.ok and out.reason == "timeout" and "wall clock" in out.detail


def test_memory_hog_hits_the_memory_limit():
    out = run("blocks = []\nwhile True:\n    blocks.append(bytearray(16 << 20))\n")
    assert not out.ok and out.reason == "memory"


def test_code_cannot_raise_its_limits():
    out = run("import resource\nresource.setrlimit(resource.RLIMIT_CPU, (1000, 1000))\n")
    assert not out.ok and "ValueError" in out.detail


def test_code_runs_in_a_temp_dir_that_is_removed():
    out = run("import os\nopen('scratch.txt', 'w').write('x')\nraise SystemExit(os.getcwd())\n")
    cwd = out.detail.strip()
    assert out.reason == "failed" and "textbook-sandbox-" in cwd
    assert not os.path.exists(cwd)


def test_secrets_in_the_parent_environment_do_not_reach_the_child(monkeypatch):
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", SECRET)
    assert os.environ["OPENAI_API_KEY"] == SECRET
    steal = (
        "import os\n"
        f"leaks = [k for k, v in os.environ.items() if {SECRET!r} in v or 'OPENAI' in k or 'AWS' in k]\n"
        "assert not leaks, leaks\n"
        "assert set(os.environ) <= {'PATH', 'LANG', 'HOME', 'PYTHONDONTWRITEBYTECODE', 'PYTHONHASHSEED', 'OMP_NUM_THREADS', 'OPENBLAS_NUM_THREADS', 'LC_CTYPE'}, sorted(os.environ)\n"
    )
    assert run(steal).ok
    # The check itself can fail: the same probe sees a secret that *is* in its environment.
    assert not run("import os\nassert 'PATH' not in os.environ\n").ok


def test_other_processes_environments_are_out_of_reach_when_namespaces_exist(monkeypatch):
    """/proc/<pid>/environ of the parent (or the user's shell) holds the key; a private /proc hides it."""
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    probe = (
        "import glob\n"
        "found = []\n"
        "for path in glob.glob('/proc/[0-9]*/environ'):\n"
        "    try:\n"
        f"        found += [path] if {SECRET!r}.encode() in open(path, 'rb').read() else []\n"
        "    except OSError:\n"
        "        pass\n"
        "assert not found, found\n"
    )
    out = run(probe)
    if sandbox.isolation().endswith("private /proc"):
        assert out.ok, out.detail
    else:  # documented limitation without namespaces: the probe does find the parent's environment
        assert not out.ok and "environ" in out.detail


def test_network_is_cut_when_namespaces_exist():
    """A server listening on this machine's loopback: reachable from the child only without a net namespace."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        out = run(f"import socket\nsocket.create_connection(('127.0.0.1', {port}), timeout=2).close()\n")
    assert out.ok == ("no network" not in sandbox.isolation()), out.detail


def test_only_the_standard_library_is_importable():
    assert not run("import openai\n").ok  # -S: site-packages (and so the project's deps) are invisible
    assert run("import json, collections, itertools\n").ok


def test_runs_in_parallel():
    async def many():
        return await asyncio.gather(*(run_code(f"assert {i} == {i}\n", FAST) for i in range(6)))

    assert all(o.ok for o in asyncio.run(many()))
