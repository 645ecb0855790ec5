"""radlens radiomics vs the plain pyradiomics loop a user would write.

    python benchmarks/radiomics_bench.py                     # 200 phantom ROIs, --jobs 2, 3 paired repeats
    python benchmarks/radiomics_bench.py --n 200 --jobs 2 --repeats 3 --json bench.json
    python benchmarks/radiomics_bench.py --params my_params.yaml

Reference (in the same process, after a warm-up case for both): ::

    extractor = RadiomicsFeatureExtractor(params)            # pyradiomics' defaults for anything unset
    for image, mask in cases:
        features = extractor.execute(image, mask)

against ``radiomics(manifest, params, jobs=N)`` (what ``radlens radiomics --jobs N`` runs) with an
empty cache, then the cached re-run (outputs up to date: nothing extracted), and the re-run into a
new output file (tables assembled from the per-case cache). The feature values must be identical
(bit for bit) to the plain loop's; the benchmark fails otherwise. On a shared machine wall times
drift with other people's load, so each repeat runs the two sides back to back (alternating which
goes first) and the median of the paired ratios is reported, with the 1-minute load average.
CPU times (this process + its worker processes) give the work ratio and the ratio the same run
would reach on ``--jobs`` otherwise idle cores: plain CPU / (radlens main CPU + workers' CPU / jobs).
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import tempfile
import time
from pathlib import Path

import numpy as np


def _children_cpu() -> float:
    import resource

    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def plain_loop(manifest: Path, params: str) -> tuple[float, float, dict]:
    """(wall s, CPU s, {case_id: {feature: value}})"""
    import pandas as pd
    from radiomics.featureextractor import RadiomicsFeatureExtractor

    m = pd.read_csv(manifest)
    root = manifest.parent
    t0, c0 = time.perf_counter(), time.process_time()
    extractor = RadiomicsFeatureExtractor(params)
    out = {}
    for r in m.itertuples():
        res = extractor.execute(str(root / r.image), str(root / r.mask))
        out[r.case_id] = {k: float(v) for k, v in res.items() if not k.startswith("diagnostics_")}
    return time.perf_counter() - t0, time.process_time() - c0, out


def timed_radlens(manifest: Path, params: str, out: Path, **kw):
    from radlens.radiomics.extract import radiomics

    t0, c0, k0 = time.perf_counter(), time.process_time(), _children_cpu()
    res = radiomics(manifest, params, out=out, show_progress=False, **kw)
    cpu = (time.process_time() - c0, _children_cpu() - k0)  # (main process, worker processes)
    return time.perf_counter() - t0, cpu, res


def check_identical(plain: dict, features) -> int:
    names = list(features.columns[1:])
    assert features["case_id"].tolist() == list(plain), "case order differs"
    ref_names = list(next(iter(plain.values())))
    assert names == ref_names, f"feature columns differ: {set(names) ^ set(ref_names)}"
    ref = np.array([[plain[c][k] for k in names] for c in features["case_id"]], dtype=np.float64)
    got = features[names].to_numpy(np.float64)
    if not np.array_equal(ref, got, equal_nan=True):
        bad = np.argwhere(~((ref == got) | (np.isnan(ref) & np.isnan(got))))
        raise SystemExit(f"FEATURES DIFFER in {len(bad)} cells, e.g. case {features['case_id'].iloc[bad[0][0]]} "
                         f"{names[bad[0][1]]}: {ref[tuple(bad[0])]!r} vs {got[tuple(bad[0])]!r}")
    return ref.size


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=200, help="phantom ROIs (default %(default)s)")
    ap.add_argument("--size", type=int, default=64, help="image side in pixels (default %(default)s)")
    ap.add_argument("--jobs", type=int, default=2, help="radlens worker processes (default %(default)s)")
    ap.add_argument("--repeats", type=int, default=3, help="paired repeats (default %(default)s)")
    ap.add_argument("--params", default=None, help="pyradiomics params file (default: radlens' default)")
    ap.add_argument("--serial", action="store_true", help="also time radlens with --jobs 1")
    ap.add_argument("--json", default=None, help="write the numbers to this JSON file")
    a = ap.parse_args(argv)

    logging.getLogger("radiomics").setLevel(logging.ERROR)
    import radiomics

    radiomics.setVerbosity(logging.ERROR)
    from radlens.radiomics.extract import DEFAULT_PARAMS
    from radlens.synth import make_cohort

    params = str(a.params or DEFAULT_PARAMS)
    load0 = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        manifest = make_cohort(tmp / "cohort", n_cases=a.n, image_size=a.size, seed=0, show_progress=False)
        # warm-up: first-call costs (lazy imports, caches) paid by neither side
        warm = tmp / "warm.csv"
        import pandas as pd

        pd.read_csv(manifest).head(2).to_csv(warm, index=False)
        (tmp / "warm.csv").replace(tmp / "cohort" / "warm.csv")
        plain_loop(tmp / "cohort" / "warm.csv", params)
        timed_radlens(tmp / "cohort" / "warm.csv", params, tmp / "warm" / "r.parquet")

        t_plain, t_cold, t_serial, t_cached, t_assemble = [], [], [], [], []
        cpu_plain, cpu_cold = [], []
        n_cells = 0
        for rep in range(a.repeats):
            out = tmp / f"run{rep}" / "radiomics.parquet"
            if rep % 2:  # alternate which side runs first: the machine's load drifts
                tc, cc, res = timed_radlens(manifest, params, out, jobs=a.jobs)
                tp, cp_, plain = plain_loop(manifest, params)
            else:
                tp, cp_, plain = plain_loop(manifest, params)
                tc, cc, res = timed_radlens(manifest, params, out, jobs=a.jobs)
            assert res.n_computed == a.n and len(res.failures) == 0, res.failures
            t_plain.append(tp)
            cpu_plain.append(cp_)
            t_cold.append(tc)
            cpu_cold.append(cc)
            n_cells = check_identical(plain, res.features)
            th, _, res2 = timed_radlens(manifest, params, out, jobs=a.jobs)
            assert res2.n_computed == 0
            check_identical(plain, res2.features)
            t_cached.append(th)
            ta, _, res3 = timed_radlens(manifest, params, out.with_name("other.parquet"), jobs=a.jobs,
                                        cache_dir=out.with_name("radiomics.cache"))
            assert res3.n_computed == 0
            check_identical(plain, res3.features)
            t_assemble.append(ta)
            if a.serial:
                ts, _, res4 = timed_radlens(manifest, params, tmp / f"serial{rep}" / "r.parquet", jobs=1)
                check_identical(plain, res4.features)
                t_serial.append(ts)
    load1 = os.getloadavg()[0]
    # paired ratios: each repeat's two runs are adjacent in time, so they share the machine's load
    pair = [p / c for p, c in zip(t_plain, t_cold)]
    pair_cpu = [p / (m + w / a.jobs) for p, (m, w) in zip(cpu_plain, cpu_cold)]
    work = [p / (m + w) for p, (m, w) in zip(cpu_plain, cpu_cold)]
    P, H, A = float(np.median(t_plain)), min(t_cached), min(t_assemble)
    r = {"n_rois": a.n, "image_size": a.size, "jobs": a.jobs, "cpus": os.cpu_count(), "params": params,
         "identical_values": n_cells, "load_avg_1min": [load0, load1],
         "plain_loop_s": t_plain, "radlens_cold_s": t_cold, "ratio_cold_per_repeat": pair,
         "ratio_cold_median": float(np.median(pair)),
         "cpu_plain_s": cpu_plain, "cpu_radlens_main_workers_s": cpu_cold,
         "cpu_work_ratio_median": float(np.median(work)), "projected_ratio_idle_cores_median": float(np.median(pair_cpu)),
         "radlens_cached_s": H, "radlens_cached_new_out_s": A,
         "ratio_cached": P / H, "ratio_cached_new_out": P / A}
    print(f"radiomics benchmark: {a.n} phantom ROIs ({a.size} px), params {Path(params).name}, "
          f"{os.cpu_count()} CPUs, load avg {load0:.1f} -> {load1:.1f}, {a.repeats} paired repeats")
    print(f"  feature values identical to the plain loop: {n_cells} values (bit for bit)")
    for i, (p, c) in enumerate(zip(t_plain, t_cold)):
        print(f"  repeat {i}: plain loop {p:6.2f} s ({1000 * p / a.n:.0f} ms/ROI), radlens --jobs {a.jobs} {c:6.2f} s"
              f"  -> {p / c:.2f}x")
    print(f"  radlens --jobs {a.jobs} vs plain loop, median of paired repeats: {np.median(pair):.2f}x   (target >= 2x)")
    print(f"  CPU time (median): plain loop / radlens (main + workers) = {np.median(work):.2f}; on {a.jobs} "
          f"otherwise idle cores that projects to {np.median(pair_cpu):.2f}x")
    if t_serial:
        r["radlens_serial_s"] = t_serial
        print("  radlens --jobs 1: " + ", ".join(f"{p / s_:.2f}x" for p, s_ in zip(t_plain, t_serial)))
    print(f"  cached re-run (up to date)      {H:8.3f} s   {P / H:6.0f}x   (target >= 100x; vs median plain loop)")
    print(f"  cached re-run, new output file  {A:8.3f} s   {P / A:6.0f}x")
    if a.json:
        Path(a.json).write_text(json.dumps(r, indent=2) + "\n", encoding="utf-8")
    return r


if __name__ == "__main__":
    main()
