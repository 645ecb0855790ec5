"""`stage_jobs > 1`: independent stages in forked lane processes; same files and records as in list order."""
import json
import os
import time
from pathlib import Path

import pytest

from radlens.study import Stage, execute
from radlens.study.lanes import KIND_COST, fork_available, priorities

pytestmark = pytest.mark.skipif(not fork_available(), reason="lanes are forked processes (Linux)")


def _log(tmp_path: Path, text: str) -> None:
    with open(tmp_path / "events.log", "a", encoding="utf-8") as f:   # one write per event: O_APPEND
        f.write(text + "\n")


def _events(tmp_path: Path) -> list[str]:
    return (tmp_path / "events.log").read_text(encoding="utf-8").split()


def _wait_for(path: Path, seconds: float = 30.0) -> bool:
    t0 = time.monotonic()
    while not path.exists():
        if time.monotonic() - t0 > seconds:
            return False
        time.sleep(0.01)
    return True


def _graph(tmp_path: Path, fail_b=False, die_d=False):
    """a -> b -> c (needs), d independent, e after b (whatever b's outcome)."""
    src = tmp_path / "input.txt"
    out = {n: tmp_path / f"{n}.txt" for n in "abcde"}

    def a():
        _log(tmp_path, "a")
        out["a"].write_text(src.read_text(encoding="utf-8").upper(), encoding="utf-8")

    def b():
        _log(tmp_path, "b")
        if fail_b:
            raise ValueError("boom in b")
        out["b"].write_text(out["a"].read_text(encoding="utf-8") + "!", encoding="utf-8")

    def c():
        _log(tmp_path, "c")
        out["c"].write_text(out["b"].read_text(encoding="utf-8") * 2, encoding="utf-8")

    def d():
        _log(tmp_path, "d")
        if die_d:
            os._exit(3)   # the lane process dies without a record
        out["d"].write_text("independent", encoding="utf-8")

    def e():
        _log(tmp_path, "e")
        out["e"].write_text(str(out["b"].exists()), encoding="utf-8")

    return [Stage("a", "kind-a", a, [out["a"]], {"src": src}, {"v": 1}),
            Stage("b", "kind-b", b, [out["b"]], {"a": out["a"]}, {}, ["a"]),
            Stage("c/x", "kind-c", c, [out["c"]], {"b": out["b"]}, {}, ["b"]),
            Stage("d", "kind-d", d, [out["d"]], {"src": [src]}, {}),
            Stage("e", "kind-e", e, [out["e"]], {}, {}, ["a"], after=["b"])]


def _records(run: Path) -> dict:
    keep = ("name", "kind", "status", "key", "outputs", "error")
    return {p.name: {k: v for k, v in json.loads(p.read_text(encoding="utf-8")).items() if k in keep}
            for p in sorted((run / "stages").glob("*.json"))}


def _outputs(tmp_path: Path) -> dict:
    return {p.name: p.read_text(encoding="utf-8") for p in sorted(tmp_path.glob("?.txt"))}


def test_lanes_give_the_serial_outputs_and_records(tmp_path):
    ser, par = tmp_path / "ser", tmp_path / "par"
    for d in (ser, par):
        d.mkdir()
        (d / "input.txt").write_text("hello", encoding="utf-8")
    r1 = execute(_graph(ser), ser / "run", jobs=1)
    r2 = execute(_graph(par), par / "run", jobs=2)
    assert [r.name for r in r2] == [r.name for r in r1] == ["a", "b", "c/x", "d", "e"]   # list order
    assert {r.status for r in r2} == {"ok"}
    assert _outputs(par) == _outputs(ser) and _outputs(par)["c.txt"] == "HELLO!HELLO!"
    rec1, rec2 = _records(ser / "run"), _records(par / "run")
    # the same keys: a key hashes input contents, not paths of the run folder
    assert {k: v["key"] for k, v in rec2.items()} == {k: v["key"] for k, v in rec1.items()}
    ev = _events(par)
    assert sorted(ev) == ["a", "b", "c", "d", "e"]
    assert ev.index("a") < ev.index("b") < ev.index("c") and ev.index("b") < ev.index("e")
    # a second run: everything cached, nothing runs in a lane
    (par / "events.log").unlink()
    r3 = execute(_graph(par), par / "run", jobs=2)
    assert {r.status for r in r3} == {"cached"} and not (par / "events.log").exists()


def test_independent_stages_run_at_the_same_time(tmp_path):
    """Each stage waits for the other to have started: only concurrent lanes finish both."""
    flags = {n: tmp_path / f"{n}.started" for n in "xy"}

    def meet(me, other):
        def fn():
            flags[me].touch()
            ok = _wait_for(flags[other])
            (tmp_path / f"{me}.txt").write_text(str(ok), encoding="utf-8")
        return fn

    st = [Stage("x", "k", meet("x", "y"), [tmp_path / "x.txt"]), Stage("y", "k", meet("y", "x"), [tmp_path / "y.txt"])]
    res = execute(st, tmp_path / "run", jobs=2)
    assert [r.status for r in res] == ["ok", "ok"]
    assert (tmp_path / "x.txt").read_text() == "True" and (tmp_path / "y.txt").read_text() == "True"


def test_failure_skips_dependants_and_after_still_waits(tmp_path):
    (tmp_path / "input.txt").write_text("x", encoding="utf-8")
    res = {r.name: r for r in execute(_graph(tmp_path, fail_b=True), tmp_path / "run", jobs=2)}
    assert {k: r.status for k, r in res.items()} == {"a": "ok", "b": "failed", "c/x": "skipped", "d": "ok",
                                                     "e": "ok"}
    assert "ValueError: boom in b" in res["b"].error and "upstream b failed" in res["c/x"].error
    assert "boom in b" in (tmp_path / "run" / "logs" / "b.log").read_text(encoding="utf-8")
    ev = _events(tmp_path)
    assert "c" not in ev and ev.index("b") < ev.index("e")       # e ran after b ended, though b failed
    assert (tmp_path / "e.txt").read_text(encoding="utf-8") == "False"


def test_a_lane_that_dies_fails_its_stage_only(tmp_path):
    (tmp_path / "input.txt").write_text("x", encoding="utf-8")
    res = {r.name: r for r in execute(_graph(tmp_path, die_d=True), tmp_path / "run", jobs=2)}
    assert res["d"].status == "failed" and "exit code 3" in res["d"].error and "--only d" in res["d"].error
    assert all(res[n].status == "ok" for n in ("a", "b", "c/x", "e"))
    assert (tmp_path / "c.txt").read_text(encoding="utf-8") == "X!X!"


def test_without_fork_stages_run_in_list_order(tmp_path, monkeypatch):
    monkeypatch.setenv("RADLENS_MP_START", "spawn")
    (tmp_path / "input.txt").write_text("x", encoding="utf-8")
    calls = []
    st = _graph(tmp_path)
    for s in st:
        s.fn = (lambda f, n: (lambda: (calls.append(n), f())))(s.fn, s.name)   # in-process: visible here
    res = execute(st, tmp_path / "run", jobs=2)
    assert calls == ["a", "b", "c/x", "d", "e"] and {r.status for r in res} == {"ok"}


def test_priorities_are_the_longest_chain_of_kind_costs():
    st = [Stage("e1", "embed", None, []), Stage("f", "fit-pre", None, [], needs=["e1"]),
          Stage("cmp", "compare", None, [], needs=["f"]), Stage("cam", "cam-drift", None, []),
          Stage("loc", "localize", None, [], needs=["cam"]), Stage("t", "tradeoff", None, [], needs=["cam"], after=["loc"])]
    p = priorities(st)
    c = KIND_COST
    assert p["cmp"] == c["compare"]
    assert p["e1"] == pytest.approx(c["embed"] + c["fit-pre"] + c["compare"])          # 0.3 + 0.8 + 4.3
    assert p["cam"] == pytest.approx(c["cam-drift"] + c["localize"] + c["tradeoff"])   # 15 + 0.4 + 0.15
    assert p["cam"] > p["e1"]


def test_preimport_imports_the_modules_of_the_stage_kinds_once(monkeypatch):
    import sys

    from radlens.study import lanes

    monkeypatch.setitem(lanes.KIND_MODULES, "kind-x", ["json.tool", "no_such_module_radlens_test"])
    monkeypatch.setitem(lanes.ENCODER_MODULES, "enc-y", ["wave"])
    monkeypatch.delitem(sys.modules, "json.tool", raising=False)
    monkeypatch.delitem(sys.modules, "wave", raising=False)
    done = lanes.preimport([Stage("s", "kind-x", None, []), Stage("t", "kind-x", None, [])], ["enc-y"])
    assert done == ["json.tool", "wave"]            # once each; the missing one is left to its stage
    assert "json.tool" in sys.modules and "wave" in sys.modules


def test_before_fork_sees_the_stages_to_run_and_not_when_all_are_cached(tmp_path):
    (tmp_path / "input.txt").write_text("x", encoding="utf-8")
    seen = []
    execute(_graph(tmp_path), tmp_path / "run", jobs=2, before_fork=lambda st: seen.append([s.name for s in st]))
    assert len(seen) == 1 and set(seen[0]) <= {"a", "b", "c/x", "d", "e"} and len(seen[0]) >= 4
    seen.clear()
    execute(_graph(tmp_path), tmp_path / "run", jobs=2, before_fork=lambda st: seen.append(st))
    assert seen == []   # every stage cached: no lane, nothing to import


def test_a_lane_killed_by_a_signal_is_replaced_and_its_stage_gets_the_signal_code(tmp_path):
    """Lanes directly: a lane killed by SIGKILL gives ``(index, None, -9)`` (multiprocessing's exit
    code convention, as the stage's failure names it); a new lane takes its place and runs the next."""
    import signal

    from radlens.study.lanes import Lanes

    def run_one(stage, payload):
        if payload == "die":
            os.kill(os.getpid(), signal.SIGKILL)
        return ("ran", stage, payload, os.getpid())

    lanes = Lanes(1, ["s0", "s1"], run_one)
    try:
        first = lanes._lanes[0].pid
        lanes.submit(0, "die")
        assert lanes.busy == 1 and lanes.idle == 0
        assert lanes.wait() == [(0, None, -int(signal.SIGKILL))]
        assert lanes.idle == 1 and lanes._lanes[0].pid != first
        lanes.submit(1, "ok")
        (i, rec, code), = lanes.wait()
        assert (i, code) == (1, None) and rec[:3] == ("ran", "s1", "ok") and rec[3] == lanes._lanes[0].pid
    finally:
        lanes.close()
    assert lanes._lanes[0].exitcode == 0   # closed idle: told to stop, ended on its own, reaped
