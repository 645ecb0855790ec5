"""`radlens radiomics` end to end: the command, and a run killed mid-way that resumes identically."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from radlens.cli import main
from radlens.io.artifacts import read_table_meta

PARAMS = """\
imageType:
  Original: {}
featureClass:
  shape2D:
  firstorder:
  glcm:
  glrlm:
setting:
  binCount: 24
"""


@pytest.fixture(scope="module")
def cohort(tmp_path_factory):
    from radlens.synth import make_cohort

    root = tmp_path_factory.mktemp("cli")
    (root / "params.yaml").write_text(PARAMS, encoding="utf-8")
    return make_cohort(root / "coh", n_cases=24, image_size=64, seed=5), root / "params.yaml"


def test_cli_writes_tables_and_reports(cohort, tmp_path, capsys):
    manifest, params = cohort
    out = tmp_path / "feat.parquet"
    rc = main(["radiomics", str(manifest), "--params", str(params), "--out", str(out), "--jobs", "2",
               "--no-progress"])
    assert rc == 0
    text = capsys.readouterr().out
    assert "24 cases x" in text and "(24 extracted, 0 from cache)" in text and "failures: 0" in text
    df = pd.read_parquet(out)
    assert df.shape[0] == 24 and df.columns[0] == "case_id"
    assert {"original_glcm_Contrast", "original_firstorder_Mean", "original_shape2D_Elongation"} <= set(df.columns)
    assert (tmp_path / "feat.diagnostics.parquet").exists() and (tmp_path / "feat.failures.csv").exists()
    assert main(["radiomics", str(manifest), "--params", str(params), "--out", str(out), "--no-progress"]) == 0
    assert "(0 extracted, 24 from cache)" in capsys.readouterr().out


@pytest.mark.parametrize("load", [0.0, 8.0], ids=["idle-cpu", "busy"])
def test_cli_jobs_2_starts_a_zygote_when_a_cpu_is_idle(cohort, tmp_path, monkeypatch, load):
    """--jobs 2 forks a zygote first thing when the load leaves a CPU idle (its workers then
    compute the cases: not children of this process); on a busy machine none (the workers are
    forked here). The tables are those of --jobs 1 either way."""
    from radlens import zygote as parallel
    from radlens.radiomics import schedule

    manifest, params = cohort
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    monkeypatch.setattr(os, "getloadavg", lambda: (load, load, load))
    started = []
    real = parallel.start_zygote
    monkeypatch.setattr(parallel, "start_zygote", lambda *a, **k: started.append(real(*a, **k)) or started[-1])
    ref = tmp_path / "j1.parquet"
    assert main(["radiomics", str(manifest), "--params", str(params), "--out", str(ref), "--no-progress",
                 "--no-cache"]) == 0
    assert started == []  # --jobs 1: none
    out = tmp_path / "j2.parquet"
    assert main(["radiomics", str(manifest), "--params", str(params), "--out", str(out), "--no-progress",
                 "--no-cache", "--jobs", "2"]) == 0
    assert len(started) == 1 and (started[0] is not None) == (load == 0.0)
    workers = set(schedule.WORKER_CPU) - {os.getpid()}
    assert len(workers) == 1
    if started[0] is not None:  # its workers computed cases
        with pytest.raises(ChildProcessError):
            os.waitpid(next(iter(workers)), os.WNOHANG)
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(ref), check_exact=True)


def test_cli_jobs_auto_and_bad_jobs(cohort, tmp_path, capsys, caplog):
    manifest, params = cohort
    out = tmp_path / "auto.parquet"
    with caplog.at_level("INFO", logger="radlens.radiomics.extract"):
        assert main(["radiomics", str(manifest), "--params", str(params), "--out", str(out), "--jobs", "auto",
                     "--no-progress", "--no-cache"]) == 0
    # 24 64-px ROIs: ~0.07 s of work by the cost model, too little for a pool
    assert any("(jobs=1 auto" in r.getMessage() for r in caplog.records)
    ref = tmp_path / "j1.parquet"
    assert main(["radiomics", str(manifest), "--params", str(params), "--out", str(ref), "--no-progress",
                 "--no-cache"]) == 0
    pd.testing.assert_frame_equal(pd.read_parquet(out), pd.read_parquet(ref), check_exact=True)
    with pytest.raises(SystemExit):
        main(["radiomics", str(manifest), "--jobs", "many"])
    assert "'many' is not a number of processes" in capsys.readouterr().err


def test_cli_user_errors_without_traceback(cohort, tmp_path, capsys):
    manifest, _ = cohort
    bad = tmp_path / "bad.csv"
    pd.DataFrame([{"case_id": "a", "image": "nope.png", "bbox_x": 0, "bbox_y": 0, "bbox_w": 4, "bbox_h": 4}]
                 ).to_csv(bad, index=False)
    assert main(["radiomics", str(bad), "--out", str(tmp_path / "r.parquet")]) == 2
    err = capsys.readouterr().err
    assert "radlens radiomics: error: manifest" in err and "image file 'nope.png' not found" in err
    assert "Traceback" not in err
    assert main(["radiomics", str(manifest), "--params", str(tmp_path / "none.yaml")]) == 2
    assert "params file" in capsys.readouterr().err


def _cache_entries(cache: Path) -> int:
    return sum(1 for p in cache.glob("??/*.json"))


def test_killed_run_resumes_with_identical_output(cohort, tmp_path):
    manifest, params = cohort
    # reference: one uninterrupted run
    ref = tmp_path / "ref" / "r.parquet"
    assert main(["radiomics", str(manifest), "--params", str(params), "--out", str(ref), "--no-progress"]) == 0

    out = tmp_path / "run" / "r.parquet"
    cmd = [sys.executable, "-m", "radlens.cli", "radiomics", str(manifest), "--params", str(params),
           "--out", str(out), "--no-progress"]
    env = {**os.environ, "RADLENS_PROGRESS": "0"}
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env)
    cache = out.parent / "r.cache"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and _cache_entries(cache) < 4:
        time.sleep(0.01)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = _cache_entries(cache)
    assert 4 <= done < 24, f"kill did not land mid-run ({done} cases cached)"
    assert not out.exists()  # nothing half-written: tables appear only at the end, atomically

    assert main(["radiomics", str(manifest), "--params", str(params), "--out", str(out), "--no-progress"]) == 0
    a, b = pd.read_parquet(ref), pd.read_parquet(out)
    assert list(a.columns) == list(b.columns) and a["case_id"].tolist() == b["case_id"].tolist()
    np.testing.assert_array_equal(a.drop(columns="case_id").to_numpy(), b.drop(columns="case_id").to_numpy())
    pd.testing.assert_frame_equal(pd.read_parquet(ref.with_name("r.diagnostics.parquet")),
                                  pd.read_parquet(out.with_name("r.diagnostics.parquet")))
    meta = read_table_meta(out)
    assert meta["n_cases"] == 24 and meta["n_failed"] == 0 and meta["config"]["params"]["setting"]["binCount"] == 24


def test_cli_builds_only_the_named_command_with_the_same_arguments():
    """A run registers only its sub-command (start-up: 15 other command modules not imported);
    the arguments parse exactly as with every command registered."""
    from radlens.cli import build_parser

    argv = ["-v", "radiomics", "m.csv", "--jobs", "auto", "--no-cache", "--out", "x.parquet"]
    one, full = build_parser(argv), build_parser()
    sub = next(a for a in one._actions if a.dest == "command")
    assert list(sub.choices) == ["radiomics"]
    assert len(next(a for a in full._actions if a.dest == "command").choices) > 5
    a, b = vars(one.parse_args(argv)), vars(full.parse_args(argv))
    assert a == b and a["jobs"] == "auto" and a["verbose"] == 1
    # anything else (unknown command, top-level help) gets the full parser
    for other in (["radiomcs"], ["--help"], ["--version"], []):
        assert len(next(x for x in build_parser(other)._actions if x.dest == "command").choices) > 5
