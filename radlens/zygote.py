"""The zygote: a fork server for :class:`radlens.parallel.ForkedWorkers`' workers.

A process that forks workers while it holds much memory pays for it twice: the fork copies its
page tables (~3-5 ms for radiomics' caller with pyradiomics, SimpleITK and the tables' libraries
loaded), and every page it writes afterwards while a worker lives is copied (copy-on-write, ~3 us
a page; radiomics' caller took ~2,000 more page faults with ``--jobs 2`` than alone). A zygote is
forked first thing, while the process is still small (:func:`start_zygote`, what ``radlens
radiomics --jobs N`` does), imports what the workers need itself (``preload``, on another core
while the caller imports the same), and then forks the workers on request: they share nothing
with the caller, which never forks while it holds data.

    start_zygote("radlens.radiomics.schedule:preload")   # first thing
    ...
    pool = ForkedWorkers(fn, 1, stocks=[[("a", item)]], zygote=zygote())   # forked by the zygote
"""
from __future__ import annotations

import logging
import os
import sys

from radlens.parallel import ForkedChild, _mp_context, _status_text, _worker_main, trim_heap

log = logging.getLogger(__name__)

#: the zygote of this process (:func:`start_zygote`), if one was started
_ZYGOTE: list = []


def start_zygote(preload: str | None = None, *, idle_core: bool = False) -> "Zygote | None":
    """Fork this process's :class:`Zygote` now (once; None where workers are not forked).

    Call it first thing, before the heavy imports and allocations (``radlens radiomics --jobs N``
    does): the zygote is then a small process that imports what its workers need (``preload``,
    ``"module:function"``, called in the zygote right after the fork) on another core while this
    process imports the same, and forks the workers of every later :class:`ForkedWorkers` given
    it (:func:`zygote`), so this process never forks while it holds large data. Its imports cost
    CPU time once (~0.18 s for radiomics); with ``idle_core`` it is started only when the 1-minute
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

        nrrd = sys.modules.get("radlens.io.nrrd")  # its reading buffers, if any, stay ours alone
        trim_heap()
        with nrrd.excluded_from_fork() if nrrd is not None else contextlib.nullcontext():
            self._child = ForkedChild(_zygote_main, (preload,), name="radlens-zygote", quiet=True, respawnable=False)
        self.conn, self.pid, self.owner = self._child.conn, self._child.pid, os.getpid()
        self.exits: dict[int, int] = {}  # token -> waitpid status, as the zygote reported them
        self._ready = False
        self._tokens = 0
        import threading

        self._lock = threading.RLock()  # one request or report at a time on the socket (threads)

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
        with self._lock:
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
        """Close our end (the zygote reads EOF and exits) and reap it (SIGKILL after 2 s)."""
        with self._lock:
            if self.conn is None:
                return
            self._child.close()
            self.conn = None
            if self._child.join(2.0) is None:
                self._child.kill()
                self._child.join()

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
        with self._lock:
            tokens = list(range(self._tokens, self._tokens + len(stocks)))
            self._tokens += len(stocks)
            try:
                if self.conn is None:
                    raise OSError("the zygote is gone")
                self.conn.send(("fork", tokens, fn, [list(s) for s in stocks], initializer, initargs, prepare))
                with socket.fromfd(self.conn.fileno(), socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    socket.send_fds(s, [b"f"], [theirs.fileno() for _, theirs in pairs])
            except BaseException as exc:  # nothing handed out: the caller forks its workers itself
                if isinstance(exc, OSError):  # the zygote is gone
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

    def prepare(self, fn, args=()) -> None:
        """Have the zygote call ``fn(*args)`` (module-level, pickled) when it reads this, before any
        later fork: set-up its workers then inherit, done while this process does other things."""
        with self._lock:
            try:
                if self.conn is not None:
                    self.conn.send(("prepare", fn, tuple(args)))
            except OSError:
                self._gone()

    def kill(self, tokens: list[int]) -> None:
        """SIGKILL these workers (through the zygote, their parent)."""
        with self._lock:
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
        if msg[0] == "prepare":
            try:
                msg[1](*msg[2])
            except Exception as exc:  # noqa: BLE001 - the workers meet it again and report it per item
                log.debug("zygote: prepare failed: %s", exc)
            continue
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
