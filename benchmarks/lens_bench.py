"""Benchmark: ``compare --lens`` (cross-task decomposition of ``--tasks`` tasks with the same null
and bootstrap, then task alignment) and ``refit-post`` with a 200-replicate null (+ 200 bootstrap replicates) on 1,000 cases ×
100 radiomic features × 768-dim embeddings, closed form and vectorised, against re-training the
head by gradient descent (torch, full-batch Adam) to the same ridge loss.

Run:  python benchmarks/lens_bench.py [--n 1000 --p 100 --d 768 --seeds 5 --threads 2]

Prints a JSON record: wall times, the number of head refits, the measured time per gradient-descent
refit (mean of ``--gd-reps`` refits, each run until its loss is within ``--tol`` (relative) of the
closed-form optimum) and the ratio (gradient descent extrapolated to the same number of refits) /
(closed form measured).
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path


def gd_refit(H, Y, alpha, target_loss, tol, max_iter=20000, lr=1e-2):
    """Full-batch Adam on the ridge objective ``‖Yc − Hc W‖² / N + alpha ‖W‖²`` (the closed-form
    estimator's objective, scaled by 1/N) until it is within ``tol`` of ``target_loss``."""
    import torch

    Hc = torch.as_tensor(H - H.mean(0))
    Yc = torch.as_tensor(Y - Y.mean(0))
    N = Hc.shape[0]
    W = torch.zeros(Hc.shape[1], Yc.shape[1], dtype=Hc.dtype, requires_grad=True)
    opt = torch.optim.Adam([W], lr=lr)
    for it in range(1, max_iter + 1):
        opt.zero_grad()
        loss = ((Yc - Hc @ W) ** 2).sum() / N + alpha * (W ** 2).sum()
        if loss.item() <= target_loss * (1 + tol):
            return it, loss.item()
        loss.backward()
        opt.step()
    return max_iter, loss.item()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=1000)
    ap.add_argument("--p", type=int, default=100)
    ap.add_argument("--d", type=int, default=768)
    ap.add_argument("--seeds", type=int, default=5, help="lens seeds (first layers)")
    ap.add_argument("--n-null", type=int, default=200)
    ap.add_argument("--n-boot", type=int, default=200)
    ap.add_argument("--threads", type=int, default=2, help="BLAS / torch threads")
    ap.add_argument("--gd-reps", type=int, default=3)
    ap.add_argument("--tol", type=float, default=1e-4)
    ap.add_argument("--max-epochs", type=int, default=300)
    ap.add_argument("--tasks", type=int, default=5, help="tasks of the cross-task decomposition (compare --lens)")
    ap.add_argument("--compare-only", action="store_true", help="skip refit-post and the gradient-descent reference")
    ap.add_argument("--no-gd", action="store_true", help="skip the gradient-descent reference (refit-post timing only)")
    ap.add_argument("--json", default=None, help="also write the record here (e.g. benchmarks/results/lens_bench.json)")
    args = ap.parse_args(argv)

    import numpy as np
    import torch
    from threadpoolctl import threadpool_limits

    from radlens.lens.estimator import RadiomicLens
    from radlens.lens.planted import planted_change, planted_embeddings, planted_radiomics
    from radlens.stats.ridge import ridge_fit

    torch.set_num_threads(args.threads)
    rec = {"n": args.n, "p": args.p, "d": args.d, "seeds": args.seeds, "n_null": args.n_null,
           "n_boot": args.n_boot, "threads": args.threads, "cpu_count": os.cpu_count(),
           "load_avg_1min": os.getloadavg()[0]}
    with threadpool_limits(args.threads):
        df = planted_radiomics(args.n, args.p, seed=0)
        X = df.drop(columns="case_id").to_numpy()
        Z = planted_embeddings(X, args.d, seed=0)
        Zp = planted_change(X, Z, list(range(0, args.p, 10)), "signal", 0.4, seed=1)
        t = time.perf_counter()
        lens = RadiomicLens(n_seeds=args.seeds, max_epochs=args.max_epochs).fit(df, Z)
        rec["fit_pre_s"] = time.perf_counter() - t
        # cross-task decomposition (radlens compare --lens): common + one specific change per task,
        # n_null permutations and n_boot resamples shared by all of them, then task alignment
        from radlens.lens.crosstask import cross_task, task_alignment
        from radlens.lens.planted import planted_labels, planted_tasks

        # task i: a 10-feature signature (features 10i..10i+9); common change: the next 5 features
        spec = {f"t{i}": list(range(10 * i, 10 * i + 10)) for i in range(args.tasks)}
        Zs = planted_tasks(X, Z, list(range(10 * args.tasks, 10 * args.tasks + 5)), spec, seed=2)
        t = time.perf_counter()
        cross_task(lens, Zs, n_null=args.n_null, n_boot=0, seed=0)
        rec["compare_cross_task_null_only_s"] = time.perf_counter() - t
        t = time.perf_counter()
        _, contrast, csumm = cross_task(lens, Zs, n_null=args.n_null, n_boot=args.n_boot, seed=0)
        rec["compare_cross_task_s"] = time.perf_counter() - t
        t = time.perf_counter()
        al, _ = task_alignment(lens.X_, contrast, {k: planted_labels(X, f, seed=3) for k, f in spec.items()},
                               feature_names=list(lens.feature_names_in_), n_perm=999)
        rec["compare_alignment_s"] = time.perf_counter() - t
        rec["compare_tasks"] = args.tasks
        rec["compare_alignment_p"] = al["alignment_p"].round(4).tolist()
        if args.compare_only:
            return _finish(rec, args)
        t = time.perf_counter()
        tab, summ = lens.shift_scores(Zp, n_null=args.n_null, n_boot=args.n_boot, seed=0)
        rec["refit_post_s"] = time.perf_counter() - t
        t = time.perf_counter()
        lens.shift_scores(Zp, n_null=0, n_boot=0, seed=0, literal_mean_norm=False, specific=False)
        rec["refit_post_no_replicates_s"] = time.perf_counter() - t
        t = time.perf_counter()
        lens.shift_scores(Zp, n_null=0, n_boot=0, seed=0, literal_mean_norm=False, specific=True)
        rec["specific_test_s"] = time.perf_counter() - t - rec["refit_post_no_replicates_s"]
        if args.no_gd:
            rec["n_significant"] = summ["n_significant"]
            return _finish(rec, args)
        # one refit = one head on one seed; post head + null + bootstrap (bootstrap refits pre and post)
        n_refits = args.seeds * (1 + args.n_null + 2 * args.n_boot)
        rec["n_head_refits"] = n_refits
        rec["closed_form_s_per_refit"] = rec["refit_post_s"] / n_refits
        # reference: gradient descent to the same ridge loss, a few refits, then extrapolated
        H = lens.hidden_activations(0)[0]
        Y = lens.transform_embeddings(Zp)
        a = float(lens.alpha_[0])
        gd_times, iters = [], []
        for r in range(args.gd_reps):
            Yr = Y[np.random.default_rng(r).permutation(args.n)] if r else Y   # a null-like refit
            coef, _ = ridge_fit(H, Yr, a)
            Hc, Yc = H - H.mean(0), Yr - Yr.mean(0)
            target = float(((Yc - Hc @ coef) ** 2).sum() / args.n + a * (coef ** 2).sum())
            t = time.perf_counter()
            it, loss = gd_refit(H, Yr, a, target, args.tol)
            gd_times.append(time.perf_counter() - t)
            iters.append(it)
        t = time.perf_counter()
        for _ in range(20):
            ridge_fit(H, Y, a)
        rec["closed_form_single_head_s"] = (time.perf_counter() - t) / 20
    rec["gd_s_per_refit"] = float(np.mean(gd_times))
    rec["gd_iterations"] = iters
    rec["gd_extrapolated_s"] = rec["gd_s_per_refit"] * n_refits
    rec["ratio_gd_over_closed_form"] = rec["gd_extrapolated_s"] / rec["refit_post_s"]
    rec["ratio_single_head"] = rec["gd_s_per_refit"] / rec["closed_form_single_head_s"]
    rec["r2_pre_heldout"] = summ["r2_pre_heldout"]
    rec["n_significant"] = summ["n_significant"]
    rec["n_significant_specific"] = summ.get("n_significant_specific")
    rec["n_planted"] = len(range(0, args.p, 10))
    return _finish(rec, args)


def readme_result(rec: dict) -> str:
    """The README table's cell for this record (``readme.result``, read by scripts/readme.py)."""
    parts = [f"compare --lens, {rec['compare_tasks']} tasks × {rec['n']} cases × {rec['p']} features × "
             f"{rec['d']} dims, {rec['seeds']} lens seeds: {rec['n_null']}-replicate null "
             f"{rec['compare_cross_task_null_only_s']:.1f} s, + {rec['n_boot']} bootstrap "
             f"{rec['compare_cross_task_s']:.1f} s, alignment {rec['compare_alignment_s']:.2f} s"]
    if "refit_post_s" in rec:
        parts.append(f"refit-post (null + bootstrap) {rec['refit_post_s']:.1f} s")
    if "ratio_gd_over_closed_form" in rec:
        parts.append(f"closed form vs gradient-descent heads {rec['ratio_gd_over_closed_form']:.0f}×")
    return "; ".join(parts) + (f" ({rec['date'][:10]}, {rec['cpu_count']} CPUs, {rec['threads']} threads, "
                               f"1-min load {rec['load_avg_1min']:.1f})")


def _finish(rec: dict, args) -> dict:
    if args.json:
        import datetime
        import platform

        rec["date"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        rec["machine"] = {"platform": platform.platform(), "cpu_count": os.cpu_count()}
        rec["readme"] = {"result": readme_result(rec)}
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(rec, indent=2) + "\n", encoding="utf-8")
    print(json.dumps(rec, indent=2))
    return rec


if __name__ == "__main__":
    main()
