"""Benchmark: the layer-wise lens on 4 layers × 3 tasks × 1,000 cases (issue #15).

Planted data (``radlens.lens.planted``): 100 radiomic features, pre embeddings of 4 layers (widths
``--dims``), 3 fine-tuned "tasks" whose change grows with depth. Times, through the library
functions that the CLI calls (files in, files out):

* ``fit-pre --layers`` (one lens per layer; the one-off MLP training; ``--jobs`` worker processes
  over layers),
* ``refit-post`` of every task (every layer: shift table with a ``--n-null`` null and ``--n-boot``
  bootstrap, plus CKA and held-out R² with their ``--n-boot`` patient-bootstrap CIs); all tasks in one
  call (``refit_post_layers_tasks``: per layer the tasks share permutations, resamples, smoothers
  and reduced lenses; ``--jobs`` worker processes over layers),
* ``compare --layers`` (every layer's comparison, the layer tables and figures; ``--jobs`` worker
  processes over layers),

and, as a same-process ratio, the CKA bootstrap of one layer pair in the weighted Gram form used by
radlens against recomputing CKA on explicitly resampled rows (``--repeat`` runs, min/median/max).

``--baseline-src DIR``: the same lens timings with the radlens package found in DIR (e.g. a
``git worktree`` of an older commit), run in a child process of this run right before and after
this code's timings (same data, same machine state), one task per call as that code requires when
it has no multi-task entry point; the record gets both and their ratios (baseline / this), and the
largest difference between the two versions' tables (every numeric column, relative to the column's
largest magnitude).

Run:  python benchmarks/lens_layers_bench.py [--n 1000 --threads 2 --jobs 2 --baseline-src /tmp/radlens-old]
Writes the JSON record to ``--out`` (default benchmarks/results/lens_layers_bench.json) and prints it.
"""
from __future__ import annotations

import argparse
import datetime as dt
import inspect
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def make_data(d: Path, args, layers, dims):
    """Planted radiomics, groups, multi-layer pre and task embeddings written under ``d``."""
    import numpy as np
    import pandas as pd

    from radlens.io.artifacts import Embeddings, write_embeddings, write_table
    from radlens.lens.planted import planted_change, planted_embeddings, planted_radiomics

    df = planted_radiomics(args.n, args.p, seed=0)
    X = df.drop(columns="case_id").to_numpy()
    cid = df["case_id"].to_numpy()
    write_table(df, d / "radiomics.parquet")
    pre = {L: planted_embeddings(X, w, seed=i) for i, (L, w) in enumerate(zip(layers, dims))}

    def write(path, arrays):
        write_embeddings(path, Embeddings(cid, {f"roi@{L}": a.astype(np.float32) for L, a in arrays.items()},
                                          {"layers": list(arrays)}))

    write(d / "pre.npz", pre)
    for t in range(args.tasks):
        planted = list(range(5 * t, 5 * t + 4))
        write(d / f"task{t}.npz", {L: planted_change(X, pre[L], planted, "signal", 0.1 + 0.2 * i, seed=t)
                                   for i, L in enumerate(layers)})
    pd.DataFrame({"case_id": cid, "patient_id": [f"p{i // 2}" for i in range(args.n)]}).to_csv(
        d / "groups.csv", index=False)
    return X, pre


def time_lens(d: Path, args, out: Path) -> dict:
    """fit-pre, refit-post (every task) and compare of the layer-wise lens with the radlens that is
    imported; works with radlens versions without ``jobs`` / ``refit_post_layers_tasks``."""
    from radlens.lens import layers as LL

    rec = {}
    fit_kw = {"jobs": args.jobs} if "jobs" in inspect.signature(LL.fit_pre_layers).parameters else {}
    t0 = time.perf_counter()
    LL.fit_pre_layers(d / "radiomics.parquet", d / "pre.npz", out / "lens", groups=d / "groups.csv",
                      n_seeds=args.seeds, max_epochs=args.max_epochs, **fit_kw)
    rec["fit_pre_s"] = time.perf_counter() - t0
    tasks = [f"task{t}" for t in range(args.tasks)]
    shifts = {t: out / f"shifts_{t}.parquet" for t in tasks}
    t0 = time.perf_counter()
    if hasattr(LL, "refit_post_layers_tasks"):
        LL.refit_post_layers_tasks(out / "lens", {t: d / f"{t}.npz" for t in tasks}, shifts, n_null=args.n_null,
                                   n_boot=args.n_boot, jobs=args.jobs)
        rec["refit_post_mode"] = f"all tasks in one call, {args.jobs} worker process(es) over layers"
    else:
        for t in tasks:
            LL.refit_post_layers(out / "lens", d / f"{t}.npz", shifts[t], task=t, n_null=args.n_null,
                                 n_boot=args.n_boot)
        rec["refit_post_mode"] = "one call per task, in this process"
    rec["refit_post_all_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    cmp_kw = {"jobs": args.jobs} if "jobs" in inspect.signature(LL.compare_layers).parameters else {}
    LL.compare_layers([shifts[t] for t in tasks], out / "compare", **cmp_kw)
    rec["compare_s"] = time.perf_counter() - t0
    rec["lens_after_fit_s"] = rec["refit_post_all_s"] + rec["compare_s"]
    return rec


def table_difference(a: Path, b: Path, tasks) -> dict:
    """Largest relative difference per numeric column between two runs' long shift tables."""
    import numpy as np
    import pandas as pd

    worst = {}
    for t in tasks:
        x = pd.read_parquet(a / f"shifts_{t}.parquet").sort_values(["layer_index", "feature"]).reset_index(drop=True)
        y = pd.read_parquet(b / f"shifts_{t}.parquet").sort_values(["layer_index", "feature"]).reset_index(drop=True)
        for c in x.columns:
            if c not in y.columns or not pd.api.types.is_numeric_dtype(x[c]) or x[c].dtype == bool:
                continue
            u, v = x[c].to_numpy(float), y[c].to_numpy(float)
            ok = np.isfinite(u) & np.isfinite(v)
            scale = max(float(np.abs(u[ok]).max()) if ok.any() else 0.0, 1e-300)
            worst[c] = max(worst.get(c, 0.0), float(np.abs(u[ok] - v[ok]).max() / scale) if ok.any() else 0.0)
    return dict(sorted(worst.items(), key=lambda kv: -kv[1]))


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--p", type=int, default=100)
    ap.add_argument("--dims", default="64,128,256,512", help="embedding width per layer (4 layers)")
    ap.add_argument("--tasks", type=int, default=3)
    ap.add_argument("--seeds", type=int, default=5, help="lens seeds (first layers) per layer")
    ap.add_argument("--max-epochs", type=int, default=300)
    ap.add_argument("--n-null", type=int, default=200)
    ap.add_argument("--n-boot", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2, help="BLAS / torch threads")
    ap.add_argument("--jobs", type=int, default=2, help="worker processes over layers (fit-pre, refit-post)")
    ap.add_argument("--repeat", type=int, default=3, help="repeats of the CKA bootstrap comparison")
    ap.add_argument("--baseline-src", default=None,
                    help="folder holding an older radlens package: time its lens too (child process)")
    ap.add_argument("--baseline-label", default=None, help="name of that version in the record (default: the folder name)")
    ap.add_argument("--lens-only", default=None, help=argparse.SUPPRESS)   # child: DATA_DIR,OUT_DIR
    ap.add_argument("--out", "--json", dest="out",
                    default=str(Path(__file__).parent / "results" / "lens_layers_bench.json"))
    args = ap.parse_args(argv)

    import numpy as np
    import torch
    from threadpoolctl import threadpool_limits

    os.environ.setdefault("RADLENS_PROGRESS", "0")
    torch.set_num_threads(args.threads)
    dims = [int(x) for x in args.dims.split(",")]
    layers = [f"layer{i + 1}" for i in range(len(dims))]
    if args.lens_only:   # child process of --baseline-src: time the lens of the imported radlens
        data, out = (Path(p) for p in args.lens_only.split(","))
        with threadpool_limits(args.threads):
            rec = time_lens(data, args, out)
        Path(args.out).write_text(json.dumps(rec), encoding="utf-8")
        print("baseline:", {k: round(v, 2) for k, v in rec.items() if k.endswith("_s")}, flush=True)
        return

    from radlens.stats.bootstrap import bootstrap_indices
    from radlens.stats.cka import cka_bootstrap, linear_cka

    rec = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
           "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                       "cpu_count": os.cpu_count(), "threads": args.threads, "jobs": args.jobs},
           "load_avg_1min_start": os.getloadavg()[0],
           "n_cases": args.n, "n_features": args.p, "layers": dict(zip(layers, dims)), "n_tasks": args.tasks,
           "n_seeds": args.seeds, "n_null": args.n_null, "n_boot": args.n_boot}
    tasks = [f"task{t}" for t in range(args.tasks)]
    with threadpool_limits(args.threads), tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
        X, pre = make_data(d, args, layers, dims)

        def baseline(tag):
            out = d / f"baseline_{tag}"
            out.mkdir()
            res = d / f"baseline_{tag}.json"
            env = dict(os.environ, PYTHONPATH=str(Path(args.baseline_src).resolve()))
            cmd = [sys.executable, str(Path(__file__).resolve()), "--lens-only", f"{d},{out}", "--out", str(res)]
            cmd += [f"--{k.replace('_', '-')}={v}" for k, v in vars(args).items()
                    if k in ("n", "p", "dims", "tasks", "seeds", "max_epochs", "n_null", "n_boot", "threads", "jobs")]
            subprocess.run(cmd, check=True, env=env)
            return json.loads(res.read_text(encoding="utf-8")), out

        if args.baseline_src:
            rec["baseline_before"], base_out = baseline("before")
        new_out = d / "new"
        new_out.mkdir()
        rec.update(time_lens(d, args, new_out))
        print("this code:", {k: round(v, 2) for k, v in rec.items() if k.endswith("_s")}, flush=True)
        if args.baseline_src:
            rec["baseline_after"], _ = baseline("after")
            b = {k: min(rec["baseline_before"][k], rec["baseline_after"][k])
                 for k in ("fit_pre_s", "refit_post_all_s", "compare_s", "lens_after_fit_s")}
            rec["baseline_src"] = str(args.baseline_src)
            rec["baseline_label"] = args.baseline_label or Path(args.baseline_src).name
            rec["speedup_vs_baseline"] = {k: b[k] / rec[k] for k in b}   # baseline's faster run / this run
            rec["max_rel_difference_vs_baseline"] = table_difference(base_out, new_out, tasks)
        import pandas as pd

        summ = pd.read_csv(new_out / "compare" / "layer_summary.csv")
        rec["cka_by_layer_task0"] = summ[summ["task"] == "task0"].set_index("layer")["cka"].round(4).to_dict()

        # CKA bootstrap of the widest layer: weighted Gram form vs explicit resamples (same resamples)
        from radlens.lens.planted import planted_change

        Zp = pre[layers[-1]]
        Zq = planted_change(X, Zp, [0, 1, 2, 3], "signal", 0.5, seed=0)
        groups = np.repeat(np.arange(args.n // 2 + 1), 2)[:args.n]
        fast, slow = [], []
        for _ in range(args.repeat):
            t1 = time.perf_counter()
            r = cka_bootstrap(Zp, Zq, n_boot=args.n_boot, seed=1, groups=groups)
            fast.append(time.perf_counter() - t1)
            t1 = time.perf_counter()
            ref = np.array([linear_cka(Zp[i], Zq[i]) for i in bootstrap_indices(args.n, args.n_boot, 1, groups)])
            slow.append(time.perf_counter() - t1)
        assert np.allclose(r["replicates"], ref, atol=1e-8)
        st = lambda v: {"min": min(v), "median": float(np.median(v)), "max": max(v)}   # noqa: E731
        rec["cka_bootstrap"] = {"dim": dims[-1], "n_boot": args.n_boot, "gram_form_s": st(fast),
                                "explicit_resamples_s": st(slow),
                                "speedup_median": float(np.median(slow) / np.median(fast))}
    rec["load_avg_1min_end"] = os.getloadavg()[0]
    m = rec["machine"]
    cell = (f"fit-pre {rec['fit_pre_s']:.0f} s, refit-post (all layers and tasks) {rec['refit_post_all_s']:.0f} s, "
            f"compare {rec['compare_s']:.0f} s")
    if "speedup_vs_baseline" in rec:
        sp = rec["speedup_vs_baseline"]
        cell += (f" (refit-post {sp['refit_post_all_s']:.1f}×, fit-pre {sp['fit_pre_s']:.1f}× faster than "
                 f"{rec['baseline_label']} in the same run)")
    cell += (f"; CKA bootstrap Gram form vs explicit resamples {rec['cka_bootstrap']['speedup_median']:.0f}× (median) "
             f"({rec['date'][:10]}, {m['cpu_count']} CPUs, {m['threads']} threads, {m['jobs']} jobs, load average "
             f"{rec['load_avg_1min_start']:.1f} → {rec['load_avg_1min_end']:.1f})")
    rec["readme"] = {"result": cell}
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rec, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(rec, indent=2))


if __name__ == "__main__":
    main()
