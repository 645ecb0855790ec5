"""What the engine's texture kernels share."""
from __future__ import annotations

import numpy as np

EPS = np.spacing(1)  # pyradiomics' eps


def angle_mean(rows: dict[str, np.ndarray]) -> dict[str, float]:
    """pyradiomics' ``nanmean`` over angles of every feature at once (rows: name -> (angles,))."""
    V = np.stack(list(rows.values()))
    if np.isnan(V).any():
        with np.errstate(all="ignore"):
            m = np.nanmean(V, axis=1)
    else:  # nanmean without NaN: the same sum and division
        m = np.add.reduce(V, 1) / V.shape[1]
    return dict(zip(rows, m.tolist()))
