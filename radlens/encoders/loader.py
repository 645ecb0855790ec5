"""Loading and preprocessing cases ahead of the model, in manifest order.

``thread``: a few threads (SimpleITK reading and torch resizing release the GIL; cheap to start,
right for CPU inference, where the model competes for the same cores). ``process``: forked worker
processes with one torch thread each (tensors come back through shared memory), for GPU inference
where Python-level preprocessing would otherwise starve the device. Both keep a bounded window of
cases in flight over the whole pass (across chunk boundaries) and yield results in input order,
so the output never depends on the loader.
"""
from __future__ import annotations

import collections
import concurrent.futures as cf
import logging
import os
from typing import Any, Iterable, Iterator, Sequence

import numpy as np

from radlens.encoders.preprocess import Preprocessor
from radlens.encoders.tokens import select_tokens
from radlens.errors import CaseError, ConfigError, RadlensError

log = logging.getLogger(__name__)

LOADERS = ("auto", "thread", "process")


class CasePreparer:
    """Picklable ``row -> (case_id, x, [(weights, n_tokens, fallback) per layer] or None, error or None)``.

    Parameters
    ----------
    preprocessor : Preprocessor
    grids : tuple of int, or list of them
        Token grid of each feature layer (one grid: a single-layer encoder). ROI weights are
        computed once per distinct grid.
    roi : dict
        ROI options (``rule``, ``min_overlap``).
    need_roi : bool
        Load the ROI (``roi`` pooling or crop mode).
    want_weights : bool
        Compute ROI token weights.
    roi_mode : str or None
        Overrides ``roi.mode``.
    """

    def __init__(self, preprocessor: Preprocessor, grids: Sequence, roi: dict, need_roi: bool,
                 want_weights: bool, roi_mode: str | None):
        self.preprocessor = preprocessor
        grids = list(grids)
        if grids and not isinstance(grids[0], (list, tuple)):
            grids = [grids]
        self.grids = [tuple(int(g) for g in grid) for grid in grids]
        self.grid = self.grids[0]
        self.roi = dict(roi)
        self.need_roi = need_roi
        self.want_weights = want_weights
        self.roi_mode = roi_mode

    def weights(self, roi_cov: np.ndarray, case_id: str, grid: Sequence[int] | None = None
                ) -> tuple[np.ndarray, int, bool]:
        """(weights (N,) float64 summing to 1, tokens selected, fallback used) on ``grid`` (default: the first)."""
        grid = self.grid if grid is None else tuple(grid)
        idx, fallback, _ = select_tokens(roi_cov, grid, self.roi["rule"], self.roi["min_overlap"], case_id)
        w = np.zeros(int(np.prod(grid)), dtype=np.float64)
        w[idx] = 1.0 / idx.size
        return w, int(idx.size), bool(fallback)

    def layer_weights(self, roi_cov: np.ndarray, case_id: str) -> list[tuple[np.ndarray, int, bool]]:
        """:meth:`weights` for every layer's grid (computed once per distinct grid)."""
        done: dict[tuple, tuple] = {}
        for g in self.grids:
            if g not in done:
                done[g] = self.weights(roi_cov, case_id, g)
        return [done[g] for g in self.grids]

    def __call__(self, row: dict) -> tuple[str, Any, Any, Any]:
        return self._prepare(row, None)

    def group(self, rows: Sequence[dict]) -> list[tuple[str, Any, Any, Any]]:
        """``[self(row) for row in rows]`` for rows of ONE image file (several ROIs): the image is
        decoded once and, in full mode, resized/normalised once; each ROI is still mapped and
        checked on its own. The results equal separate calls."""
        shared: dict = {}
        return [self._prepare(row, shared) for row in rows]

    def _prepare(self, row: dict, shared: dict | None) -> tuple[str, Any, Any, Any]:
        from radlens.io.images import load_case

        cid = str(row["case_id"])
        try:
            case = load_case(row, image=shared.get("image") if shared else None)
        except CaseError as exc:
            return cid, None, None, ("load", exc.message)
        try:
            p = self.preprocessor(case.array, case.roi if self.need_roi else None, case_id=cid,
                                  roi_mode=self.roi_mode, same_image_as=shared.get("prepared") if shared else None)
            w = self.layer_weights(p.roi_cov, cid) if self.want_weights else None
        except RadlensError as exc:
            return cid, None, None, ("preprocess", str(exc))
        if shared is not None and "image" not in shared:
            shared.update(image=case.image, prepared=p)
        return cid, p.x, w, None


_WORKER_PREPARE: list = []


def _init_worker(prepare: CasePreparer) -> None:
    """Loader process set-up: one torch thread (the model owns the cores), the preparer kept."""
    import torch

    torch.set_num_threads(1)
    _WORKER_PREPARE[:] = [prepare]


def _prepare_in_worker(rows: list[dict]):
    return _WORKER_PREPARE[0].group(rows)


#: most rows (ROIs) of one image handled as one task
MAX_GROUP = 64


def _image_groups(rows: Iterable[dict]) -> Iterator[list[dict]]:
    """Consecutive rows naming the same image file, as lists (at most :data:`MAX_GROUP` long)."""
    group: list[dict] = []
    for row in rows:
        if group and (str(row.get("image")) != str(group[0].get("image")) or len(group) >= MAX_GROUP):
            yield group
            group = []
        group.append(row)
    if group:
        yield group


def resolve_loader(loader: str, device: str, workers: int) -> str:
    """``auto`` → ``process`` whenever there are workers (CPU and GPU), else ``thread`` (unused).

    On the CPU too: loader *threads* run torch's preprocessing kernels on the model's intra-op
    thread count (each thread its own OpenMP team), oversubscribing the cores the forward pass
    needs; one-thread worker processes do not (``benchmarks/embed_bench.py``, 2-core CPU: from-disk
    ratio 0.56 with threads vs 1.00 with processes, median of 3 interleaved repeats).
    """
    if loader not in LOADERS:
        raise ConfigError(f"loader={loader!r} not allowed; use one of {list(LOADERS)}")
    if workers < 0:
        raise ConfigError(f"workers={workers} must be >= 0")
    if loader == "auto":
        return "process" if workers > 0 else "thread"
    return loader


def loader_workers(loader: str, device: str, workers: int, cores: int | None = None,
                   model_threads: int | None = None) -> int:
    """Loader workers actually used: with ``loader="auto"`` on the CPU, none when the model's
    intra-op threads already take every core (loading inline then costs only its own CPU time;
    worker processes would take cores from the forward pass and stall its thread team).

    Measured with ``benchmarks/embed_bench.py`` on 2 cores, quiet machine, torch 2 threads, 512-1024
    images: from-disk ratio 0.86 inline vs 0.76 with two worker processes.

    Parameters
    ----------
    loader, device, workers : as :func:`radlens.encoders.embed.embed`.
    cores : CPUs this process may use (default: ``os.sched_getaffinity``).
    model_threads : torch intra-op threads (default: ``torch.get_num_threads()``).
    """
    if loader != "auto" or workers <= 0 or not str(device).startswith("cpu"):
        return workers
    if cores is None:
        try:
            cores = len(os.sched_getaffinity(0))
        except AttributeError:  # not on Linux
            cores = os.cpu_count() or 1
    if model_threads is None:
        import torch

        model_threads = torch.get_num_threads()
    spare = cores - model_threads
    if spare <= 0:
        log.info("loader: the model's %d threads use all %d cores; loading inline (workers=0)", model_threads, cores)
        return 0
    return min(workers, spare)


def prepared_cases(prepare: CasePreparer, rows: Iterable[dict], workers: int, loader: str,
                   window: int) -> Iterator:
    """``map(prepare, rows)`` in order, computed up to ``window`` cases ahead by ``workers`` threads/processes.

    ``rows`` is consumed lazily (a generator over a whole cohort is fine: about ``window`` cases
    are in flight or waiting, so memory does not grow with the cohort). Consecutive rows of the same
    image file go to one worker as a group (:meth:`CasePreparer.group`: decoded once). Worker
    processes are forked once per call (one torch thread each) and reused for every row.
    """
    groups = _image_groups(rows)  # several ROIs of one image: decoded (and resized) once
    if workers <= 0:
        for g in groups:
            yield from prepare.group(g)
        return
    if loader == "process":
        from radlens.parallel import _mp_context

        prepare.preprocessor.import_dependencies()  # before the fork: workers inherit the imports
        ex: cf.Executor = cf.ProcessPoolExecutor(max_workers=workers, mp_context=_mp_context(),
                                                 initializer=_init_worker, initargs=(prepare,))
        fn = _prepare_in_worker
    else:
        ex = cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="radlens-embed")
        fn = prepare.group
    pending: collections.deque = collections.deque()
    in_flight = 0
    try:
        for g in groups:
            pending.append((ex.submit(fn, g), len(g)))
            in_flight += len(g)
            while in_flight >= window and pending:
                fut, n = pending.popleft()
                in_flight -= n
                yield from fut.result()
        while pending:
            yield from pending.popleft()[0].result()
    finally:
        ex.shutdown(wait=True, cancel_futures=True)
