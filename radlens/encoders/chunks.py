"""Running embedding chunks: here (one pass over the pending chunks) or on a Dask cluster.

A chunk is a slice of manifest rows; running one gives ``(case ids, {key: array}, failures)``
for exactly those rows, batched the same way wherever it runs, so a chunk computed on a Dask
worker equals the same chunk computed locally (same library versions and thread count).

Dask: every pending chunk is one task (:func:`embed_chunk_task`, submitted through
:func:`radlens.parallel.iter_cases`); each worker process loads the encoder once (a per-process
cache keyed by the spec and device) and keeps it for the following chunks. The client writes each
chunk file as its result arrives, so an interrupted run resumes from the finished chunks; a
chunk whose worker died is recomputed by the scheduler on another worker (Dask retries a task
whose worker was lost, up to ``distributed.scheduler.allowed-failures`` times).
"""
from __future__ import annotations

import logging
from typing import Any, Callable

log = logging.getLogger(__name__)

EXECUTORS = ("local", "dask")
#: encoders loaded in this (worker) process: key -> Encoder
_WORKER_ENCODERS: dict[str, Any] = {}


class _NoBar:
    def update(self, n: int = 1) -> None:
        pass


def _worker_encoder(spec: dict, device: str):
    from radlens.encoders.encoder import load_encoder
    from radlens.io.artifacts import obj_hash

    key = obj_hash([spec, device])
    enc = _WORKER_ENCODERS.get(key)
    if enc is None:
        _WORKER_ENCODERS.clear()  # one model per worker at a time: a new spec replaces the old one
        enc = _WORKER_ENCODERS[key] = load_encoder(spec, device=device)
        log.info("worker loaded encoder %s on %s", enc.name, device)
    return enc


def embed_chunk_task(task: dict) -> dict:
    """Run one chunk (a Dask task; module-level so that it pickles by reference).

    Parameters
    ----------
    task : dict
        ``chunk`` (index), ``rows`` (manifest rows as dicts, absolute paths), ``spec`` (normalised
        encoder spec, ROI overrides applied), ``device``, ``names`` (poolings), ``batch_size``,
        ``autocast``, ``roi_mode``, ``workers`` (loader threads on the worker), ``threads`` (torch
        intra-op threads, None = the worker's setting).

    Returns
    -------
    dict ``chunk``, ``ids``, ``arrays``, ``failures``, ``checkpoint_sha256``
    """
    from radlens.encoders.embed import _run_chunk
    from radlens.encoders.loader import CasePreparer, prepared_cases

    if task.get("threads"):
        import torch

        torch.set_num_threads(int(task["threads"]))
    enc = _worker_encoder(task["spec"], task["device"])
    names, mode = task["names"], task["roi_mode"]
    need_roi = "roi" in names or (mode or enc.spec["roi"]["mode"]) == "crop"
    prepare = CasePreparer(enc.preprocessor, enc.grids, enc.spec["roi"], need_roi, "roi" in names, mode)
    rows = task["rows"]
    items = iter(prepared_cases(prepare, rows, task["workers"], "thread", window=max(2 * task["batch_size"], 4)))
    ids, arrays, fails = _run_chunk(enc, items, len(rows), names, task["batch_size"], task["autocast"], _NoBar())
    return {"chunk": task["chunk"], "ids": ids, "arrays": arrays, "failures": fails,
            "checkpoint_sha256": enc.checkpoint_hash}


def run_chunks_dask(tasks: list[dict], write: Callable[[dict], None], bar, *, scheduler: Any = None,
                    jobs: int = 2) -> None:
    """Submit every chunk task to Dask; ``write(result)`` each result as it arrives.

    Raises
    ------
    RadlensError
        When chunks could not be computed (e.g. the scheduler gave up on a chunk whose workers kept
        dying); the finished chunks are on disk and a re-run computes only the others.
    """
    from radlens.errors import RadlensError
    from radlens.parallel import WorkerError, iter_cases

    failed = []
    for i, res in iter_cases(embed_chunk_task, tasks, jobs=jobs, executor="dask", scheduler=scheduler):
        if isinstance(res, WorkerError):
            log.error("chunk %d failed on the cluster: %s", tasks[i]["chunk"], res)
            failed.append((tasks[i]["chunk"], str(res)))
            continue
        write(res)
        bar.update(len(tasks[i]["rows"]))
    if failed:
        raise RadlensError(f"embed: {len(failed)} chunk(s) failed on the Dask cluster, e.g. chunk {failed[0][0]}: "
                           f"{failed[0][1]}; the other chunks are saved: re-run the same command to compute only "
                           "the missing ones")
