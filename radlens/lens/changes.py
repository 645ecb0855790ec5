"""Scores of several per-case changes through one frozen first layer, with their permutation nulls
and bootstrap replicates computed together (one smoother and one GEMM per replicate batch).

Used by ``refit-post`` (raw change and emphasis change of one task) and by the cross-task
decomposition (common change and one specific change per task). Every change ``E`` (n, k) is in
the lens frame, rows aligned with the lens's training cases; its head delta is ``D = S E`` and the
per-feature statistic is the squared RMS Jacobian change ``T_r = w_r^T ((D D^T) ∘ C) w_r``
(:mod:`radlens.lens.scores`).
"""
from __future__ import annotations

import logging

import numpy as np

from radlens.lens.emphasis import NO_CHANGE_TOL
from radlens.lens.null import bootstrap_weights, cluster_permutations, low_rank_factor, replicate_grams
from radlens.lens.scores import dsigma_moment, quad_scores, shift_sq

log = logging.getLogger(__name__)

#: smallest ‖change‖ / ‖embedding‖ (centred) for which a bootstrap head delta is taken as the
#: difference of two replicate heads (``boot_diff``): float32 products then keep ≥ 4 digits of it
DIFF_MIN = 1e-3


def score_changes(lens, changes: dict, *, n_null: int = 200, n_boot: int = 200, seed: int = 0, boot_for=None,
                  specific_for=(), cross_for=None, sens_boot=None, boot_diff=None, batch: int = 25) -> dict:
    """Per-feature squared RMS Jacobian change of each change, null and bootstrap replicates.

    Parameters
    ----------
    lens : fitted RadiomicLens
    changes : dict name -> ndarray, shape (n, k)
        Per-case changes in the lens frame (rows = the lens's training cases).
    n_null, n_boot : int
        Cluster-permutation null replicates (whole patients, ``lens.groups_``) and cluster-bootstrap
        resamples; 0 skips. The same permutations / resamples serve every change (seeded by
        ``seed`` / ``seed + 1``, as ``refit-post``).
    boot_for : iterable of names, optional   changes that get bootstrap replicates (default: all).
    specific_for : iterable of names   changes that get the feature-specific Freedman–Lane moments
        (:mod:`radlens.lens.specific`).
    cross_for : str or list of str, optional   changes whose null replicates also return the post
        sensitivity ``coef_pre + D_b`` (for the null of share changes and of the emphasis).
    sens_boot : dict name -> ndarray, shape (n, k), optional
        Embeddings (lens frame) whose head is re-estimated on every bootstrap resample: their
        squared RMS sensitivities per replicate and lens seed come back under the key
        ``"sens_boot"`` (name -> (S, B1, p)), from the same resamples, smoothers and GEMM as the
        changes' bootstrap (the emphasis CI of ``refit-post``).
    boot_diff : dict change name -> (post name, pre name) of ``sens_boot``, optional
        Changes that are exactly ``sens_boot[post] − sens_boot[pre]``: their bootstrap head deltas
        are taken as the difference of those two embeddings' replicate heads, which the GEMM computes
        anyway (same resamples, same estimator: equal up to float32 rounding). Used only where it is
        accurate: both embeddings factored in the identity basis (``d ≤ n``) and the change at
        least ``DIFF_MIN`` of their size (a difference of two rounded products loses the digits the
        two share); otherwise the change gets its own factor.

    Returns
    -------
    dict name -> dict with ``T_seeds`` (S, p) observed per lens seed, ``T`` (p,) seed mean,
    ``null`` (B0, p) seed-mean null replicates or None, ``boot`` (B1, p) or None, ``spec_mean``,
    ``spec_sd`` (p,) when requested, ``null_sens_post_seeds`` (S, B0, p) for each of ``cross_for``, and
    ``degenerate`` (the change is rounding noise: ``‖E‖ < 1e-6 ‖Y_pre‖``); plus ``"sens_boot"`` when
    ``sens_boot`` is given.
    """
    from radlens.lens.specific import change_basis, specific_moments_many
    from radlens.progress import progress
    from radlens.stats.ridge import ridge_smoother

    names = list(changes)
    cross_for = [] if cross_for is None else [cross_for] if isinstance(cross_for, str) else list(cross_for)
    specific_for = [k for k in names if k in set(specific_for)]
    boot_for = set(names if boot_for is None else boot_for)
    S_seeds, n = lens.W1_.shape[0], lens.X_.shape[0]
    ref = float(np.linalg.norm(lens.Z_pre_ - lens.Z_pre_.mean(0)))
    perms = cluster_permutations(lens.groups_, n_null, seed) if n_null > 0 else None
    sens_boot = dict(sens_boot or {})
    boot_w = bootstrap_weights(n, n_boot, seed + 1, lens.groups_) if n_boot > 0 and (boot_for or sens_boot) else None
    sfac = {k: low_rank_factor(Y)[0] for k, Y in sens_boot.items()} if boot_w is not None else {}
    sens_out = {k: [] for k in sfac}
    fac, basis = {}, {}
    for k in names:
        E = np.asarray(changes[k], float)
        if E.shape[0] != n:
            raise ValueError(f"change {k!r} has {E.shape[0]} rows; the lens has {n} cases")
        fac[k] = low_rank_factor(E)
        if k in specific_for:
            basis[k] = change_basis(E)
    res = {k: {"T_seeds": [], "null": [], "boot": [], "spec_mean": [], "spec_sd": [], "null_sens_post_seeds": [],
               "degenerate": bool(np.linalg.norm(changes[k]) < NO_CHANGE_TOL * max(ref, 1e-300))} for k in names}
    bnames = [k for k in names if k in boot_for]
    diff = {}
    for k, (a, b) in (boot_diff or {}).items():
        if k not in bnames or a not in sens_boot or b not in sens_boot or not sfac:
            continue
        Ya, Yb, E = (np.asarray(v, float) for v in (sens_boot[a], sens_boot[b], changes[k]))
        size = max(np.linalg.norm(Ya - Ya.mean(0)), np.linalg.norm(Yb - Yb.mean(0)))
        if (Ya.shape[1] <= n and Ya.shape == Yb.shape == E.shape and np.array_equal(E, Ya - Yb)
                and np.linalg.norm(E - E.mean(0)) >= DIFF_MIN * size):
            diff[k] = (list(sfac).index(a), list(sfac).index(b))
    bnames = [k for k in bnames if k not in diff]
    for s in progress(range(S_seeds), desc="lens seeds", unit="seed"):
        W1 = lens.W1_[s]
        alpha = float(lens.alpha_[s])
        H, dsig = lens.hidden_activations(s)
        C = dsigma_moment(dsig)
        Smat = ridge_smoother(H, alpha)
        for k in names:
            res[k]["T_seeds"].append(shift_sq(W1, Smat @ np.asarray(changes[k], float), C))
        if specific_for:   # the reduced lenses of this seed serve every change
            mom = specific_moments_many(W1, lens.b1_[s], lens.X_, [basis[k] for k in specific_for], Smat, C, alpha,
                                        lens.activation)
            for k, (mu, var) in zip(specific_for, mom):
                res[k]["spec_mean"].append(mu)
                res[k]["spec_sd"].append(np.sqrt(var))
        if perms is None and boot_w is None:
            continue
        coef_pre = lens.head_pre_.coef[s]
        cross = [coef_pre @ fac[k][1] for k in cross_for]
        order = cross_for + [k for k in names if k not in cross_for]
        if perms is not None:
            rep = replicate_grams(H, alpha, [fac[k][0] for k in order], perms, None, batch, cross=cross or None)
            for k, G in zip(order, rep["null"]):
                res[k]["null"].append(quad_scores(W1, G * C))
            if cross:
                Gpre = coef_pre @ coef_pre.T
                for k, G, X in zip(cross_for, rep["null"], rep["null_cross"]):
                    res[k]["null_sens_post_seeds"].append(quad_scores(W1, (Gpre + X + X.transpose(0, 2, 1) + G) * C))
        if boot_w is not None:   # one pass: smoothers, moments and one GEMM for changes and embeddings
            off = len(bnames)
            rep = replicate_grams(H, alpha, [fac[k][0] for k in bnames] + list(sfac.values()), None, boot_w, batch,
                                  dsig=dsig, diffs=[(off + i, off + j) for i, j in diff.values()])
            Cb = rep["boot_C"]
            for k, G in zip(bnames + list(diff), rep["boot"][:off] + rep.get("boot_diff", [])):
                res[k]["boot"].append(quad_scores(W1, G * Cb))
            for k, G in zip(sfac, rep["boot"][len(bnames):]):
                sens_out[k].append(quad_scores(W1, G * Cb))
    for k in names:
        r = res[k]
        r["T_seeds"] = np.stack(r["T_seeds"])
        r["T"] = r["T_seeds"].mean(0)
        r["null"] = np.mean(r["null"], axis=0) if r["null"] else None
        r["boot"] = np.mean(r["boot"], axis=0) if r["boot"] else None
        if r["spec_mean"]:
            # seeds share E: the SD of their mean is at most the mean SD (conservative)
            r["spec_mean"], r["spec_sd"] = np.mean(r["spec_mean"], axis=0), np.mean(r["spec_sd"], axis=0)
        else:
            r["spec_mean"] = r["spec_sd"] = None
        r["null_sens_post_seeds"] = np.stack(r["null_sens_post_seeds"]) if r["null_sens_post_seeds"] else None
    if sens_boot:
        res["sens_boot"] = {k: np.stack(v) for k, v in sens_out.items()} if boot_w is not None else None
    return res
