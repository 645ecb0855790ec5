"""Progress bars for long stages (tqdm on stderr; off when not a terminal or RADLENS_PROGRESS=0).

The console shows **one bar at a time** by default: a bar opened while another radlens bar is
running (a per-case loop inside a stage of ``radlens run``) stays hidden, so a study shows its
``stages`` bar (with the current stage's name) and a single command shows its own bar.
``RADLENS_PROGRESS_DEPTH`` sets how many nested bars may show (the CLI's ``-v`` sets it to 3).
"""
from __future__ import annotations

import os
import sys

_ACTIVE = [0]  # radlens bars currently shown


def max_depth() -> int:
    """How many nested radlens bars may show at once (``RADLENS_PROGRESS_DEPTH``, default 1)."""
    try:
        return max(1, int(os.environ.get("RADLENS_PROGRESS_DEPTH", "1")))
    except ValueError:
        return 1


def _bar_class():
    from tqdm.auto import tqdm

    class Bar(tqdm):
        """tqdm that counts itself among the shown bars while open."""

        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            self._rl_shown = not self.disable
            if self._rl_shown:
                _ACTIVE[0] += 1

        def close(self):
            if getattr(self, "_rl_shown", False):
                self._rl_shown = False
                _ACTIVE[0] -= 1
            super().close()

    return Bar


def progress(iterable=None, *, total=None, desc=None, unit="case", disable=None, **kw):
    """A tqdm progress bar. ``disable=None`` shows it only on an interactive stderr, and only when
    fewer than :func:`max_depth` radlens bars are already showing."""
    if disable is None:
        env = os.environ.get("RADLENS_PROGRESS")
        disable = (env == "0") if env is not None else not sys.stderr.isatty()
        if not disable and _ACTIVE[0] >= max_depth():
            disable = True
    if _ACTIVE[0] > 0:
        kw.setdefault("leave", False)  # a nested bar disappears when done
    return _bar_class()(iterable, total=total, desc=desc, unit=unit, disable=disable, dynamic_ncols=True, **kw)
