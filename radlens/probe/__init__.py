"""radlens.probe — does small-lesion signal survive pooling, before and after fine-tuning?

* :mod:`radlens.probe.panel`     perturbations at recorded positions (blur, motion, texture, nodule)
* :mod:`radlens.probe.linear`    grouped-CV logistic probes (out-of-fold scores)
* :mod:`radlens.probe.scoring`   AUC CIs (clustered DeLong Wald when paired, bootstrap otherwise), DeLong tests
* :mod:`radlens.probe.sizes`     size-stratified lesion probe, matched control boxes
* :mod:`radlens.probe.jitter`    box jitter and IoU
* :mod:`radlens.probe.analyses`  panel / lesion analyses on in-memory images and embedders
* :mod:`radlens.probe.summary`   result table (BH across cells)
* :mod:`radlens.probe.run`       :func:`pooling_probe` (manifest + specs) and :func:`probe_arrays`

Heavy dependencies load on first use: ``from radlens.probe import probe_arrays``.
"""

__all__ = ["pooling_probe", "probe_arrays", "ProbeResult", "load_probe_config"]


def __getattr__(name):
    if name in ("pooling_probe", "probe_arrays", "ProbeResult"):
        from radlens.probe import run

        return getattr(run, name)
    if name == "load_probe_config":
        from radlens.probe.config import load_probe_config

        return load_probe_config
    raise AttributeError(f"module 'radlens.probe' has no attribute {name!r}")
