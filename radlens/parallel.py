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
workers forked with their first items, then fed one item at a time by the caller, no helper threads.
``"dask"`` submits to a ``distributed`` scheduler: ``scheduler`` is an address
(``"tcp://host:8786"``), a :class:`distributed.Client`, or None for a temporary
:class:`distributed.LocalCluster` with ``jobs`` single-threaded worker processes. The workers need
radlens installed and the input files reachable under the same paths.
"""
from __future__ import annotations

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
    import gc

    gc.freeze()  # forked workers: the collector then never touches (and copies) the parent's objects
    try:
        yield from _iter_pool(fn, items, n_workers, initializer, initargs)
    finally:
        gc.unfreeze()


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


# --------------------------------------------------------------------------- forked workers, lean
#: children of :class:`ForkedWorkers` not yet reaped (reaped without waiting by the next ones; at this
#: process's exit, by the system)
_UNREAPED: list[int] = []


def _reap() -> None:
    """Reap the finished ones of :data:`_UNREAPED` (never waits)."""
    for pid in list(_UNREAPED):
        try:
            done, _ = os.waitpid(pid, os.WNOHANG)
        except ChildProcessError:
            done = pid
        if done:
            _UNREAPED.remove(pid)


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


class ForkedWorkers:
    """``n`` worker processes forked from this one, each applying ``fn`` to the items it is sent,
    one at a time; no helper threads in this process (unlike ``ProcessPoolExecutor``'s manager
    and feeder threads) and a socket pair per worker.

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
    """

    def __init__(self, fn: Callable[[Any], Any], n: int, *, stocks: Sequence[Sequence[tuple]] | None = None,
                 initializer: Callable | None = None, initargs: tuple = (), zygote: "Zygote | None" = None,
                 prepare: tuple | None = None):
        from multiprocessing import Pipe

        stocks = list(stocks or []) + [[] for _ in range(n - len(stocks or []))]
        self.conns: list = []
        self.pids: list[int | None] = []
        self.held: list[list] = []  # per worker: tags sent and not yet returned, in order
        self.zygote = zygote
        self.tokens: list[int] = []
        if zygote is not None:  # forked there: nothing of this process is shared with them
            self.conns, self.tokens = zygote.fork(fn, stocks, initializer, initargs, prepare)
            self.pids = [None] * n
            self.held = [[tag for tag, _ in stock] for stock in stocks]
            return
        _reap()
        trim_heap()
        for w in range(n):
            mine, theirs = Pipe(duplex=True)
            pid = os.fork()
            if pid == 0:  # the worker: never returns
                mine.close()
                for c in self.conns:  # other workers' ends: the parent's exit must read as EOF there
                    c.close()
                _worker_main(fn, theirs, stocks[w], initializer, initargs)
            theirs.close()
            self.conns.append(mine)
            self.pids.append(pid)
            _UNREAPED.append(pid)
            self.held.append([tag for tag, _ in stocks[w]])

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
        pid = self.pids[w]
        try:
            done, status = os.waitpid(pid, 0)
        except ChildProcessError:
            return "exited"
        if pid in _UNREAPED:
            _UNREAPED.remove(pid)
        return _status_text(status)

    def close(self, kill: bool = False) -> None:
        """Tell the workers to exit (``kill``: SIGKILL them) without waiting for them; they are
        reaped later (next pool, or this process's exit)."""
        import signal

        if kill and self.zygote is not None:
            self.zygote.kill([t for t, c in zip(self.tokens, self.conns) if c is not None])
        for w, conn in enumerate(self.conns):
            if conn is None:
                continue
            if kill and self.zygote is None:
                try:
                    os.kill(self.pids[w], signal.SIGKILL)
                except ProcessLookupError:
                    pass
            conn.close()  # the worker reads EOF and exits
            self.conns[w] = None


def _worker_main(fn, conn, stock, initializer, initargs) -> None:
    """A :class:`ForkedWorkers` worker: its stocked items, then those sent, until EOF."""
    import pickle

    code = 0
    try:
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
                    break
            res = _call(fn, item)
            try:
                conn.send((tag, res))
            except (pickle.PicklingError, TypeError, AttributeError) as exc:
                conn.send((tag, WorkerError(type(exc).__name__, f"result not picklable: {exc}", "")))
    except BaseException:  # noqa: BLE001 - the parent gone, Ctrl-C: exit quietly
        code = 1
    finally:
        os._exit(code)


def _status_text(status: int) -> str:
    """A ``waitpid`` status in words (as the worker failures name it)."""
    if os.WIFSIGNALED(status):
        return f"killed by signal {os.WTERMSIG(status)}"
    return f"exit code {os.WEXITSTATUS(status)}"


# --------------------------------------------------------------------------- the zygote: workers forked elsewhere
#: the zygote of this process (:func:`start_zygote`), if one was started
_ZYGOTE: list = []


def start_zygote(preload: str | None = None, *, idle_core: bool = False) -> "Zygote | None":
    """Fork this process's :class:`Zygote` now (once; None where workers are not forked).

    Call it first thing, before the heavy imports and allocations (``radlens radiomics --jobs N``
    does): the zygote is then a small process that imports what its workers need (``preload``,
    ``"module:function"``, called in the zygote right after the fork) on another core while this
    process imports the same, and forks the workers of every later :class:`ForkedWorkers` given
    it (:func:`zygote`), so this process never forks while it holds large data. Its imports cost
    CPU time once (~0.25 s for radiomics); with ``idle_core`` it is started only when the 1-minute
    load average leaves a CPU idle for them (else None: the workers are forked from this process).
    A zygote forked late shares this process's memory as it is then and keeps its pages (a copy of
    each page this process writes afterwards while the zygote lives): start it before loading data."""
    if _ZYGOTE and _ZYGOTE[0].alive() and _ZYGOTE[0].owner == os.getpid():
        return _ZYGOTE[0]
    if not (hasattr(os, "fork") and _mp_context().get_start_method() == "fork"):
        return None
    if idle_core:
        cpus = os.cpu_count() or 1
        if cpus < 2 or os.getloadavg()[0] > cpus - 1:
            log.debug("zygote not started: no idle CPU (load %.2f, %d CPUs)", os.getloadavg()[0], cpus)
            return None
    _ZYGOTE[:] = [Zygote(preload)]
    return _ZYGOTE[0]


def zygote() -> "Zygote | None":
    """This process's zygote when one was started and is alive, else None (the caller then forks
    its workers itself). Workers asked of a zygote still importing (its preload) are forked as
    soon as it is done; the caller meanwhile computes a unit of its own."""
    if not _ZYGOTE or os.getpid() != _ZYGOTE[0].owner:
        return None
    z = _ZYGOTE[0]
    z.ready()  # its reports, or EOF: gone
    return z if z.alive() else None


def stop_zygote() -> None:
    """End this process's zygote (it also ends when this process does: it reads EOF)."""
    if _ZYGOTE:
        _ZYGOTE.pop().close()


class Zygote:
    """A fork server: a process forked from this one that forks :class:`ForkedWorkers`' workers
    on request, so that this process never forks while it holds large data.

    A fork from a large process costs that process the copy of its page tables (~3-5 ms for
    radiomics' caller with pyradiomics and SimpleITK loaded) and write-protects all its memory:
    every page it writes while the worker lives is then copied (copy-on-write faults, ~3 us each;
    radiomics' caller took ~2,000 more page faults in ``--jobs 2`` than alone). Forked early, the
    zygote shares only the little this process held then; its workers share nothing with this
    process. Each worker is forked with its stock pickled in the request (a few KB), gets its socket from this
    process (passed over the zygote's socket, ``SCM_RIGHTS``) and talks to this process only;
    the zygote reaps it and reports how it ended (:meth:`exit_status`). Ctrl-C is this process's
    to handle (the zygote ignores SIGINT; its workers do not); the zygote exits when this process
    does (EOF on its socket).
    """

    def __init__(self, preload: str | None = None):
        import contextlib
        from multiprocessing import Pipe

        mine, theirs = Pipe(duplex=True)
        nrrd = sys.modules.get("radlens.io.nrrd")  # its reading buffers, if any, stay ours alone
        trim_heap()
        with nrrd.excluded_from_fork() if nrrd is not None else contextlib.nullcontext():
            pid = os.fork()
            if pid == 0:  # the zygote: never returns
                mine.close()
                _zygote_main(theirs, preload)
        theirs.close()
        self.conn, self.pid, self.owner = mine, pid, os.getpid()
        self.exits: dict[int, int] = {}  # token -> waitpid status, as the zygote reported them
        self._ready = False
        self._tokens = 0

    def alive(self) -> bool:
        return self.conn is not None

    def ready(self) -> bool:
        """Whether the zygote is alive and has finished its preload (never waits)."""
        if self.conn is not None:
            self._pump(0)  # its reports, or EOF: gone
        return self._ready and self.conn is not None

    def wait_ready(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` seconds for the zygote's preload to finish; whether it has."""
        import time

        end = None if timeout is None else time.monotonic() + timeout
        while not self._ready and self.conn is not None:
            self._pump(None if end is None else max(end - time.monotonic(), 0))
            if end is not None and time.monotonic() >= end:
                break
        return self._ready

    def _pump(self, timeout: float | None) -> None:
        """Read the zygote's reports (waiting up to ``timeout`` for the first)."""
        try:
            while self.conn is not None and self.conn.poll(timeout):
                msg = self.conn.recv()
                timeout = 0
                if msg[0] == "ready":
                    self._ready = True
                elif msg[0] == "exit":
                    self.exits[msg[1]] = msg[2]
        except (EOFError, OSError):
            self._gone()

    def _gone(self) -> None:
        if self.conn is not None:
            self.conn.close()
            self.conn = None
            try:
                os.waitpid(self.pid, 0)
            except ChildProcessError:
                pass

    def fork(self, fn, stocks, initializer=None, initargs=(), prepare=None) -> tuple[list, list[int]]:
        """Have the zygote fork one worker per stock (``_worker_main(fn, ...)``, as
        :class:`ForkedWorkers`' own); ``prepare = (callable, args)`` is called in the zygote first
        (its result inherited by the workers: extractors, engine tables). Returns this side's
        connections and the workers' tokens; does not wait for the forks. Raises ``OSError``
        when the zygote is gone (nothing was handed out)."""
        import socket
        from multiprocessing import Pipe

        self._pump(0)  # reports of earlier workers
        pairs = [Pipe(duplex=True) for _ in stocks]
        tokens = list(range(self._tokens, self._tokens + len(stocks)))
        self._tokens += len(stocks)
        try:
            if self.conn is None:
                raise OSError("the zygote is gone")
            self.conn.send(("fork", tokens, fn, [list(s) for s in stocks], initializer, initargs, prepare))
            with socket.fromfd(self.conn.fileno(), socket.AF_UNIX, socket.SOCK_STREAM) as s:
                socket.send_fds(s, [b"f"], [theirs.fileno() for _, theirs in pairs])
        except OSError:  # the zygote is gone (nothing handed out): the caller forks its workers itself
            self._gone()
            for mine, theirs in pairs:
                mine.close()
                theirs.close()
            raise
        for _, theirs in pairs:
            theirs.close()
        return [mine for mine, _ in pairs], tokens

    def exit_status(self, token: int, timeout: float = 10.0) -> str:
        """How worker ``token`` ended, in words (waits for the zygote's report)."""
        import time

        end = time.monotonic() + timeout
        while token not in self.exits and self.conn is not None and time.monotonic() < end:
            self._pump(max(end - time.monotonic(), 0))
        return _status_text(self.exits.pop(token)) if token in self.exits else "exited"

    def kill(self, tokens: list[int]) -> None:
        """SIGKILL these workers (through the zygote, their parent)."""
        try:
            if self.conn is not None and tokens:
                self.conn.send(("kill", list(tokens)))
        except OSError:
            self._gone()

    def close(self) -> None:
        """End the zygote (its workers end when their connections close)."""
        self._gone()


def _zygote_main(conn, preload: str | None) -> None:
    """The zygote's loop: preload, then fork workers on request and report their ends, until EOF."""
    import signal

    code = 0
    try:
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C: the caller's to handle; EOF ends us
        rfd, wfd = os.pipe()
        os.set_blocking(wfd, False)
        signal.signal(signal.SIGCHLD, lambda *_: None)  # a child's end wakes the loop (wakeup fd)
        signal.set_wakeup_fd(wfd)
        if preload:
            import importlib

            mod, _, func = preload.partition(":")
            try:
                getattr(importlib.import_module(mod), func)()
            except Exception as exc:  # noqa: BLE001 - the workers will meet it again and report it
                log.debug("zygote: preload %s failed: %s", preload, exc)
        conn.send(("ready",))
        children: dict[int, int] = {}  # pid -> token
        _zygote_loop(conn, rfd, wfd, children)
    except BaseException:  # noqa: BLE001 - the caller gone: exit quietly
        code = 1
    finally:
        os._exit(code)


def _zygote_loop(conn, rfd, wfd, children) -> None:
    import gc
    import signal
    import socket
    from multiprocessing.connection import Connection, wait

    while True:
        ready = wait([conn, rfd])
        if rfd in ready:
            os.read(rfd, 4096)
        while children:  # reap, and report how each ended
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if not pid:
                break
            token = children.pop(pid, None)
            if token is not None:
                conn.send(("exit", token, status))
        if conn not in ready:
            continue
        try:
            msg = conn.recv()
        except EOFError:
            break
        if msg[0] == "kill":
            for pid, token in list(children.items()):
                if token in msg[1]:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
            continue
        _, tokens, fn, stocks, initializer, initargs, prepare = msg
        with socket.fromfd(conn.fileno(), socket.AF_UNIX, socket.SOCK_STREAM) as s:
            fds = socket.recv_fds(s, 1, len(tokens))[1]
        if prepare is not None:
            try:
                prepare[0](*prepare[1])
            except Exception as exc:  # noqa: BLE001 - the workers meet it again and report it per item
                log.debug("zygote: prepare failed: %s", exc)
        gc.freeze()  # the workers' collectors never touch (and copy) what the zygote holds
        trim_heap()
        for k, (token, fd) in enumerate(zip(tokens, fds)):
            pid = os.fork()
            if pid == 0:  # a worker: never returns
                signal.set_wakeup_fd(-1)
                signal.signal(signal.SIGCHLD, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.default_int_handler)
                for other in fds[:k] + fds[k + 1:]:
                    os.close(other)
                os.close(rfd)
                os.close(wfd)
                conn.close()
                _worker_main(fn, Connection(fd), stocks[k], initializer, initargs)
            children[pid] = token
        for fd in fds:
            os.close(fd)
