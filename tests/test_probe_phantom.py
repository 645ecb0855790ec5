"""The seed paper's effect on phantoms: ROI pooling separates small perturbations that global
pooling does not; pre vs post; box jitter. Encoder: a small randomly initialised CNN built here
(one forward pass gives the global average and the ROI-restricted mean of its 16x16 feature grid).
"""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from radlens.probe.run import probe_arrays  # noqa: E402

CELL = 4  # feature-grid cell in pixels (two stride-2 convolutions on 64-px images)


def _cnn():
    torch.manual_seed(0)
    return torch.nn.Sequential(
        torch.nn.Conv2d(1, 32, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(32, 32, 3, stride=2, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(32, 32, 3, stride=2, padding=1), torch.nn.ReLU()).eval()


def _embedder(net, local=True):
    def embed(images, boxes):
        x = torch.tensor(np.stack(images))[:, None]
        x = (x - x.mean(dim=(2, 3), keepdim=True)) / x.std(dim=(2, 3), keepdim=True)
        with torch.no_grad():
            f = net(x).numpy()
        glob = f.mean((2, 3))
        roi = []
        for (x0, y0, w, h), fm in zip(np.asarray(boxes), f):
            xs = slice(int(np.floor(x0 / CELL)), int(np.ceil((x0 + w) / CELL)))
            ys = slice(int(np.floor(y0 / CELL)), int(np.ceil((y0 + h) / CELL)))
            roi.append(fm[:, ys, xs].mean((1, 2)))
        # local=False: a "fine-tuned" checkpoint whose ROI vector lost locality (= global)
        return {"global": glob, "roi": np.stack(roi) if local else glob.copy()}

    return embed


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    from radlens.io.images import load_case
    from radlens.io.manifest import read_manifest
    from radlens.synth.cohort import make_cohort

    torch.set_num_threads(1)
    mp = make_cohort(tmp_path_factory.mktemp("phantoms"), n_cases=48, image_size=64, seed=3,
                     lesion_free_fraction=0.5, show_progress=False)
    images = [load_case(r).array for r in read_manifest(mp).rows()]
    net = _cnn()
    cfg = {"seed": 0,
           "panel": {"footprints": [0.08, 0.3],
                     "perturbations": {"nodule": {"strengths": [3.0]}, "texture": {"strengths": [3.0]}}},
           "probe": {"n_boot": 300},
           "jitter": {"levels": [0.0, 1.0], "footprints": "smallest"}}
    return probe_arrays(images, {"pre": _embedder(net), "post": _embedder(net, local=False)},
                        config=cfg)


def _get(t, **kw):
    m = np.ones(len(t), bool)
    for k, v in kw.items():
        m &= (t[k] == v).to_numpy()
    assert m.sum() == 1, kw
    return t[m].iloc[0]


def test_roi_pooling_separates_small_perturbations_that_global_pooling_misses(result):
    t = result.table
    for kind in ("nodule", "texture"):
        g = _get(t, analysis="panel", checkpoint="pre", pooling="global", perturbation=kind, footprint_frac=0.08)
        r = _get(t, analysis="panel", checkpoint="pre", pooling="roi", perturbation=kind, footprint_frac=0.08)
        d = _get(t, analysis="panel_pooling", checkpoint="pre", pooling="roi", pooling_ref="global",
                 perturbation=kind, footprint_frac=0.08)
        print(f"{kind} d=0.08: global {g.estimate:.3f} [{g.ci_low:.3f}, {g.ci_high:.3f}], "
              f"roi {r.estimate:.3f} [{r.ci_low:.3f}, {r.ci_high:.3f}], diff p={d.p:.2g} q={d.q:.2g}")
        assert r.estimate > 0.8
        assert g.estimate < 0.8
        assert d.estimate == pytest.approx(r.estimate - g.estimate, abs=1e-12)
        assert d.estimate > 0.15 and d.ci_low > 0 and d.q < 0.05
        # large footprints: global pooling sees them too (dilution, not blindness)
        gl = _get(t, analysis="panel", checkpoint="pre", pooling="global", perturbation=kind, footprint_frac=0.3)
        assert gl.estimate > 0.8
        assert gl.estimate > g.estimate + 0.1


def test_pre_post_and_jitter(result):
    t = result.table
    # post's "roi" is the global vector: the roi AUC drops for small footprints, global unchanged
    for kind in ("nodule", "texture"):
        pp = _get(t, analysis="panel_pre_post", pooling="roi", perturbation=kind, footprint_frac=0.08)
        assert pp.checkpoint == "post-pre" and pp.estimate < -0.1 and pp.ci_high < 0 and pp.q < 0.05
        same = _get(t, analysis="panel_pre_post", pooling="global", perturbation=kind, footprint_frac=0.08)
        assert same.estimate == 0 and same.p == 1.0
        j0 = _get(t, analysis="jitter", checkpoint="pre", perturbation=kind, jitter=0.0)
        j1 = _get(t, analysis="jitter", checkpoint="pre", perturbation=kind, jitter=1.0)
        assert j0.mean_iou == pytest.approx(1.0) and j1.mean_iou < 0.4
        assert j1.estimate < j0.estimate
    # every row well formed, BH q >= p
    ok = t["p"].notna()
    assert (t.loc[ok, "q"] >= t.loc[ok, "p"] - 1e-12).all()
    assert t["estimate"].notna().all()
    s = result.scores
    assert set(s["analysis"]) == {"panel", "jitter"}
    # paired design: each source image contributes one clean and one perturbed sample per cell
    one = s[(s.analysis == "panel") & (s.checkpoint == "pre") & (s.pooling == "roi")
            & (s.perturbation == "nodule") & (s.footprint_frac == 0.08)]
    assert len(one) == 96 and (one.groupby("group")["label"].agg(sorted).map(tuple) == (0, 1)).all()


def test_panel_on_3d_volumes_passes_roi_masks():
    """3-D volumes: footprints are balls, the ROI goes to the embedder as a boolean mask."""
    rng = np.random.default_rng(0)
    vols = [rng.normal(size=(16, 24, 24)).astype(np.float32) for _ in range(16)]
    seen = []

    def embed(images, rois):
        assert isinstance(rois, list) and rois[0].dtype == bool and rois[0].shape == images[0].shape
        seen.append(len(images))
        g = np.array([[im.mean(), im.std()] for im in images])
        r = np.array([[im[m].mean(), im[m].max()] for im, m in zip(images, rois)])
        return {"global": g, "roi": r}

    res = probe_arrays(vols, {"pre": embed}, config={
        "panel": {"footprints": [0.12], "margin": 0.02, "perturbations": {"nodule": {"strengths": [4.0]}}},
        "probe": {"n_boot": 100, "n_splits": 4}, "jitter": {"levels": [0.0, 0.5]}})
    t = res.table
    roi = t[(t.analysis == "panel") & (t.pooling == "roi")].iloc[0]
    glob = t[(t.analysis == "panel") & (t.pooling == "global")].iloc[0]
    assert roi.estimate > 0.9 and glob.estimate < 0.75
    assert "jitter" not in set(t.analysis)  # boxes are 2-D: no jitter curve for volumes
