"""End to end: `radlens demo --quick` -> cohort, checkpoints, every stage, report.html; re-run skips."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow

SECTIONS = ("overview", "cohort", "training", "lens", "planted", "cam", "probe", "localization", "provenance")


@pytest.fixture(scope="module")
def demo_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    env = dict(os.environ, RADLENS_PROGRESS="0")
    proc = subprocess.run([sys.executable, "-m", "radlens.cli", "demo", "--out", str(out), "--quick"],
                          capture_output=True, text=True, env=env, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out, proc


def _stages(out: Path) -> dict:
    return {s["name"]: s for s in json.loads((out / "run.json").read_text(encoding="utf-8"))["stages"]}


def test_demo_writes_everything(demo_dir):
    out, proc = demo_dir
    assert f"report: {out / 'report.html'}" in proc.stdout
    # cohort and checkpoints
    assert (out / "cohort" / "manifest.csv").exists()
    for arch in ("cnn", "vit"):
        for task in ("task_texture", "task_intensity", "task_shape"):
            for kind in ("tl", "ft"):
                assert (out / "models" / arch / f"classifier_{kind}_{task}.yaml").exists()
    train = json.loads((out / "models" / "training.json").read_text(encoding="utf-8"))
    assert set(train["archs"]) == {"cnn", "vit"}
    # the study config the demo wrote is a valid, complete example
    from radlens.config import check_paths, load_study

    cfg = load_study(out / "study.yaml")
    assert check_paths(cfg) == [] and set(cfg.encoders) == {"cnn", "vit"}
    # every stage ran (none failed), artefacts are where the stage records say
    st = _stages(out)
    # a pair whose two quick classifiers share no correctly classified case has no maps to localize
    failed = {k: v["error"] for k, v in st.items() if v["status"] != "ok"
              and not (k.startswith("localize/") and v["status"] == "skipped"
                       and (v["error"] or "").startswith("nothing to do: no CAM maps"))}
    assert not failed, failed
    for name in ("radiomics", "embed/cnn/pre", "embed/vit/task_shape", "fit-pre/cnn", "refit-post/vit/task_texture",
                 "compare/cnn", "enrichment/vit", "predictions", "cam-drift", "tradeoff", "pooling-probe/cnn",
                 "pooling-probe/vit"):
        assert name in st, name
        assert all(Path(p).exists() for p in st[name]["outputs"]), name
    from radlens.io.artifacts import read_embeddings, read_table

    emb = read_embeddings(out / "embeddings" / "vit" / "pre.npz")
    assert {"cls", "mean", "roi"} <= set(emb.pools)
    enr = read_table(out / "lens" / "cnn" / "enrichment.csv")
    assert set(enr["task"]) == {"task_texture", "task_intensity", "task_shape"}
    assert ((enr["p_perm"] > 0) & (enr["p_perm"] <= 1)).all()


def test_report_sections_and_self_contained(demo_dir):
    out, _ = demo_dir
    page = (out / "report.html").read_text(encoding="utf-8")
    for sid in SECTIONS:
        assert f'<section id="{sid}">' in page, sid
    # no stage may fail; a stage may be skipped only for a stated, data-driven reason (e.g. a task the
    # tiny encoders did not learn leaves no correctly classified case to localize)
    assert "failed:</b>" not in page
    n_img = len(re.findall(r'src="data:image/png;base64,', page))
    assert n_img >= 10, n_img
    assert not re.search(r"(src|href)=\"(https?:)?//", page)
    for text in ("Planted-truth", "Accuracy vs interpretability", "sha256"):
        assert text in page, text


def test_rerun_skips_unchanged_stages(demo_dir):
    out, _ = demo_dir
    from radlens.study import run

    res = run(out / "study.yaml", report=False)
    statuses = {s.status for s in res.stages}
    assert statuses <= {"cached", "failed", "skipped"}, statuses  # nothing re-ran; failed stages are retried
    assert sum(s.status == "cached" for s in res.stages) >= len(res.stages) - 3


def test_demo_stamps_hash_the_generating_code():
    """A radlens upgrade that changes the cohort or training code must not reuse stale demo models."""
    import hashlib

    import radlens.synth.cohort as c
    import radlens.synth.volume as v
    from radlens.demo import _code_hash

    want = hashlib.sha256(Path(c.__file__).read_bytes() + Path(v.__file__).read_bytes()).hexdigest()[:16]
    assert _code_hash("radlens.synth.cohort", "radlens.synth.volume") == want
    assert _code_hash("radlens.synth.cohort") != want
