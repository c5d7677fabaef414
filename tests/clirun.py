"""Run the `textbook` CLI in-process, as a user would, and capture what it prints and its exit code."""

from __future__ import annotations

import pytest

from textbook.cli import main


def run_cli(capsys, *argv: str) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exit_:
        main(list(argv))
    out, err = capsys.readouterr()
    return exit_.value.code or 0, out, err
