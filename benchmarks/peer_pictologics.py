"""Run pictologics (a peer radiomics library) on cases, in ITS OWN virtual environment.

Called by ``radiomics_bench.py --peer-pictologics PYTHON_EXE`` as
``PYTHON_EXE benchmarks/peer_pictologics.py CASES_JSON N_BINS`` (no radlens import: pictologics'
venv need not have radlens). ``CASES_JSON`` is a list of ``[case_id, image, mask]``. One
configuration, the closest to radlens' default 2D params: no resampling, fixed bin number
``N_BINS`` (pyradiomics' ``binCount``), the intensity, morphology and texture families (IBSI 1).
One numba thread (``PICTOLOGICS_NUM_THREADS=1``, set before the import): per core.

Prints one JSON object: pictologics' version, its thread count, per-case features (pictologics'
names) and the CPU and wall seconds of running every case once (``pipeline.run(image, mask)``:
loading the files included, as radlens' time includes its loading), after one untimed warm-up
case: the import and its numba compilation (minutes on the first import, then cached) are paid
by nobody, as no contender's imports are.
"""
from __future__ import annotations

import json
import logging
import os
import sys
import time
import warnings


def main() -> None:
    cases = json.loads(open(sys.argv[1]).read())
    n_bins = int(sys.argv[2])
    os.environ["PICTOLOGICS_NUM_THREADS"] = "1"
    logging.disable(logging.WARNING)
    warnings.simplefilter("ignore")
    import pictologics
    from pictologics import RadiomicsPipeline

    pipe = RadiomicsPipeline(deduplicate=False)
    pipe.add_config("radlens_default_2d", steps=[
        {"step": "discretise", "params": {"method": "FBN", "n_bins": n_bins}},
        {"step": "extract_features", "params": {"families": ["intensity", "morphology", "texture"]}},
    ])
    cid, img, msk = cases[0]
    pipe.run(img, msk)  # warm-up, untimed
    feats = {}
    c0, t0 = time.process_time(), time.perf_counter()
    for cid, img, msk in cases:
        feats[cid] = pipe.run(img, msk)["radlens_default_2d"]
    cpu, wall = time.process_time() - c0, time.perf_counter() - t0
    out = {"pictologics": pictologics.__version__, "threads": pictologics.get_num_threads(),
           "cpu_s": cpu, "wall_s": wall,
           "features": {c: {str(k): (None if v is None else float(v)) for k, v in s.items()} for c, s in feats.items()}}
    sys.stdout.write(json.dumps(out))


if __name__ == "__main__":
    main()
