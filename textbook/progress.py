"""Progress bars: one look for every command, configured here once.

On stderr (stdout carries the summary), as wide as the terminal, redrawn at most twice a second. `show`:
True or False as a command decides, None = only when stderr is a terminal, so logs and CI output stay
free of carriage-return noise.
"""

from __future__ import annotations

import sys
from typing import Any, Iterable


def progress_bar(total: int | None = None, *, desc: str | None = None, unit: str = "it", initial: int = 0,
        show: bool | None = None, leave: bool = True, iterable: Iterable[Any] | None = None):
    from tqdm import tqdm

    return tqdm(iterable, total=total, desc=desc, unit=unit, initial=initial, leave=leave, file=sys.stderr,
                dynamic_ncols=True, mininterval=0.5, disable=None if show is None else not show)
