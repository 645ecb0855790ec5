"""Progress bars for long stages (tqdm on stderr; off when not a terminal or RADLENS_PROGRESS=0)."""
from __future__ import annotations

import os
import sys


def progress(iterable=None, *, total=None, desc=None, unit="case", disable=None, **kw):
    """A tqdm progress bar. ``disable=None`` shows it only on an interactive stderr."""
    from tqdm.auto import tqdm

    if disable is None:
        env = os.environ.get("RADLENS_PROGRESS")
        disable = (env == "0") if env is not None else not sys.stderr.isatty()
    return tqdm(iterable, total=total, desc=desc, unit=unit, disable=disable, dynamic_ncols=True, **kw)
