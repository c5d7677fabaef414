"""The run directory's lock and fingerprint differences."""

from __future__ import annotations

import json
import os
import subprocess
import sys


import pytest

from textbook.errors import TextbookError
from textbook.rundir import LOCK, RunLock, differences, output_dir


def test_a_second_holder_is_refused_naming_the_first(tmp_path):
    with RunLock(tmp_path / "out"):
        info = json.loads((tmp_path / "out" / LOCK).read_text())
        assert info["pid"] == os.getpid()
        with pytest.raises(TextbookError, match=rf"is being written by another run \(pid {os.getpid()} on .*: wait for it"):
            with RunLock(tmp_path / "out"):
                pass
    assert not (tmp_path / "out" / LOCK).exists()  # let go and removed
    with RunLock(tmp_path / "out"):  # free again
        pass


def test_a_lock_left_by_a_killed_process_does_not_block(tmp_path):
    out = tmp_path / "out"
    holder = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom textbook.rundir import RunLock\n"
                               f"with RunLock({str(out)!r}):\n    print('held', flush=True)\n    time.sleep(60)"],
                              stdout=subprocess.PIPE, text=True)
    assert holder.stdout.readline().strip() == "held"
    with pytest.raises(TextbookError, match=f"pid {holder.pid}"):
        RunLock(out).__enter__()
    holder.kill()
    holder.wait()
    assert (out / LOCK).exists()  # the dead holder could not remove it ...
    with RunLock(out):  # ... and it blocks nothing
        assert json.loads((out / LOCK).read_text())["pid"] == os.getpid()


def test_an_out_that_is_a_file_is_a_clear_error(tmp_path):
    (tmp_path / "f").write_text("x")
    with pytest.raises(TextbookError, match="--out .* is a file, not a directory"):
        output_dir(tmp_path / "f")
    with pytest.raises(TextbookError, match="a part of that path is a file"):
        output_dir(tmp_path / "f" / "sub")


def test_differences_name_what_changed():
    old = {"inputs": [{"path": "/d/a.jsonl", "bytes": 10}], "config": {"threshold": 3, "bands": 14}}
    new = {"inputs": [{"path": "/d/a.jsonl", "bytes": 12}], "config": {"threshold": 2.5, "bands": 14, "new": 1}}
    assert differences(old, new) == ["inputs[a.jsonl].bytes: 10 -> 12", "config.threshold: 3 -> 2.5", "config.new is new"]
    assert differences({"a": list(range(9))}, {"a": list(range(8))}) == ["a: [0, 1, 2, 3, 4, 5, 6, 7, 8] -> [0, 1, 2, 3, 4, 5, 6, 7]"]


def test_the_lock_never_records_a_secret_from_the_command_line(tmp_path, monkeypatch):
    monkeypatch.setattr("sys.argv", ["textbook", "gen", "--api-key", "sk-SECRET1", "--api-key=sk-SECRET2",
                                     "--base-url", "http://user:SECRET3@host/v1?api-key=SECRET4", "--out", "o"])
    with RunLock(tmp_path / "out"):
        text = (tmp_path / "out" / LOCK).read_text()
        with pytest.raises(TextbookError) as info:
            RunLock(tmp_path / "out").__enter__()
    assert "--out o" in text and "--api-key" in text
    for secret in ("SECRET1", "SECRET2", "SECRET3", "SECRET4"):
        assert secret not in text and secret not in str(info.value)
