"""Independent study stages at once: ``stage_jobs`` forked *lane* processes (``radlens run``).

:func:`radlens.study.execute` with ``jobs > 1`` forks ``jobs`` long-lived lane processes after the
stage graph is built. A lane holds the same stage list (it is a fork), so the parent sends it only a
stage's index and gets back the stage's record; the stage function, its closures and whatever it
imports stay in the lane (a lane imports MONAI or matplotlib once, however many stages use them).
The parent keeps the bookkeeping of the serial loop — input hashes, the cache check, skipped
dependants, ``stages/<name>.json`` — so a stage's outputs, key and record are those of a serial run;
only the order in which independent stages finish differs.

Which ready stage goes next: the one with the longest remaining chain of dependants (a rough cost
per stage kind, :data:`KIND_COST`), ties in list order, so a long stage (``cam-drift``) starts early
beside the chains of short ones. A stage starts only when every stage of its ``needs`` finished ok
or cached (otherwise it is marked skipped, as in a serial run) and every stage of its ``after``
finished whatever its status.

Each lane is a :class:`radlens.parallel.ForkedChild` (the forked process under radiomics'
:class:`radlens.parallel.ForkedWorkers` too). A lane that dies (killed, out of memory, a crash in
native code) fails its stage with the exit code (``-N``: killed by signal N); a new lane takes its
place. Without ``fork`` (``RADLENS_MP_START`` set to another start method, not Linux) the stages run
one after another in this process.
"""
from __future__ import annotations

import logging
import signal
from typing import Any, Callable

log = logging.getLogger(__name__)

#: rough cost of one stage of each kind (CPU seconds, quick demo, 2026-11-29): orders the ready
#: stages only, never changes what a stage computes
KIND_COST = {"radiomics": 0.5, "embed": 0.3, "fit-pre": 0.8, "refit-post": 3.0, "compare": 4.3, "enrichment": 0.05,
             "predictions": 2.0, "cam-drift": 15.0, "localize": 0.4, "tradeoff": 0.15, "pooling-probe": 1.2}


#: modules the stages of each kind import, imported once in this process before the lanes fork (each
#: lane would otherwise import them again: MONAI's networks alone take ~4 s of CPU)
KIND_MODULES = {
    "radiomics": ["radlens.radiomics.extract"],
    "embed": ["radlens.encoders.embed"],
    "fit-pre": ["radlens.lens.layers", "radlens.lens.pipeline", "sklearn.linear_model", "scipy.stats"],
    "refit-post": ["radlens.lens.layers", "radlens.lens.pipeline"],
    "compare": ["radlens.lens.compare", "radlens.viz.lens", "matplotlib.pyplot"],
    "predictions": ["radlens.cam.model"],
    "cam-drift": ["radlens.cam.run", "radlens.viz.cam", "matplotlib.pyplot"],
    "localize": ["radlens.localization"],
    "pooling-probe": ["radlens.probe.run", "sklearn.linear_model"],
}
#: encoder spec ``kind`` -> the library its adapter imports
ENCODER_MODULES = {"monai": ["monai.networks.nets"], "hf": ["transformers"], "timm": ["timm"]}


def preimport(stages: list, encoder_kinds=()) -> list[str]:
    """Import what the stages of ``stages`` (by kind, :data:`KIND_MODULES`) and encoders of
    ``encoder_kinds`` (:data:`ENCODER_MODULES`) will import, before the lanes fork; returns the
    modules imported. A module that does not import is left to the stage (which reports it)."""
    import importlib
    import sys

    names = [m for s in stages for m in KIND_MODULES.get(s.kind, [])]
    names += [m for k in encoder_kinds for m in ENCODER_MODULES.get(k, [])]
    done = []
    for name in dict.fromkeys(names):
        if name in sys.modules:
            continue
        try:
            importlib.import_module(name)
            done.append(name)
        except Exception as exc:  # noqa: BLE001 - the stage that needs it will fail with its own message
            log.debug("lanes: %s not imported before the fork: %s", name, exc)
    if "matplotlib.pyplot" in sys.modules:
        from radlens.viz.style import use_agg

        use_agg()
    return done


def fork_available() -> bool:
    """True when worker processes are forked (Linux, ``RADLENS_MP_START`` unset or ``fork``)."""
    from radlens.parallel import _mp_context

    return _mp_context().get_start_method() == "fork"


def priorities(stages: list) -> dict[str, float]:
    """Per stage: its :data:`KIND_COST` plus the largest priority among the stages that wait for it
    (``needs`` or ``after``), i.e. the cost of the longest chain it starts."""
    waiting: dict[str, list[str]] = {s.name: [] for s in stages}
    for s in stages:
        for n in list(s.needs) + list(getattr(s, "after", [])):
            if n in waiting:
                waiting[n].append(s.name)
    prio: dict[str, float] = {}
    cost = {s.name: KIND_COST.get(s.kind, 1.0) for s in stages}

    def level(name, seen=()):
        if name not in prio:
            if name in seen:  # a cycle cannot come from build(); do not recurse forever on a hand-made one
                return cost[name]
            prio[name] = cost[name] + max((level(d, seen + (name,)) for d in waiting[name]), default=0.0)
        return prio[name]

    for s in stages:
        level(s.name)
    return prio


def _lane(conn, stages: list, run_one: Callable[[Any], Any], init: Callable[[], None] | None) -> None:
    """A lane process: run the stages whose index arrives on ``conn``, send back each record."""
    if init is not None:
        init()
    while True:
        try:
            i = conn.recv()
        except EOFError:
            return
        if i is None:
            return
        i, payload = i
        conn.send(run_one(stages[i], payload))


class Lanes:
    """``n`` forked lane processes (each a :class:`radlens.parallel.ForkedChild`); :meth:`submit` a
    stage index to an idle one, :meth:`wait` for records. A lane that dies is replaced by a new one."""

    def __init__(self, n: int, stages: list, run_one: Callable, init: Callable[[], None] | None = None):
        self._args = (stages, run_one, init)
        self._lanes: list = []      # ForkedChild per lane
        self._stage: list[int | None] = [None] * n   # per lane: the stage index it runs, or None (idle)
        for _ in range(n):
            self._lanes.append(self._fork())

    def _fork(self, dead=None):
        """A new lane (in place of ``dead``, a lane that died)."""
        from radlens.parallel import ForkedChild, frozen_gc

        others = [lane.conn for lane in self._lanes if lane is not dead]  # each lane closes the others' ends
        with frozen_gc():   # the lane's collector then never touches (and copies) this process's objects
            if dead is not None:
                return dead.respawn(close=others)
            return ForkedChild(_lane, self._args, close=others, name="radlens-stage-lane")

    @property
    def idle(self) -> int:
        return sum(1 for i in self._stage if i is None)

    @property
    def busy(self) -> int:
        return len(self._lanes) - self.idle

    def submit(self, i: int, payload: Any = None) -> None:
        k = self._stage.index(None)
        self._lanes[k].conn.send((i, payload))
        self._stage[k] = i

    def wait(self) -> list[tuple[int, Any, int | None]]:
        """Block until a running stage ends; ``[(index, record or None, exit code of a dead lane)]``."""
        from multiprocessing.connection import wait

        ready = wait([lane.conn for lane, i in zip(self._lanes, self._stage) if i is not None])
        out = []
        for k, lane in enumerate(self._lanes):
            i = self._stage[k]
            if i is None or lane.conn not in ready:
                continue
            rec = None
            try:
                if lane.conn.poll():
                    rec = lane.conn.recv()
            except (EOFError, OSError):
                rec = None
            self._stage[k] = None
            if rec is not None:
                out.append((i, rec, None))
                continue
            code = lane.join(timeout=5)   # the lane died without a record: its stage fails, a new lane replaces it
            lane.close()
            out.append((i, None, code))
            self._lanes[k] = self._fork(dead=lane)
        return out

    def close(self) -> None:
        for lane, i in zip(self._lanes, self._stage):
            try:
                if i is None:
                    lane.conn.send(None)
                else:
                    lane.kill(signal.SIGTERM)
            except OSError:
                pass
        for lane in self._lanes:
            if lane.join(timeout=10) is None:
                lane.kill()
                lane.join()
            lane.close()


def run_parallel(stages: list, jobs: int, prepare: Callable[[Any], Any], run_one: Callable[[Any], Any],
                 finish: Callable[[Any, Any], None], init: Callable[[], None] | None = None,
                 before_fork: Callable[[list], None] | None = None) -> None:
    """Schedule ``stages`` over ``jobs`` lanes.

    ``prepare(stage)`` (in this process, once, when the stage's ``needs``/``after`` have finished)
    returns ``(record, None)`` for a final record (skipped or cached) or ``(None, payload)`` to run it;
    ``run_one(stage, payload)`` runs it (in a lane) and returns its record; ``finish(stage, record)``
    stores a record (``record`` None with an int: the lane died with that exit code).
    ``before_fork(stages)`` runs once, just before the lanes fork (only when a stage is to run), with
    the stages not yet finished.
    """
    prio = priorities(stages)
    order = {s.name: k for k, s in enumerate(stages)}
    pending = sorted(stages, key=lambda s: (-prio[s.name], order[s.name]))
    done: set[str] = set()
    names = set(order)
    lanes = None
    payloads: dict[str, Any] = {}
    try:
        while pending or (lanes is not None and lanes.busy):
            progressed = True
            while progressed:
                progressed = False
                for s in list(pending):
                    waits = [n for n in list(s.needs) + list(getattr(s, "after", [])) if n in names]
                    if any(n not in done for n in waits):
                        continue
                    if s.name not in payloads:
                        rec, payloads[s.name] = prepare(s)
                        if rec is not None:        # skipped or cached: no lane needed
                            pending.remove(s)
                            finish(s, rec)
                            done.add(s.name)
                            progressed = True
                            continue
                    if lanes is None:
                        if before_fork is not None:
                            before_fork([p for p in pending if p.name not in done])
                        lanes = Lanes(jobs, stages, run_one, init)
                    if not lanes.idle:
                        break
                    pending.remove(s)
                    lanes.submit(order[s.name], payloads[s.name])
                    progressed = True
            if lanes is None or not lanes.busy:
                if pending:   # nothing runs and nothing can start: a need that is not a stage of this list
                    raise RuntimeError(f"stages {[s.name for s in pending]} wait for stages that never finish")
                break
            for i, rec, code in lanes.wait():
                s = stages[i]
                finish(s, rec if rec is not None else code)
                done.add(s.name)
    finally:
        if lanes is not None:
            lanes.close()


def lane_count(jobs: int, stages: list) -> int:
    """Lanes worth starting: ``jobs``, at most the number of stages, at least 1."""
    return max(1, min(int(jobs), len(stages)))

