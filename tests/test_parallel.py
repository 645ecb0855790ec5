"""radlens.parallel: one interface over in-process, process-pool and Dask execution."""
from __future__ import annotations

import os
import time

import pytest

from radlens.errors import ConfigError
from radlens.parallel import WorkerError, iter_cases, run_cases


def square(x):
    return x * x


def pid_and_square(x):
    time.sleep(0.2)  # long enough that both workers get items even on a loaded 2-core machine
    return os.getpid(), x * x


def fails_on_three(x):
    if x == 3:
        raise ValueError(f"item {x} is bad")
    return x + 100


_INIT = {}


def _init(v):
    _INIT["v"] = v


def read_init(_):
    return _INIT.get("v")


def test_serial_and_process_pool_same_results_in_input_order():
    items = list(range(13))
    expected = [i * i for i in items]
    assert run_cases(square, items, jobs=1) == expected
    res = run_cases(pid_and_square, items, jobs=2)
    assert [r[1] for r in res] == expected
    assert len({r[0] for r in res}) == 2 and os.getpid() not in {r[0] for r in res}  # really two workers
    got = dict(iter_cases(square, items, jobs=2))  # completion order, every index once
    assert got == dict(enumerate(expected))


def test_errors_come_back_as_worker_errors_others_complete():
    for jobs in (1, 2):
        res = run_cases(fails_on_three, range(6), jobs=jobs)
        assert [r for i, r in enumerate(res) if i != 3] == [100, 101, 102, 104, 105]
        err = res[3]
        assert isinstance(err, WorkerError) and err.type == "ValueError" and err.message == "item 3 is bad"
        assert "Traceback" in err.traceback and str(err) == "ValueError: item 3 is bad"


def test_initializer_runs_in_each_worker():
    assert run_cases(read_init, range(4), jobs=2, initializer=_init, initargs=(7,)) == [7] * 4
    assert run_cases(read_init, range(2), jobs=1, initializer=_init, initargs=(8,)) == [8] * 2


def test_dask_client_and_errors():
    from distributed import Client

    with Client(processes=False, n_workers=1, threads_per_worker=2, dashboard_address=None) as client:
        assert run_cases(square, range(7), executor="dask", scheduler=client) == [i * i for i in range(7)]
        res = run_cases(fails_on_three, range(5), executor="dask", scheduler=client)
        assert isinstance(res[3], WorkerError) and res[4] == 104


def test_bad_arguments(monkeypatch):
    import radlens.parallel as par

    monkeypatch.setattr(par, "DASK_CONNECT_TIMEOUT", "0.5s")
    with pytest.raises(ConfigError, match=r"executor='threads' is not allowed; use one of \['process', 'dask'\]"):
        run_cases(square, [1], executor="threads")
    with pytest.raises(ConfigError, match="jobs='many' is not an integer"):
        run_cases(square, [1], jobs="many")
    with pytest.raises(ConfigError, match="cannot connect to a Dask scheduler"):
        run_cases(square, [1], executor="dask", scheduler="tcp://127.0.0.1:9")
    assert run_cases(square, [], jobs=2) == []


def dies_on_two(x):
    if x == 2:
        os._exit(3)  # a hard crash, as a segfault in a C extension would be
    return x


def test_a_crashing_worker_becomes_worker_errors_not_a_crash():
    res = run_cases(dies_on_two, range(4), jobs=2)
    assert any(isinstance(r, WorkerError) and "worker process failed" in r.message for r in res)
    assert all(r == i or isinstance(r, WorkerError) for i, r in enumerate(res))


def test_forked_workers_stocked_sent_errors_and_a_crash():
    """ForkedWorkers: each worker starts on the items it was forked with, then takes those sent;
    ``fn`` raising comes back as a WorkerError; a worker that dies gives a WorkerError for every
    item it held and takes no more, while the other goes on."""
    from radlens.parallel import ForkedWorkers

    pool = ForkedWorkers(fails_on_three, 2, stocks=[[("a", 1), ("b", 2)], [("c", 3)]])
    try:
        pool.send(1, "d", 4)
        got = {}
        while len(got) < 4:
            got.update({tag: (w, res) for w, tag, res in pool.wait(5)})
    finally:
        pool.close()
    assert got["a"] == (0, 101) and got["b"] == (0, 102) and got["d"] == (1, 104)
    assert got["c"][0] == 1 and isinstance(got["c"][1], WorkerError) and "item 3 is bad" in got["c"][1].message

    pool = ForkedWorkers(dies_on_two, 2, stocks=[[("x", 2), ("y", 5)], [("z", 1)]])
    try:
        got = {}
        while len(got) < 3:
            got.update({tag: (w, res) for w, tag, res in pool.wait(5)})
        assert not pool.alive(0) and pool.alive(1)
        pool.send(1, "after", 7)
        assert pool.wait(5) == [(1, "after", 7)]
    finally:
        pool.close()
    for tag in ("x", "y"):  # both held by the worker that died
        assert got[tag][0] == 0 and isinstance(got[tag][1], WorkerError)
        assert "worker process failed: exit code 3" in got[tag][1].message
    assert got["z"] == (1, 1)


# ------------------------------------------------------------------ the zygote: workers forked elsewhere
@pytest.fixture
def zyg():
    from radlens.zygote import start_zygote, stop_zygote

    z = start_zygote()
    assert z is not None and z.wait_ready(30)
    yield z
    stop_zygote()


def parent_and_marker(_):
    return os.getppid(), _INIT.get("marker")


def sleeps(_):
    time.sleep(60)


def test_zygote_workers_stocked_sent_errors_and_a_crash(zyg):
    """ForkedWorkers forked by the zygote behave as those forked here: stocked items, sent items,
    ``fn`` raising as a WorkerError, a worker that dies fails what it held (its exit code reported
    by the zygote, their parent) while the other goes on."""
    from radlens.parallel import ForkedWorkers

    pool = ForkedWorkers(fails_on_three, 2, stocks=[[("a", 1), ("b", 2)], [("c", 3)]], zygote=zyg)
    try:
        pool.send(1, "d", 4)
        got = {}
        while len(got) < 4:
            got.update({tag: (w, res) for w, tag, res in pool.wait(10)})
    finally:
        pool.close()
    assert got["a"] == (0, 101) and got["b"] == (0, 102) and got["d"] == (1, 104)
    assert got["c"][0] == 1 and isinstance(got["c"][1], WorkerError) and "item 3 is bad" in got["c"][1].message

    pool = ForkedWorkers(dies_on_two, 2, stocks=[[("x", 2), ("y", 5)], [("z", 1)]], zygote=zyg)
    try:
        got = {}
        while len(got) < 3:
            got.update({tag: (w, res) for w, tag, res in pool.wait(10)})
        assert not pool.alive(0) and pool.alive(1)
        pool.send(1, "after", 7)
        assert pool.wait(10) == [(1, "after", 7)]
    finally:
        pool.close()
    for tag in ("x", "y"):
        assert got[tag][0] == 0 and isinstance(got[tag][1], WorkerError)
        assert "worker process failed: exit code 3" in got[tag][1].message
    assert got["z"] == (1, 1)


def test_zygote_workers_are_its_children_and_see_its_state_not_ours(zyg):
    """The workers are the zygote's children (this process never forks them) and inherit the
    zygote's memory, as of its start: what this process changes later is not theirs."""
    from radlens.parallel import ForkedWorkers

    _INIT["marker"] = "set after the zygote started"
    try:
        pool = ForkedWorkers(parent_and_marker, 1, stocks=[[("p", 0)]], zygote=zyg)
        got = pool.wait(10)
        pool.close()
    finally:
        _INIT.pop("marker")
    assert got == [(0, "p", (zyg.pid, None))]


def test_zygote_kills_its_workers_and_reports_the_signal(zyg):
    import signal

    from radlens.parallel import ForkedWorkers

    pool = ForkedWorkers(sleeps, 1, stocks=[[("s", 0)]], zygote=zyg)
    token = pool.tokens[0]
    pool.close(kill=True)
    assert zyg.exit_status(token) == f"killed by signal {int(signal.SIGKILL)}"


def test_zygote_gone_means_none_and_stop_ends_it():
    """A dead zygote is never used (``zygote()`` is None: the caller forks its workers itself) and
    forking through it raises OSError; stop_zygote ends a live one (reaped: no zombie)."""
    import signal

    from radlens.parallel import ForkedWorkers
    from radlens.zygote import start_zygote, stop_zygote, zygote

    z = start_zygote()
    assert z.wait_ready(30) and zygote() is z and start_zygote() is z  # one per process
    os.kill(z.pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while zygote() is not None and time.monotonic() < deadline:
        time.sleep(0.01)
    assert zygote() is None
    with pytest.raises(OSError):
        ForkedWorkers(square, 1, stocks=[[("q", 2)]], zygote=z)
    z2 = start_zygote()  # a new one replaces the dead one
    assert z2 is not z and z2.wait_ready(30)
    pid = z2.pid
    stop_zygote()
    assert zygote() is None
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


def _set_marker(value):
    _INIT["marker"] = value


def test_zygote_prepare_reaches_later_workers(zyg):
    """``Zygote.prepare``: set-up done in the zygote when it reads it (while this process goes on),
    inherited by every worker it forks afterwards; this process's own state is untouched."""
    from radlens.parallel import ForkedWorkers

    zyg.prepare(_set_marker, ("prepared in the zygote",))
    pool = ForkedWorkers(parent_and_marker, 1, stocks=[[("p", 0)]], zygote=zyg)
    got = pool.wait(10)
    pool.close()
    assert got == [(0, "p", (zyg.pid, "prepared in the zygote"))]
    assert "marker" not in _INIT
