"""Peak memory of a whole process tree (this process and every process it forks).

``resource.getrusage`` gives the peak resident set of one process, or of the largest reaped child,
never the sum of processes that run at the same time — and ``radlens demo`` runs study stages in two
forked lanes at once (``stage_jobs``). :class:`TreeMemory` samples the summed proportional set size
(PSS: shared pages divided among the processes that share them, so forked copy-on-write pages are not
counted twice) of the tree from ``/proc`` in a background thread, and keeps the maximum.

Linux only: elsewhere (no ``/proc/<pid>/smaps_rollup``) :attr:`TreeMemory.peak_mb` stays ``None``.
The thread only reads files (no logging, no imports), so a fork while it runs inherits no lock of it.
"""
from __future__ import annotations

import os
import threading
from pathlib import Path


def _pss_kb(pid: int) -> int:
    """PSS of one process in KiB (0 when it is gone or unreadable)."""
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            for line in f:
                if line.startswith(b"Pss:"):
                    return int(line.split()[1])
    except (OSError, ValueError, IndexError):
        pass
    return 0


def _children(pid: int) -> list[int]:
    """Direct children of ``pid`` (every thread's ``children`` list)."""
    out: list[int] = []
    try:
        tasks = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return out
    for tid in tasks:
        try:
            with open(f"/proc/{pid}/task/{tid}/children", "rb") as f:
                out.extend(int(c) for c in f.read().split())
        except (OSError, ValueError):
            continue
    return out


def tree_pss_mb(root: int | None = None) -> float | None:
    """Summed PSS in MiB of ``root`` (default: this process) and all its descendants, now.

    Returns
    -------
    float or None
        ``None`` where ``/proc/<pid>/smaps_rollup`` does not exist (not Linux, or an old kernel).
    """
    root = os.getpid() if root is None else int(root)
    if not Path(f"/proc/{root}/smaps_rollup").exists():
        return None
    seen, todo, total = set(), [root], 0
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        total += _pss_kb(pid)
        todo.extend(_children(pid))
    return total / 1024.0


class TreeMemory:
    """Sample :func:`tree_pss_mb` every ``interval`` seconds while in a ``with`` block.

    Parameters
    ----------
    interval : float
        Seconds between samples (0.25: a stage holding its memory for less than that may be missed).

    Attributes
    ----------
    peak_mb : float or None
        Largest summed PSS seen, MiB (``None`` where it cannot be measured).
    """

    def __init__(self, interval: float = 0.25):
        self.interval = interval
        self.peak_mb: float | None = None
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def sample(self) -> None:
        """Take one sample now (also taken on entering and leaving the ``with`` block)."""
        v = tree_pss_mb()
        if v is not None and (self.peak_mb is None or v > self.peak_mb):
            self.peak_mb = v

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            self.sample()

    def __enter__(self) -> "TreeMemory":
        self.sample()
        if self.peak_mb is not None:  # nothing to sample where /proc has no smaps_rollup
            self._thread = threading.Thread(target=self._loop, name="radlens-tree-memory", daemon=True)
            self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()
        if self.peak_mb is not None:
            self.sample()
