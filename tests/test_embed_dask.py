"""`embed --executor dask`: a 2-worker LocalCluster gives the local run's file bit for bit, also when a
worker dies mid-run; the model is loaded once per worker; a re-run computes only missing chunks."""
import collections
import json
import logging
import os
import textwrap

import numpy as np
import pytest

torch = pytest.importorskip("torch")
distributed = pytest.importorskip("distributed")

from radlens.encoders import embed  # noqa: E402
from radlens.io.artifacts import read_npz  # noqa: E402

torch.set_num_threads(1)

KILLER = '''
import os

import torch
import torch.nn as nn


class Killer(nn.Module):
    """A tiny conv net whose first real batch (B > 1) kills its process once, while `marker` exists."""

    def __init__(self, marker, loads):
        super().__init__()
        self.conv = nn.Conv2d(1, 6, 4, stride=4)
        self.marker = marker
        with open(loads, "a") as f:  # one line per model construction, by process
            f.write(f"{os.getpid()}\\n")

    def forward(self, x):
        if x.shape[0] > 1 and os.path.exists(self.marker):
            try:
                os.remove(self.marker)
            except FileNotFoundError:  # another worker won the race
                pass
            else:
                os._exit(1)  # the worker process dies mid-chunk
        return torch.relu(self.conv(x))
'''


def test_dask_equals_local_bit_for_bit_with_a_killed_worker(tmp_path, monkeypatch, caplog):
    import dask
    from distributed import Client, LocalCluster

    from radlens.synth import make_cohort

    mp = make_cohort(tmp_path / "c", n_cases=10, image_size=32, seed=0)
    (tmp_path / "radlens_killer_model.py").write_text(textwrap.dedent(KILLER), encoding="utf-8")
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(tmp_path), os.environ.get("PYTHONPATH", "")]))
    marker, loads = tmp_path / "kill-once", tmp_path / "loads.txt"
    spec = {"kind": "python", "factory": "radlens_killer_model:Killer",
            "args": {"marker": str(marker), "loads": str(loads)},
            "preprocess": {"spatial_size": [32, 32], "intensity": "zscore", "channels": 1}}
    local = embed(mp, spec, tmp_path / "local.npz", batch_size=2, chunk_size=3, workers=0)
    ref, ref_meta = read_npz(local)
    loads.unlink()
    marker.write_text("kill the first worker that runs a batch", encoding="utf-8")
    # forked workers inherit torch/MONAI/radlens from this process (spawned ones import them: ~10 s each)
    with dask.config.set({"distributed.worker.multiprocessing-method": "fork"}), \
            LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None,
                         silence_logs=logging.ERROR) as cluster, Client(cluster) as client:
        out = embed(mp, spec, tmp_path / "dask.npz", batch_size=2, chunk_size=3, executor="dask",
                    scheduler=client, dask_threads=1, keep_parts=True)
        assert not marker.exists()  # a worker really died mid-run (and its chunk was recomputed)
        got, meta = read_npz(out)
        assert sorted(got) == sorted(ref)
        for k in ref:
            np.testing.assert_array_equal(got[k], ref[k])  # bit for bit, in manifest order
        assert meta["encoder"] == ref_meta["encoder"] and meta["checkpoint_sha256"] == ref_meta["checkpoint_sha256"]
        # the model was built once per process: here (for the spec), and once per worker process
        per_pid = collections.Counter(loads.read_text().split())
        assert set(per_pid.values()) == {1} and len(per_pid) >= 3  # client + 2 workers (+ the restarted one)
        # a re-run (the CLI, by scheduler address) after losing one chunk file recomputes only that chunk
        (tmp_path / "dask.npz.parts" / "chunk_000002.npz").unlink()
        caplog.set_level(logging.INFO, logger="radlens.encoders.embed")
        from radlens.cli import main

        rc = main(["embed", str(mp), "--encoder", json.dumps(spec), "--out", str(tmp_path / "dask.npz"),
                   "--batch-size", "2", "--chunk-size", "3", "--executor", "dask",
                   "--scheduler", cluster.scheduler_address])
        assert rc == 0
    assert "reused 3 of 4 finished chunks" in caplog.text
    again, _ = read_npz(tmp_path / "dask.npz")
    for k in ref:
        np.testing.assert_array_equal(again[k], ref[k])
