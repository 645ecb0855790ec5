"""Loading and preprocessing cases ahead of the model, in manifest order.

``thread``: a few threads (SimpleITK reading and torch resizing release the GIL; cheap to start,
right for CPU inference, where the model competes for the same cores). ``process``: worker
processes (``torch.utils.data.DataLoader``, tensors passed through shared memory), for GPU
inference where Python-level preprocessing would otherwise starve the device. Both yield results
in input order, so the output never depends on the loader.
"""
from __future__ import annotations

import collections
import concurrent.futures as cf
import logging
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
        from radlens.io.images import load_case

        cid = str(row["case_id"])
        try:
            case = load_case(row)
        except CaseError as exc:
            return cid, None, None, ("load", exc.message)
        try:
            p = self.preprocessor(case.array, case.roi if self.need_roi else None, case_id=cid,
                                  roi_mode=self.roi_mode)
            w = self.layer_weights(p.roi_cov, cid) if self.want_weights else None
        except RadlensError as exc:
            return cid, None, None, ("preprocess", str(exc))
        return cid, p.x, w, None


class _RowDataset:
    """Map-style dataset over manifest rows (what ``DataLoader`` indexes)."""

    def __init__(self, rows: list[dict], prepare: CasePreparer):
        self.rows = rows
        self.prepare = prepare

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int):
        return self.prepare(self.rows[i])


def _single_thread_worker(_worker_id: int) -> None:
    import torch

    torch.set_num_threads(1)


def _identity(item):
    return item


def resolve_loader(loader: str, device: str, workers: int) -> str:
    """``auto`` → ``process`` for CUDA with workers, else ``thread``."""
    if loader not in LOADERS:
        raise ConfigError(f"loader={loader!r} not allowed; use one of {list(LOADERS)}")
    if workers < 0:
        raise ConfigError(f"workers={workers} must be >= 0")
    if loader == "auto":
        return "process" if (device.startswith("cuda") and workers > 0) else "thread"
    return loader


def prepared_cases(prepare: CasePreparer, rows: Iterable[dict] | list[dict], workers: int, loader: str,
                   window: int) -> Iterator:
    """``map(prepare, rows)`` in order, computed ``window`` cases ahead by ``workers`` threads/processes."""
    rows = list(rows)
    if workers <= 0 or not rows:
        yield from map(prepare, rows)
        return
    if loader == "process":
        from torch.utils.data import DataLoader

        dl = DataLoader(_RowDataset(rows, prepare), batch_size=None, shuffle=False, num_workers=workers,
                        collate_fn=_identity, prefetch_factor=max(2, window // workers),
                        worker_init_fn=_single_thread_worker, persistent_workers=False)
        yield from dl
        return
    with cf.ThreadPoolExecutor(max_workers=workers, thread_name_prefix="radlens-embed") as ex:
        pending: collections.deque = collections.deque()
        for row in rows:
            pending.append(ex.submit(prepare, row))
            if len(pending) >= window:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()
