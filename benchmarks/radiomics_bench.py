"""radlens radiomics against the pyradiomics loops users write, in one run, on the same inputs.

    python benchmarks/radiomics_bench.py                       # 200 2D phantom ROIs + the 5 real 3D cases
    python benchmarks/radiomics_bench.py --n 200 --repeats 3 --json benchmarks/results/radiomics_bench.json

Cohorts
-------
* ``2d``: ``--n`` phantom ROIs from :func:`radlens.synth.make_cohort` (64 px images), radlens'
  default params (binCount 32, every class, Original image);
* ``3d``: pyradiomics' own real test cases (brain1, brain2, breast1, lung1, lung2; MRI and CT
  NRRD from ``../shared/data/pyradiomics``, skipped when absent) with pyradiomics' baseline
  settings (bin width 25; ``radlens/configs/radiomics_baseline.yaml``).

Contenders (each measured on every repeat; the order is rotated between repeats because the
load of a shared machine drifts)
----------------------------------------------------------------------------------------------
* ``plain``: ``RadiomicsFeatureExtractor(params).execute(image, mask)`` per case, one process
  (pyradiomics' defaults: ``additionalInfo`` on);
* ``careful_pool2``: what a careful user writes: ``additionalInfo`` off, a 2-process pool
  (fork, extractor built once per worker, ``pool.map``), pool start-up included;
* ``radlens_j1`` / ``radlens_j2``: ``radiomics(manifest, params, jobs=1|2)`` (what ``radlens
  radiomics --jobs N`` runs), no cache, default engine.

For radlens also the wall time projected on ``--jobs`` otherwise idle cores: its own CPU plus
the busiest worker's CPU (each unit's CPU is measured in the worker), because on a machine shared
with other users (per-user CPU shares) a parallel run's wall time says little.

For each: wall seconds and CPU seconds (this process + its finished workers), min/median/max over
repeats; ratios are per repeat (same round), then the median. "per core" compares CPU seconds
(work), which the load of other users changes far less than wall time. Values: radlens' features
must equal the plain loop's to 1e-9 relative on every feature (the benchmark fails otherwise).

Peer (optional, ``--peer-fastrad PYTHON_EXE``): fastrad run by ``benchmarks/peer_fastrad.py`` in
its own virtual environment (``PYTHON_EXE`` is that venv's python), one torch thread, on the five
real 3D cases with the same bin width 25 settings file, in the same rounds as ``radlens --jobs 1``
(order alternated). fastrad's CPU seconds are measured inside its process (load + extract of every
case, after an untimed warm-up case: its torch import is not counted, as no contender's imports
are); radlens' in this process. Values: fastrad's features (snake_case names, mapped to
pyradiomics' by lower-casing and dropping ``_``/``th``) are compared with the plain pyradiomics
loop's: how many agree within 1e-6 relative, and which do not.

Peer (optional, ``--peer-pictologics PYTHON_EXE``): pictologics run by
``benchmarks/peer_pictologics.py`` in its own virtual environment, one numba thread, on the same
``--n`` 2D phantom ROIs (files), with the configuration closest to radlens' default params (no
resampling, fixed bin number = ``binCount`` 32, intensity + morphology + texture families), in
the same rounds as ``radlens --jobs 1`` (order alternated); its CPU seconds measured inside its
process after an untimed warm-up case (its numba compilation is not counted). Values: pictologics
names features by IBSI code and aggregation, so a pyradiomics feature counts as agreeing when
some pictologics feature equals it within 1e-6 relative on every case (matched by value).

Breakdown (``radlens_j1_breakdown`` in the 3D cohort): where ``radlens --jobs 1``'s CPU goes on the
real cases, per stage (loading, of which inflating the gzip NRRD payloads; diagnostics; each
feature class; writing the tables; the rest), from extra runs after the timed ones with radlens'
own functions wrapped by timers.

Start-up: the whole ``radlens radiomics`` command on a 2-case manifest vs pyradiomics' own
command line on the same 2 cases (wall and CPU seconds of the child process, min/median/max over
``--startup-repeats``, commands alternated; ``--startup-ref DIR`` also times the radlens of
another checkout, e.g. ``/work/main``, in the same rounds: a before/after).

Jobs (``jobs`` in the JSON; ``--jobs-only`` runs just this part and start-up): ``radiomics(...,
jobs=1)`` vs ``jobs=2`` alone (no other contender in between), alternated, ``--jobs-repeats``
rounds, on both cohorts; per round the wall ratio jobs1/jobs2, then min/median/max, with the
1-minute load average before and after (on a shared 2-core machine the wall ratio mostly
measures the other users). The projected time on otherwise idle cores (this process's CPU + the
busiest worker's CPU) is reported next to it. Both are in-process runs of the library call, with
``jobs=2`` as ``radlens radiomics --jobs 2`` runs it on a machine with an idle CPU: this script
forks the zygote first thing, before its imports (:mod:`radlens.zygote`), and the zygote forks
radlens' workers (``--no-zygote``: the worker forked from this process in the call, as a library
call in a process without a zygote). The calling process is warm (its NRRD reading buffers
written by the previous round), the worker is not (it writes ~75 MB of new pages for lung1: ~9
ms more than in ``--jobs 1``). The zygote's imports are not timed (in the command they run on the
idle CPU while the command imports the same); the workers it forks are not this process's
children: their units' CPU is added to this process's as they report it. What was measured,
tried and dropped: docs/radiomics.md, "What limits --jobs 2".
"""
from __future__ import annotations

import sys

if __name__ == "__main__" and "--no-zygote" not in sys.argv:
    # as `radlens radiomics --jobs N` does on a machine with an idle core: the zygote is forked
    # first thing, before the imports (it imports the engine itself) and forks radlens' workers
    from radlens.zygote import start_zygote

    start_zygote("radlens.radiomics.schedule:preload")

import argparse
import datetime
import json
import logging
import os
import platform
import resource
import subprocess
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data" / "pyradiomics"
REAL = ("brain1", "brain2", "breast1", "lung1", "lung2")
RTOL = 1e-9


#: CPU seconds of radlens' workers forked by the zygote (not this process's children: their units'
#: CPU as they report it)
_ELSEWHERE = [0.0]


def _cpu() -> float:
    s = resource.getrusage(resource.RUSAGE_SELF)
    c = resource.getrusage(resource.RUSAGE_CHILDREN)
    return s.ru_utime + s.ru_stime + c.ru_utime + c.ru_stime + _ELSEWHERE[0]


def _quiet():
    import radiomics

    radiomics.setVerbosity(logging.ERROR)
    logging.getLogger("radiomics").setLevel(logging.ERROR)


def _feats(res) -> dict:
    return {k: float(v) for k, v in res.items() if not k.startswith("diagnostics_")}


# --------------------------------------------------------------------------- contenders
def plain(cases, params):
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    ex = RadiomicsFeatureExtractor(params)
    return {cid: _feats(ex.execute(img, msk)) for cid, img, msk in cases}


_EX = None


def _pool_init(params):
    global _EX
    _quiet()
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    _EX = RadiomicsFeatureExtractor(params, additionalInfo=False)


def _pool_one(case):
    cid, img, msk = case
    return cid, _feats(_EX.execute(img, msk))


def careful_pool2(cases, params):
    import multiprocessing

    with multiprocessing.get_context("fork").Pool(2, initializer=_pool_init, initargs=(params,)) as pool:
        out = dict(pool.map(_pool_one, cases, chunksize=1))
    return out


PROJECTED: dict[str, list] = {}


def radlens_run(manifest, params, jobs, out):
    """radlens' run; also records its projected wall time on ``jobs`` otherwise idle cores:
    this process's CPU outside units + the busiest participant's CPU in units (this process computes
    units too; per-unit CPU measured where each ran)."""
    from radlens.radiomics import schedule
    from radlens.radiomics.extract import radiomics

    from radlens.zygote import zygote

    c0 = time.process_time()
    schedule.WORKER_CPU.clear()
    res = radiomics(manifest, params, out=out, jobs=jobs, use_cache=False, show_progress=False)
    parent = time.process_time() - c0
    if jobs > 1 and zygote() is not None:
        _ELSEWHERE[0] += sum(v for pid, v in schedule.WORKER_CPU.items() if pid != os.getpid())
    # this process computes units too (schedule._pool): its serial part is its CPU outside them
    serial = parent - schedule.WORKER_CPU.get(os.getpid(), 0.0)
    busiest = max(schedule.WORKER_CPU.values()) if jobs > 1 and schedule.WORKER_CPU else 0.0
    PROJECTED.setdefault(f"{out.stem}", []).append(serial + busiest if jobs > 1 else parent)
    # the same with the units' CPU evenly shared (on a busy machine the dynamic hand-out gives more
    # units to the worker that happens to be scheduled more: 'busiest' is then pessimistic)
    balanced = sum(schedule.WORKER_CPU.values()) / jobs if jobs > 1 and schedule.WORKER_CPU else 0.0
    PROJECTED.setdefault(f"{out.stem}_balanced", []).append(serial + balanced if jobs > 1 else parent)
    assert res.n_failed == 0, res.failures
    f = res.features.set_index("case_id")
    return {cid: {k: float(v) for k, v in row.items()} for cid, row in f.iterrows()}


def compare(ref: dict, got: dict) -> tuple[int, float]:
    """(values compared, worst relative difference); fails above RTOL."""
    n, worst = 0, 0.0
    for cid, r in ref.items():
        g = got[cid]
        assert set(r) == set(g), f"{cid}: feature sets differ: {sorted(set(r) ^ set(g))[:5]}"
        for k, a in r.items():
            b = g[k]
            n += 1
            if np.isnan(a) and np.isnan(b):
                continue
            rel = abs(a - b) / abs(a) if a != 0 else abs(b)
            worst = max(worst, rel)
            if rel > RTOL:
                raise SystemExit(f"VALUES DIFFER: {cid} {k}: radlens {b!r} vs pyradiomics {a!r}")
    return n, worst


PLAIN_VALUES: dict[str, dict] = {}
PEER_RTOL = 1e-6


def _peer_key(name: str) -> str:
    import re

    cls, feat = name.split(":", 1)
    return f"{cls}:" + re.sub(r"(\d+)th", r"\1", feat).replace("_", "").lower()


def _alternate(peer, name, manifest, params, repeats, tmp) -> tuple[dict, dict, dict]:
    """``peer()`` (a subprocess returning its own cpu_s/wall_s) and radlens ``--jobs 1``, alternated
    in the same rounds. Returns (cpu, wall, the peer's last output)."""
    cpu = {name: [], "radlens_j1": []}
    wall = {name: [], "radlens_j1": []}
    got = None
    for rep in range(repeats):
        for k in ((name, "radlens_j1") if rep % 2 == 0 else ("radlens_j1", name)):
            if k == name:
                got = peer()
                cpu[k].append(got["cpu_s"])
                wall[k].append(got["wall_s"])
            else:
                t0, c0 = time.perf_counter(), time.process_time()
                radlens_run(manifest, params, 1, tmp / f"peer_{name}_j1.parquet")
                cpu[k].append(time.process_time() - c0)
                wall[k].append(time.perf_counter() - t0)
    PROJECTED.pop(f"peer_{name}_j1", None)
    PROJECTED.pop(f"peer_{name}_j1_balanced", None)
    return cpu, wall, got


def _peer_env() -> dict:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1",
           "PICTOLOGICS_NUM_THREADS": "1"}
    env.pop("PYTHONPATH", None)
    return env


def peer_fastrad(exe, manifest, cases, params, repeats, tmp, ref) -> dict:
    """fastrad (own venv, subprocess) vs radlens --jobs 1, per core, same rounds; values vs ``ref``."""
    script = ROOT / "benchmarks" / "peer_fastrad.py"
    cj = tmp / "peer_cases.json"
    cj.write_text(json.dumps([list(c) for c in cases]))

    def fastrad():
        p = subprocess.run([exe, str(script), str(cj), str(params)], check=True, env=_peer_env(),
                           capture_output=True, text=True)
        return json.loads(p.stdout)

    cpu, wall, got = _alternate(fastrad, "fastrad", manifest, params, repeats, tmp)
    # values: fastrad vs the plain pyradiomics loop
    agree, differ, missing = 0, [], []
    n_ref = 0
    for cid, r in ref.items():
        refk = {}
        for k, v in r.items():
            if k.startswith("original_"):
                cls, feat = k[len("original_"):].split("_", 1)
                refk[f"{cls}:{feat.lower()}"] = (k, v)
        f = {_peer_key(k): v for k, v in got["features"][cid].items()}
        for key, (orig, a) in refk.items():
            n_ref += 1
            if key not in f:
                missing.append(f"{cid}:{orig}")
                continue
            b = f[key]
            rel = abs(a - b) / abs(a) if a != 0 else abs(b)
            if rel <= PEER_RTOL or (np.isnan(a) and np.isnan(b)):
                agree += 1
            else:
                differ.append(f"{cid}:{orig} (rel {rel:.1e})")

    ratios = [a / b for a, b in zip(cpu["fastrad"], cpu["radlens_j1"])]
    return {"fastrad_version": got["fastrad"], "torch": got["torch"], "torch_threads": got["threads"],
            "python": exe, "cpu_s": {k: _stats(v) for k, v in cpu.items()},
            "wall_s": {k: _stats(v) for k, v in wall.items()},
            "fastrad_cpu_over_radlens_j1_cpu": _stats(ratios),
            "values": {"pyradiomics_features": n_ref, "agree_within_1e-6": agree, "differ": differ,
                       "not_computed_by_fastrad": missing}}


def match_by_value(ref: dict, peer: dict, rtol: float = PEER_RTOL) -> tuple[dict, list]:
    """Peer features equal to a pyradiomics feature on every case (``ref``/``peer``: case ->
    name -> value): {pyradiomics name: [peer names]} and the pyradiomics features with none.
    Matching by value, not by name: pictologics names features by IBSI (code and aggregation),
    and a definition that agrees gives the same number on every case."""
    cids = [c for c in ref if c in peer]
    rnames = [k for k in ref[cids[0]] if k.startswith("original_")]
    pnames = sorted({k for c in cids for k in peer[c]})
    A = np.array([[ref[c][k] for k in rnames] for c in cids], dtype=float)  # (cases, ref)
    B = np.array([[np.nan if peer[c].get(k) is None else peer[c][k] for k in pnames] for c in cids], dtype=float)
    match, none = {}, []
    for j, k in enumerate(rnames):
        a = A[:, j:j + 1]
        both_nan = np.isnan(a) & np.isnan(B)
        with np.errstate(invalid="ignore"):
            close = np.abs(B - a) <= rtol * np.abs(a) + 1e-300
        ok = np.all(close | both_nan, axis=0) & ~np.all(both_nan, axis=0)
        if ok.any():
            match[k] = [pnames[i] for i in np.flatnonzero(ok)]
        else:
            none.append(k)
    return match, none


def peer_pictologics(exe, manifest, cases, params, repeats, tmp, ref) -> dict:
    """pictologics (own venv, subprocess, one numba thread) vs radlens --jobs 1 on the same 2D
    ROIs, per core, same rounds; values matched to the plain pyradiomics loop's (``ref``)."""
    import yaml

    script = ROOT / "benchmarks" / "peer_pictologics.py"
    cj = tmp / "peer_picto_cases.json"
    cj.write_text(json.dumps([list(c) for c in cases]))
    n_bins = (yaml.safe_load(Path(params).read_text()).get("setting") or {}).get("binCount")
    if n_bins is None:
        raise SystemExit(f"--peer-pictologics needs binCount in {params} (fixed bin number)")

    def picto():
        p = subprocess.run([exe, str(script), str(cj), str(n_bins)], check=True, env=_peer_env(),
                           capture_output=True, text=True)
        return json.loads(p.stdout)

    cpu, wall, got = _alternate(picto, "pictologics", manifest, params, repeats, tmp)
    match, none = match_by_value(ref, got["features"])
    ratios = [a / b for a, b in zip(cpu["pictologics"], cpu["radlens_j1"])]
    return {"pictologics_version": got["pictologics"], "numba_threads": got["threads"], "python": exe,
            "n_bins": n_bins, "cpu_s": {k: _stats(v) for k, v in cpu.items()},
            "wall_s": {k: _stats(v) for k, v in wall.items()},
            "pictologics_cpu_over_radlens_j1_cpu": _stats(ratios),
            "values": {"pyradiomics_features": len(match) + len(none), "agree_within_1e-6": len(match),
                       "matches": match, "no_equal_pictologics_feature": none,
                       "pictologics_features": len(next(iter(got["features"].values())))}}


def run_cohort(name, manifest, cases, params, repeats, tmp) -> dict:
    contenders = {
        "plain": lambda: plain(cases, params),
        "careful_pool2": lambda: careful_pool2(cases, params),
        "radlens_j1": lambda: radlens_run(manifest, params, 1, tmp / f"{name}_j1.parquet"),
        "radlens_j2": lambda: radlens_run(manifest, params, 2, tmp / f"{name}_j2.parquet"),
    }
    order = list(contenders)
    # warm-up (first-call costs: imports, caches) on 2 cases, paid by nobody
    plain(cases[:2], params)
    times = {k: [] for k in order}
    cpus = {k: [] for k in order}
    values = {}
    for rep in range(repeats):
        for k in order[rep % len(order):] + order[:rep % len(order)]:
            t0, c0 = time.perf_counter(), _cpu()
            values[k] = contenders[k]()
            times[k].append(time.perf_counter() - t0)
            cpus[k].append(_cpu() - c0)
    PLAIN_VALUES[name] = values["plain"]
    n_vals, worst = compare(values["plain"], values["radlens_j1"])
    compare(values["plain"], values["radlens_j2"])
    compare(values["plain"], values["careful_pool2"])

    def stats(v):
        return {"min": float(np.min(v)), "median": float(np.median(v)), "max": float(np.max(v)), "all": list(v)}

    def ratio(a, b, src):  # per repeat a/b, median
        return float(np.median([x / y for x, y in zip(src[a], src[b])]))

    r = {"n_cases": len(cases), "params": str(params), "values_compared": n_vals, "worst_rel_diff": worst,
         "wall_s": {k: stats(v) for k, v in times.items()}, "cpu_s": {k: stats(v) for k, v in cpus.items()},
         "speedup_wall": {f"{k}_over_radlens_j1": ratio(k, "radlens_j1", times) for k in ("plain", "careful_pool2")},
         "speedup_cpu": {f"{k}_over_radlens_j1": ratio(k, "radlens_j1", cpus) for k in ("plain", "careful_pool2")}}
    r["speedup_wall"]["careful_pool2_over_radlens_j2"] = ratio("careful_pool2", "radlens_j2", times)
    r["speedup_wall"]["radlens_j1_over_radlens_j2"] = ratio("radlens_j1", "radlens_j2", times)
    proj = {"radlens_j1": PROJECTED.pop(f"{name}_j1"), "radlens_j2": PROJECTED.pop(f"{name}_j2")}
    for j in (1, 2):
        PROJECTED.pop(f"{name}_j{j}_balanced", None)
    r["projected_idle_cores_s"] = {k: stats(v) for k, v in proj.items()}
    r["projected_idle_cores_s"]["radlens_j1_over_radlens_j2"] = ratio("radlens_j1", "radlens_j2", proj)
    return r


def _stats(v) -> dict:
    return {"min": float(np.min(v)), "median": float(np.median(v)), "max": float(np.max(v)), "all": [float(x) for x in v]}


def radlens_breakdown(manifest, params, repeats, tmp) -> dict:
    """Where ``radlens --jobs 1``'s CPU goes on a cohort: CPU seconds per stage of the run whose
    total is the median of ``repeats`` runs (stages timed by wrapping radlens' own functions for
    these runs only; the wrappers cost microseconds per call). ``load`` includes ``inflate``
    (the gzip payloads) when the numpy NRRD reader is used, ``load_simpleitk`` is the SimpleITK
    path (other formats); ``features`` includes the classes listed under ``classes``; ``other``
    is the rest (manifest, parameters, scheduling, assembling records)."""
    from radlens.io import arraycase, images, nrrd
    from radlens.radiomics import engine, extract, pyrad

    acc: dict[str, float] = {}
    saved = []

    def wrap(obj, name, key, dict_=False):
        f = obj[name] if dict_ else getattr(obj, name)

        def timed(*a, **k):
            c0 = time.process_time()
            try:
                return f(*a, **k)
            finally:
                acc[key] = acc.get(key, 0.0) + time.process_time() - c0
        saved.append((obj, name, f, dict_))
        if dict_:
            obj[name] = timed
        else:
            setattr(obj, name, timed)

    wrap(nrrd, "_inflate", "inflate")
    wrap(arraycase, "load_array_case", "load")
    wrap(images, "load_case", "load_simpleitk")
    wrap(pyrad, "fast_diagnostics", "diagnostics")
    wrap(pyrad, "run_features", "features")
    wrap(extract, "_write_tables", "write_tables")
    for cls in ("shape", "shape2d", "firstorder", "glcm", "discretise"):
        wrap(engine, cls, f"class_{cls}")
    for cls in list(engine._MATRIX_CLASSES):
        wrap(engine._MATRIX_CLASSES, cls, f"class_{cls}", dict_=True)
    runs = []
    try:
        radlens_run(manifest, params, 1, tmp / "breakdown.parquet")  # warm-up
        for _ in range(repeats):
            acc.clear()
            c0 = time.process_time()
            radlens_run(manifest, params, 1, tmp / "breakdown.parquet")
            runs.append((time.process_time() - c0, dict(acc)))
    finally:
        for obj, name, f, dict_ in reversed(saved):
            if dict_:
                obj[name] = f
            else:
                setattr(obj, name, f)
        PROJECTED.pop("breakdown", None)
        PROJECTED.pop("breakdown_balanced", None)
    runs.sort(key=lambda r: r[0])
    total, st = runs[len(runs) // 2]
    top = ("load", "load_simpleitk", "diagnostics", "features", "write_tables")
    stages = {k: st.get(k, 0.0) for k in top}
    stages["inflate_within_load"] = st.get("inflate", 0.0)
    stages["other"] = total - sum(stages[k] for k in top)
    return {"repeats": repeats, "total_cpu_s": total, "stages_cpu_s": stages,
            "classes_cpu_s": {k[len("class_"):]: v for k, v in st.items() if k.startswith("class_")}}


def jobs_scaling(name, manifest, params, repeats, tmp) -> dict:
    """radlens jobs=1 vs jobs=2 wall (and CPU, projected on idle cores), alternated, per-round ratios."""
    for j in (1, 2):  # warm-up (extractors, engine set-up in this process), paid by nobody
        radlens_run(manifest, params, j, tmp / f"{name}_jobs_j{j}.parquet")
    wall = {1: [], 2: []}
    cpu = {1: [], 2: []}
    load = [os.getloadavg()[0]]
    for rep in range(repeats):
        for j in ((1, 2) if rep % 2 == 0 else (2, 1)):
            t0, c0 = time.perf_counter(), _cpu()
            radlens_run(manifest, params, j, tmp / f"{name}_jobs_j{j}.parquet")
            wall[j].append(time.perf_counter() - t0)
            cpu[j].append(_cpu() - c0)
    load.append(os.getloadavg()[0])
    proj = {j: PROJECTED.pop(f"{name}_jobs_j{j}")[1:] for j in (1, 2)}  # the warm-up run dropped
    bal = {j: PROJECTED.pop(f"{name}_jobs_j{j}_balanced")[1:] for j in (1, 2)}
    return {"repeats": repeats, "load_avg_1min": load,
            "wall_s": {f"jobs{j}": _stats(wall[j]) for j in (1, 2)},
            "cpu_s": {f"jobs{j}": _stats(cpu[j]) for j in (1, 2)},
            "jobs1_over_jobs2_wall": _stats([a / b for a, b in zip(wall[1], wall[2])]),
            "jobs1_over_jobs2_wall_of_mins": min(wall[1]) / min(wall[2]),
            "projected_idle_cores_s": {f"jobs{j}": _stats(proj[j]) for j in (1, 2)},
            "jobs1_over_jobs2_projected": _stats([a / b for a, b in zip(proj[1], proj[2])]),
            "jobs1_over_jobs2_projected_balanced": _stats([a / b for a, b in zip(bal[1], bal[2])])}


def startup(tmp, repeats, ref: str | None = None) -> dict | None:
    """Wall and CPU seconds of whole commands on 2 cases: radlens radiomics vs pyradiomics' CLI
    (and the radlens of checkout ``ref``)."""
    from radlens.synth import make_cohort

    man = make_cohort(tmp / "tiny", n_cases=2, image_size=40, seed=0, show_progress=False)
    import pandas as pd

    m = pd.read_csv(man)
    pd.DataFrame({"Image": [str(man.parent / p) for p in m["image"]],
                  "Mask": [str(man.parent / p) for p in m["mask"]]}).to_csv(tmp / "tiny_pyrad.csv", index=False)
    from radlens.radiomics.extract import DEFAULT_PARAMS

    import radlens

    here = str(Path(radlens.__file__).resolve().parents[1])  # the radlens this benchmark imported
    env = {**os.environ, "RADLENS_PROGRESS": "0"}
    bindir = Path(sys.executable).parent
    rl = ["-m", "radlens.cli", "radiomics", str(man), "--no-cache", "--out", str(tmp / "tiny_out.parquet")]
    cmds = {"radlens": ([sys.executable, *rl], here)}
    if ref:
        cmds["radlens_ref"] = ([sys.executable, *rl], str(Path(ref).resolve()))
    # radlens as installed: pip compiles an installed package's bytecode (pyradiomics' is); a
    # checkout run with PYTHONDONTWRITEBYTECODE=1 would compile ~40 modules from source every run
    bytecode = {}
    for name, (_, path) in cmds.items():
        r = subprocess.run([sys.executable, "-m", "compileall", "-q", str(Path(path) / "radlens")],
                           capture_output=True)
        bytecode[name] = "compiled" if r.returncode == 0 else "source (compileall failed)"
    # a params file radlens has not seen before: pyradiomics' schema validation (pykwalify) runs
    # (the others use the validation remembered from the warm-up round, as any later run does)
    cmds["radlens_new_params"] = ([sys.executable, *rl], here)
    extra_env = {"radlens_new_params": {"RADLENS_PARAMS_MEMO": "0"}}
    if (bindir / "pyradiomics").exists():
        cmds["pyradiomics_cli"] = ([str(bindir / "pyradiomics"), str(tmp / "tiny_pyrad.csv"), "--param",
                                    str(DEFAULT_PARAMS), "-o", str(tmp / "tiny_pyrad_out.csv"), "-f", "csv"], None)
    cpu = {k: [] for k in cmds}
    wall = {k: [] for k in cmds}
    load = [os.getloadavg()[0]]
    for rep in range(repeats + 1):  # round 0: warm-up (file system caches), not counted
        names = list(cmds) if rep % 2 == 0 else list(cmds)[::-1]
        for name in names:
            cmd, path = cmds[name]
            e = {**env, "PYTHONPATH": path} if path else {k: v for k, v in env.items() if k != "PYTHONPATH"}
            e.update(extra_env.get(name, {}))
            c0, t0 = resource.getrusage(resource.RUSAGE_CHILDREN), time.perf_counter()
            # cwd: `python -m` puts it first on sys.path, ahead of PYTHONPATH
            subprocess.run(cmd, check=True, env=e, cwd=path or tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            c1 = resource.getrusage(resource.RUSAGE_CHILDREN)
            if rep:
                wall[name].append(time.perf_counter() - t0)
                cpu[name].append(c1.ru_utime + c1.ru_stime - c0.ru_utime - c0.ru_stime)
    load.append(os.getloadavg()[0])
    out = {name: {"cpu_s_min": min(cpu[name]), "wall_s_min": min(wall[name]), "cpu_s": _stats(cpu[name]),
                  "wall_s": _stats(wall[name]), "radlens_path": cmds[name][1]} for name in cmds}
    for name in bytecode:
        out[name]["bytecode"] = bytecode[name]
    out["load_avg_1min"] = load
    if "pyradiomics_cli" in out:
        for name in [k for k in cmds if k.startswith("radlens")]:
            out[f"{name}_over_pyradiomics_cli"] = {
                "wall_of_mins": min(wall[name]) / min(wall["pyradiomics_cli"]),
                "cpu_of_mins": min(cpu[name]) / min(cpu["pyradiomics_cli"]),
                "wall_per_round": _stats([a / b for a, b in zip(wall[name], wall["pyradiomics_cli"])])}
    if ref:
        out["radlens_over_radlens_ref"] = {"wall_of_mins": min(wall["radlens"]) / min(wall["radlens_ref"]),
                                           "cpu_of_mins": min(cpu["radlens"]) / min(cpu["radlens_ref"]),
                                           "wall_per_round": _stats([a / b for a, b in zip(wall["radlens"],
                                                                                          wall["radlens_ref"])])}
    return out


def machine() -> dict:
    cpu = platform.processor()
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    import radiomics

    return {"platform": platform.platform(), "python": platform.python_version(), "cpu": cpu,
            "cpus": os.cpu_count(), "pyradiomics": getattr(radiomics, "__version__", "?"), "numpy": np.__version__}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="2D phantom ROIs (default %(default)s)")
    ap.add_argument("--repeats", type=int, default=3, help="rounds over all contenders (default %(default)s)")
    ap.add_argument("--cohorts", default="2d,3d", help="comma-separated: 2d, 3d (default %(default)s)")
    ap.add_argument("--json", default=str(ROOT / "benchmarks" / "results" / "radiomics_bench.json"),
                    help="write the numbers here (default %(default)s; '' for none)")
    ap.add_argument("--peer-fastrad", metavar="PYTHON_EXE", default=None,
                    help="python of a venv with fastrad installed: also measure fastrad on the 3D cases")
    ap.add_argument("--no-zygote", action="store_true",
                    help="no zygote: radlens --jobs 2 forks its worker from this process (a library call in a "
                         "process without one; the command on a machine without an idle CPU)")
    ap.add_argument("--jobs-only", action="store_true",
                    help="only radlens jobs=1 vs jobs=2 and start-up (JSON default: benchmarks/results/radiomics_jobs.json)")
    ap.add_argument("--jobs-repeats", type=int, default=10, help="rounds of jobs=1 vs jobs=2 (default %(default)s)")
    ap.add_argument("--startup-repeats", type=int, default=10, help="rounds of start-up commands (default %(default)s)")
    ap.add_argument("--startup-ref", metavar="DIR", default=None,
                    help="also time `radlens radiomics` of this checkout (e.g. /work/main) in the start-up rounds")
    ap.add_argument("--peer-pictologics", metavar="PYTHON_EXE", default=None,
                    help="python of a venv with pictologics installed: also measure it on the 2D ROIs")
    a = ap.parse_args(argv)
    if a.jobs_only and a.json == ap.get_default("json"):
        a.json = str(ROOT / "benchmarks" / "results" / "radiomics_jobs.json")
    _quiet()
    import pandas as pd

    from radlens.radiomics.extract import DEFAULT_PARAMS
    from radlens.synth import make_cohort

    load0 = os.getloadavg()
    result = {"benchmark": "radiomics", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "machine": machine(), "repeats": a.repeats, "cohorts": {}, "jobs": {}}
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        todo = [c.strip() for c in a.cohorts.split(",") if c.strip()]
        if "2d" in todo:
            man = make_cohort(tmp / "c2d", n_cases=a.n, image_size=64, seed=0, show_progress=False)
            m = pd.read_csv(man)
            cases = [(r.case_id, str(man.parent / r.image), str(man.parent / r.mask)) for r in m.itertuples()]
            if not a.jobs_only:
                result["cohorts"]["2d_phantoms"] = run_cohort("2d", man, cases, str(DEFAULT_PARAMS), a.repeats, tmp)
                if a.peer_pictologics:
                    result["cohorts"]["2d_phantoms"]["peer_pictologics"] = peer_pictologics(
                        a.peer_pictologics, man, cases, str(DEFAULT_PARAMS), a.repeats, tmp, PLAIN_VALUES["2d"])
            result["jobs"]["2d_phantoms"] = jobs_scaling("2d", man, str(DEFAULT_PARAMS), a.jobs_repeats, tmp)
        if "3d" in todo:
            if SHARED.is_dir():
                cases = [(c, str(SHARED / f"{c}_image.nrrd"), str(SHARED / f"{c}_label.nrrd")) for c in REAL]
                man = tmp / "real3d.csv"
                pd.DataFrame([{"case_id": c, "image": i, "mask": m_} for c, i, m_ in cases]).to_csv(man, index=False)
                params = str(DEFAULT_PARAMS.with_name("radiomics_baseline.yaml"))
                if not a.jobs_only:
                    result["cohorts"]["3d_real"] = run_cohort("3d", man, cases, params, a.repeats, tmp)
                result["jobs"]["3d_real"] = jobs_scaling("3d", man, params, a.jobs_repeats, tmp)
                if not a.jobs_only:
                    result["cohorts"]["3d_real"]["radlens_j1_breakdown"] = radlens_breakdown(
                        man, params, a.repeats, tmp)
                if a.peer_fastrad and not a.jobs_only:
                    result["cohorts"]["3d_real"]["peer_fastrad"] = peer_fastrad(
                        a.peer_fastrad, man, cases, params, a.repeats, tmp, PLAIN_VALUES["3d"])
            else:
                result["cohorts"]["3d_real"] = {"skipped": f"pyradiomics test cases not found at {SHARED}"}
        result["startup_2_cases"] = startup(tmp, a.startup_repeats, a.startup_ref)
    result["load_avg_1min"] = [load0[0], os.getloadavg()[0]]

    print(f"radiomics benchmark, {result['date']}, {result['machine']['cpus']} CPUs ({result['machine']['cpu']}), "
          f"load {load0[0]:.1f} -> {os.getloadavg()[0]:.1f}, {a.repeats} repeats")
    for name, r in result["cohorts"].items():
        if "skipped" in r:
            print(f"  {name}: skipped ({r['skipped']})")
            continue
        print(f"  {name}: {r['n_cases']} cases; {r['values_compared']} values equal to pyradiomics' "
              f"(worst relative difference {r['worst_rel_diff']:.1e})")
        for k in r["wall_s"]:
            w, c = r["wall_s"][k], r["cpu_s"][k]
            print(f"    {k:14s} wall {w['median']:7.2f} s (min {w['min']:.2f}, max {w['max']:.2f})   "
                  f"CPU {c['median']:7.2f} s")
        sw, sc = r["speedup_wall"], r["speedup_cpu"]
        print(f"    radlens --jobs 1 vs plain loop: {sw['plain_over_radlens_j1']:.2f}x wall, "
              f"{sc['plain_over_radlens_j1']:.2f}x CPU; vs careful pool (additionalInfo off, 2 processes): "
              f"{sc['careful_pool2_over_radlens_j1']:.2f}x CPU (per core)")
        print(f"    radlens --jobs 2: {sw['radlens_j1_over_radlens_j2']:.2f}x radlens --jobs 1 (wall); "
              f"{sw['careful_pool2_over_radlens_j2']:.2f}x the careful 2-process pool (wall)")
        print(f"    radlens --jobs 2 vs --jobs 1 projected on 2 otherwise idle cores (parent CPU + busiest "
              f"worker's CPU): {r['projected_idle_cores_s']['radlens_j1_over_radlens_j2']:.2f}x")
        for peer, threads in (("fastrad", "torch"), ("pictologics", "numba")):
            pr = r.get(f"peer_{peer}")
            if not pr:
                continue
            q, v = pr[f"{peer}_cpu_over_radlens_j1_cpu"], pr["values"]
            extra = (f" ({len(v['differ'])} differ, {len(v['not_computed_by_fastrad'])} not computed)"
                     if peer == "fastrad" else " (a pyradiomics feature equal to one of the peer's on every case)")
            print(f"    {peer} {pr[f'{peer}_version']} (1 {threads} thread) CPU / radlens --jobs 1 CPU: median "
                  f"{q['median']:.2f}x (min {q['min']:.2f}, max {q['max']:.2f}); values: {v['agree_within_1e-6']}/"
                  f"{v['pyradiomics_features']} agree with pyradiomics within 1e-6{extra}")
    bd = result["cohorts"].get("3d_real", {}).get("radlens_j1_breakdown")
    if bd:
        parts = ", ".join(f"{k} {v * 1000:.0f}" for k, v in bd["stages_cpu_s"].items())
        cls = ", ".join(f"{k} {v * 1000:.0f}" for k, v in bd["classes_cpu_s"].items())
        print(f"  3d_real: radlens --jobs 1 CPU {bd['total_cpu_s'] * 1000:.0f} ms: {parts} (ms); classes: {cls}")
    for name, r in result["jobs"].items():
        q, pq_ = r["jobs1_over_jobs2_wall"], r["jobs1_over_jobs2_projected"]
        w1, w2 = r["wall_s"]["jobs1"], r["wall_s"]["jobs2"]
        print(f"  {name}: radlens --jobs 1 wall {w1['median']:.3f} s (min {w1['min']:.3f}), --jobs 2 {w2['median']:.3f} s "
              f"(min {w2['min']:.3f}); jobs1/jobs2 per round: median {q['median']:.2f}x (min {q['min']:.2f}, max "
              f"{q['max']:.2f}), of the mins {r['jobs1_over_jobs2_wall_of_mins']:.2f}x; projected on idle cores "
              f"{pq_['median']:.2f}x (busiest worker), {r['jobs1_over_jobs2_projected_balanced']['median']:.2f}x "
              f"(workers' CPU evenly shared); load {r['load_avg_1min'][0]:.1f} -> {r['load_avg_1min'][1]:.1f}")
    su = result["startup_2_cases"] or {}
    for k, v in su.items():
        if isinstance(v, dict) and "cpu_s_min" in v:
            print(f"  start-up, whole command on 2 cases: {k:16s} CPU min {v['cpu_s_min']:.3f} s (median "
                  f"{v['cpu_s']['median']:.3f}), wall min {v['wall_s_min']:.3f} s (median {v['wall_s']['median']:.3f})")
    for k, v in su.items():
        if k.endswith("_over_pyradiomics_cli") or k == "radlens_over_radlens_ref":
            print(f"    {k}: wall {v['wall_of_mins']:.2f}x (of the mins; per round median "
                  f"{v['wall_per_round']['median']:.2f}x), CPU {v['cpu_of_mins']:.2f}x")
    if a.json:
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
        print(f"  -> {a.json}")
    return result


if __name__ == "__main__":
    main()
