"""End to end: classifier specs -> radlens cam-drift -> tables, maps npz, figures; and bad inputs."""
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from radlens.errors import ConfigError, InputError

torch.set_num_threads(1)
SIZE = 32


def _write_models(root: Path, arch: str, shift: float = 0.3):
    from safetensors.torch import save_file

    from radlens.synth.models import build_cnn, build_vit, cnn_args, vit_config

    root = root / arch
    root.mkdir(parents=True)
    torch.manual_seed(0)
    pre = {"spatial_size": [SIZE, SIZE], "intensity": "zscore", "channels": 1}
    if arch == "cnn":
        args = cnn_args(4)
        net, dim = build_cnn(args), 32
    else:
        net, dim = build_vit(vit_config(image_size=SIZE, patch_size=8, hidden_size=16, num_layers=2, num_heads=2)), 16
    out = []
    for k, name in enumerate(["tl", "mid", "ft"]):
        if k:
            with torch.no_grad():
                for p in net.parameters():
                    p.add_(shift * p.std().nan_to_num(0) * torch.randn_like(p))
        if arch == "cnn":
            save_file({a: v.contiguous().clone() for a, v in net.state_dict().items()}, str(root / f"enc_{name}.safetensors"))
            enc = {"kind": "monai", "name": "ResNet", "args": args, "checkpoint": f"enc_{name}.safetensors",
                   "layer": "layer4", "preprocess": pre}
            target = "layer4"
        else:
            net.save_pretrained(str(root / f"enc_{name}"), safe_serialization=True)
            enc = {"kind": "hf", "path": f"enc_{name}/", "preprocess": pre}
            target = "encoder.layer.1"  # last block: its patch tokens never reach the CLS head
        # a large positive bias: every case is predicted positive, so the TP set = the positives
        save_file({"weight": torch.randn(2, dim) * 0.5, "bias": torch.tensor([0.0, 30.0])},
                  str(root / f"head_{name}.safetensors"))
        spec = {"encoder": enc, "head": {"checkpoint": f"head_{name}.safetensors",
                                         "pooling": "global" if arch == "cnn" else "cls"},
                "target_layer": target, "classes": ["negative", "positive"]}
        (root / f"clf_{name}.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
        out.append(root / f"clf_{name}.yaml")
    return out


@pytest.fixture(scope="module")
def study(tmp_path_factory):
    from radlens.synth import make_cohort

    root = tmp_path_factory.mktemp("camrun")
    manifest = make_cohort(root / "cohort", n_cases=16, image_size=SIZE, seed=0)
    return {"root": root, "manifest": manifest, "cnn": _write_models(root, "cnn"), "vit": _write_models(root, "vit")}


@pytest.fixture(scope="module")
def cli_run(study):
    from radlens.cli import main

    root = study["root"]
    out = root / "out" / "drift.parquet"
    rc = main(["-q", "cam-drift", "--manifest", str(study["manifest"]),
               "--model-a", str(study["cnn"][0]), str(study["vit"][0]),
               "--model-b", str(study["cnn"][2]), str(study["vit"][2]), "--arch", "cnn", "vit",
               "--label-col", "task_shape", "--methods", "layercam,gradcam++", "--top-k", "10,20",
               "--thresholds", "0.5", "--n-boot", "50", "--sanity-cases", "4",
               "--out", str(out), "--save-maps", str(root / "out" / "maps.npz"), "--figures", str(root / "figs")])
    assert rc == 0
    return out


def test_cli_tables_and_counts(study, cli_run):
    d = pd.read_parquet(cli_run)
    man = pd.read_csv(study["manifest"])
    positives = set(man.loc[man["task_shape"] == 1, "case_id"])
    assert set(d["architecture"]) == {"cnn", "vit"} and set(d["method"]) == {"layercam", "gradcam++"}
    for (arch, meth), g in d.groupby(["architecture", "method"]):
        assert set(g["case_id"]) == positives  # all predicted positive -> TP set = positives
    for col in ("centroid_disp", "iou_top10", "iou_top20", "iou_thr0.5", "pearson", "spearman",
                "topmass10_delta", "entropy_delta", "gini_delta"):
        assert col in d.columns
    assert not d["degenerate"].any()  # ViT maps are not all-zero: the block input is explained
    assert (d["target"] == 1).all()
    stem = cli_run.with_suffix("")
    counts = pd.read_parquet(f"{stem}.counts.parquet")
    assert counts["n_kept"].tolist() == [len(positives)] * 2
    assert counts["n_missing_label"].iloc[0] == int(man["task_shape"].isna().sum())
    sanity = pd.read_parquet(f"{stem}.sanity.parquet")
    assert len(sanity) == 2 * 2 * 2 and set(sanity["model"]) == {"a", "b"}
    rev = pd.read_parquet(f"{stem}.reversals.parquet")
    assert {"kendall_tau", "reversal", "flipped_pairs"} <= set(rev.columns)
    for name in ("summary", "paired", "paired_architectures", "concentration", "rankings"):
        assert len(pd.read_parquet(f"{stem}.{name}.parquet"))
    figs = sorted(p.name for p in (study["root"] / "figs").glob("*.png"))
    assert figs == ["cam_drift_distributions.png", "cam_drift_rankings.png", "cam_overlays_maps_cnn_task_shape.png",
                    "cam_overlays_maps_vit_task_shape.png"]


def test_saved_maps_equal_direct_computation(study, cli_run):
    """The npz holds, per case, exactly what the methods give when called directly on that case."""
    from radlens.cam.methods import GradCAMPlusPlus
    from radlens.cam.model import load_classifier
    from radlens.io.artifacts import read_npz
    from radlens.io.images import load_case
    from radlens.io.manifest import read_manifest

    arrays, meta = read_npz(cli_run.parent / "maps.vit.task_shape.npz")
    assert meta["geometry"] == "resize" and meta["spatial_size"] == [SIZE, SIZE] and meta["target_input"] is True
    n = arrays["case_id"].shape[0]
    assert arrays["gradcam++__b"].shape == (n, SIZE, SIZE) and arrays["input_image"].shape == (n, SIZE, SIZE)
    clf = load_classifier(study["vit"][2])
    df = read_manifest(study["manifest"]).df.set_index("case_id", drop=False)
    cid = str(arrays["case_id"][1])
    x, _ = clf.preprocess(load_case(df.loc[cid].to_dict()))
    ref = GradCAMPlusPlus(clf.module, clf.target_layer, token_layout=clf.token_layout, use_input=True)(x[None], [1])
    np.testing.assert_allclose(arrays["gradcam++__b"][1], ref.maps[0], atol=1e-5)
    np.testing.assert_allclose(arrays["input_image"][1], x[0].numpy(), atol=1e-6)
    assert tuple(arrays["image_shape"][1]) == (SIZE, SIZE)


def test_identical_checkpoints_give_zero_drift_and_series(study):
    from radlens.cam.run import cam_drift

    a, mid, b = study["cnn"]
    res = cam_drift(study["manifest"], a, a, label_col="task_shape", methods=["layercam"], sanity=False, n_boot=20)
    np.testing.assert_allclose(res.drift["centroid_disp"], 0, atol=1e-7)
    np.testing.assert_allclose(res.drift["iou_top10"], 1)
    np.testing.assert_allclose(res.drift["spearman"], 1, atol=1e-6)
    # series A -> mid -> B: the last step vs the first equals the direct A-vs-B drift
    res = cam_drift(study["manifest"], a, b, label_col="task_shape", methods=["layercam"], series=[mid],
                    sanity=False, n_boot=20)
    s = res.series
    assert sorted(set(zip(s["step"], s["ref"]))) == [(1, "first"), (1, "previous"), (2, "first"), (2, "previous")]
    last = s[(s.step == 2) & (s.ref == "first")].set_index("case_id")
    direct = res.drift.set_index("case_id")
    np.testing.assert_allclose(last.loc[direct.index, "spearman"], direct["spearman"], atol=1e-6)
    first1 = s[(s.step == 1)].groupby("ref")["spearman"].median()
    assert first1["first"] == pytest.approx(first1["previous"])  # step 1: previous == first


def test_randomised_copy_differs_and_leaves_original(study):
    from radlens.cam.model import load_classifier

    clf = load_classifier(study["cnn"][0])
    before = {k: v.clone() for k, v in clf.module.state_dict().items()}
    rnd = clf.randomized(seed=0)
    x = torch.randn(3, 1, SIZE, SIZE)
    with torch.no_grad():
        assert not torch.allclose(clf.module(x), rnd.module(x))
    for k, v in clf.module.state_dict().items():
        assert torch.equal(v, before[k])
    assert any(rnd.target_layer is m for m in rnd.module.modules())


def test_bad_inputs(study, tmp_path):
    from radlens.cam.model import load_classifier
    from radlens.cam.run import cam_drift

    a, _, b = study["cnn"]
    with pytest.raises(InputError, match="label column 'nope'"):
        cam_drift(study["manifest"], a, b, label_col="nope", sanity=False)
    with pytest.raises(InputError, match="positive='yes'"):
        cam_drift(study["manifest"], a, b, label_col="task_shape", positive="yes", sanity=False)
    with pytest.raises(InputError, match="unknown CAM method"):
        cam_drift(study["manifest"], a, b, label_col="task_shape", methods=["scorecam"])
    with pytest.raises(InputError, match="--model-b has 1"):
        cam_drift(study["manifest"], [a, a], [b], label_col="task_shape")
    spec = yaml.safe_load(Path(a).read_text(encoding="utf-8"))
    spec["target_layer"] = "layer44"
    bad = Path(a).parent / "bad_layer.yaml"
    bad.write_text(yaml.safe_dump(spec), encoding="utf-8")
    with pytest.raises(ConfigError, match="did you mean"):
        load_classifier(bad)
    spec["target_layer"] = "layer4"
    spec["head"]["pooling"] = "max"
    bad.write_text(yaml.safe_dump(spec), encoding="utf-8")
    with pytest.raises(ConfigError, match="head.pooling='max'"):
        load_classifier(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        load_classifier(tmp_path / "missing.yaml")


def test_3d_volumes_end_to_end(tmp_path):
    from safetensors.torch import save_file

    from radlens.cam.run import cam_drift
    from radlens.io.artifacts import read_npz
    from radlens.synth import make_cohort
    from radlens.synth.models import build_cnn, cnn_args

    manifest = make_cohort(tmp_path / "c3", n_cases=6, image_size=16, seed=0, dim=3)
    args = dict(cnn_args(4), spatial_dims=3)
    torch.manual_seed(0)
    net = build_cnn(args)
    specs = []
    for k, name in enumerate(["tl", "ft"]):
        if k:
            with torch.no_grad():
                for p in net.parameters():
                    p.add_(0.3 * p.std().nan_to_num(0) * torch.randn_like(p))
        save_file({a: v.contiguous().clone() for a, v in net.state_dict().items()}, str(tmp_path / f"enc_{name}.safetensors"))
        save_file({"weight": torch.randn(2, 32), "bias": torch.tensor([0.0, 30.0])}, str(tmp_path / f"head_{name}.safetensors"))
        enc = {"kind": "monai", "name": "ResNet", "args": args, "checkpoint": f"enc_{name}.safetensors", "layer": "layer4",
               "preprocess": {"spatial_size": [16, 16, 16], "intensity": "zscore", "channels": 1}}
        spec = {"encoder": enc, "head": {"checkpoint": f"head_{name}.safetensors", "pooling": "global"},
                "target_layer": "layer4", "classes": ["negative", "positive"]}
        (tmp_path / f"clf_{name}.yaml").write_text(yaml.safe_dump(spec), encoding="utf-8")
        specs.append(tmp_path / f"clf_{name}.yaml")
    res = cam_drift(manifest, specs[0], specs[1], label_col="has_lesion", methods=["layercam", "ig"], ig_steps=4,
                    sanity=False, n_boot=20, save_maps=tmp_path / "m.npz", figures=tmp_path / "figs")
    n_pos = int((pd.read_csv(manifest)["has_lesion"] == 1).sum())
    assert len(res.drift) == 2 * n_pos and res.drift["centroid_disp"].between(0, 1).all()
    arrays, meta = read_npz(tmp_path / "m.npz")
    assert arrays["layercam__a"].shape == arrays["ig__b"].shape == (n_pos, 16, 16, 16)
    assert (tmp_path / "figs" / "cam_overlays_m.png").exists()


def test_target_layer_override(study, tmp_path):
    """--target-layer / target_layers explain another layer of the same checkpoints; the spec file is untouched."""
    from radlens.cam.methods import GradCAM
    from radlens.cam.model import load_classifier
    from radlens.cam.run import cam_drift, cam_drift_study
    from radlens.io.artifacts import read_npz
    from radlens.io.images import load_case
    from radlens.io.manifest import read_manifest

    a, _, b = study["cnn"]
    text = Path(b).read_text(encoding="utf-8")
    clf = load_classifier(b, target_layer="layer3")
    assert clf.target_name == "layer3" and clf.target_layer is dict(clf.module.encoder.named_modules())["layer3"]
    assert Path(b).read_text(encoding="utf-8") == text
    res = cam_drift(study["manifest"], a, b, label_col="task_shape", methods=["gradcam"], sanity=False, n_boot=20,
                    target_layer="layer3", save_maps=tmp_path / "maps.npz")
    arrays, meta = read_npz(tmp_path / "maps.npz")
    assert meta["target_layer"] == "layer3"
    from radlens.report.extra import _cam_target_layers

    assert _cam_target_layers(tmp_path) == {"ResNet": "layer3"}  # the report names the layer the maps explain
    # the saved map equals Grad-CAM computed directly on layer3, whose grid (8x8 at 32 px) is finer than layer4's (4x4)
    df = read_manifest(study["manifest"]).df.set_index("case_id", drop=False)
    cid = str(arrays["case_id"][0])
    x, _ = clf.preprocess(load_case(df.loc[cid].to_dict()))
    ref = GradCAM(clf.module, clf.target_layer)(x[None], [1])
    assert ref.raw.shape == (1, SIZE // 4, SIZE // 4)
    np.testing.assert_allclose(arrays["gradcam__b"][0], ref.maps[0], atol=1e-5)
    l4 = load_classifier(b)
    ref4 = GradCAM(l4.module, l4.target_layer)(x[None], [1])
    assert ref4.raw.shape == (1, SIZE // 8, SIZE // 8)
    assert not np.allclose(ref4.maps[0], ref.maps[0], atol=1e-3)
    assert len(res.drift) > 0
    with pytest.raises(InputError, match="target_layers names architecture"):
        cam_drift_study(study["manifest"], [dict(architecture="cnn", task="t", model_a=a, model_b=b,
                                                 label_col="task_shape")], target_layers={"resnet": "layer3"})
    with pytest.raises(InputError, match="--target-layer has 2"):
        cam_drift(study["manifest"], a, b, label_col="task_shape", target_layer=["layer3", "layer2"])
    with pytest.raises(ConfigError, match="target_layer 'layer9'"):
        load_classifier(b, target_layer="layer9")


def test_overlay_notes_come_from_the_maps_task(tmp_path, monkeypatch):
    """A case id recurs across tasks in one drift table: each B panel's note (displacement, IoU) is the
    row of the maps' own architecture and task (it once took the first task's row for every task)."""
    import matplotlib.axes

    from radlens.io.artifacts import write_npz
    from radlens.viz.cam import plot_overlay_grid

    rng = np.random.default_rng(0)
    ids = np.array(["c1", "c2"])
    arrays = {"case_id": ids, "input_image": rng.random((2, 8, 8)), "gradcam__a": rng.random((2, 8, 8)),
              "gradcam__b": rng.random((2, 8, 8))}
    write_npz(tmp_path / "m.npz", arrays, {"architecture": "vit", "task": "task_shape", "methods": ["gradcam"]})
    rows = []
    for task, disp, iou in [("task_intensity", np.nan, np.nan), ("task_shape", 0.25, 0.5), ("task_texture", 0.75, 0.125)]:
        for cid in ids:
            rows.append({"architecture": "vit", "task": task, "method": "gradcam", "case_id": cid,
                         "centroid_disp": disp, "iou_top10": iou})
    rows.append({"architecture": "cnn", "task": "task_shape", "method": "gradcam", "case_id": "c1",
                 "centroid_disp": 0.9, "iou_top10": 0.9})
    drift = pd.DataFrame(rows[::-1][1:] + rows[-1:])  # other tasks' rows both before and after the shape rows
    notes = []
    orig = matplotlib.axes.Axes.text

    def spy(self, x, y, s, *a, **k):
        notes.append(s)
        return orig(self, x, y, s, *a, **k)

    monkeypatch.setattr(matplotlib.axes.Axes, "text", spy)
    plot_overlay_grid(tmp_path / "m.npz", tmp_path / "ov", drift=drift)
    assert [s for s in notes if s.startswith("disp")] == ["disp 0.25\nIoU 0.50"] * 2
