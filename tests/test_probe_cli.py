"""`radlens pooling-probe` end to end on tiny phantoms with MONAI ResNet encoders (pre + post)."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")
yaml = pytest.importorskip("yaml")


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    from radlens.synth.cohort import make_cohort
    from radlens.synth.models import build_cnn, cnn_args

    torch.set_num_threads(1)
    root = tmp_path_factory.mktemp("probe_cli")
    mp = make_cohort(root / "cohort", n_cases=20, image_size=32, seed=1, lesion_free_fraction=0.5,
                     show_progress=False)
    args = cnn_args(4)
    for name, seed in (("pre", 0), ("post", 1)):
        torch.manual_seed(seed)
        torch.save(build_cnn(args).state_dict(), root / f"{name}.pt")
        (root / f"{name}.yaml").write_text(yaml.safe_dump({
            "kind": "monai", "name": "ResNet", "args": args, "layer": "layer4", "checkpoint": f"{name}.pt",
            "preprocess": {"spatial_size": [32, 32], "intensity": "zscore"}}))
    panel = root / "panel.yaml"
    panel.write_text(yaml.safe_dump({
        "images": {"max_images": 10},
        "panel": {"footprints": [0.15, 0.4], "margin": 0.02,
                  "perturbations": {"nodule": {"strengths": [2.0]}}},
        "probe": {"n_splits": 3, "n_boot": 50},
        "lesion": {"size_threshold": "median"},
        "jitter": {"levels": [0.0, 0.5]}}))
    return root, mp, panel


def test_cli_writes_table_scores_and_figures(setup, capsys):
    from radlens.cli import main
    from radlens.io.artifacts import read_table, read_table_meta

    root, mp, panel = setup
    out = root / "res" / "probe.parquet"
    rc = main(["-q", "pooling-probe", "--manifest", str(mp), "--encoder", str(root / "pre.yaml"),
               "--encoder-post", str(root / "post.yaml"), "--panel", str(panel), "--findings",
               "has_lesion", "--out", str(out)])
    assert rc == 0
    t = read_table(out)
    assert {"panel", "panel_pooling", "jitter", "lesion_image", "lesion_image_gap", "lesion_box",
            "lesion_box_gap", "panel_pre_post"} <= set(t["analysis"])
    assert set(t["checkpoint"]) == {"pre", "post", "post-pre"}
    # a CNN's global average equals the patch mean: probed once, as "global"
    assert set(t[t.analysis == "panel"]["pooling"]) == {"global", "roi"}
    auc = t[t.metric == "auc"]["estimate"]
    assert ((auc >= 0) & (auc <= 1)).all()
    meta = read_table_meta(out)
    assert meta["command"] == "pooling-probe" and set(meta["encoders"]) == {"pre", "post"}
    assert len(meta["encoders"]["pre"]["checkpoint_sha256"]) == 64
    s = read_table(root / "res" / "probe.scores.parquet")
    assert np.isfinite(s["score"]).all()
    for name in ("panel", "size_gap", "jitter", "pre_post"):
        assert (root / "res" / f"probe_{name}.png").stat().st_size > 10_000
        assert (root / "res" / f"probe_{name}.svg").exists()
    assert read_table(root / "res" / "probe.failures.csv").empty
    assert "table:" in capsys.readouterr().out


def test_cli_bad_inputs_name_the_problem(setup, capsys):
    from radlens.cli import main

    root, mp, panel = setup
    rc = main(["pooling-probe", "--manifest", str(mp), "--encoder", str(root / "pre.yaml"),
               "--panel", str(panel), "--findings", "has_tumour", "--out", str(root / "x.parquet")])
    err = capsys.readouterr().err
    assert rc == 2 and "has_tumour" in err and "not manifest columns" in err
    bad = root / "bad_panel.yaml"
    bad.write_text("panel:\n  footprints: [2.0]\n", encoding="utf-8")
    rc = main(["pooling-probe", "--manifest", str(mp), "--encoder", str(root / "pre.yaml"),
               "--panel", str(bad), "--out", str(root / "x.parquet")])
    err = capsys.readouterr().err
    assert rc == 2 and "footprints" in err
