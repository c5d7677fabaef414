"""The reaper: when a run is killed with `kill -9`, what it started dies too, including a grandchild
started just before the kill whose environment no longer carries the run's marker (a Ray agent after
setproctitle), and nothing is touched when the run ends normally."""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

import psutil

CHILD = """
import subprocess, sys, time
from pathlib import Path
g = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], env={})
Path(sys.argv[1]).write_text(str(g.pid))
time.sleep(120)
"""
# the child starts a grandchild with an empty environment (no marker), then waits for good
DRIVER = f"""
import subprocess, sys, time
from pathlib import Path
from textbook.reaper import reaper
out = Path(sys.argv[1])
with reaper():
    c = subprocess.Popen([sys.executable, "-c", {CHILD!r}, str(out / "grandchild")])
    (out / "child").write_text(str(c.pid))
    if sys.argv[2] == "end":
        while not (out / "grandchild").exists():
            time.sleep(0.01)
        (out / "ended").write_text("")
    else:
        time.sleep(120)
"""


def _wait_for(path: Path, timeout: float = 30) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and path.read_text():
            return int(path.read_text())
        time.sleep(0.005)
    raise AssertionError(f"{path} never appeared")


def test_kill_takes_the_unseen_grandchild(tmp_path):
    driver = subprocess.Popen([sys.executable, "-c", DRIVER, str(tmp_path), "kill"])
    child = psutil.Process(_wait_for(tmp_path / "child"))
    grandchild = psutil.Process(_wait_for(tmp_path / "grandchild"))  # started a moment ago: likely never seen
    driver.kill()
    driver.wait()
    gone, alive = psutil.wait_procs([child, grandchild], timeout=5)
    for p in alive:
        p.kill()
    assert not alive, f"outlived the killed run: {[p.pid for p in alive]}"


def test_a_normal_end_touches_nothing(tmp_path):
    subprocess.run([sys.executable, "-c", DRIVER, str(tmp_path), "end"], timeout=60, check=True)
    child = psutil.Process(int((tmp_path / "child").read_text()))
    grandchild = psutil.Process(int((tmp_path / "grandchild").read_text()))
    time.sleep(0.5)
    try:
        assert child.is_running() and grandchild.is_running()
    finally:
        for p in (child, grandchild):
            p.kill()
