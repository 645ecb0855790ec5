"""radlens.parallel.ForkedChild: the one forked process under ForkedWorkers' workers and the stage lanes."""
from __future__ import annotations

import os
import signal
import sys

import pytest

from radlens.parallel import ForkedChild, _reap, _UNREAPED

pytestmark = pytest.mark.skipif(not hasattr(os, "fork"), reason="os.fork")


def echo_until_eof(conn, prefix):
    while True:
        try:
            msg = conn.recv()
        except EOFError:
            return
        conn.send((os.getpid(), f"{prefix}{msg}"))


def exits_with(conn, code):
    conn.recv()
    os._exit(code)


def sys_exits(conn, code):
    sys.exit(code)


def raises(conn):
    raise ValueError("lane code is broken")


def sleeps_forever(conn):
    conn.recv()  # never sent: until killed


def test_a_child_answers_then_ends_at_eof_with_exit_code_0():
    child = ForkedChild(echo_until_eof, ("got ",))
    child.conn.send("x")
    assert child.conn.recv() == (child.pid, "got x") and child.pid != os.getpid()
    assert child.poll() is None  # alive until it reads EOF
    child.close()
    assert child.join(10) == 0 and child.exit_text() == "exit code 0"
    assert child.pid not in _UNREAPED


def test_death_status_of_an_exit_code_and_of_a_signal():
    child = ForkedChild(exits_with, (3,), quiet=True)
    child.conn.send("go")
    assert child.join(10) == 3 and child.exit_text() == "exit code 3"

    child = ForkedChild(sleeps_forever, quiet=True)
    assert child.join(0.05) is None  # still running: the wait times out
    child.kill()
    assert child.join(10) == -int(signal.SIGKILL)  # multiprocessing's convention
    assert child.exit_text() == f"killed by signal {int(signal.SIGKILL)}"
    child.close()

    child = ForkedChild(sleeps_forever, quiet=True)
    child.kill(signal.SIGTERM)
    assert child.join(10) == -int(signal.SIGTERM) and child.exit_text() == f"killed by signal {int(signal.SIGTERM)}"
    child.close()


def test_sys_exit_and_exceptions_as_multiprocessing_or_quiet(capfd):
    child = ForkedChild(sys_exits, (5,))
    assert child.join(10) == 5
    child = ForkedChild(raises, name="radlens-stage-lane")
    assert child.join(10) == 1
    err = capfd.readouterr().err
    assert "Process radlens-stage-lane:" in err and "ValueError: lane code is broken" in err

    for target, args in ((raises, ()), (sys_exits, (5,))):  # quiet: exit code 1, nothing printed
        child = ForkedChild(target, args, quiet=True)
        assert child.join(10) == 1
    assert capfd.readouterr().err == ""


def test_status_kept_when_reaped_by_another_pool():
    """A child reaped without waiting (:func:`_reap`, as the next ForkedWorkers does) keeps its
    exit status for whoever joins it later."""
    child = ForkedChild(exits_with, (7,), quiet=True)
    child.conn.send("go")
    assert child.conn.poll(10)  # EOF: it is ending
    for _ in range(2000):
        _reap()
        if child.pid not in _UNREAPED:
            break
        os.sched_yield()
    assert child.pid not in _UNREAPED and child.status is not None
    assert child.join() == 7 and child.exit_text() == "exit code 7"


def test_respawn_runs_the_same_target_in_a_new_process_and_closing_reads_as_eof():
    """A respawned child runs the same target and arguments; each child closes the ends given in
    ``close`` (its siblings'), so closing a sibling's end here reads as EOF there at once."""
    first = ForkedChild(echo_until_eof, ("a:",))
    second = ForkedChild(echo_until_eof, ("b:",), close=[first.conn])
    first.kill()
    assert first.join(10) == -int(signal.SIGKILL)
    first.close()
    new = first.respawn(close=[second.conn])
    assert new.pid not in (first.pid, second.pid)
    new.conn.send(1)
    assert new.conn.recv() == (new.pid, "a:1")
    second.close()  # only this process holds second's end: it reads EOF, exits 0
    assert second.join(10) == 0
    new.close()
    assert new.join(10) == 0

    once = ForkedChild(echo_until_eof, ("c:",), respawnable=False)  # ForkedWorkers' (its stock stays the child's)
    once.close()
    with pytest.raises(RuntimeError, match="respawnable=False"):
        once.respawn()
    assert once.join(10) == 0
