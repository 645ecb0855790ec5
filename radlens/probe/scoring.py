"""AUC summaries of out-of-fold probe scores: CIs, DeLong tests, paired differences.

Intervals follow the design:

* clustered samples (``groups``: the paired perturbation panel, a clean image and its perturbed
  copy per source image): the Wald interval ``estimate ± z·se`` of the clustered DeLong variance
  (Obuchowski 1997), clipped to [0, 1] for an AUC ([-1, 1] for a difference). A percentile
  cluster bootstrap is biased here: a duplicated cluster's perturbed copy is also compared with the
  duplicate of its own clean image, so within-pair comparisons get weight ~2/n instead of 1/n and
  the resampled AUCs centre on ``AUC + (ψ_within − AUC)/n``; with concordant pairs (ψ_within ≈ 1, the
  weak-signal regime) the whole percentile interval can lie above the estimate. The Wald interval
  is centred on the estimate and its coverage in this design is tested.
* independent samples (lesion probes): percentile bootstrap resampling positives and negatives
  separately (``strata``), so no resample is single-class.

Every result carries ``ci_method`` (``delong_clustered_wald`` or ``bootstrap_percentile``).

Bootstrap resamples are the ones :func:`radlens.stats.bootstrap_indices` draws (so they equal
:func:`radlens.stats.bootstrap_ci` with the same seed), evaluated as multiplicity weights by
:func:`radlens.stats.delong.auc_weighted`: one sort per score vector instead of one per resample.
"""
from __future__ import annotations

from typing import Iterator

import numpy as np

from radlens.stats import bootstrap_indices
from radlens.stats.delong import auc_weighted, delong_auc_test, delong_test

_CHUNK = 250


def bootstrap_weights(n: int, n_boot: int, seed: int = 0, groups=None, strata=None,
                      chunk: int = _CHUNK) -> Iterator[np.ndarray]:
    """Bootstrap resamples as multiplicity weights, in chunks of shape (≤chunk, n)."""
    idx = bootstrap_indices(n, n_boot, seed, groups, strata)
    for start in range(0, n_boot, chunk):
        part = idx[start:start + chunk]
        b = len(part)
        rows = np.repeat(np.arange(b), [i.size for i in part])
        flat = rows * n + np.concatenate(part)
        yield np.bincount(flat, minlength=b * n).reshape(b, n).astype(float)


def percentile_ci(reps: np.ndarray, alpha: float) -> tuple[float, float]:
    """Percentile interval of the finite replicates (NaN, NaN when there are none)."""
    ok = reps[np.isfinite(reps)]
    if ok.size == 0:
        return np.nan, np.nan
    lo, hi = np.quantile(ok, [alpha / 2, 1 - alpha / 2])
    return float(lo), float(hi)


def _resampling(y, groups):
    return {"groups": groups} if groups is not None else {"strata": y}


def auc_summary(y, score, *, groups=None, n_boot: int = 1000, alpha: float = 0.05,
                seed: int = 0) -> dict[str, float]:
    """AUC with a CI (clustered DeLong Wald for paired designs, percentile bootstrap otherwise) and
    DeLong's test of AUC = 0.5.

    Parameters
    ----------
    y : array-like of {0, 1}, shape (n,)
    score : array-like, shape (n,)
    groups : array-like, shape (n,), optional
        Clusters (paired designs): whole groups are resampled and DeLong's variance is the
        clustered one; otherwise each class is resampled separately.

    Returns
    -------
    dict: ``estimate`` (AUC), ``ci_low``, ``ci_high`` (clustered DeLong Wald interval with
    ``groups``, always containing the estimate; percentile bootstrap otherwise), ``ci_method``,
    ``se`` (DeLong), ``p`` (DeLong, H0: AUC = 0.5, two-sided), ``n_pos``, ``n_neg``, ``n_groups``,
    and ``note`` naming the cause when the AUC is undefined (one class only).
    """
    y = np.asarray(y).astype(int)
    s = np.asarray(score, float)
    d = delong_auc_test(y, s, alpha=alpha, on_single_class="nan", groups=groups)
    lo = hi = np.nan
    method = "delong_clustered_wald" if groups is not None else "bootstrap_percentile"
    if np.isfinite(d["auc"]):
        if groups is not None:
            lo, hi = d["ci_low"], d["ci_high"]
        else:
            reps = np.concatenate([auc_weighted(y, s, w) for w in bootstrap_weights(
                y.size, n_boot, seed, **_resampling(y, groups))])
            lo, hi = percentile_ci(reps, alpha)
    out = {"estimate": d["auc"], "ci_low": lo, "ci_high": hi, "ci_method": method, "se": d["se"], "p": d["p"],
           "n_pos": d["n_pos"], "n_neg": d["n_neg"],
           "n_groups": int(np.unique(groups).size) if groups is not None else d["n_pos"] + d["n_neg"]}
    if "note" in d:
        out["note"] = d["note"]
    return out


def paired_auc_difference(y, score_a, score_b, *, groups=None, n_boot: int = 1000,
                          alpha: float = 0.05, seed: int = 0) -> dict[str, float]:
    """AUC(b) − AUC(a) on the same samples: a CI (clustered DeLong Wald for paired designs; otherwise a
    bootstrap with both AUCs on the same resamples) and
    the DeLong paired test (clustered when ``groups`` are given).

    Returns
    -------
    dict: ``estimate`` (difference), ``ci_low``, ``ci_high`` (clustered DeLong Wald interval of
    the difference with ``groups``, clipped to [-1, 1]; paired percentile bootstrap otherwise),
    ``ci_method``, ``se``, ``p`` (DeLong), ``auc_a``, ``auc_b``, ``n_pos``, ``n_neg``, ``n_groups``.
    """
    y = np.asarray(y).astype(int)
    a = np.asarray(score_a, float)
    b = np.asarray(score_b, float)
    d = delong_test(y, a, b, alpha=alpha, on_single_class="nan", groups=groups)
    lo = hi = np.nan
    method = "delong_clustered_wald" if groups is not None else "bootstrap_percentile"
    if np.isfinite(d["diff"]):
        if groups is not None:
            lo, hi = max(-1.0, d["ci_low"]), min(1.0, d["ci_high"])
        else:
            reps = np.concatenate([auc_weighted(y, b, w) - auc_weighted(y, a, w) for w in
                                   bootstrap_weights(y.size, n_boot, seed, **_resampling(y, groups))])
            lo, hi = percentile_ci(reps, alpha)
    out = {"estimate": d["diff"], "ci_low": lo, "ci_high": hi, "ci_method": method, "se": d["se"], "p": d["p"],
           "auc_a": d["auc_a"], "auc_b": d["auc_b"], "n_pos": d["n_pos"], "n_neg": d["n_neg"],
           "n_groups": int(np.unique(groups).size) if groups is not None else d["n_pos"] + d["n_neg"]}
    if "note" in d:
        out["note"] = d["note"]
    return out
