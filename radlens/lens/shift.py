"""Per-feature shift table: scores, null (z, p, q), bootstrap CIs, seed stability, global summaries."""
from __future__ import annotations

import logging

import numpy as np

from radlens.lens.null import gamma_tail
from radlens.lens.scores import dsigma_moment, mean_norm_shift, sensitivity_sq, shares, shift_sq

log = logging.getLogger(__name__)


def feature_meta(names) -> tuple[list[str], list[str]]:
    """(feature_class, image_type) per pyradiomics feature name, via
    ``radlens.radiomics.features`` when available, else parsed from ``<image type>_<class>_<name>``."""
    try:
        from radlens.radiomics.features import feature_class, image_type
    except ImportError:
        feature_class = image_type = None
    cls, img = [], []
    for n in names:
        parts = str(n).split("_")
        if feature_class is not None:
            try:
                cls.append(str(feature_class(n)))
                img.append(str(image_type(n)))
                continue
            except Exception:  # not a pyradiomics name: fall through to the parser
                pass
        cls.append(parts[1] if len(parts) >= 3 else "other")
        img.append(parts[0] if len(parts) >= 3 else "other")
    return cls, img


def bias_corrected_ci(T, boot, alpha_level: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Percentile interval of the shift from bootstrap replicates of its square, after removing the
    bootstrap's own upward bias (a resampled squared norm carries a second noise floor):
    ``[q_lo(T*) − b, q_hi(T*) − b]`` with ``b = mean(T*) − T``, clipped at 0, then square-rooted.

    Parameters
    ----------
    T : ndarray, shape (p,)  observed squared shifts.
    boot : ndarray, shape (B, p)  bootstrap replicates of ``T``.

    Returns
    -------
    low, high : ndarray, shape (p,)
    """
    bias = boot.mean(0) - T
    lo, hi = np.quantile(boot, [alpha_level / 2, 1 - alpha_level / 2], axis=0)
    return np.sqrt(np.clip(lo - bias, 0, None)), np.sqrt(np.clip(hi - bias, 0, None))


def _group_totals(labels, T_obs, T_null, kind):
    """Sum of squared shift over the features of each group, its share, and a gamma-tail p-value
    from the same null replicates."""
    labels = np.asarray(labels)
    rows = []
    tot = T_obs.sum()
    for g in sorted(set(labels.tolist())):
        sel = labels == g
        obs = np.array([T_obs[sel].sum()])
        null = T_null[:, sel].sum(1)[:, None]
        z = (obs[0] - null.mean()) / null.std(ddof=1) if null.std(ddof=1) > 0 else np.nan
        rows.append({"group_kind": kind, "group": g, "n_features": int(sel.sum()),
                     "shift_sq_total": float(obs[0]), "shift_share": float(obs[0] / tot) if tot > 0 else np.nan,
                     "shift_sq_mean": float(obs[0] / sel.sum()), "null_sq_total_mean": float(null.mean()),
                     "z": float(z), "p": float(gamma_tail(obs, null)[0])})
    return rows


def _emphasis_bootstrap(sens_pre_sq, sens_post_sq):
    """Bootstrap replicates (B, p) of the emphasis score from the squared sensitivities of both heads
    re-estimated on each cluster resample (same penalty, case weights; Jacobian moment recomputed),
    each (S, B, p) per lens seed; averaged over seeds."""
    from radlens.lens.emphasis import emphasis_scores

    sp = np.sqrt(np.clip(sens_pre_sq, 0, None))
    sq = np.sqrt(np.clip(sens_post_sq, 0, None))
    return np.mean([emphasis_scores(a, b)[0] for a, b in zip(sp, sq)], axis=0)


def shift_table(lens, Z_post, *, n_null: int = 200, n_boot: int = 200, seed: int = 0, task: str | None = None,
                alpha_level: float = 0.05, batch: int = 25, literal_mean_norm: bool = True, specific: bool = True):
    """Score how the post embeddings' dependence on each radiomic feature differs from pre.

    Headline (``emphasis``, ``z``, ``p``, ``q``, ``rank``): the change of emphasis
    ``s_post,r / ρ − s_pre,r`` (:mod:`radlens.lens.emphasis`), invariant to a global rescale and an
    orthogonal re-coding of the post embedding; its null permutes whole patients' rows of the
    change left after an orthogonal Procrustes + scale alignment of post onto pre (so a pure
    rescale / rotation has nothing to test). The raw Jacobian shift (``shift``) keeps its own tests
    (``shift_z``, ``shift_p``, ``shift_q``; feature-specific ``shift_*_specific``).

    Parameters
    ----------
    lens : fitted RadiomicLens
    Z_post : ndarray, shape (n, d)
        Post embeddings of the lens's training cases, same row order.
    n_null : int, default 200
        Null replicates (cluster permutations of the per-case change); 0 disables z/p/q.
    n_boot : int, default 200
        Cluster-bootstrap replicates for the CIs; 0 disables CIs.
    seed : int
        Seed of the permutations and resamples (shared by every lens seed).
    task : str, optional
        Name stored in the table and summary.
    alpha_level : float
        Level of the percentile CI (``1 - alpha_level`` coverage) and of the reported count of
        features with ``q < alpha_level``.
    literal_mean_norm : bool
        Also compute ``shift_mean_norm``, the mean over cases of the norm (O(n p m²)).
    specific : bool
        Also test each feature's raw shift against its own Freedman–Lane null
        (``shift_z_specific``, ``shift_p_specific``, ``shift_q_specific``; :mod:`radlens.lens.specific`).

    Returns
    -------
    table : DataFrame, one row per feature (see docs/lens.md for every column), sorted by rank.
    summary : dict of global summaries (JSON-able), including ``rescale_factor`` (Procrustes scale of
        the embedding), ``sensitivity_rescale`` (ρ), ``rotation_size``, the shares of the change that
        are orthogonal re-coding / rescale / the rest, and ``global_change`` (one sentence).
    """
    return shift_tables(lens, {task: Z_post}, n_null=n_null, n_boot=n_boot, seed=seed, alpha_level=alpha_level,
                        batch=batch, literal_mean_norm=literal_mean_norm, specific=specific)[task]


def shift_tables(lens, Z_posts: dict, *, n_null: int = 200, n_boot: int = 200, seed: int = 0,
                 alpha_level: float = 0.05, batch: int = 25, literal_mean_norm: bool = True, specific: bool = True):
    """:func:`shift_table` of several post embeddings of one lens (e.g. one per task) in one pass:
    the permutations, resamples, smoothers, Jacobian moments and reduced lenses are computed once per
    lens seed and serve every post; the null and bootstrap products of all posts share one GEMM per
    replicate batch. Each table and summary equals the one :func:`shift_table` gives for that post
    alone (same seeds; up to float32 rounding of the replicate products).

    Parameters
    ----------
    lens : fitted RadiomicLens
    Z_posts : dict name -> ndarray, shape (n, d)
        Post embeddings of the lens's training cases (same row order); the name is the table's
        ``task`` (None: no task column).
    n_null, n_boot, seed, alpha_level, batch, literal_mean_norm, specific : as :func:`shift_table`.

    Returns
    -------
    dict name -> (table, summary), in the order of ``Z_posts``.
    """
    import pandas as pd
    from scipy import stats as st

    from radlens.errors import InputError
    from radlens.lens.changes import score_changes
    from radlens.lens.emphasis import align_post, describe_alignment, emphasis_scores
    from radlens.stats import bh_qvalues, kendall_w, linear_cka, rank_agreement
    from radlens.stats.permutation import signed_null_summary, squared_norm_null_summary

    for name, v in (("n_null", n_null), ("n_boot", n_boot)):
        if not (isinstance(v, (int, np.integer)) and (v == 0 or v >= 10)):
            raise InputError(f"{name}={v!r} not allowed: use 0 (skip) or an integer >= 10 (200 recommended)")
    if not 0 < alpha_level < 1:
        raise InputError(f"alpha_level={alpha_level!r} must be in (0, 1)")
    tasks = list(Z_posts)
    if not tasks:
        raise InputError("shift_tables: no post embeddings given")
    prep = {}
    for i, task in enumerate(tasks):
        Y_post = lens.transform_embeddings(Z_posts[task])
        if not np.isfinite(Y_post).all():
            bad = np.flatnonzero(~np.isfinite(Y_post).all(1))
            ids = lens.case_ids_[bad[:10]].tolist() if lens.case_ids_ is not None else bad[:10].tolist()
            raise InputError(f"post embeddings{'' if task is None else f' of {task}'} have non-finite values for "
                             f"{bad.size} case(s), e.g. {ids}; re-run embed for them (the lens needs every case it "
                             "was fitted on)")
        prep[task] = (Y_post, lens.refit_head(Y_post, frame=False), Y_post - lens.Z_pre_,
                      align_post(lens.Z_pre_, Y_post))
    head_pre = lens.head_pre_
    S, n = lens.W1_.shape[0], lens.X_.shape[0]
    changes = {}
    for i, task in enumerate(tasks):
        changes[f"{i}/aligned"] = prep[task][3]["E"]
        changes[f"{i}/raw"] = prep[task][2]
    raws = [f"{i}/raw" for i in range(len(tasks))]
    res = score_changes(lens, changes, n_null=n_null, n_boot=n_boot, seed=seed, boot_for=raws,
                        specific_for=raws if specific else (), cross_for=[f"{i}/aligned" for i in range(len(tasks))],
                        sens_boot={"pre": lens.Z_pre_, **{f"{i}/post": prep[t][0] for i, t in enumerate(tasks)}},
                        boot_diff={f"{i}/raw": (f"{i}/post", "pre") for i in range(len(tasks))}, batch=batch)
    seed_C, mean_norms = [], []
    for s in range(S):   # Jacobian moments, and the literal mean-norm shift of every task in one GEMM
        dsig = lens.hidden_activations(s)[1]
        seed_C.append(dsigma_moment(dsig))
        if literal_mean_norm:
            mean_norms.append(mean_norm_shift(lens.W1_[s], [prep[t][1].coef[s] - head_pre.coef[s] for t in tasks],
                                              dsig))
    out = {}
    for i, task in enumerate(tasks):
        Y_post, head_post, E, al = prep[task]
        raw, ali = res[f"{i}/raw"], res[f"{i}/aligned"]
        s_pre, s_post = [], []
        for s in range(S):
            W1 = lens.W1_[s]
            C = seed_C[s]
            s_pre.append(sensitivity_sq(W1, head_pre.coef[s], C))
            s_post.append(sensitivity_sq(W1, head_post.coef[s], C))
        mn = [m_[i] for m_ in mean_norms] if literal_mean_norm else []
        s_pre, s_post = np.stack(s_pre), np.stack(s_post)
        sp, sq = np.sqrt(s_pre), np.sqrt(s_post)
        emp_seeds, rho = emphasis_scores(sp, sq)                            # (S, p), (S,)
        emphasis = emp_seeds.mean(0)
        T = raw["T"]
        shift = np.sqrt(T)
        share_pre_s, share_post_s = shares(s_pre), shares(s_post)
        share_change = (share_post_s - share_pre_s).mean(0)
        names = list(lens.feature_names_in_)
        fcls, fimg = feature_meta(names)
        df = pd.DataFrame({"feature": names, "feature_class": fcls, "image_type": fimg, "emphasis": emphasis})
        df["emphasis_seed_sd"] = emp_seeds.std(0, ddof=1) if S > 1 else np.nan
        df["emphasis_ci_low"] = df["emphasis_ci_high"] = np.nan
        if n_boot > 0:
            boot = _emphasis_bootstrap(res["sens_boot"]["pre"], res["sens_boot"][f"{i}/post"])
            bias = boot.mean(0) - emphasis
            lo, hi = np.quantile(boot, [alpha_level / 2, 1 - alpha_level / 2], axis=0)
            df["emphasis_ci_low"], df["emphasis_ci_high"] = lo - bias, hi - bias
        for c in ("null_mean", "null_sd", "z", "p", "p_perm", "q"):
            df[c] = np.nan
        summary_null = {}
        group_rows = []
        if ali["null"] is not None:
            nb = np.sqrt(np.clip(ali["null_sens_post_seeds"], 0, None))                 # (S, B, p)
            null_e = np.mean([emphasis_scores(sp[s][None, :], nb[s])[0] for s in range(S)], axis=0)   # (B, p)
            ns = signed_null_summary(emphasis, null_e, degenerate=ali["degenerate"])
            for c in ("null_mean", "null_sd", "z", "p", "p_perm", "q"):
                df[c] = ns[c]
            Te = emphasis ** 2
            # group totals test the squared deviation from the null mean (the signed score's noise floor)
            Tc, Tn = (emphasis - ns["null_mean"]) ** 2, (null_e - ns["null_mean"]) ** 2
            group_rows = (_group_totals(fcls, Tc, Tn, "feature_class") + _group_totals(fimg, Tc, Tn, "image_type"))
            ex = ((emphasis - ns["null_mean"]) ** 2).sum()
            nx = ((null_e - ns["null_mean"]) ** 2).sum(1)
            summary_null = {"total_emphasis": float(np.sqrt(Te.sum())),
                            "global_p": 1.0 if ali["degenerate"] else float((1 + (nx >= ex).sum()) / (nx.size + 1)),
                            "n_significant": int((df["q"] < alpha_level).sum())}
        # the raw Jacobian shift, with its own tests
        df["shift"] = shift
        df["shift_seed_sd"] = np.sqrt(raw["T_seeds"]).std(0, ddof=1) if S > 1 else np.nan
        if literal_mean_norm:
            df["shift_mean_norm"] = np.stack(mn).mean(0)
        df["shift_ci_low"] = df["shift_ci_high"] = np.nan
        if raw["boot"] is not None:
            df["shift_ci_low"], df["shift_ci_high"] = bias_corrected_ci(T, raw["boot"], alpha_level)
        for c in ("shift_null_mean", "shift_z", "shift_p", "shift_q"):
            df[c] = np.nan
        if specific:
            from radlens.lens.specific import gamma_sf_moments

            mu, sd = raw["spec_mean"], raw["spec_sd"]
            with np.errstate(divide="ignore", invalid="ignore"):
                df["shift_z_specific"] = (T - mu) / sd
            df["shift_p_specific"] = gamma_sf_moments(T, mu, sd ** 2)
            df["shift_q_specific"] = bh_qvalues(df["shift_p_specific"].to_numpy())
            summary_null["n_significant_shift_specific"] = int((df["shift_q_specific"] < alpha_level).sum())
        df["sensitivity_pre"] = np.sqrt(s_pre.mean(0))
        df["sensitivity_post"] = np.sqrt(s_post.mean(0))
        df["share_pre"] = share_pre_s.mean(0)
        df["share_post"] = share_post_s.mean(0)
        df["share_change"] = share_change
        for c in ("share_change_z", "share_change_p", "share_change_q"):
            df[c] = np.nan
        if raw["null"] is not None:
            ns = squared_norm_null_summary(T, raw["null"], degenerate=raw["degenerate"])
            df["shift_null_mean"], df["shift_z"], df["shift_p"], df["shift_q"] = ns["null_mean"], ns["z"], ns["p"], ns["q"]
            summary_null.update(total_shift=float(np.sqrt(T.sum())),
                                total_shift_null_mean=float(np.sqrt(raw["null"].sum(1)).mean()),
                                shift_global_p=float(gamma_tail(np.array([T.sum()]), raw["null"].sum(1)[:, None])[0]),
                                n_significant_shift=int((df["shift_q"] < alpha_level).sum()))
        if ali["null"] is not None:
            # share changes under the same (aligned-change) null as the headline
            null_share = (shares(ali["null_sens_post_seeds"]) - share_pre_s[:, None, :]).mean(0)   # (B, p)
            ns = signed_null_summary(share_change, null_share, degenerate=ali["degenerate"])
            df["share_change_z"], df["share_change_p"], df["share_change_q"] = ns["z"], ns["p"], ns["q"]
        df["rank"] = st.rankdata(-np.abs(emphasis), method="min").astype(int)
        df["rank_z"] = st.rankdata(-np.nan_to_num(np.abs(df["z"].to_numpy()), nan=-np.inf), method="min").astype(int)
        df["shift_rank"] = st.rankdata(-shift, method="min").astype(int)
        if task is not None:
            df.insert(0, "task", task)
        df = df.sort_values(["rank", "feature"]).reset_index(drop=True)
        # stability of the headline ranking over the lens seeds
        stab = {"n_seeds": int(S)}
        if S >= 2:
            rs = np.abs(emp_seeds)
            pair = [rank_agreement(rs[a], rs[b])["spearman"] for a in range(S) for b in range(a + 1, S)]
            stab.update(kendall_w=kendall_w(rs) if np.ptp(rs) > 0 else float("nan"), mean_spearman=float(np.nanmean(pair)),
                        min_spearman=float(np.nanmin(pair)))
        post_norm = np.sqrt(np.mean([np.sum(c ** 2) for c in head_post.coef]))
        pre_norm = np.sqrt(np.mean([np.sum(c ** 2) for c in head_pre.coef]))
        al["sensitivity_rescale"] = float(np.mean(rho))
        summary = {
            "task": task, "n_cases": int(n), "n_features": int(len(names)), "frame_dim": int(Y_post.shape[1]),
            "n_null": int(n_null), "n_boot": int(n_boot), "seed": int(seed), "alpha": lens.alpha_.tolist(),
            "r2_pre_heldout": float(np.mean(head_pre.r2_heldout)), "r2_post_heldout": float(np.mean(head_post.r2_heldout)),
            "r2_pre_heldout_by_seed": head_pre.r2_heldout.tolist(), "r2_post_heldout_by_seed": head_post.r2_heldout.tolist(),
            "r2_pre_cv": float(np.mean(head_pre.r2_cv)), "r2_post_cv": float(np.mean(head_post.r2_cv)),
            "cka_pre_post": linear_cka(lens.Z_pre_, Y_post),
            "change_norm_ratio": float(np.linalg.norm(E) / np.linalg.norm(lens.Z_pre_ - lens.Z_pre_.mean(0))),
            "head_norm_ratio": float(post_norm / pre_norm) if pre_norm > 0 else float("nan"),
            "rescale_factor": al["rescale"], "sensitivity_rescale": al["sensitivity_rescale"],
            "rotation_size": al["rotation_size"], "recoding_share": al["recoding_share"],
            "rescale_share": al["rescale_share"], "emphasis_share": al["emphasis_share"],
            "no_emphasis_change": al["no_change"], "global_change": describe_alignment(al),
            "seed_stability": stab, **summary_null,
            "group_totals": group_rows,
        }
        log.info("%s: %s; R² pre %.3f post %.3f, %s features with q<%.2f", task or "shift", summary["global_change"],
                 summary["r2_pre_heldout"], summary["r2_post_heldout"], summary_null.get("n_significant", "n/a"),
                 alpha_level)
        out[task] = (df, summary)
    return out
