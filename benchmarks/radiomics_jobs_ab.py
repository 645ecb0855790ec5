"""In-process A/B of ``radiomics(..., jobs=1)`` against ``jobs=2`` on pyradiomics' five real 3D cases.

    python benchmarks/radiomics_jobs_ab.py --rounds 10
    python benchmarks/radiomics_jobs_ab.py --rounds 10 --variant radlens.radiomics.schedule:SOME_KNOB=0

One process; after one untimed warm-up run per mode, ``--rounds`` rounds in which every mode runs
once, the order alternated between rounds (the load of a shared machine drifts). Modes:

* ``j1``: ``radiomics(manifest, baseline params, jobs=1)`` (what ``radlens radiomics --jobs 1`` runs,
  no cache, default engine, parquet tables written);
* ``j2``: the same with ``jobs=2`` as ``radlens radiomics --jobs 2`` runs it on a machine with an
  idle core: the worker forked by the zygote (:func:`radlens.zygote.start_zygote`) that this
  script forks first thing, before its imports, as the command does (``--no-zygote``: none);
* ``j2c``: ``jobs=2`` without the zygote: the worker forked from this process in the call (a
  library call in a process that started none; the command when no CPU is idle);
* ``j2v`` (with ``--variant MODULE:ATTR=VALUE``, repeatable): ``j2`` (or the ``--variant-of``
  mode) with those module attributes set for that run only (a knob A/B in the same process and
  rounds).

Printed per mode: wall ms min/median/max, CPU ms (this process + reaped children + the units' CPU
in the zygote's workers, which are not this process's children: ``radiomics_bench._cpu``), the caller's
minor page faults, and the wall time projected on otherwise idle cores (this process's CPU outside
units + the busiest participant's CPU in units, as ``radiomics_bench.py``); then per round ratios
``j1 / mode`` (wall and projection), min/median/max. On a loaded machine trust the projection and
the same-round ratios more than absolute walls. Values of every mode must equal ``j1``'s exactly
(the run fails otherwise). Needs ``../shared/data/pyradiomics`` (the cases); exits 2 without them.
"""
from __future__ import annotations

import sys

if __name__ == "__main__" and "--no-zygote" not in sys.argv:
    # as `radlens radiomics --jobs N` does: the zygote is forked first thing, before the imports
    from radlens.zygote import start_zygote

    start_zygote("radlens.radiomics.schedule:preload")

import argparse
import ast
import importlib
import json
import os
import resource
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import radiomics_bench as rb  # noqa: E402


def _variant(specs):
    """``[(module, attr, value)]`` from ``MODULE:ATTR=VALUE`` strings (VALUE a Python literal)."""
    out = []
    for s in specs:
        target, _, val = s.partition("=")
        mod, _, attr = target.partition(":")
        try:
            v = ast.literal_eval(val)
        except (ValueError, SyntaxError):
            v = val
        m = importlib.import_module(mod)
        if not hasattr(m, attr):
            raise SystemExit(f"--variant {s!r}: {mod} has no attribute {attr!r}")
        out.append((m, attr, v))
    return out


def run_mode(mode, manifest, params, tmp, variant, variant_of="j2"):
    from radlens import zygote as zyg_mod

    saved = []
    if mode == "j2v":
        for m, attr, v in variant:
            saved.append((m, attr, getattr(m, attr)))
            setattr(m, attr, v)
    base = variant_of if mode == "j2v" else mode
    zyg = zyg_mod._ZYGOTE[:]
    if base == "j2c":  # the zygote set aside for this run
        zyg_mod._ZYGOTE[:] = []
    try:
        flt0 = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        t0, c0 = time.perf_counter(), rb._cpu()
        vals = rb.radlens_run(manifest, params, 1 if mode == "j1" else 2, tmp / f"ab_{mode}.parquet")
        wall, cpu = time.perf_counter() - t0, rb._cpu() - c0
        flt = resource.getrusage(resource.RUSAGE_SELF).ru_minflt - flt0
    finally:
        for m, attr, v in saved:
            setattr(m, attr, v)
        zyg_mod._ZYGOTE[:] = zyg
    return wall, cpu, flt, vals


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=10)
    ap.add_argument("--variant", action="append", default=[], metavar="MODULE:ATTR=VALUE")
    ap.add_argument("--no-zygote", action="store_true",
                    help="no zygote: j2 forks its worker from this process (as j2c)")
    ap.add_argument("--variant-of", default="j2", choices=["j2", "j2c"],
                    help="the mode j2v varies (default %(default)s)")
    ap.add_argument("--modes", default="j1,j2,j2c", help="modes, j1 first (default %(default)s)")
    ap.add_argument("--json", default="", help="also write the numbers here")
    ap.add_argument("--data", default=str(rb.SHARED), help="folder of the cases (default %(default)s)")
    a = ap.parse_args(argv)
    data = Path(a.data)
    if not data.is_dir():
        print(f"pyradiomics test cases not found at {data}", file=sys.stderr)
        raise SystemExit(2)
    os.environ.setdefault("RADLENS_PROGRESS", "0")
    rb._quiet()
    variant = _variant(a.variant)
    modes = [m for m in a.modes.split(",") if m] + (["j2v"] if variant else [])
    if modes[0] != "j1" or not set(modes) <= {"j1", "j2", "j2c", "j2v"}:
        raise SystemExit(f"--modes {a.modes!r}: j1 first, then any of j2, j2c")
    from radlens.zygote import zygote

    if zygote() is not None:
        zygote().wait_ready(60)  # its imports done before the warm-up
    from radlens.radiomics.extract import DEFAULT_PARAMS

    params = str(DEFAULT_PARAMS.with_name("radiomics_baseline.yaml"))
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        import pandas as pd

        man = tmp / "real3d.csv"
        pd.DataFrame([{"case_id": c, "image": str(data / f"{c}_image.nrrd"),
                       "mask": str(data / f"{c}_label.nrrd")} for c in rb.REAL]).to_csv(man, index=False)
        ref = None
        for mode in modes:  # warm-up, paid by nobody
            got = run_mode(mode, man, params, tmp, variant, a.variant_of)[3]
            ref = ref or got
            if got != ref:
                raise SystemExit(f"{mode}: values differ from j1's")
        for mode in modes:
            rb.PROJECTED.pop(f"ab_{mode}", None)
            rb.PROJECTED.pop(f"ab_{mode}_balanced", None)
        res = {m: {"wall": [], "cpu": [], "faults": []} for m in modes}
        load = [os.getloadavg()[0]]
        for r in range(a.rounds):
            for mode in (modes if r % 2 == 0 else modes[::-1]):
                wall, cpu, flt, got = run_mode(mode, man, params, tmp, variant, a.variant_of)
                if got != ref:
                    raise SystemExit(f"{mode}: values differ from j1's (round {r})")
                res[mode]["wall"].append(wall)
                res[mode]["cpu"].append(cpu)
                res[mode]["faults"].append(flt)
        load.append(os.getloadavg()[0])
        for mode in modes:
            res[mode]["projected"] = rb.PROJECTED.pop(f"ab_{mode}")
    out = {"rounds": a.rounds, "variant": a.variant, "zygote": zygote() is not None, "load_avg_1min": load,
           "modes": {}}
    print(f"{a.rounds} rounds, load (1 min) {load[0]:.2f} -> {load[1]:.2f}; variant: {a.variant or '-'}; "
          f"zygote: {'yes' if out['zygote'] else 'no'}")
    for mode in modes:
        d = res[mode]
        row = {k: rb._stats(d[k]) for k in ("wall", "cpu", "projected", "faults")}
        if mode != "j1":
            row["j1_over_wall"] = rb._stats([x / y for x, y in zip(res["j1"]["wall"], d["wall"])])
            row["j1_over_wall_of_mins"] = min(res["j1"]["wall"]) / min(d["wall"])
            row["j1_over_projected"] = rb._stats([x / y for x, y in zip(res["j1"]["projected"], d["projected"])])
        out["modes"][mode] = row

        def f(s, k=1000, p=1):
            return " ".join(f"{s[q] * k:6.{p}f}" for q in ("min", "median", "max"))

        print(f"{mode:4s} wall ms {f(row['wall'])} | cpu ms {f(row['cpu'])} | projected ms {f(row['projected'])}"
              f" | caller faults med {np.median(d['faults']):.0f}")
        if mode != "j1":
            print(f"     j1/{mode}: wall {f(row['j1_over_wall'], 1, 3)} (of mins {row['j1_over_wall_of_mins']:.3f})"
                  f" | projected {f(row['j1_over_projected'], 1, 3)}")
    if a.json:
        Path(a.json).write_text(json.dumps(out, indent=1) + "\n")
    return out


if __name__ == "__main__":
    main()
