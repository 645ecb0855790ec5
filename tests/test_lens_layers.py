"""Layer-wise lens end to end through the CLI (fit-pre / refit-post / compare --layers) on planted
multi-layer embeddings: an unchanged layer, a rescaled + rotated layer and a layer with a planted
radiomic change."""
import json

import numpy as np
import pandas as pd
import pytest

from radlens.cli import main
from radlens.io.artifacts import Embeddings, read_table, write_embeddings, write_table
from radlens.lens.planted import planted_change, planted_embeddings, planted_radiomics

FIT = ["--hidden", "12", "--seeds", "2", "--max-epochs", "60", "--patience", "10"]
LAYERS = ["stem", "block1.conv", "block2"]


pytestmark = pytest.mark.usefixtures("one_thread")  # tests/conftest.py


def _write(path, cid, arrays):
    pools = {f"roi@{L}": a.astype(np.float32) for L, a in arrays.items()}
    write_embeddings(path, Embeddings(cid, pools, {"layers": list(arrays)}))


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    d = tmp_path_factory.mktemp("lens_layers")
    df = planted_radiomics(120, 14, seed=2)
    X = df.drop(columns="case_id").to_numpy()
    cid = df["case_id"].to_numpy()
    pre = {L: planted_embeddings(X, 10, seed=10 + i) for i, L in enumerate(LAYERS)}
    _write(d / "pre.npz", cid, pre)
    rng = np.random.default_rng(0)
    Q, _ = np.linalg.qr(rng.normal(size=(10, 10)))
    for k, (task, planted) in enumerate((("texture", [5, 6]), ("shape", [10, 11]))):
        post = {"stem": pre["stem"].copy(),                          # unchanged
                "block1.conv": 1.5 * pre["block1.conv"] @ Q,         # rescaled + rotated only
                "block2": planted_change(X, pre["block2"], planted, "signal", 0.6, seed=k)}
        _write(d / f"{task}.npz", cid, post)
    write_table(df, d / "radiomics.parquet")
    pd.DataFrame({"case_id": cid, "patient_id": [f"p{i // 2}" for i in range(len(cid))]}).to_csv(
        d / "groups.csv", index=False)
    return d


def test_layerwise_cli(study):
    d = study
    # a multi-layer file without --layers is refused with the fix
    with pytest.raises(Exception, match="--layers all"):
        from radlens.lens.pipeline import fit_pre

        fit_pre(d / "radiomics.parquet", d / "pre.npz", d / "bad")
    assert main(["fit-pre", "--radiomics", str(d / "radiomics.parquet"), "--embeddings", str(d / "pre.npz"),
                 "--groups", str(d / "groups.csv"), "--layers", "all", "--out", str(d / "lens"), *FIT]) == 0
    meta = json.loads((d / "lens" / "layers.json").read_text(encoding="utf-8"))
    assert meta["layers"] == LAYERS
    for L in LAYERS:   # one single-layer lens per layer
        assert (d / "lens" / L / "lens.json").exists() and (d / "lens" / L / "lens.npz").exists()
    for task in ("texture", "shape"):
        assert main(["refit-post", "--lens", str(d / "lens"), "--embeddings", str(d / f"{task}.npz"),
                     "--n-null", "40", "--n-boot", "30", "--out", str(d / f"shifts_{task}.parquet")]) == 0
    long = read_table(d / "shifts_texture.parquet")
    assert list(dict.fromkeys(long["layer"])) == LAYERS and len(long) == 3 * 14
    single = read_table(d / "block2" / "shifts_texture.parquet")
    assert "layer" not in single.columns and len(single) == 14
    assert main(["compare", str(d / "shifts_texture.parquet"), str(d / "shifts_shape.parquet"),
                 "--out", str(d / "cmp")]) == 0
    summ = read_table(d / "cmp" / "layer_summary.csv").set_index(["layer", "task"])
    feats = read_table(d / "cmp" / "layer_features.csv")
    for task in ("texture", "shape"):
        s0, s1, s2 = (summ.loc[(L, task)] for L in LAYERS)
        # unchanged layer: CKA 1 with a degenerate CI, R² equal, nothing significant
        assert abs(s0["cka"] - 1) < 1e-9 and abs(s0["cka_ci_low"] - 1) < 1e-9
        assert s0["r2_post_heldout"] == pytest.approx(s0["r2_pre_heldout"], abs=1e-9)
        # rescaled + rotated: CKA 1 as well (linear CKA is blind to both)
        assert abs(s1["cka"] - 1) < 1e-9
        # planted change: CKA below 1, CI below 1
        assert s2["cka"] < 0.99 and s2["cka_ci_high"] < 1
        assert s2["cka_ci_low"] <= s2["cka"] <= s2["cka_ci_high"]
        assert s2["r2_pre_heldout_ci_low"] <= s2["r2_pre_heldout"] <= s2["r2_pre_heldout_ci_high"]
        f0 = feats[(feats["layer"] == "stem") & (feats["task"] == task) & (feats["kind"] == "task")]
        assert f0["no_change"].all() and (f0["q"] >= 0.05).all() and (f0["value"] == 0).all()
        f2 = feats[(feats["layer"] == "block2") & (feats["task"] == task) & (feats["kind"] == "task")]
        assert (f2["q"] < 0.05).any()
    for L in LAYERS:   # each layer compared with the single-layer compare
        assert (d / "cmp" / L / "compare.json").exists()
    assert (d / "cmp" / "layer_heatmap.png").exists() and (d / "cmp" / "layer_depth.png").exists()
    # with the layer-wise lens and the multi-layer files: common / task-specific change per layer
    assert main(["compare", str(d / "shifts_texture.parquet"), str(d / "shifts_shape.parquet"), "--lens",
                 str(d / "lens"), "--embeddings", f"texture={d / 'texture.npz'}", "--embeddings",
                 f"shape={d / 'shape.npz'}", "--n-null", "40", "--n-boot", "20", "--layers", "stem,block2",
                 "--jobs", "2", "--out", str(d / "cmp2")]) == 0
    f = read_table(d / "cmp2" / "layer_features.csv")
    assert sorted(f["layer"].unique()) == ["block2", "stem"] and set(f["kind"]) == {"task", "common", "contrast"}
    stem = f[f["layer"] == "stem"]
    assert (stem["q"] >= 0.05).all() and stem["no_change"].all()   # nothing changed in the stem: no discovery
    c2 = f[(f["layer"] == "block2") & (f["kind"] == "contrast")]
    assert set(c2["task"]) == {"texture", "shape"} and (c2["q"] < 0.05).any()
    assert (d / "cmp2" / "block2" / "contrast.csv").exists()
    # figure_layers: every layer's tables, the single-layer figures of the named layer only
    from radlens.lens.layers import compare_layers

    compare_layers([str(d / "shifts_texture.parquet"), str(d / "shifts_shape.parquet")], d / "cmp3",
                   layers=["stem", "block2"], figure_layers=["block2"], lens=d / "lens",
                   embeddings={"texture": str(d / "texture.npz"), "shape": str(d / "shape.npz")}, n_null=0, n_boot=0)
    for L in ("stem", "block2"):
        assert (d / "cmp3" / L / "contrast.csv").exists() and (d / "cmp3" / L / "top_k.csv").exists()
    assert (d / "cmp3" / "block2" / "heatmap.png").exists() and (d / "cmp3" / "block2" / "contrast_heatmap.png").exists()
    assert not list((d / "cmp3" / "stem").glob("*.png")) and not list((d / "cmp3" / "stem").glob("*.svg"))
    assert (d / "cmp3" / "layer_heatmap.png").exists()


def test_layer_errors_name_the_fix(study, capsys):
    d = study
    rc = main(["fit-pre", "--radiomics", str(d / "radiomics.parquet"), "--embeddings", str(d / "pre.npz"),
               "--layers", "block9", "--out", str(d / "lens_bad"), *FIT])
    err = capsys.readouterr().err
    assert rc != 0 and "block9" in err and "available" in err
    # --jobs runs layers in parallel: without --layers it is refused with the fix
    rc = main(["fit-pre", "--radiomics", str(d / "radiomics.parquet"), "--embeddings", str(d / "pre.npz"),
               "--jobs", "2", "--out", str(d / "lens_bad2"), *FIT])
    err = capsys.readouterr().err
    assert rc != 0 and "--jobs 2" in err and "--layers" in err


def test_study_layers_run_the_lens_layer_wise(tmp_path, monkeypatch):
    """encoders.<arch>.layers (2+): fit-pre / refit-post / compare stages call the layer-wise functions
    and mark their outputs by layers.json; a single-layer architecture keeps the single-layer stages."""
    import yaml

    import radlens.lens.layers as LL
    from radlens.config import load_study
    from radlens.study import build_stages

    (tmp_path / "enc.yaml").write_text("kind: monai\nname: ResNet\ncheckpoint: w.safetensors\n", encoding="utf-8")
    (tmp_path / "m.csv").write_text("case_id,image,bbox_x,bbox_y,bbox_w,bbox_h\n", encoding="utf-8")
    study = {"manifest": "m.csv", "cam_drift": {"enabled": False}, "pooling_probe": {"enabled": False},
             "encoders": {"cnn": {"pre": "enc.yaml", "layers": ["layer1", "layer3"], "tasks": {"t": "enc.yaml"}},
                          "vit": {"pre": "enc.yaml", "tasks": {"t": "enc.yaml"}}}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(study), encoding="utf-8")
    cfg = load_study(tmp_path / "s.yaml")

    class M:
        path = str(tmp_path / "m.csv")
        df = pd.DataFrame({"case_id": [], "image": []})

    calls = []
    monkeypatch.setattr(LL, "fit_pre_layers", lambda *a, **kw: calls.append(("fit", kw.get("layers"))))
    monkeypatch.setattr(LL, "refit_post_layers_tasks",
                        lambda lens, post, outs, **kw: calls.append(("refit", sorted(post), kw.get("jobs"))))
    monkeypatch.setattr(LL, "compare_layers", lambda tables, out, **kw: calls.append(
        ("compare", len(tables), kw.get("figure_layers"))))
    stages = {s.name: s for s in build_stages(cfg, tmp_path / "run", M())}
    for name in ("fit-pre/cnn", "refit-post/cnn", "compare/cnn"):
        assert stages[name].outputs[0].name == "layers.json" or name.startswith("refit"), name
        stages[name].fn()
    # one refit-post stage per architecture: every task in one pass, layers over lens.jobs workers
    assert calls == [("fit", ["layer1", "layer3"]), ("refit", ["t"], 1), ("compare", 1, None)]
    assert set(stages["refit-post/cnn"].outputs) == {tmp_path / "run" / "lens" / "cnn" / "shifts_t.parquet"}
    # lens.layer_figures: main -> the compare figures of the deepest layer only (no encoders.cnn.layer)
    study["lens"] = {"layer_figures": "main"}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(study), encoding="utf-8")
    calls.clear()
    st2 = {s.name: s for s in build_stages(load_study(tmp_path / "s.yaml"), tmp_path / "run", M())}
    st2["compare/cnn"].fn()
    assert calls == [("compare", 1, ["layer3"])]
    assert stages["fit-pre/vit"].outputs[0].name == "lens.json"
    assert stages["compare/vit"].outputs[0].name == "compare.json"


def test_layer_statistics_point_estimates_match_the_lens(study):
    """R² of layer_statistics (unit weights) is the lens's own held-out R²; CKA is linear_cka of the frames."""
    from radlens.lens.io import load_lens
    from radlens.lens.layers import heldout_r2_replicates, layer_statistics
    from radlens.stats import linear_cka

    d = study
    if not (d / "lens" / "block2" / "lens.json").exists():   # run alone (-k): fit the lens here
        assert main(["fit-pre", "--radiomics", str(d / "radiomics.parquet"), "--embeddings", str(d / "pre.npz"),
                     "--groups", str(d / "groups.csv"), "--layers", "block2", "--out", str(d / "lens"), *FIT]) == 0
    lens = load_lens(d / "lens" / "block2")
    assert heldout_r2_replicates(lens, lens.Z_pre_)[0] == pytest.approx(float(np.mean(lens.head_pre_.r2_heldout)),
                                                                        abs=1e-10)
    from radlens.io.artifacts import read_embeddings

    Z = read_embeddings(d / "texture.npz").select("block2").get("roi").astype(float)
    head = lens.refit_head(Z)
    rec = layer_statistics(lens, Z, n_boot=20, seed=0)
    assert rec["r2_post_heldout"] == pytest.approx(float(np.mean(head.r2_heldout)), abs=1e-10)
    assert rec["cka"] == pytest.approx(linear_cka(lens.Z_pre_, lens.transform_embeddings(Z)), abs=1e-12)
    assert rec["r2_post_heldout_ci_low"] <= rec["r2_post_heldout"] <= rec["r2_post_heldout_ci_high"]


def test_a_failing_layer_is_listed_and_the_others_proceed(study, tmp_path):
    from radlens.io.artifacts import read_embeddings

    d = study
    emb = read_embeddings(d / "pre.npz")
    pools = dict(emb.pools)
    pools["roi@broken"] = np.full_like(pools["roi@stem"], np.nan)   # no case has a finite embedding
    write_embeddings(tmp_path / "pre.npz", Embeddings(emb.case_id, pools, {"layers": LAYERS + ["broken"]}))
    assert main(["fit-pre", "--radiomics", str(d / "radiomics.parquet"), "--embeddings", str(tmp_path / "pre.npz"),
                 "--layers", "stem,broken", "--out", str(tmp_path / "lens"), *FIT]) == 0
    fails = read_table(tmp_path / "lens" / "layer_failures.csv")
    assert fails["layer"].tolist() == ["broken"] and fails["stage"].tolist() == ["fit-pre"]
    assert json.loads((tmp_path / "lens" / "layers.json").read_text(encoding="utf-8"))["layers"] == ["stem"]
    assert (tmp_path / "lens" / "stem" / "lens.json").exists()
