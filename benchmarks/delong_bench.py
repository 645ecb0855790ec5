"""Fast DeLong (Sun & Xu midranks, O(n log n)) vs the O(m·n) pairwise-kernel DeLong.

    python benchmarks/delong_bench.py [--n 100000] [--sub 8000] [--k 2] [--repeats 3] [--full]

Data: ``n`` samples, half positive, ``k`` correlated score vectors (rounded to 3 decimals, so
there are ties). Both sides compute the AUCs and the k × k DeLong covariance (what the paired
test needs). The reference is written here from the definition, vectorised with numpy in row
blocks (ψ(x, y) = 1, ½, 0), so it is the fastest honest O(m·n) implementation, not a Python loop.

The O(m·n) reference is timed on a class-balanced subsample of ``--sub`` samples and
extrapolated to ``n`` by the pair count (m·n grows as n²); ``--full`` also times it on all ``n``
(minutes). On the subsample both methods are also checked to agree (max abs difference of the
covariance). Target: speed-up >= 100x at n = 100k. Reported: best-of-``--repeats`` wall times.
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def reference_delong(y, scores, block: int = 512):
    """DeLong AUCs and covariance from the pairwise kernel, O(m·n) time, O(block·n) memory."""
    y = np.asarray(y).astype(bool)
    scores = np.atleast_2d(scores)
    k = scores.shape[0]
    m, n = int(y.sum()), int((~y).sum())
    v10 = np.zeros((k, m))
    v01 = np.zeros((k, n))
    for r in range(k):
        x, yy = scores[r, y], scores[r, ~y]
        for i in range(0, m, block):
            xb = x[i:i + block, None]
            psi = (xb > yy[None, :]).astype(np.float64) + 0.5 * (xb == yy[None, :])
            v10[r, i:i + block] = psi.mean(1)
            v01[r] += psi.sum(0)
        v01[r] /= m
    aucs = v10.mean(1)
    cov = np.atleast_2d(np.cov(v10, ddof=1)) / m + np.atleast_2d(np.cov(v01, ddof=1)) / n
    return aucs, cov


def _data(n: int, k: int, seed: int = 0):
    rng = np.random.default_rng(seed)
    y = np.zeros(n, int)
    y[: n // 2] = 1
    rng.shuffle(y)
    latent = rng.normal(size=n) + 0.8 * y
    scores = np.round(np.vstack([latent + rng.normal(size=n) for _ in range(k)]), 3)
    return y, scores


def _best(fn, repeats: int) -> float:
    best = np.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
    return best


def main(argv=None) -> dict:
    from radlens.stats.delong import delong_covariance

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--sub", type=int, default=8_000, help="subsample for the O(n²) reference")
    ap.add_argument("--k", type=int, default=2, help="score vectors (2 = a paired test)")
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--full", action="store_true", help="also time the reference on all n")
    ap.add_argument("--json", default=None, help="write the results (and the README's result cell) to this file")
    a = ap.parse_args(argv)

    y, s = _data(a.n, a.k)
    t_fast = _best(lambda: delong_covariance(y, s), a.repeats)
    ys, ss = _data(a.sub, a.k, seed=1)
    t_ref_sub = _best(lambda: reference_delong(ys, ss), max(1, a.repeats - 1))
    t_fast_sub = _best(lambda: delong_covariance(ys, ss), a.repeats)
    a_ref, c_ref = reference_delong(ys, ss)
    a_fast, c_fast = delong_covariance(ys, ss)
    pairs = lambda yy: int(yy.sum()) * int((1 - yy).sum())  # noqa: E731
    t_ref_est = t_ref_sub * pairs(y) / pairs(ys)
    out = {"n": a.n, "k": a.k, "fast_s": t_fast, "ref_sub_n": a.sub, "ref_sub_s": t_ref_sub,
           "fast_sub_s": t_fast_sub, "ref_extrapolated_s": t_ref_est,
           "speedup_extrapolated": t_ref_est / t_fast, "speedup_on_subsample": t_ref_sub / t_fast_sub,
           "max_abs_diff_auc": float(np.abs(a_ref - a_fast).max()),
           "max_abs_diff_cov": float(np.abs(c_ref - c_fast).max())}
    if a.full:
        t_ref_full = _best(lambda: reference_delong(y, s), 1)
        out.update(ref_full_s=t_ref_full, speedup_full=t_ref_full / t_fast)
    print(f"fast DeLong (Sun & Xu), n={a.n:,}, k={a.k}: {t_fast * 1e3:9.1f} ms")
    print(f"O(m·n) reference,  n={a.sub:,} (subsample): {t_ref_sub * 1e3:9.1f} ms   "
          f"(fast on the same: {t_fast_sub * 1e3:.1f} ms, x{out['speedup_on_subsample']:.0f})")
    print(f"O(m·n) reference,  n={a.n:,} extrapolated by pair count: {t_ref_est:9.1f} s")
    if a.full:
        print(f"O(m·n) reference,  n={a.n:,} measured: {out['ref_full_s']:9.1f} s")
    sp = out.get("speedup_full", out["speedup_extrapolated"])
    print(f"speed-up at n={a.n:,}: x{sp:,.0f} ({'measured' if a.full else 'extrapolated'}; "
          f"target >= 100x: {'PASS' if sp >= 100 else 'FAIL'})")
    print(f"agreement on the subsample: max |ΔAUC| = {out['max_abs_diff_auc']:.2e}, "
          f"max |Δcov| = {out['max_abs_diff_cov']:.2e}")
    if a.json:
        import datetime
        import json
        import os
        from pathlib import Path

        load = os.getloadavg()[0]
        date = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        how = ("measured" if a.full else
               f"O(m·n) reference timed on {a.sub:,} samples, extrapolated by pair count")
        out.update(date=date, machine={"cpu_count": os.cpu_count(), "load_avg_1min": load},
                   readme={"result": (
                       f"×{sp:,.0f} at n = {a.n:,} ({how}; fast {t_fast * 1e3:.0f} ms, best of {a.repeats}); "
                       f"on the subsample ×{out['speedup_on_subsample']:,.0f} measured, largest covariance difference "
                       f"{out['max_abs_diff_cov']:.1e} ({date[:10]}, {os.cpu_count()} CPUs, load {load:.1f})")})
        Path(a.json).write_text(json.dumps(out, indent=1), encoding="utf-8")
    return out


if __name__ == "__main__":
    main()
