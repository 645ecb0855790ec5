"""End to end: `radlens demo --quick` -> cohort, checkpoints, every stage, report.html; re-run skips."""
import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = pytest.mark.slow

ARCHS = ("cnn", "densenet", "vit")
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
    for arch in ARCHS:
        for task in ("task_texture", "task_intensity", "task_shape"):
            for kind in ("tl", "ft"):
                assert (out / "models" / arch / f"classifier_{kind}_{task}.yaml").exists()
    train = json.loads((out / "models" / "training.json").read_text(encoding="utf-8"))
    assert set(train["archs"]) == set(ARCHS)
    # the study config the demo wrote is a valid, complete example
    from radlens.config import check_paths, load_study

    cfg = load_study(out / "study.yaml")
    assert check_paths(cfg) == [] and set(cfg.encoders) == set(ARCHS)
    assert all(len(e.layers or []) >= 3 for e in cfg.encoders.values())  # layer-wise lens: >= 3 layers each
    # every stage ran (none failed), artefacts are where the stage records say
    st = _stages(out)
    # a pair whose two quick classifiers share no correctly classified case has no maps to localize
    failed = {k: v["error"] for k, v in st.items() if v["status"] != "ok"
              and not (k.startswith("localize/") and v["status"] == "skipped"
                       and (v["error"] or "").startswith("nothing to do: no CAM maps"))}
    assert not failed, failed
    for name in ("radiomics", "embed/cnn/pre", "embed/vit/task_shape", "fit-pre/cnn", "refit-post/vit",
                 "compare/cnn", "enrichment/vit", "predictions", "cam-drift", "tradeoff", "pooling-probe/cnn",
                 "pooling-probe/vit"):
        assert name in st, name
        assert all(Path(p).exists() for p in st[name]["outputs"]), name
    from radlens.io.artifacts import read_embeddings, read_table

    emb = read_embeddings(out / "embeddings" / "vit" / "pre.npz")
    assert {"cls", "mean", "roi"} <= {p.split("@")[0] for p in emb.pools}  # pooling@layer with several layers
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


def test_demo_flavours_train_with_the_recipe_defaults_unless_they_say_otherwise():
    """FULL sets no augmentation of its own: it must get TrainConfig's (every architecture fine-tunes
    with flips only since the ResNet's head moved to layer3; a DemoSize default of ("cnn", "densenet") once silently re-enabled quarter turns for
    the DenseNet in the default demo and its shape AUC fell from 0.98 to 0.77). QUICK's own choice is kept."""
    from radlens.demo import FULL, QUICK, train_config
    from radlens.synth.train import TrainConfig

    assert train_config(FULL).rot90_finetune_archs == TrainConfig().rot90_finetune_archs == ()
    assert train_config(QUICK).rot90_finetune_archs == ()
    assert train_config(QUICK, seed=3).task_epochs == {"task_shape": 24} and train_config(QUICK, seed=3).seed == 3
    assert train_config(FULL).finetune_epochs == FULL.finetune_epochs


# --------------------------------------------------------------------------- the science of the quick demo
#: Thresholds the QUICK run must meet (160 phantoms, about 100 labelled training images; the CNNs
#: fine-tune with flips only, 12 epochs on texture and intensity and 24 on shape: radlens.demo.QUICK; the
#: default run's numbers are in the README and demo.json, where all three tasks are checked against the
#: issue's 0.85 / 0.6 / 0.75). Measured on the quick run of seed 0 (2026-11-29 21:18, branch quick):
#: fine-tuned validation AUC ResNet texture 1.00, intensity 0.99, shape 0.95; one-block DenseNet (21:46,
#: after merging branch dense) texture 0.96, intensity 1.00, shape 1.00 (the earlier two-block DenseNet:
#: 1.00 / 1.00 / 0.97; training only, seed-1 cohort: shape 0.96 / 0.94). Every threshold sits
#: below the measured value, far above chance (AUC 0.5; ~43 validation lesions, an AUC's SE ~0.05).
#: Shape needs both changes: with quarter-turn augmentation and 12 epochs neither CNN learned it
#: (0.44 / 0.56, training loss near ln 2); flips only, 12 epochs: 0.72 / 0.78; quarter turns, 40 epochs:
#: 0.65 / 0.89 (docs/synth.md, "The quick demo"). The tiny ViT (32 pretext epochs in the quick run,
#: flips-only fine-tuning; docs/synth.md) measured texture 0.96, intensity 0.97 (and shape 0.91, not
#: asserted); its Grad-CAM is not asserted (quick ViT transfer maps fail the randomisation check on
#: intensity and shape, and are excluded from the rankings).
QUICK_FT_AUC = {("cnn", "task_texture"): 0.85, ("cnn", "task_intensity"): 0.85, ("cnn", "task_shape"): 0.85,
                ("densenet", "task_texture"): 0.85, ("densenet", "task_intensity"): 0.85,
                ("densenet", "task_shape"): 0.85, ("vit", "task_texture"): 0.85, ("vit", "task_intensity"): 0.85}
QUICK_TL_GAP = 0.02          # FT beats TL by at least this much on at least one task, per CNN architecture
#                              (measured: texture 0.55 -> 1.00 ResNet, 0.56 -> 1.00 DenseNet)
#: Grad-CAM of the fine-tuned CNNs on the lesion cases both checkpoints call positive, per task.
#: Measured (pointing game / pixel AUC; quick run of seed 0, 2026-11-29 23:31, branch cnnseed: the ResNet's
#: head and CAM layer is its 16x16 layer3, radlens.synth.models.ARCHS; the quick DenseNet is the one-block
#: three-layer net, radlens.demo.QUICK): texture ResNet 0.96 / 0.98, DenseNet 0.98 / 0.98; intensity
#: ResNet 0.75 / 0.95, DenseNet 0.88 / 0.98; shape ResNet 0.64 / 0.92, DenseNet 0.63 / 0.88. (With the
#: ResNet's head on layer4 and its maps taken at layer3: intensity 0.50 / 0.94 and shape 0.24 / 0.80,
#: which was not asserted.) Chance pointing game is the lesion share, ~0.05.
QUICK_MAPS = [k for k in QUICK_FT_AUC if k[0] in ("cnn", "densenet")]
QUICK_POINTING = {"task_texture": 0.6, "task_intensity": 0.3, "task_shape": 0.4}
QUICK_PIXEL_AUC = {"task_texture": 0.85, "task_intensity": 0.85, "task_shape": 0.75}


def _summary(out):
    return json.loads((out / "demo.json").read_text(encoding="utf-8"))


def test_quick_demo_learns_its_tasks(demo_dir):
    out, _ = demo_dir
    tr = _summary(out)["auc"]
    for (arch, task), thr in QUICK_FT_AUC.items():
        assert tr[arch][task]["ft"] >= thr, (arch, task, tr[arch][task])
    assert set(tr["cnn"]) == {"task_texture", "task_intensity", "task_shape"}  # every task trained and reported
    for arch in ARCHS:  # fine-tuning has something to change: TL measurably lower somewhere
        assert max(t["ft"] - t["tl"] for t in tr[arch].values()) >= QUICK_TL_GAP, tr[arch]


def test_quick_demo_maps_find_the_lesion(demo_dir):
    """On every CNN task of QUICK_MAPS (every task both CNNs learn), the fine-tuned checkpoint's
    Grad-CAM points at the lesion (pointing game and pixel AUC over the lesion cases both checkpoints
    call positive), far above chance (the lesion's share of the image, ~6 %)."""
    out, _ = demo_dir
    loc = _summary(out)["localization"]
    rows = {(r["architecture"], r["task"], r["method"], r["checkpoint"]): r for r in loc}
    for arch, task in QUICK_MAPS:
        r = rows[(arch, task, "gradcam", "ft")]
        assert r["n"] >= 10, r
        assert r["pointing_game"] >= QUICK_POINTING[task] and r["pixel_auc"] >= QUICK_PIXEL_AUC[task], r
        assert r["pointing_game"] > 5 * r["chance_pointing_game"], r


#: The quick ViT's shape task (log-mean-exp token-score head since 2026-11-30, TrainConfig.vit_pooling):
#: fine-tuned Grad-CAM measured 0.58 / 0.87 (pointing game / pixel AUC, quick run of seed 0, 01:14, branch
#: vitpool; with the mean-pooled head 0.24 / 0.68, its maxima on body-edge tokens). Asserted far above chance,
#: below the default run's 0.6 target (one seed of ~50 kept cases: a pointing game's SE ~0.07).
QUICK_VIT_SHAPE = {"pointing_game": 0.4, "pixel_auc": 0.8}


def test_quick_demo_vit_shape_maps_find_the_lesion(demo_dir):
    """The quick ViT's fine-tuned shape Grad-CAM (its classifier spec says head.pooling lse) points at the
    lesion far above chance."""
    out, _ = demo_dir
    d = _summary(out)
    r = {(x["architecture"], x["task"], x["method"], x["checkpoint"]): x
         for x in d["localization"]}[("vit", "task_shape", "gradcam", "ft")]
    spec = yaml.safe_load((out / "models" / "vit" / "classifier_ft_task_shape.yaml").read_text(encoding="utf-8"))
    assert spec["head"]["pooling"] == "lse"
    assert r["n"] >= 10, r
    assert r["pointing_game"] >= QUICK_VIT_SHAPE["pointing_game"] and r["pixel_auc"] >= QUICK_VIT_SHAPE["pixel_auc"], r
    assert r["pointing_game"] > 5 * r["chance_pointing_game"], r


def test_quick_demo_names_every_failed_check_in_its_warnings(demo_dir):
    """A failed check is never hidden: every fine-tuned Grad-CAM below the localisation targets and every
    planted signature not recovered gets its own demo.json warning naming the cell."""
    d = _summary(demo_dir[0])
    warn = d["warnings"]
    failed = [r for r in d["localization"] if r["checkpoint"] == "ft" and r["method"] == "gradcam" and not r["passed"]]
    for r in failed:
        assert any(w.startswith(f"{r['architecture']}/{r['task']}: the fine-tuned Grad-CAM does not meet") for w in warn)
    assert d["checks"]["gradcam_ft_localizes"] == (not failed)
    for r in d["planted_truth"].get("recovery_by_task", []):
        hit = any(w.startswith(f"{r['architecture']}/{r['task']}: planted radiomic signature not recovered")
                  for w in warn)
        assert hit == (not r["recovered"]), r


def test_quick_demo_explains_the_resnet_at_layer3(demo_dir):
    """The demo's CAMs use the classifier specs' target layers: the ResNet's is layer3 (16x16), the layer its
    head reads since 2026-11-29 (radlens.synth.models.ARCHS); radlens.demo.CAM_TARGET_LAYERS overrides none."""
    out, _ = demo_dir
    from radlens.io.artifacts import read_npz

    from radlens.demo import CAM_TARGET_LAYERS

    assert CAM_TARGET_LAYERS == {}
    arrays, meta = read_npz(out / "cam" / "maps.cnn.task_texture.npz")
    assert meta["target_layer"] == "layer3"
    assert read_npz(out / "cam" / "maps.densenet.task_texture.npz")[1]["target_layer"] == "features"


def test_quick_demo_rankings_use_only_maps_that_pass_sanity(demo_dir):
    out, _ = demo_dir
    from radlens.io.artifacts import read_table

    san = read_table(out / "cam" / "drift.sanity.parquet")
    exc = read_table(out / "cam" / "drift.ranking_exclusions.parquet")
    rk = read_table(out / "cam" / "drift.rankings.parquet")
    key = ["architecture", "task", "method"]
    failed = {tuple(r) for r in san.loc[~san["passed"].astype(bool), key].astype(str).to_numpy()}
    excluded = {tuple(r) for r in exc[key].astype(str).to_numpy()}
    ranked = {tuple(r) for r in rk[key].astype(str).to_numpy()}
    assert failed == excluded                  # every failure is excluded, nothing else is
    assert not (ranked & excluded)             # and no excluded combination is ranked
    assert ranked, "no architecture was ranked at all"
    assert san["excluded_from_rankings"].astype(bool).sum() >= len(failed)
    warn = _summary(out)["warnings"]
    assert sum("excluded from the CAM rankings" in w for w in warn) == len(excluded)


def test_quick_demo_planted_signatures(demo_dir):
    """Each task's radiomic signature, measured on the cohort's own radiomics, is of its planted kind
    and different from the other tasks' (measured: the top 5 of each separate the labels at AUC >= 0.99
    or <= 0.01: first-order mean/median/RMS/percentiles, shape2D elongation/axes/perimeter/sphericity,
    GLCM difference average/entropy/Id/Idm/Idmn)."""
    out, _ = demo_dir
    pt = _summary(out)["planted_truth"]
    sig = pt["signatures"]
    kinds = {"task_texture": ("glcm", "glrlm", "glszm", "gldm", "ngtdm"), "task_intensity": ("firstorder",),
             "task_shape": ("shape2D",)}
    for task, want in kinds.items():
        for top in sig[task][:5]:
            assert any(f"_{k}_" in top["feature"] for k in want), (task, sig[task][:5])
            assert abs(top["auc"] - 0.5) >= 0.3, top
    tops = [{d["feature"] for d in sig[t][:5]} for t in kinds]
    assert not (tops[0] & tops[1]) and not (tops[0] & tops[2]) and not (tops[1] & tops[2])


#: Tasks whose planted truth the quick run must recover: every learned one but the ResNet's texture. Since
#: the ResNet's head reads layer3 (layer4 is no longer embedded), the quick run's texture change is found
#: at alignment 0.49 (p 0.013, layer3) and 0.29 (p 0.028, layer1) against the level 0.05 / 6 = 0.0083 (seed
#: 0, 23:31, branch cnnseed); the default demo recovers it (layer1: alignment 0.38, p 0.004; 4 of the
#: signed top-10 in the signature, p 0.008; 23:46).
QUICK_RECOVERED = [k for k in QUICK_FT_AUC if k != ("cnn", "task_texture")]


def test_quick_demo_recovers_planted_truth(demo_dir):
    """The lens finds each learned task's signature in what fine-tuning changed (demo_planted: lens v2
    alignment or the signed top-10's signature overlap, Bonferroni over layers and the two checks).
    Measured (best layer): ResNet intensity alignment 0.43 (p 0.006) with 9 of its signed top-10 in the
    intensity signature (chance 1.0, p < 1e-4; head on layer3, 23:31), texture: see QUICK_RECOVERED; DenseNet intensity
    8/10 in the signature (p < 1e-4), texture alignment 0.50 (p 0.005); ViT intensity 8/10 in the signature
    (p < 1e-4), texture alignment 0.74 (p 0.002); level 0.05 / 6 = 0.0083. Shape (branch quick, 21:18):
    7 of the signed top-10 in the shape signature for both CNNs (p < 1e-4). Those alignments are Spearman ρ;
    with the Pearson r default (branch lensalign, 02:02): intensity and shape p ≤ 0.003 at their best layer in
    every architecture, texture best p 0.011 (ResNet), 0.010 (DenseNet, recovered by its top-10, 5/10 in the
    signature, p 0.0006) and 0.007 (ViT)."""
    out, _ = demo_dir
    pt = _summary(out)["planted_truth"]
    assert pt["status"] == "ok", pt["status"]
    for r in pt["recovery"]:
        assert {"architecture", "layer", "task", "alignment", "alignment_p", "recovered", "top10_in_signature",
                "top10_in_signature_p", "top10_planted", "top10_planted_chance"} <= set(r)
    by = {(r["architecture"], r["task"]): r for r in pt["recovery_by_task"]}
    for arch, task in QUICK_RECOVERED:
        assert by[(arch, task)]["recovered"], by[(arch, task)]
    for arch in ("cnn", "densenet"):   # the intensity change is first-order: far above the 18/102 chance share
        best = max(r["top10_planted"] for r in pt["recovery"]
                   if r["architecture"] == arch and r["task"] == "task_intensity")
        assert best >= 7, (arch, best)
