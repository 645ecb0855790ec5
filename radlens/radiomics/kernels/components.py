"""Number of fully connected components of a small boolean ROI, in numpy.

pyradiomics' ``diagnostics_Mask-original_VolumeNum`` counts them with SimpleITK's
``ConnectedComponentImageFilter``; radlens counts on the ROI's box. SimpleITK's filter costs
~0.4 ms CPU per call on a 2D phantom box, and with its default (platform) threader it starts a
thread per call: ~2 ms of wall time per case on a busy machine. scipy's ``ndimage.label`` is
faster but importing scipy.ndimage costs ~0.2 s CPU. Here: the voxel-adjacency graph (8
neighbours in 2D, 26 in 3D, as ``FullyConnectedOn``) and vectorised union-find (hook every
edge's larger root onto the smaller, compress paths by pointer jumping, repeat until every edge
joins one root), ~0.05-0.2 ms for a small box.
"""
from __future__ import annotations

import itertools

import numpy as np


def _half_offsets(nd: int) -> list[tuple[int, ...]]:
    """One of each pair of opposite neighbour offsets in ``{-1, 0, 1}^nd``."""
    offs = [o for o in itertools.product((-1, 0, 1), repeat=nd) if any(o)]
    return [o for o in offs if o > tuple(-x for x in o)]


def _one_run_per_row(roi: np.ndarray) -> bool:
    """True when a 2D ROI is visibly one 8-connected component: every row has at most one run,
    the rows with pixels are consecutive, and each run touches the next row's (8-neighbours).
    (The blob-shaped ROIs of most 2D cohorts; anything else goes to the union-find.)"""
    rows = np.flatnonzero(roi.any(1))
    sub = roi[rows[0]:rows[-1] + 1]
    if len(rows) != len(sub):
        return False
    d = np.diff(sub.astype(np.int8), axis=1, prepend=0, append=0)
    if (np.count_nonzero(d == 1, axis=1) != 1).any():
        return False
    start = np.argmax(d == 1, axis=1)
    end = np.argmax(d == -1, axis=1) - 1  # last pixel of the run
    return bool(((start[1:] <= end[:-1] + 1) & (start[:-1] <= end[1:] + 1)).all())


def count_components(roi: np.ndarray) -> int:
    """Number of fully connected (8 in 2D, 26 in 3D) components of the boolean array ``roi``."""
    roi = np.asarray(roi, dtype=bool)
    if roi.ndim == 2 and roi.any() and _one_run_per_row(roi):
        return 1
    pad = np.pad(roi, 1)
    pos = np.flatnonzero(pad)
    n = len(pos)
    if n <= 1:
        return n
    ids = np.full(pad.size, -1, dtype=np.int64)
    ids[pos] = np.arange(n)
    strides = np.cumprod((1,) + pad.shape[::-1][:-1])[::-1]
    us, vs = [], []
    for off in _half_offsets(pad.ndim):
        nb = ids[pos + int(np.dot(off, strides))]
        ok = nb >= 0
        us.append(np.flatnonzero(ok))
        vs.append(nb[ok])
    u = np.concatenate(us)
    v = np.concatenate(vs)
    parent = np.arange(n)
    while True:
        pu, pv = parent[u], parent[v]
        diff = pu != pv
        if not diff.any():
            break
        pu, pv = pu[diff], pv[diff]
        # hook the larger root onto the smaller (a root hooked by several edges takes one of
        # them; the others join in a later round): labels only ever point lower, so no cycles
        parent[np.maximum(pu, pv)] = np.minimum(pu, pv)
        while True:  # pointer jumping: every node points at its root again
            nxt = parent[parent]
            if np.array_equal(nxt, parent):
                break
            parent = nxt
    return int(np.count_nonzero(parent == np.arange(n)))
