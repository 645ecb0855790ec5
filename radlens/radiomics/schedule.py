"""Scheduling radiomics extraction over worker processes: largest cases first, large cases split.

:func:`plan` turns the cases to extract into work units, most expensive first:

* ``batch``: several whole cases (``extract_case`` each), the usual unit;
* ``types``: one image type of a large case (filters: Wavelet, LoG, ...), each part loading the
  case itself; the first part also computes the shape classes;
* ``prep`` then ``classes``: a large case whose parameters allow cropping (Original image only,
  no normalisation/resampling) is loaded, diagnosed and cropped once (``prep``); its feature
  classes are then computed in parallel on the crop (``classes``, a few KB sent to each worker).

:func:`run_scheduled` runs the units on ``jobs`` processes: the calling process and ``jobs - 1``
forked workers (:class:`radlens.parallel.ForkedWorkers`, forked with their first units: by the
process's zygote when one was started, :mod:`radlens.zygote`, else here without the caller's
reading buffers). The caller computes the most expensive unit waiting itself after stocking every
worker with two units (and at least ``STOCK_MARGIN`` / ``ZYGOTE_STOCK_MARGIN`` times its
estimated work), and
always hands out the most expensive unit waiting, so the parts of a split case go ahead of the
small cases still queued. Parts are merged into the record a single ``execute`` gives (same
features in the same order, bit for bit); the two stages of a class split live in
:mod:`radlens.radiomics.stages`. ``jobs=1`` runs whole cases in-process; the Dask executor, and a
process pool where workers are not forked, get batches and image-type parts (no two-stage units).
"""
from __future__ import annotations

import heapq
import itertools
import logging
import os
import sys
from typing import Any, Iterator

from radlens.radiomics.pyrad import check_features
from radlens.radiomics.stages import extract_classes, prepare_case  # noqa: F401 - the two stages of a split case

log = logging.getLogger(__name__)

#: relative cost of one image type (how many filtered images pyradiomics derives from it)
TYPE_WEIGHT = {"Wavelet": 8.0, "LoG": 3.0}
#: relative cost of the feature classes on a 3D crop (measured on pyradiomics' lung2/brain1:
#: marching cubes and diameters dominate), and on a 2D crop
CLASS_WEIGHT_3D = {"shape": 6.0, "glcm": 1.5, "glrlm": 1.2}
CLASS_WEIGHT_2D = {"shape2D": 0.5, "glcm": 1.5, "glrlm": 1.2}
#: ROI box size (voxels) from which a split case's feature classes go to several workers; below
#: it the worker that prepared the case computes them all (on pyradiomics' lung1, a 1,900-voxel
#: box, the classes take ~4 ms: a round trip and a crop transfer would cost more than they save;
#: lung2's 63,000-voxel box takes ~45 ms)
SPLIT_VOXELS = 16384
#: a case is split when its estimated cost exceeds one worker's share of the run (total / workers)
#: by this factor. Below a worker's share, the largest-first hand-out already fits the case beside
#: the others; just above it, splitting cannot win: the case's load (reading, diagnostics, crop;
#: ~70 % of pyradiomics' lung2) is one unit anyway, and the split adds work (the mask read twice,
#: the crop sent, two merges): on the five real 3D cases with ``--jobs 2`` lung2 is ~1.05 shares;
#: split, the busiest process took 119-123 ms CPU, unsplit 112-117 ms (same session).
SPLIT_SHARE = 1.15
#: a case between ``SHAPE_SPLIT_SHARE`` and ``SPLIT_SHARE`` shares (one of the ``--jobs`` - 1
#: largest, radlens' engine computing the shape classes) is split in two units only: its shape
#: classes from the mask alone (``shape``, on another worker) and everything else as one whole-case
#: extraction without them (``rest``: the same reader, reused buffers and code path as ``--jobs 1``,
#: no crop sent). On the five real 3D cases with ``--jobs 2``, lung2 (1.04 shares, ~97 ms CPU
#: of 183 ms) is split so: its shape (~15 ms warm, ~28 ms in a fresh worker with the mask read) goes to
#: the worker that also takes lung1 and the small cases.
SHAPE_SPLIT_SHARE = 0.8
#: the same when the workers are forked by a zygote (:func:`radlens.zygote.start_zygote`, what
#: ``radlens radiomics --jobs N`` starts): the caller then pays no fork and no copy-on-write (~9 ms
#: on those cases), the worker a cold start (new pages, ~10 % of its work), so the caller takes a
#: case whole up to this many shares (lung2 whole: ~94 ms CPU in the caller, its mask read once)
ZYGOTE_SHAPE_SPLIT_SHARE = 1.1
#: estimated share of a 3D case's cost in its shape classes (lung2: ~15 of ~97 ms CPU)
SHAPE_FRACTION = 0.2


def case_cost(row) -> float:
    """A cheap estimate of a case's extraction time: its files' sizes (no file is opened). Image
    reading dominates large 3D cases; the mask's (compressed) size grows with the ROI."""
    cost = 1.0
    for key, weight in (("image", 1.0), ("mask", 8.0)):
        path = row.get(key)
        if isinstance(path, (str, os.PathLike)) and str(path).strip():
            try:
                cost += weight * os.path.getsize(path)
            except OSError:
                pass
    return cost


#: rough seconds per case and per unit of :func:`case_cost` (fitted on pyradiomics' five real 3D
#: cases and 64-px 2D phantoms, radlens' engine, one 2-core machine) and the work from which a
#: 2-process pool wins (forking, handing out units and tearing down cost ~30-50 ms)
SECONDS_PER_CASE, SECONDS_PER_COST, POOL_WINS_FROM_S = 2.5e-3, 1.4e-8, 0.1


def auto_jobs(rows, todo, cpus: int) -> int:
    """Workers for ``jobs='auto'``: one per CPU (at most one per case), or 1 when the estimated
    work (:func:`case_cost`, no file opened) is too small for a pool to win."""
    if cpus <= 1 or len(todo) < 2:
        return 1
    est = SECONDS_PER_CASE * len(todo) + SECONDS_PER_COST * sum(case_cost(rows[i]) for i in todo)
    return 1 if est < POOL_WINS_FROM_S else min(cpus, len(todo))


def group_classes(classes, ndim: int, n_groups: int) -> list[tuple[str, ...]]:
    """Feature classes in at most ``n_groups`` groups of similar cost (longest first), each group
    in params order."""
    weights = CLASS_WEIGHT_3D if ndim == 3 else CLASS_WEIGHT_2D
    classes = list(classes)
    loads = [[0.0, []] for _ in range(max(1, min(n_groups, len(classes))))]
    for c in sorted(classes, key=lambda c: -weights.get(c, 1.0)):
        g = min(loads, key=lambda x: x[0])
        g[0] += weights.get(c, 1.0)
        g[1].append(c)
    return [tuple(c for c in classes if c in g[1]) for g in loads if g[1]]


def plan(rows, todo, prm, *, workers: int, diagnostics: str = "fast", batch_size: int | None = None,
         two_stage: bool = True, mask_shape: bool = False, zygote: bool = False) -> list[tuple[float, tuple]]:
    """Work units ``(cost, (kind, ...))``, most expensive first.

    A case is split when there are several workers, diagnostics are radlens' (``fast``) and the
    case alone exceeds a worker's share of the run by ``SPLIT_SHARE``: by feature class after one shared
    ``prep`` when cropping is safe (and ``two_stage``), otherwise by image type when there are
    several. With ``mask_shape`` (radlens' engine computes the shape classes) a split case's
    shape classes are a ``shape`` unit of their own that reads only the mask, so it starts at once
    instead of after the image is read (and a case just above a share is split in ``rest`` +
    ``shape`` from ``SHAPE_SPLIT_SHARE`` shares, ``ZYGOTE_SHAPE_SPLIT_SHARE`` when the workers
    are forked by a ``zygote``). Other cases go in ``batch`` units of ``batch_size`` (default: about 24 units per
    worker, at most 16 cases each), largest cases first.
    """
    from radlens.radiomics.pyrad import _crop_safe

    spec = prm.spec or {}
    types = list(spec.get("imageType") or {"Original": {}})
    classes = list(spec.get("featureClass") or {})
    crop_safe = _crop_safe(spec.get("setting") or {}, spec.get("imageType") or {"Original": {}})
    if mask_shape:  # only when radlens' engine computes every enabled shape class
        from radlens.radiomics.engine import engine_classes

        shapes = {"shape", "shape2D"} & set(classes)
        mask_shape = bool(shapes) and shapes <= set(engine_classes(spec.get("setting") or {}, spec.get(
            "featureClass") or {}, spec.get("imageType") or {"Original": {}}))
    cost = {i: case_cost(rows[i]) for i in todo}
    tw = sum(TYPE_WEIGHT.get(t, 1.0) for t in types)
    share = sum(cost.values()) / max(workers, 1)
    units: list[tuple[float, tuple]] = []
    whole = []
    # a mask-only shape unit reads the mask a second time: worth it only for the few largest cases,
    # whose image read it overlaps (file sizes say little about the ROI: lung1's is tiny)
    largest = set(sorted(todo, key=lambda i: -cost[i])[:max(workers - 1, 0)])
    shape_share = ZYGOTE_SHAPE_SPLIT_SHARE if zygote else SHAPE_SPLIT_SHARE
    for i in todo:
        big = workers > 1 and diagnostics == "fast" and cost[i] > SPLIT_SHARE * share
        if (mask_shape and not big and workers > 1 and diagnostics == "fast" and crop_safe and i in largest
                and cost[i] > shape_share * share and isinstance(rows[i].get("mask"), str)
                and rows[i]["mask"].strip()):
            # just above a share: only the shape classes go to another worker (read from the mask)
            units.append((cost[i] * (1 - SHAPE_FRACTION), ("rest", i)))
            units.append((cost[i] * SHAPE_FRACTION, ("shape", i)))
        elif big and crop_safe and two_stage and len(classes) > 1:
            units.append((cost[i], ("prep", i)))
            if mask_shape and i in largest and isinstance(rows[i].get("mask"), str) and rows[i]["mask"].strip():
                units.append((cost[i] * 0.999, ("shape", i)))
        elif big and len(types) > 1:
            for k, t in enumerate(types):
                units.append((cost[i] * (TYPE_WEIGHT.get(t, 1.0) + (k == 0)) / tw, ("types", i, (t,), k == 0)))
        else:
            whole.append(i)
    whole.sort(key=lambda i: -cost[i])
    bs = int(batch_size) if batch_size else max(1, min(16, -(-len(whole) // (24 * max(workers, 1)))))
    for j in range(0, len(whole), bs):
        b = tuple(whole[j:j + bs])
        units.append((sum(cost[i] for i in b), ("batch", b)))
    units.sort(key=lambda u: -u[0])  # stable: equal costs keep manifest order
    return units


def merge_parts(parts: list[dict[str, Any]]) -> dict[str, Any]:
    """One case's record from the records of its parts (in part order: the features then come in
    the order a single ``execute`` gives them: shape first, then image types in params order)."""
    bad = next((p for p in parts if p.get("error")), None)
    if bad is not None:
        return {**bad, "warnings": [w for p in parts for w in p.get("warnings") or []]}
    rec = {"case_id": parts[0]["case_id"], "features": {}, "diagnostics": {}, "stage": None, "error": None,
           "warnings": []}
    used: dict[str, list] = {"radlens_engine": [], "radlens_pyradiomics": []}
    for p in parts:
        rec["features"].update(p["features"] or {})
        rec["diagnostics"].update(p.get("diagnostics") or {})
        rec["warnings"].extend(p.get("warnings") or [])
        for k, v in used.items():
            v.extend(c for c in ((p.get("diagnostics") or {}).get(k) or "").split(",") if c and c not in v)
    for k, v in used.items():
        rec["diagnostics"][k] = ",".join(v) or None
    return check_features(rec)


#: CPU seconds spent in units per process id in the last pooled run, the calling process included
#: (a parallel run's critical path on otherwise idle cores is about the largest of them)
WORKER_CPU: dict[int, float] = {}


def _timed_unit(unit: tuple) -> tuple[int, float, Any]:
    """``run_unit`` in a pool worker, with the worker's pid and the CPU seconds it took."""
    import time

    c0 = time.process_time()
    res = _call_unit(unit)
    return os.getpid(), time.process_time() - c0, res


def _call_unit(unit):
    from radlens.parallel import _call

    return _call(run_unit, unit)


def run_unit(unit: tuple) -> Any:
    """One scheduled unit of work (see :mod:`radlens.radiomics.schedule`), in a worker."""
    from radlens.radiomics.pyrad import _extract_batch, _QuietPyradiomics

    kind = unit[0]
    if kind == "batch":
        return _extract_batch(unit[1])
    with _QuietPyradiomics():
        if kind == "prep":
            _, row, params, resample_mask, finish_below, skip_shape, engine = unit
            return prepare_case(row, params, resample_mask=resample_mask, finish_below=finish_below,
                                skip_shape=skip_shape, engine=engine)
        if kind == "shape":
            from radlens.radiomics.shape_unit import mask_shape

            _, row, params = unit
            return mask_shape(row, params)
        _, case_id, crop, params, classes, engine = unit
        return extract_classes(case_id, crop, params, classes, engine=engine)


def _failure(case_id, msg) -> dict[str, Any]:
    return {"case_id": str(case_id), "features": None, "diagnostics": {}, "stage": "extract",
            "error": f"worker error: {msg}", "warnings": []}


def run_scheduled(rows, todo, prm, *, jobs: int, executor: str = "process", scheduler=None,
                  diagnostics: str = "fast", resample_mask: bool = False, batch_size: int | None = None,
                  engine: str = "radlens") -> Iterator[tuple[int, dict, bool]]:
    """Extract the ``todo`` cases; yield ``(case index, record, cacheable)`` as each completes.

    ``cacheable`` is False for a case lost to a crashed worker (possibly transient).
    """
    from radlens.radiomics import pyrad

    workers = 1 if (executor == "process" and jobs == 1) else jobs
    # the caller-as-worker pool forks (Linux; RADLENS_MP_START unset or 'fork'); elsewhere a plain
    # process pool runs the units (no two-stage splits: they need the caller between the stages)
    forked = executor == "process" and workers > 1 and _forks()
    from radlens.zygote import zygote

    units = plan(rows, todo, prm, workers=workers, diagnostics=diagnostics, batch_size=batch_size,
                 two_stage=forked, mask_shape=engine == "radlens" and not resample_mask,
                 zygote=forked and zygote() is not None)
    n_split = sum(1 for _, u in units if u[0] == "prep") + len({u[1] for _, u in units if u[0] == "types"})
    if n_split:
        log.info("radiomics: %d large case(s) split across %d workers", n_split, workers)
    state = _Merger(rows, prm, diagnostics, resample_mask, workers, engine)
    state.has_shape = {u[1] for _, u in units if u[0] == "shape"}
    state.rest = {u[1] for _, u in units if u[0] == "rest"}
    if not forked:
        from radlens.parallel import iter_cases

        payloads = [state.payload(u) for _, u in units]
        threads = None if workers == 1 else max(1, (os.cpu_count() or 1) // workers)
        for t, res in iter_cases(run_unit, payloads, jobs=jobs, executor=executor, scheduler=scheduler,
                                 initializer=pyrad._worker_init, initargs=(threads,)):
            for out in state.done(units[t][1], res):
                yield out
        return
    WORKER_CPU.clear()
    yield from _pool(units, state, workers)


def preload() -> None:
    """Import what extracting a case imports (pyradiomics, the readers, the engine; numpy.ma through
    numpy.unique: ~20 ms): in the caller before it forks workers (they inherit it instead of
    importing it each), and in a zygote (:func:`radlens.zygote.start_zygote`) right away."""
    from radlens.radiomics.params_memo import lazy_pykwalify

    lazy_pykwalify()  # as radiomics() does before pyradiomics is imported
    import numpy.ma  # noqa: F401
    import radiomics  # noqa: F401

    import radlens.io.arraycase  # noqa: F401
    import radlens.io.images  # noqa: F401
    import radlens.radiomics.engine  # noqa: F401
    import radlens.radiomics.extract  # noqa: F401
    import radlens.radiomics.kernels.components  # noqa: F401
    import radlens.radiomics.shape_unit  # noqa: F401
    from radlens.io import nrrd

    lib = nrrd._libdeflate()  # the deflate package and its C library (~9 ms on a first case)
    if lib is not None:
        nrrd._decompressor(lib)


def prepare_zygote(prm, diagnostics: str, engine: str, ndimage: bool) -> None:
    """In the zygote, before it forks a run's workers: what the caller set up before the run (its
    extractors and engine tables; scipy.ndimage for a large run's diagnostics), inherited by them."""
    from radlens.radiomics.pyrad import warm_engine

    warm_engine(prm, diagnostics, engine)
    if ndimage:
        import scipy.ndimage  # noqa: F401


def warm_zygote(prm, diagnostics: str, engine: str, ndimage: bool) -> None:
    """Have this process's zygote, if any, run :func:`prepare_zygote` now, while the caller sets up
    the same (~7 ms for a new params file: the extractors): the run's workers are then forked
    without waiting for it."""
    from radlens.zygote import zygote

    z = zygote()
    if z is not None:
        z.prepare(prepare_zygote, (prm, diagnostics, engine, ndimage))


def _forks() -> bool:
    """Whether worker processes are forked here (see :func:`radlens.parallel._mp_context`)."""
    from radlens.parallel import _mp_context

    return hasattr(os, "fork") and _mp_context().get_start_method() == "fork"


#: units submitted per worker: one running, one waiting, so a worker never idles while the parent
#: (busy with a unit of its own, or late to be scheduled on a busy machine) hands it the next one
IN_FLIGHT = 2
#: before the caller computes a unit itself, each forked worker is stocked with this many times the
#: unit's estimated cost (file sizes under-rate a large ROI's features: pyradiomics' lung2 costs
#: ~1.5x lung1 per byte; the caller hands out nothing while it computes)
STOCK_MARGIN = 1.25
#: the same when the workers are forked by a zygote: they start cold (new pages: lung1 ~59 ms CPU
#: against ~49 in the caller) while the caller, warm and sharing nothing, is the faster one, so it
#: keeps more (on the five real 3D cases, breast1 stays for whoever is free first: --jobs 2 wall
#: 112.1 against 114.4 ms median with 1.25, same 15 rounds)
ZYGOTE_STOCK_MARGIN = 0.9


def _pool(units, state, workers) -> Iterator[tuple[int, dict, bool]]:
    """``workers`` processes: this one and ``workers - 1`` forked workers, most expensive unit first.

    The parent is one of the workers: it takes the most expensive unit waiting for itself, after
    stocking every forked worker with at least ``IN_FLIGHT`` units and at least ``STOCK_MARGIN``
    times that unit's estimated work (so none idles while the parent computes), then collects what
    finished. The workers are forked with their first stock (:class:`radlens.parallel.ForkedWorkers`:
    they start on it at once, nothing pickled or sent; no helper threads here), and without the
    parent's reading buffers (:func:`radlens.io.nrrd.excluded_from_fork`: the parent writes into
    them next, without copy-on-write). The parent's own results are neither pickled nor sent.
    """
    import gc
    import time

    from radlens.io import nrrd
    from radlens.parallel import ForkedWorkers, WorkerError, _call
    from radlens.radiomics import pyrad
    from radlens.zygote import zygote

    seq = itertools.count()
    heap = [(-c, next(seq), u) for c, u in units]
    heapq.heapify(heap)
    n_proc = max(workers - 1, 1)
    threads = max(1, (os.cpu_count() or 1) // workers)
    me = os.getpid()
    preload()  # what the first case imports, before the fork: the workers inherit it
    held: dict[int, tuple[float, tuple, int]] = {}  # tag -> (cost, unit, worker)
    load = [0.0] * n_proc  # estimated work each worker holds

    def stock(need: float, pool=None) -> list[list]:
        """Hand out units, most expensive first, to the least-loaded live worker until each holds
        ``IN_FLIGHT`` units and ``need`` estimated work; before the fork (``pool`` None) the
        units are returned per worker instead of sent."""
        out: list[list] = [[] for _ in range(n_proc)]
        live = [w for w in range(n_proc) if pool is None or pool.alive(w)]
        count = [sum(1 for h in held.values() if h[2] == w) for w in range(n_proc)]
        while heap and live:
            w = min(live, key=lambda k: (load[k], k))
            if count[w] >= IN_FLIGHT and load[w] >= need:
                break
            c, tag, u = heapq.heappop(heap)
            held[tag] = (-c, u, w)
            load[w] -= c
            count[w] += 1
            if pool is None:
                out[w].append((tag, state.payload(u)))
            else:
                pool.send(w, tag, state.payload(u))
        return out

    def collect(results):
        for w, tag, got in results:
            cost, u, _ = held.pop(tag)
            load[w] = max(load[w] - cost, 0.0)
            if isinstance(got, WorkerError):  # the worker died
                res = got
            else:
                pid, cpu, res = got
                WORKER_CPU[pid] = WORKER_CPU.get(pid, 0.0) + cpu
            yield from state.done(u, res)
            for c2, u2 in state.follow_ups(u, cost):
                heapq.heappush(heap, (-c2, next(seq), u2))

    zyg = zygote()  # started at the command's start: it forks the workers, this process never forks
    margin = ZYGOTE_STOCK_MARGIN if zyg is not None else STOCK_MARGIN
    pool, frozen = None, False
    try:
        own = heapq.heappop(heap) if heap else None
        first = stock(margin * (-own[0] if own else 0.0))
        if zyg is not None:
            try:
                pool = ForkedWorkers(_timed_unit, n_proc, stocks=first, initializer=pyrad._worker_init,
                                     initargs=(threads,), zygote=zyg,
                                     prepare=(prepare_zygote, (state.prm, state.diagnostics, state.engine,
                                                               "scipy.ndimage" in sys.modules)))
            except OSError:  # the zygote is gone: fork here
                zyg = None
        if zyg is None:
            gc.freeze()  # forked workers: the collector never touches (and copies) the parent's objects
            frozen = True
            with nrrd.excluded_from_fork():
                pool = ForkedWorkers(_timed_unit, n_proc, stocks=first, initializer=pyrad._worker_init,
                                     initargs=(threads,))
        while True:
            if own is not None:  # the parent's own unit, as jobs=1 runs it
                c0 = time.process_time()
                res = _call(run_unit, state.payload(own[2]))
                WORKER_CPU[me] = WORKER_CPU.get(me, 0.0) + time.process_time() - c0
                yield from state.done(own[2], res)
                for c2, u2 in state.follow_ups(own[2], -own[0]):
                    heapq.heappush(heap, (-c2, next(seq), u2))
            # collect what finished; wait only when the parent has nothing left to do
            yield from collect(pool.wait(0 if heap else None))
            if not heap and not held:
                break
            own = heapq.heappop(heap) if heap else None
            if own is not None:
                stock(margin * -own[0], pool)
        # every result is in: the workers exit while the caller writes the tables (waiting for them
        # here would put their tear-down on the run's critical path)
        pool.close()
    except BaseException:
        if pool is not None:
            pool.close(kill=True)
        raise
    finally:
        if frozen:
            gc.unfreeze()


class _Merger:
    """Builds unit payloads and merges the parts of split cases back into one record each."""

    def __init__(self, rows, prm, diagnostics, resample_mask, workers, engine):
        self.rows, self.prm, self.diagnostics, self.resample_mask = rows, prm, diagnostics, resample_mask
        self.engine = engine
        self.workers = workers
        self.types = list((prm.spec or {}).get("imageType") or {"Original": {}})
        self.n_types = len(self.types)
        self.parts: dict[int, dict[int, dict]] = {}
        self.prep: dict[int, dict] = {}
        self.groups: dict[int, list] = {}
        self.has_shape: set[int] = set()  # split cases whose shape classes are a mask-only unit
        self.rest: set[int] = set()  # cases split into ``rest`` + ``shape`` only
        self.finished: set[int] = set()
        self._next: list = []

    def payload(self, u):
        kind = u[0]
        if kind == "batch":
            return ("batch", ([self.rows[i] for i in u[1]], self.prm, self.diagnostics, self.resample_mask, None,
                              self.engine))
        if kind == "types":
            return ("batch", ([self.rows[u[1]]], self.prm, self.diagnostics, self.resample_mask, (u[2], u[3]),
                              self.engine))
        if kind == "prep":
            return ("prep", self.rows[u[1]], self.prm, self.resample_mask, SPLIT_VOXELS, u[1] in self.has_shape,
                    self.engine)
        if kind == "shape":
            return ("shape", self.rows[u[1]], self.prm)
        if kind == "rest":
            return ("batch", ([self.rows[u[1]]], self.prm, self.diagnostics, self.resample_mask,
                              (tuple(self.types), False, True), self.engine))
        _, i, k = u  # classes
        return ("classes", str(self.rows[i]["case_id"]), self.prep[i]["crop"], self.prm, self.groups[i][k],
                self.engine)

    def follow_ups(self, u, cost):
        out, self._next = self._next, []
        return out

    def done(self, u, res) -> list[tuple[int, dict, bool]]:
        from radlens.parallel import WorkerError
        from radlens.radiomics.pyrad import _extractors

        kind = u[0]
        crashed = isinstance(res, WorkerError) or kind in ("batch", "types", "rest") and not isinstance(res, list)
        if kind == "batch":
            if crashed:
                return [(i, _failure(self.rows[i]["case_id"], res), False) for i in u[1]]
            return [(i, rec, True) for i, rec in zip(u[1], res)]
        i = u[1]
        if kind == "types":
            got = self.parts.setdefault(i, {})
            got[self.types.index(u[2][0])] = _failure(self.rows[i]["case_id"], res) if crashed else res[0]
            got.setdefault("crashed", False)
            got["crashed"] = got["crashed"] or crashed
            if len(got) - 1 < self.n_types:
                return []
            was_crashed = got.pop("crashed")
            del self.parts[i]
            return [(i, merge_parts([got[k] for k in sorted(got)]), not was_crashed)]
        if kind == "rest" or (kind == "shape" and i in self.rest):
            return self._rest_done(u, res, crashed)
        if i in self.finished:  # the case already failed in another part
            return []
        if kind == "prep":
            if crashed or res.get("error"):
                self.finished.add(i)
                self.parts.pop(i, None)
                return [(i, _failure(self.rows[i]["case_id"], res), False) if crashed else (i, res, True)]
            ndim = res["ndim"]
            ex2, ex3, _ = _extractors(self.prm, "fast")
            enabled = [c for c in (ex2 if ndim == 2 else ex3).enabledFeatures
                       if not (i in self.has_shape and c.startswith("shape"))]
            part = res.pop("part", None)
            self.prep[i] = res
            self.parts.setdefault(i, {})
            if part is not None:  # a small ROI: the preparing worker computed every class
                self.groups[i] = [tuple(enabled)]
                self.parts[i][0] = part
                return self._finish(i)
            self.groups[i] = group_classes(enabled, ndim, self.workers)
            cost = case_cost(self.rows[i])
            self._next = [(cost, ("classes", i, k)) for k in range(len(self.groups[i]))]
            return self._finish(i)
        # classes, shape
        k = u[2] if kind == "classes" else -1  # the shape part first
        self.parts.setdefault(i, {})[k] = _failure(self.rows[i]["case_id"], res) if crashed else res
        return self._finish(i)

    def _rest_done(self, u, res, crashed) -> list[tuple[int, dict, bool]]:
        """A ``rest`` or ``shape`` part of a case split in two; its record once both are in."""
        from radlens.radiomics.pyrad import _extractors, order_features

        kind, i = u[0], u[1]
        if kind == "rest":
            res = _failure(self.rows[i]["case_id"], res) if crashed else res[0]
        elif crashed:
            res = _failure(self.rows[i]["case_id"], res)
        got = self.parts.setdefault(i, {})
        got[kind] = res
        got["crashed"] = got.get("crashed", False) or crashed
        if len(got) < 3:
            return []
        del self.parts[i]
        self.rest.discard(i)
        self.has_shape.discard(i)
        rest, shape, cacheable = got["rest"], got["shape"], not got["crashed"]
        if rest.get("error"):  # a load or ROI problem: reported as the unsplit extraction reports it
            return [(i, check_features(rest), cacheable)]
        warnings = list(rest.get("warnings") or []) + list(shape.get("warnings") or [])
        if shape.get("error"):
            return [(i, {**shape, "diagnostics": rest["diagnostics"], "warnings": warnings}, cacheable)]
        ex2, ex3, _ = _extractors(self.prm, "fast")
        first = next(iter(shape["features"] or rest["features"] or {"": 0}), "")
        enabled = (ex2 if "shape2D" in first.split("_")[1:2] else ex3).enabledFeatures
        diag = dict(rest["diagnostics"] or {})
        for key in ("radlens_engine", "radlens_pyradiomics"):  # in params order
            used = {c for p in (rest, shape) for c in ((p.get("diagnostics") or {}).get(key) or "").split(",")}
            if key in diag or used - {""}:
                diag[key] = ",".join(c for c in enabled if c in used) or None
        feats = order_features({**(shape["features"] or {}), **(rest["features"] or {})}, enabled)
        rec = {**rest, "features": feats, "diagnostics": diag, "warnings": warnings}
        return [(i, check_features(rec), cacheable)]

    def _finish(self, i) -> list[tuple[int, dict, bool]]:
        """The merged record of split case ``i`` once every part is in (else [])."""
        from radlens.radiomics.pyrad import _extractors, order_features

        got = self.parts.get(i, {})
        if i not in self.groups or len(got) < len(self.groups[i]) + (i in self.has_shape):
            return []
        self.finished.add(i)
        prep = self.prep.pop(i)
        del self.parts[i], self.groups[i]
        self.has_shape.discard(i)
        bad = next((got[k2] for k2 in sorted(got) if got[k2].get("error")), None)
        warnings = list(prep.get("warnings") or []) + [w for k2 in sorted(got) for w in got[k2].get("warnings") or []]
        if bad is not None:
            return [(i, {**bad, "diagnostics": prep["diagnostics"], "warnings": warnings},
                     not any(isinstance(r, dict) and str(r.get("error", "")).startswith("worker error")
                             for r in got.values()))]
        ndim = prep["ndim"]
        ex2, ex3, _ = _extractors(self.prm, "fast")
        enabled = (ex2 if ndim == 2 else ex3).enabledFeatures
        merged = merge_parts([{**prep, "warnings": []}] + [got[k2] for k2 in sorted(got)])
        if merged.get("error"):
            return [(i, {**merged, "warnings": warnings}, True)]
        # the shape classes come first in any group: one execute's order, class by class
        merged["features"] = order_features(merged["features"] or {}, enabled)
        merged["warnings"] = warnings
        for key in ("radlens_engine", "radlens_pyradiomics"):  # in params order
            used = set((merged["diagnostics"].get(key) or "").split(","))
            merged["diagnostics"][key] = ",".join(c for c in enabled if c in used) or None
        return [(i, check_features(merged), True)]
