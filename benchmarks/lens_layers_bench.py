"""Benchmark: the layer-wise lens on 4 layers × 3 tasks × 1,000 cases (issue #15).

Planted data (``radlens.lens.planted``): 100 radiomic features, pre embeddings of 4 layers (widths
``--dims``), 3 fine-tuned "tasks" whose change grows with depth. Times, through the library
functions that the CLI calls (files in, files out):

* ``fit-pre --layers`` (one lens per layer; the one-off MLP training),
* ``refit-post`` per task (every layer: shift table with a ``--n-null`` null and ``--n-boot``
  bootstrap, plus CKA and held-out R² with their ``--n-boot`` patient-bootstrap CIs),
* ``compare --layers`` (every layer's comparison, the layer tables and figures),

and, as a same-process ratio, the CKA bootstrap of one layer pair in the weighted Gram form used by
radlens against recomputing CKA on explicitly resampled rows (``--repeat`` runs, min/median/max).

Run:  python benchmarks/lens_layers_bench.py [--n 1000 --threads 2]
Writes the JSON record to ``--out`` (default benchmarks/results/lens_layers_bench.json) and prints it.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import tempfile
import time
from pathlib import Path


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
    ap.add_argument("--repeat", type=int, default=3, help="repeats of the CKA bootstrap comparison")
    ap.add_argument("--out", "--json", dest="out",
                    default=str(Path(__file__).parent / "results" / "lens_layers_bench.json"))
    args = ap.parse_args(argv)

    import numpy as np
    import pandas as pd
    import torch
    from threadpoolctl import threadpool_limits

    from radlens.io.artifacts import Embeddings, write_embeddings, write_table
    from radlens.lens.layers import compare_layers, fit_pre_layers, refit_post_layers
    from radlens.lens.planted import planted_change, planted_embeddings, planted_radiomics
    from radlens.stats.bootstrap import bootstrap_indices
    from radlens.stats.cka import cka_bootstrap, linear_cka

    os.environ.setdefault("RADLENS_PROGRESS", "0")
    torch.set_num_threads(args.threads)
    dims = [int(x) for x in args.dims.split(",")]
    layers = [f"layer{i + 1}" for i in range(len(dims))]
    rec = {"date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
           "machine": {"platform": platform.platform(), "processor": platform.processor() or platform.machine(),
                       "cpu_count": os.cpu_count(), "threads": args.threads},
           "n_cases": args.n, "n_features": args.p, "layers": dict(zip(layers, dims)), "n_tasks": args.tasks,
           "n_seeds": args.seeds, "n_null": args.n_null, "n_boot": args.n_boot}
    with threadpool_limits(args.threads), tempfile.TemporaryDirectory() as tmp:
        d = Path(tmp)
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

        t0 = time.perf_counter()
        fit_pre_layers(d / "radiomics.parquet", d / "pre.npz", d / "lens", groups=d / "groups.csv",
                       n_seeds=args.seeds, max_epochs=args.max_epochs)
        rec["fit_pre_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        per_task = []
        for t in range(args.tasks):
            t1 = time.perf_counter()
            refit_post_layers(d / "lens", d / f"task{t}.npz", d / f"shifts_task{t}.parquet", task=f"task{t}",
                              n_null=args.n_null, n_boot=args.n_boot)
            per_task.append(time.perf_counter() - t1)
        rec["refit_post_all_s"] = time.perf_counter() - t0
        rec["refit_post_per_task_s"] = per_task
        t0 = time.perf_counter()
        compare_layers([d / f"shifts_task{t}.parquet" for t in range(args.tasks)], d / "compare")
        rec["compare_s"] = time.perf_counter() - t0
        rec["lens_after_fit_s"] = rec["refit_post_all_s"] + rec["compare_s"]
        summ = pd.read_csv(d / "compare" / "layer_summary.csv")
        rec["cka_by_layer_task0"] = summ[summ["task"] == "task0"].set_index("layer")["cka"].round(4).to_dict()

        # CKA bootstrap of the widest layer: weighted Gram form vs explicit resampled rows (same resamples)
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
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(rec, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(rec, indent=2))


if __name__ == "__main__":
    main()
