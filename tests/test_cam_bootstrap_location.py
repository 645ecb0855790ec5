"""The vectorised mean/median bootstrap equals the shared loop implementation exactly."""
import numpy as np
import pytest

from radlens.stats.bootstrap import bootstrap_ci
from radlens.stats.bootstrap_location import bootstrap_mean_median, resample_counts


@pytest.mark.parametrize("grouped", [False, True])
@pytest.mark.parametrize("n", [7, 12])
def test_equals_bootstrap_ci(grouped, n):
    rng = np.random.default_rng(3)
    x = rng.normal(size=n).round(2)  # ties too
    g = np.repeat(np.arange((n + 2) // 3), 3)[:n] if grouped else None
    out = bootstrap_mean_median(x, n_boot=300, seed=5, groups=g)
    _, lo, hi, _ = bootstrap_ci(np.mean, x, n_boot=300, seed=5, groups=g)
    assert (out["mean_ci_low"], out["mean_ci_high"]) == pytest.approx((lo, hi), abs=1e-12)
    _, lo, hi, _ = bootstrap_ci(np.median, x, n_boot=300, seed=5, groups=g)
    assert (out["median_ci_low"], out["median_ci_high"]) == pytest.approx((lo, hi), abs=1e-12)
    assert out["median"] == pytest.approx(np.median(x))


def test_counts_cluster_rows_move_together():
    c = resample_counts(6, 50, seed=0, groups=["a", "a", "b", "b", "c", "c"])
    assert (c[:, 0] == c[:, 1]).all() and (c[:, 4] == c[:, 5]).all()
    assert (c.sum(1) == 6).all()


def test_bad_input():
    with pytest.raises(ValueError, match="finite"):
        bootstrap_mean_median([1.0, np.nan])
