"""One demo CNN alone (ResNet or DenseNet): training recipe -> validation AUCs and CAM localisation per task.

    python benchmarks/cnn_cam.py --arch densenet                              # demo cohort, seed 0
    python benchmarks/cnn_cam.py --arch cnn --seed 2 --png overlays.png --maps maps.npz
    python benchmarks/cnn_cam.py --arch densenet --set "densenet_blocks=(3,)" --set "flip_consistent_archs=()"
    python benchmarks/cnn_cam.py --arch densenet --target features.denseblock1

Draws the demo's cohort (``radlens.demo.draw_cohort``, seed 0; ``--quick``: the quick demo's 160
images) once into ``--work``, trains ``--arch`` exactly as ``radlens demo`` does (``_train_arch`` with
the architecture's index in the demo, so the same seeds; ``radlens.demo.train_config(size, --seed)``
apart from ``--set``), then for each task explains the positive class on the lesion cases of that
class that both checkpoints (tl and ft) call positive, as ``radlens cam-drift --samples tp`` does, at
the demo's CAM target layer (``radlens.demo.CAM_TARGET_LAYERS``, else the classifier spec's) or
``--target``, and prints per task and checkpoint the mean pointing game and pixel AUC
(``radlens.localization.scores.score_map``) of Grad-CAM, LayerCAM and Grad-CAM++, and the
model-randomisation check's median Spearman (``radlens.cam.drift.drift_metrics``; the first
``sanity_cases`` kept cases, 16 in the default demo; passes below 0.5). ``--png`` renders fine-tuned
Grad-CAM overlays (ROI outline, map maximum); ``--maps`` saves the fine-tuned Grad-CAM maps, images and
masks of every task (npz) for offline inspection. ``--out`` appends one JSON line.

A recipe experiment harness, not a speed benchmark: see docs/cam.md ("Which CNN layer") for what it
measured.
"""
from __future__ import annotations

import argparse
import ast
import dataclasses
import hashlib
import json
import time
from pathlib import Path

from _demo_cohort import cohort  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

import numpy as np

ARCH_INDEX = {"cnn": 0, "densenet": 1}  # the demo's index of each CNN among its architectures (seeds: seed + 1000 * index)
METHODS = ("gradcam", "layercam", "gradcam++")


def _cases(manifest: Path, task: str, clf):
    import pandas as pd
    import torch

    from radlens.io.images import load_case

    man = pd.read_csv(manifest)
    sub = man[(man.has_lesion == 1) & (man[task] == 1)]
    xs, gts = [], []
    for r in sub.to_dict("records"):
        r["image"] = str(manifest.parent / r["image"])
        r["mask"] = str(manifest.parent / r["mask"])
        xi, cov = clf.preprocess(load_case(r))
        xs.append(torch.as_tensor(xi, dtype=torch.float32))
        gts.append(np.asarray(cov).reshape(xi.shape[1:]) >= 0.5)
    return sub.case_id.to_numpy(), torch.stack(xs), gts


def cam_scores(manifest: Path, specs: dict, task: str, target: str | None, sanity_cases: int = 16):
    """Per checkpoint (tl, ft) and method: mean pointing game, pixel AUC, mass inside and the
    randomisation check's median Spearman, plus the fine-tuned Grad-CAM maps and per-case scores."""
    import torch

    from radlens.cam.drift import drift_metrics
    from radlens.cam.methods import attribute_methods
    from radlens.cam.model import load_classifier
    from radlens.localization.scores import score_map

    clfs = {k: load_classifier(specs[task][k], target_layer=target) for k in ("tl", "ft")}
    ids, x, gts = _cases(manifest, task, clfs["ft"])
    out, maps = {}, {}
    for k, clf in clfs.items():
        with torch.no_grad():
            out[k] = clf.module(x).argmax(1).numpy()
    keep = np.flatnonzero((out["tl"] == 1) & (out["ft"] == 1))
    res: dict = {"n": int(keep.size), "grid": None}
    for k, clf in clfs.items():
        r = attribute_methods(list(METHODS), clf.module, clf.target_layer, x[keep], [1] * keep.size,
                              token_layout=clf.token_layout, batch_size=64, use_input=clf.use_input)
        res["grid"] = list(r["gradcam"].raw.shape[1:])
        n = min(sanity_cases, keep.size)
        rc = clf.randomized(seed=0)
        rr = attribute_methods(list(METHODS), rc.module, rc.target_layer, x[keep[:n]], [1] * n,
                               token_layout=rc.token_layout, batch_size=64, use_input=rc.use_input)
        for m in METHODS:
            s = [score_map(r[m].upsampled[j], gts[i], binarize=("topk",)) for j, i in enumerate(keep)]
            d = drift_metrics(r[m].upsampled[:n], rr[m].upsampled, top_k=(10.0,))
            res[f"{k}/{m}"] = {"pg": float(np.mean([v["pointing_game"] for v in s])),
                               "auc": float(np.nanmean([v["auc"] for v in s])),
                               "mass": float(np.nanmean([v["mass_inside"] for v in s])),
                               "sanity_rho": float(np.nanmedian(d["spearman"].to_numpy(float)))}
        if k == "ft":
            s = [score_map(r["gradcam"].upsampled[j], gts[i], binarize=("topk",)) for j, i in enumerate(keep)]
            maps = {"x": x[keep].numpy()[:, 0], "gt": [gts[i] for i in keep], "ids": ids[keep],
                    "gradcam": np.asarray(r["gradcam"].upsampled), "pg": np.array([v["pointing_game"] for v in s]),
                    "auc": np.array([v["auc"] for v in s])}
    return res, maps


def overlays(maps_by_task: dict, path: str, title: str, n: int = 6, misses: bool = False) -> None:
    """Fine-tuned Grad-CAM overlays, ``n`` cases per task (``misses``: the pointing-game misses first)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from radlens.localization.scores import score_map

    tasks = list(maps_by_task)
    fig, ax = plt.subplots(len(tasks), n, figsize=(1.9 * n, 2.1 * len(tasks)), squeeze=False)
    for r, t in enumerate(tasks):
        mp = maps_by_task[t]
        order = np.argsort(mp["pg"], kind="stable") if misses else np.arange(len(mp["ids"]))
        for c in range(n):
            a = ax[r, c]
            a.set_xticks([]), a.set_yticks([])
            if c >= len(mp["ids"]):
                continue
            i = order[c]
            m, gt = mp["gradcam"][i], mp["gt"][i]
            a.imshow(mp["x"][i], cmap="gray")
            a.imshow(m / max(m.max(), 1e-9), cmap="jet", alpha=0.45, vmin=0, vmax=1)
            a.contour(gt, [0.5], colors="white", linewidths=0.8)
            yy, xx = np.unravel_index(np.argmax(m), m.shape)
            a.plot(xx, yy, "w+", ms=9, mew=1.8)
            s = score_map(m, gt, binarize=("topk",))
            a.set_title(f"{t.replace('task_', '')} {mp['ids'][i]}\npg {s['pointing_game']:.0f} AUC {s['auc']:.2f}",
                        fontsize=7)
    fig.suptitle(f"{title}: fine-tuned Grad-CAM (jet, max-normalised), ROI outline (white), map maximum (+)",
                 fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None) -> None:
    from radlens.demo import CAM_TARGET_LAYERS, FULL, QUICK, _code_hash, train_config
    from radlens.synth import train as T

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--arch", choices=sorted(ARCH_INDEX), default="densenet")
    p.add_argument("--work", default="cnn-cam-work", help="cohort and checkpoint folder")
    p.add_argument("--quick", action="store_true", help="the quick demo's cohort and recipe")
    p.add_argument("--seed", type=int, default=0, help="training seed (the cohort is always seed 0's)")
    p.add_argument("--set", action="append", default=[], metavar="FIELD=VALUE",
                   help="TrainConfig field (Python literal), e.g. \"densenet_blocks=(6,)\"; repeatable")
    p.add_argument("--tag", default="", help="checkpoint folder suffix (a code change that --set cannot name)")
    p.add_argument("--target", default=None, help="CAM target layer (default: the demo's for --arch)")
    p.add_argument("--png", default=None, help="render fine-tuned Grad-CAM overlays to this PNG")
    p.add_argument("--misses", action="store_true", help="--png shows each task's pointing-game misses first")
    p.add_argument("--maps", default=None, help="save fine-tuned Grad-CAM maps, images, masks, scores (npz)")
    p.add_argument("--out", default=None, help="append the results as one JSON line to this file")
    a = p.parse_args(argv)
    size = QUICK if a.quick else FULL
    over = {k: ast.literal_eval(v) for k, v in (s.split("=", 1) for s in a.set)}
    target = a.target or CAM_TARGET_LAYERS.get(a.arch)
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    manifest = cohort(work, a.quick)
    cfg = dataclasses.replace(train_config(size, a.seed), archs=(a.arch,), **over)
    data = T.load_cohort_arrays(manifest, cfg.val_fraction, cfg.seed)
    tag = "_".join(f"{k}-{v}" for k, v in sorted(over.items())).replace(" ", "").replace("'", "") or "default"
    t0 = time.perf_counter()
    # the folder names the settings and a hash of the full config and the training code, so a changed
    # default or recipe never reuses stale checkpoints
    key = hashlib.sha256((json.dumps(dataclasses.asdict(cfg), sort_keys=True, default=str) + _code_hash(
        "radlens.synth.train", "radlens.synth.train_config", "radlens.synth.models",
        "radlens.synth.steps")).encode()).hexdigest()[:8]
    mdir = work / f"{a.arch}_{'quick_' if a.quick else ''}{tag}{a.tag}_s{a.seed}_{key}"
    if (mdir / "trained.json").exists():  # same settings trained before: explain those checkpoints again
        am, specs, train_s = json.loads((mdir / "trained.json").read_text())
    else:
        _, am, specs, _ = T._train_arch(ARCH_INDEX[a.arch], a.arch, data, mdir, cfg)
        train_s = time.perf_counter() - t0
        (mdir / "trained.json").write_text(json.dumps([am, specs, train_s]))
    result = {"arch": a.arch, "set": over, "seed": a.seed, "quick": a.quick, "target": target,
              "train_seconds": round(train_s, 1), "tasks": {}}
    print(f"{a.arch} {tag} seed {a.seed}: trained in {train_s:.0f} s; target {target or 'spec default'}", flush=True)
    maps_by_task = {}
    for task in cfg.tasks:
        auc = am["tasks"][task]["val_auc"]
        res, maps_by_task[task] = cam_scores(manifest, specs, task, target, size.sanity_cases)
        result["tasks"][task] = {"val_auc": auc, **res}
        cells = "  ".join(f"{k}: {v['pg']:.2f}/{v['auc']:.2f} rho {v['sanity_rho']:+.2f}"
                          for k, v in res.items() if isinstance(v, dict))
        print(f"  {task:15s} val AUC tl {auc['tl']:.3f} ft {auc['ft']:.3f}; grid {res['grid']}, n {res['n']}; "
              f"pointing/pixel AUC  {cells}", flush=True)
    if a.png:
        overlays(maps_by_task, a.png, f"{a.arch} seed {a.seed} {tag}", misses=a.misses)
    if a.maps:
        np.savez_compressed(a.maps, **{f"{t}/{k}": np.asarray(v) for t, mp in maps_by_task.items()
                                       for k, v in mp.items()})
    if a.out:
        with open(a.out, "a", encoding="utf-8") as f:
            f.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
