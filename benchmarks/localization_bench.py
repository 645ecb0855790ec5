"""Speed of the localization scores, as ratios against reference runs in the same process.

* ``score_map`` (all 20 scores, three binarisations) vs one ``sklearn.metrics.roc_auc_score`` on
  the same map: target <= 2x (the whole score set costs about one reference AUC).
* ``pixel_auc`` vs ``roc_auc_score``: target <= 1x.
* ``resize_map`` 64 -> 1024 vs ``torch.nn.functional.interpolate``: reported (target <= 10x).

Run: ``python benchmarks/localization_bench.py [--size 1024] [--repeat 3]``.
"""
from __future__ import annotations

import argparse
import time

import numpy as np


def _best(fn, repeat):
    ts = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--repeat", type=int, default=3)
    a = ap.parse_args(argv)
    import torch
    import torch.nn.functional as F
    from sklearn.metrics import roc_auc_score

    from radlens.localization.maps import resize_map
    from radlens.localization.scores import ground_truth, pixel_auc, score_map

    torch.set_num_threads(1)
    rng = np.random.default_rng(0)
    n = a.size
    small = rng.random((64, 64))
    m = resize_map(small, (n, n)) + 0.01 * rng.random((n, n))
    g = ground_truth((n, n), boxes=[(0.3 * n, 0.3 * n, 0.2 * n, 0.15 * n), (0.7 * n, 0.6 * n, 0.1 * n, 0.1 * n)])
    ref = _best(lambda: roc_auc_score(g.mask.ravel(), m.ravel()), a.repeat)
    full = _best(lambda: score_map(m, g), a.repeat)
    auc = _best(lambda: pixel_auc(m, g.mask), a.repeat)
    t = torch.tensor(small)[None, None]
    ref_rs = _best(lambda: F.interpolate(t, size=(n, n), mode="bilinear", align_corners=False), a.repeat)
    rs = _best(lambda: resize_map(small, (n, n)), a.repeat)
    print(f"map {n}x{n}")
    print(f"score_map (all scores) / sklearn roc_auc_score : {full / ref:5.2f}x  ({full:.3f}s vs {ref:.3f}s)")
    print(f"pixel_auc / sklearn roc_auc_score              : {auc / ref:5.2f}x  ({auc:.3f}s vs {ref:.3f}s)")
    print(f"resize_map 64->{n} / torch interpolate        : {rs / ref_rs:5.2f}x  ({rs:.3f}s vs {ref_rs:.3f}s)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
