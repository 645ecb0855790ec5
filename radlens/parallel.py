"""Run a function over many cases: in-process, in a local process pool, or on a Dask cluster.

One interface for every executor::

    for i, result in iter_cases(fn, items, jobs=2):          # completion order, streaming
        ...
    results = run_cases(fn, items, jobs=2)                   # input order, list

``fn`` must be a module-level function (it is pickled to the workers). It should catch the errors
it expects and return a failure record; anything it still raises comes back as a
:class:`WorkerError` in place of its result, so one bad item never stops the others.

Executors
---------
``jobs=1`` (any executor but dask) runs in the calling process: no pickling, easy debugging.
``"process"`` uses :class:`concurrent.futures.ProcessPoolExecutor`; on Linux workers are forked
(they inherit the already-imported libraries, so start-up costs milliseconds rather than the
seconds a fresh interpreter needs to import SimpleITK/pyradiomics). Set ``RADLENS_MP_START`` to
``spawn`` or ``forkserver`` to override.
:class:`ForkedWorkers` is the lean form used by radiomics scheduling (``radlens.radiomics.schedule``):
workers forked with their first items, then fed one item at a time by the caller, no helper threads;
forked here, or by a zygote forked early (:mod:`radlens.zygote`) so that this process never forks
while it holds data.
``"dask"`` submits to a ``distributed`` scheduler: ``scheduler`` is an address
(``"tcp://host:8786"``), a :class:`distributed.Client`, or None for a temporary
:class:`distributed.LocalCluster` with ``jobs`` single-threaded worker processes. The workers need
radlens installed and the input files reachable under the same paths.
"""
from __future__ import annotations

import contextlib
import logging
import multiprocessing
import os
import sys
import traceback
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator, Sequence

from radlens.errors import ConfigError

log = logging.getLogger(__name__)

EXECUTORS = ("process", "dask")
#: How long to try to reach a Dask scheduler before giving up.
DASK_CONNECT_TIMEOUT = "10s"


@dataclass
class WorkerError:
    """An exception raised by ``fn`` for one item (returned instead of raising)."""

    type: str
    message: str
    traceback: str

    def __str__(self) -> str:
        return f"{self.type}: {self.message}"


def _call(fn: Callable, item: Any) -> Any:
    try:
        return fn(item)
    except Exception as exc:  # noqa: BLE001 - reported to the caller as a WorkerError
        return WorkerError(type(exc).__name__, str(exc), traceback.format_exc())


def check_executor(jobs: int, executor: str) -> int:
    """Validate ``jobs``/``executor``; returns ``jobs`` as int (``jobs <= 0`` means all CPUs)."""
    if executor not in EXECUTORS:
        raise ConfigError(f"executor={executor!r} is not allowed; use one of {list(EXECUTORS)}")
    try:
        jobs = int(jobs)
    except (TypeError, ValueError):
        raise ConfigError(f"jobs={jobs!r} is not an integer; use a number of worker processes (>= 1, "
                          "or 0 for one per CPU)") from None
    if jobs <= 0:
        jobs = os.cpu_count() or 1
    return jobs


def _mp_context():
    method = os.environ.get("RADLENS_MP_START")
    if method is None:
        method = "fork" if sys.platform.startswith("linux") else None
    return multiprocessing.get_context(method)


def iter_cases(fn: Callable[[Any], Any], items: Sequence[Any] | Iterable[Any], *, jobs: int = 1,
               executor: str = "process", scheduler: Any = None, initializer: Callable | None = None,
               initargs: tuple = ()) -> Iterator[tuple[int, Any]]:
    """Apply ``fn`` to every item; yield ``(index, result)`` as results arrive.

    Parameters
    ----------
    fn : callable
        Module-level function of one argument.
    items : sequence
        Work items (picklable for the process and dask executors).
    jobs : int, default 1
        Worker processes (``<= 0``: one per CPU). ``1`` with the process executor runs in-process.
    executor : {"process", "dask"}
    scheduler : str, distributed.Client or None
        Dask only: scheduler address or client; None starts a local cluster of ``jobs`` workers.
    initializer, initargs
        Called once per worker process before any item (process executor; in-process when
        ``jobs == 1``; ignored by dask, where ``fn`` must set itself up lazily).

    Yields
    ------
    (int, object)
        Item index and ``fn(item)``, or a :class:`WorkerError` if ``fn`` raised.
    """
    jobs = check_executor(jobs, executor)
    items = list(items)
    if not items:
        return
    if executor == "dask":
        yield from _iter_dask(fn, items, jobs, scheduler)
        return
    if jobs == 1 or len(items) == 1:
        if initializer is not None:
            initializer(*initargs)
        for i, item in enumerate(items):
            yield i, _call(fn, item)
        return
    n_workers = min(jobs, len(items))
    with frozen_gc():  # forked workers: the collector then never touches (and copies) the parent's objects
        yield from _iter_pool(fn, items, n_workers, initializer, initargs)


def _iter_pool(fn, items, n_workers, initializer, initargs):
    from concurrent.futures import ProcessPoolExecutor, as_completed

    with ProcessPoolExecutor(max_workers=n_workers, mp_context=_mp_context(), initializer=initializer,
                             initargs=initargs) as pool:
        futures = {pool.submit(_call, fn, item): i for i, item in enumerate(items)}
        try:
            for fut in as_completed(futures):
                try:
                    res = fut.result()
                except Exception as exc:  # a worker died (e.g. a crash in a C library): the pool is broken
                    res = WorkerError(type(exc).__name__, f"worker process failed: {exc}", "")
                yield futures[fut], res
        except BaseException:
            for fut in futures:
                fut.cancel()
            raise


def _iter_dask(fn, items, jobs, scheduler):
    try:
        from distributed import Client, LocalCluster, as_completed
    except ImportError as exc:  # pragma: no cover - dask[distributed] is a dependency
        raise ConfigError("executor='dask' needs dask[distributed]: pip install 'dask[distributed]'") from exc
    own_cluster = own_client = None
    quiet = [logging.getLogger(n) for n in ("distributed", "distributed.scheduler", "distributed.core",
                                             "distributed.nanny", "distributed.worker")]
    levels = [lg.level for lg in quiet]
    if scheduler is None:  # our own short-lived cluster: its start/stop chatter is noise
        for lg in quiet:
            lg.setLevel(max(lg.getEffectiveLevel(), logging.ERROR))
        own_cluster = LocalCluster(n_workers=jobs, threads_per_worker=1, processes=True,
                                   dashboard_address=None, silence_logs=logging.ERROR)
        client = own_client = Client(own_cluster)
    elif isinstance(scheduler, Client):
        client = scheduler
    else:
        try:
            client = own_client = Client(str(scheduler), timeout=DASK_CONNECT_TIMEOUT)
        except Exception as exc:
            raise ConfigError(f"scheduler={scheduler!r}: cannot connect to a Dask scheduler ({exc}); give its "
                              "address (tcp://host:8786) and check it is running") from exc
    try:
        futures = client.map(_call, [fn] * len(items), items, pure=False)
        index = {f.key: i for i, f in enumerate(futures)}
        for fut in as_completed(futures):
            try:
                res = fut.result()
            except Exception as exc:  # e.g. KilledWorker
                res = WorkerError(type(exc).__name__, f"dask worker failed: {exc}", "")
            yield index[fut.key], res
    finally:
        if own_client is not None:
            own_client.close()
        if own_cluster is not None:
            own_cluster.close()
        for lg, lv in zip(quiet, levels):
            lg.setLevel(lv)


def run_cases(fn: Callable[[Any], Any], items: Sequence[Any] | Iterable[Any], *, jobs: int = 1,
              executor: str = "process", scheduler: Any = None, initializer: Callable | None = None,
              initargs: tuple = ()) -> list[Any]:
    """Like :func:`iter_cases` but returns the results as a list in item order."""
    items = list(items)
    out: list[Any] = [None] * len(items)
    for i, res in iter_cases(fn, items, jobs=jobs, executor=executor, scheduler=scheduler,
                             initializer=initializer, initargs=initargs):
        out[i] = res
    return out


# --------------------------------------------------------------------------- one forked child
#: :class:`ForkedChild` processes not yet reaped: pid -> ``[waitpid status]`` (None until reaped; the
#: same list as the child object's, which need not be alive). Reaped without waiting by the next
#: :class:`ForkedWorkers`, or by a child's :meth:`ForkedChild.join`; at this process's exit, by the system.
_UNREAPED: dict[int, list] = {}


def _waitpid(pid: int, box: list, flags: int) -> bool:
    """Reap child ``pid`` (``flags``: ``os.WNOHANG`` or 0), its status into ``box[0]``; whether it
    is reaped (or not ours: reaped elsewhere, its status unknown)."""
    if box[0] is not None:
        return True
    try:
        done, status = os.waitpid(pid, flags)
    except ChildProcessError:
        _UNREAPED.pop(pid, None)
        return True
    if not done:
        return False
    box[0] = status
    _UNREAPED.pop(pid, None)
    return True


def _reap() -> None:
    """Reap the finished ones of :data:`_UNREAPED` (never waits; each keeps its exit status)."""
    for pid, box in list(_UNREAPED.items()):
        _waitpid(pid, box, os.WNOHANG)


def trim_heap() -> None:
    """Give the C heap's free pages back to the kernel (glibc ``malloc_trim``; nothing elsewhere).
    Before a fork: pages the parent freed but kept would be shared with the child, and each one
    either process later reuses would be copied (a copy-on-write fault costs ~10x a fresh page's);
    trimmed, both get fresh zero pages. The child's page tables are smaller too (a cheaper fork)."""
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            ctypes.CDLL(None).malloc_trim(0)
        except (OSError, AttributeError):  # pragma: no cover - not glibc
            pass


@contextlib.contextmanager
def frozen_gc():
    """``gc.freeze()`` for the ``with`` block: children forked in it never have their collector
    touch (and so copy) the objects this process held then."""
    import gc

    gc.freeze()
    try:
        yield
    finally:
        gc.unfreeze()


def _flush_std_streams() -> None:
    for stream in (sys.stdout, sys.stderr):
        try:
            if stream is not None:
                stream.flush()
        except (AttributeError, ValueError, OSError):
            pass


class ForkedChild:
    """One process forked from this one (``os.fork``) running ``target(conn, *args)``, with a
    socket pair to it: this side's end is :attr:`conn`. The base of :class:`ForkedWorkers`' workers
    and of the study's stage lanes (:mod:`radlens.study.lanes`).

    In the child, the connections in ``close`` (this process's ends to its other children) are
    closed first, so that closing them here reads as EOF there. ``target`` returning ends the child
    with exit code 0, ``SystemExit`` with its code, any other exception with 1: silently with
    ``quiet``, else its traceback on stderr after ``Process <name>:`` and stdout/stderr flushed (as
    :mod:`multiprocessing` does; they are flushed here before the fork then, so nothing buffered is
    written twice). A quiet child exits 1 on ``SystemExit`` too, without flushing.

    Its end: :meth:`poll` (never waits), :meth:`join` (waits), then :attr:`exitcode` (as
    ``multiprocessing``'s: ``-N`` when killed by signal N) and :meth:`exit_text` (in words, as
    worker failures name it). A child never joined is reaped by the next :class:`ForkedWorkers`
    (:func:`_reap`) or at this process's exit. :meth:`respawn` forks a new child running the same
    target and arguments (not kept with ``respawnable=False``: they may hold data for the child only).
    """

    def __init__(self, target: Callable, args: tuple = (), *, close: Iterable = (), name: str = "radlens-child",
                 quiet: bool = False, respawnable: bool = True):
        from multiprocessing import Pipe

        args = tuple(args)
        # what :meth:`respawn` needs (not kept otherwise: ``args`` may hold data only the child needs)
        self._spec = (target, args) if respawnable else None
        self.name, self.quiet = name, quiet
        self._exit: list = [None]  # the waitpid status, once reaped (shared with _UNREAPED)
        if not quiet:
            _flush_std_streams()
        mine, theirs = Pipe(duplex=True)
        pid = os.fork()
        if pid == 0:  # the child: never returns
            _UNREAPED.clear()  # the parent's children, not ours
            mine.close()
            for c in close:
                if c is not None:
                    c.close()
            _child_main(target, theirs, args, name, quiet)
        theirs.close()
        self.conn, self.pid = mine, pid
        _UNREAPED[pid] = self._exit

    @property
    def status(self) -> int | None:
        """The ``waitpid`` status once reaped, else None."""
        return self._exit[0]

    def respawn(self, close: Iterable = ()) -> "ForkedChild":
        """A new child running the same target and arguments (this one's end is not touched)."""
        if self._spec is None:
            raise RuntimeError(f"{self.name} (pid {self.pid}) was forked with respawnable=False")
        return ForkedChild(*self._spec, close=close, name=self.name, quiet=self.quiet)

    def _waitpid(self, flags: int) -> bool:
        return _waitpid(self.pid, self._exit, flags)

    def poll(self) -> int | None:
        """:attr:`exitcode` if the child has ended (reaped now), else None; never waits."""
        self._waitpid(os.WNOHANG)
        return self.exitcode

    def join(self, timeout: float | None = None) -> int | None:
        """Wait up to ``timeout`` seconds (None: as long as it takes) for the child to end;
        its :attr:`exitcode`, None if it has not ended."""
        import select
        import time

        if self._waitpid(0 if timeout is None else os.WNOHANG):
            return self.exitcode
        end = time.monotonic() + timeout
        try:
            fd = os.pidfd_open(self.pid)  # readable when the child ends (Linux >= 5.3)
        except (AttributeError, OSError):
            fd = None
        try:
            while not self._waitpid(os.WNOHANG):
                left = end - time.monotonic()
                if left <= 0:
                    break
                if fd is not None:
                    select.select([fd], [], [], left)
                else:
                    time.sleep(min(0.002, left))
        finally:
            if fd is not None:
                os.close(fd)
        return self.exitcode

    @property
    def exitcode(self) -> int | None:
        """Exit code once reaped (``-N``: killed by signal N), else None."""
        return None if self.status is None else os.waitstatus_to_exitcode(self.status)

    def exit_text(self) -> str:
        """How the child ended, in words: ``exit code N``, ``killed by signal N``, or ``exited``
        (status unknown: reaped elsewhere) -- waits for it."""
        self.join()
        return "exited" if self.status is None else _status_text(self.status)

    def kill(self, sig: int | None = None) -> None:
        """Send ``sig`` (default SIGKILL) to the child, if it has not been reaped."""
        import signal

        if self.status is None:
            try:
                os.kill(self.pid, signal.SIGKILL if sig is None else sig)
            except ProcessLookupError:
                pass

    def close(self) -> None:
        """Close this side's end (the child reads EOF); does not wait for it."""
        if self.conn is not None:
            self.conn.close()
            self.conn = None


def _child_main(target: Callable, conn, args: tuple, name: str, quiet: bool) -> None:
    """A :class:`ForkedChild`'s life: ``target(conn, *args)``, then ``os._exit`` (never returns)."""
    code = 1
    try:
        target(conn, *args)
        code = 0
    except SystemExit as exc:
        if not quiet:  # as multiprocessing
            if exc.code is None or isinstance(exc.code, int):
                code = exc.code or 0
            else:
                sys.stderr.write(f"{exc.code}\n")
    except BaseException:  # noqa: BLE001 - quiet: the parent gone, Ctrl-C: exit quietly
        if not quiet:
            sys.stderr.write(f"Process {name}:\n")
            traceback.print_exc()
    finally:
        if not quiet:
            _flush_std_streams()
        os._exit(code)


def _status_text(status: int) -> str:
    """A ``waitpid`` status in words (as the worker failures name it)."""
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit code {os.WEXITSTATUS(status)}"


# --------------------------------------------------------------------------- forked workers, lean
class ForkedWorkers:
    """``n`` worker processes forked from this one, each applying ``fn`` to the items it is sent,
    one at a time; no helper threads in this process (unlike ``ProcessPoolExecutor``'s manager
    and feeder threads) and a socket pair per worker (each a quiet :class:`ForkedChild`).

    Each worker's first items (``stocks[w]``) are handed over through the fork itself: it starts
    on them at once, with nothing pickled or sent. Later items go through :meth:`send`, results
    come back through :meth:`wait` as ``(worker, tag, result)``; ``fn`` raising gives a
    :class:`WorkerError` result (as :func:`iter_cases`). A worker that dies (a crash in a C
    library) gives a ``WorkerError`` for each item it held and takes no more (:meth:`alive`).

    Parameters
    ----------
    fn : callable
        Module-level function of one argument (run in the workers only).
    n : int
        Workers to fork (Linux/macOS: ``os.fork``).
    stocks : list of list of (tag, item), optional
        Per worker, the items it starts with (``tag``: any hashable the caller uses to match results).
    initializer, initargs
        Called once in each worker before its first item.
    zygote : radlens.zygote.Zygote, optional
        Fork the workers there (:mod:`radlens.zygote`) instead of here: they then share nothing
        with this process, and ``fn``, the stocks and the initializer are pickled to it (module-level
        functions). Raises ``OSError`` when the zygote is gone (nothing handed out).
    prepare : (callable, args), optional
        With ``zygote``: called in the zygote before it forks them (set-up the workers inherit).
    """

    def __init__(self, fn: Callable[[Any], Any], n: int, *, stocks: Sequence[Sequence[tuple]] | None = None,
                 initializer: Callable | None = None, initargs: tuple = (), zygote: Any = None,
                 prepare: tuple | None = None):
        stocks = list(stocks or []) + [[] for _ in range(n - len(stocks or []))]
        self.conns: list = []
        self.children: list[ForkedChild] = []  # forked here (none with a zygote)
        self.held: list[list] = [[tag for tag, _ in stock] for stock in stocks]  # per worker: tags not yet returned
        self.zygote = zygote
        self.tokens: list[int] = []
        if zygote is not None:  # forked there: nothing of this process is shared with them
            self.conns, self.tokens = zygote.fork(fn, stocks, initializer, initargs, prepare)
            self.pids: list[int | None] = [None] * n
            return
        _reap()
        trim_heap()
        for w in range(n):  # each closes the others' ends: the parent's exit must read as EOF there
            self.children.append(ForkedChild(_worker_loop, (fn, stocks[w], initializer, initargs), close=self.conns,
                                             name="radlens-worker", quiet=True, respawnable=False))
            self.conns.append(self.children[w].conn)
        self.pids = [c.pid for c in self.children]

    def alive(self, w: int) -> bool:
        return self.conns[w] is not None

    def send(self, w: int, tag, item) -> None:
        """Hand ``item`` to worker ``w`` (queued behind what it holds)."""
        self.conns[w].send((tag, item))
        self.held[w].append(tag)

    def wait(self, timeout: float | None = None) -> list[tuple[int, Any, Any]]:
        """Results that arrived (waiting up to ``timeout`` seconds, None: until one does, if any
        worker holds items): ``[(worker, tag, result), ...]``."""
        from multiprocessing.connection import wait

        live = {self.conns[w]: w for w in range(len(self.conns)) if self.conns[w] is not None and self.held[w]}
        if not live:
            return []
        out = []
        for conn in wait(list(live), timeout):
            w = live[conn]
            try:
                while True:
                    tag, res = conn.recv()
                    self.held[w].remove(tag)
                    out.append((w, tag, res))
                    if not conn.poll(0):
                        break
            except (EOFError, OSError) as exc:  # the worker died
                why = f"worker process failed: {self._died(w)}"
                out.extend((w, tag, WorkerError(type(exc).__name__, why, "")) for tag in self.held[w])
                self.held[w] = []
                conn.close()
                self.conns[w] = None
        return out

    def _died(self, w: int) -> str:
        if self.zygote is not None:
            return self.zygote.exit_status(self.tokens[w])
        return self.children[w].exit_text()

    def close(self, kill: bool = False) -> None:
        """Tell the workers to exit (``kill``: SIGKILL them) without waiting for them; they are
        reaped later (next pool, or this process's exit)."""
        if kill and self.zygote is not None:
            self.zygote.kill([t for t, c in zip(self.tokens, self.conns) if c is not None])
        for w, conn in enumerate(self.conns):
            if conn is None:
                continue
            if kill and self.zygote is None:
                self.children[w].kill()
            conn.close()  # the worker reads EOF and exits
            self.conns[w] = None


def _worker_loop(conn, fn, stock, initializer, initargs) -> None:
    """A :class:`ForkedWorkers` worker: its stocked items, then those sent, until EOF."""
    import pickle

    if initializer is not None:
        initializer(*initargs)
    pending = list(stock)
    while True:
        if pending:
            tag, item = pending.pop(0)
        else:
            try:
                tag, item = conn.recv()
            except EOFError:
                return
        res = _call(fn, item)
        try:
            conn.send((tag, res))
        except (pickle.PicklingError, TypeError, AttributeError) as exc:
            conn.send((tag, WorkerError(type(exc).__name__, f"result not picklable: {exc}", "")))


def _worker_main(fn, conn, stock, initializer, initargs) -> None:
    """A worker's life in a process forked elsewhere (the zygote's): :func:`_worker_loop`, then
    ``os._exit`` (0 at EOF, 1 on anything raised, quietly); never returns."""
    _child_main(_worker_loop, conn, (fn, stock, initializer, initargs), "radlens-worker", True)
