"""Statistics shared by every radlens analysis (one home per concept).

* :mod:`radlens.stats.multitest`  Benjamini–Hochberg q-values
* :mod:`radlens.stats.bootstrap`  percentile / BCa-free bootstrap CIs, grouped resampling
* :mod:`radlens.stats.agreement`  Spearman/Kendall rank agreement, Kendall's W, linear CKA
* :mod:`radlens.stats.paired`     paired differences with bootstrap CI and Wilcoxon test
* :mod:`radlens.stats.delong`     fast DeLong AUC variance and paired test (probe issue)
* :mod:`radlens.stats.permutation` cluster permutations, gamma / empirical tails, z-p-q of a null
* :mod:`radlens.stats.association` feature–label association profiles, alignment (rank correlation
  with a patient-grouped label-permutation p)
"""
from radlens.stats.multitest import bh_qvalues
from radlens.stats.bootstrap import bootstrap_ci, bootstrap_indices
from radlens.stats.agreement import kendall_w, linear_cka, rank_agreement
from radlens.stats.paired import paired_summary
from radlens.stats.delong import delong_auc_test, delong_covariance, delong_test
from radlens.stats.permutation import (cluster_permutations, empirical_tail, gamma_tail, signed_null_summary,
                                      squared_norm_null_summary)
from radlens.stats.association import (ALIGNMENT_STATISTICS, alignment_test, feature_association, pearson_rows,
                                      spearman_rows)

__all__ = ["bh_qvalues", "bootstrap_ci", "bootstrap_indices", "kendall_w", "linear_cka",
           "rank_agreement", "paired_summary", "delong_auc_test", "delong_covariance", "delong_test",
           "cluster_permutations", "empirical_tail", "gamma_tail", "squared_norm_null_summary", "signed_null_summary",
           "ALIGNMENT_STATISTICS", "alignment_test",
           "feature_association", "pearson_rows", "spearman_rows"]
