"""Run fastrad (a peer radiomics library) on cases, in ITS OWN virtual environment.

Called by ``radiomics_bench.py --peer-fastrad PYTHON_EXE`` as
``PYTHON_EXE benchmarks/peer_fastrad.py CASES_JSON PARAMS_YAML`` (no radlens import: fastrad's venv
need not have radlens). ``CASES_JSON`` is a list of ``[case_id, image, mask]``. Prints one JSON
object: fastrad's version, torch's thread count, per-case features (fastrad's names) and the CPU and
wall seconds of loading + extracting every case once, after one untimed warm-up case (imports and
first-call costs are paid by nobody, as for the other contenders). One torch thread: per core.
"""
from __future__ import annotations

import json
import logging
import sys
import time
import warnings


def main() -> None:
    cases = json.loads(open(sys.argv[1]).read())
    params = sys.argv[2]
    import torch

    torch.set_num_threads(1)
    import fastrad
    from fastrad import FeatureExtractor, FeatureSettings, load_and_align

    try:  # fastrad logs every load through loguru at INFO
        from loguru import logger

        logger.remove()
    except ImportError:
        pass
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    from importlib.metadata import version

    ex = FeatureExtractor(FeatureSettings.from_yaml(params, device="cpu"))
    cid, img, msk = cases[0]
    ex.extract(*load_and_align(img, msk))  # warm-up, untimed
    feats = {}
    c0, t0 = time.process_time(), time.perf_counter()
    for cid, img, msk in cases:
        feats[cid] = ex.extract(*load_and_align(img, msk))
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    out = {"fastrad": version("fastrad"), "torch": torch.__version__, "threads": torch.get_num_threads(),
           "cpu_s": cpu, "wall_s": wall,
           "features": {c: {k: float(v) for k, v in f.items()} for c, f in feats.items()}}
    sys.stdout.write(json.dumps(out))


if __name__ == "__main__":
    main()
