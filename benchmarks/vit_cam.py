"""The demo ViT alone: training recipe -> validation AUCs, CAM localisation and sanity per task and seed.

    python benchmarks/vit_cam.py                                            # demo cohort, seed 0
    python benchmarks/vit_cam.py --seeds 0,1,2,3 --set vit_patch=4 --set vit_hidden=32
    python benchmarks/vit_cam.py --set vit_patch=4 --png vit_p4.png --out vit_cam.jsonl
    python benchmarks/vit_cam.py --set vit_intensity=window --set vit_layers=6    # fixed intensity window
    python benchmarks/vit_cam.py --set vit_pooling=mean      # the mean head on every task (before 2026-11-30)
    python benchmarks/vit_cam.py --set "tasks=('task_shape',)" --set vit_head_init=zero   # one task (screen)

The ViT counterpart of ``cnn_cam.py`` (whose CAM scoring it reuses) and the CAM extension of
``vit_recipe.py``: draws the demo's cohort once into ``--work``, trains the ViT exactly as ``radlens
demo`` does (``_train_arch`` with the ViT's architecture index, so the same seeds and the same
``TrainConfig`` apart from ``--set``; the checkpoints are save_pretrained ``Dinov2Model`` folders
loaded back by radlens' own classifier loader), then per task explains the positive class on the
lesion cases of that class that both checkpoints (tl and ft) call positive, as ``radlens cam-drift
--samples tp`` does, at the classifier spec's target layer (the final ``layernorm``) or ``--target``,
and prints per task and checkpoint Grad-CAM / LayerCAM / Grad-CAM++ pointing game and pixel AUC
(``radlens.localization.scores.score_map``) and the model-randomisation check's median Spearman
(first 16 kept cases; passes below 0.5). It also prints the ViT's training time: wall and CPU
seconds of ``_train_arch`` (one torch thread, so CPU seconds are the machine-load-robust measure),
and whether the recipe meets issue 13's targets (``ok``: fine-tuned AUC >= 0.85 on every task,
transfer lower on one, fine-tuned Grad-CAM pointing >= 0.6 and pixel AUC >= 0.75 on every task,
every Grad-CAM sanity row < 0.5), where the fine-tuned Grad-CAM maxima fall (inside the ROI, within
4 px of it, farther), each task's last fine-tuning epoch's training loss and how much the fine-tuned
token scores off the lesion follow vertical edges (``background_edge_rho``). ``--png`` renders fine-tuned Grad-CAM overlays. ``--out`` appends
one JSON line per seed. The pretext training is cached per seed and pretext setting in
``--work/pretext_cache`` (random states included, so the checkpoints are the same as without the cache;
the training CPU seconds then leave the pretext out); ``--no-pretext-cache`` always runs it.

    python benchmarks/vit_cam.py --seeds 0,1 --set vit_layer_decay=0.65 --set "vit_pooling='mean'"   # fine-tuning recipes

A recipe experiment harness, not a speed benchmark: see docs/synth.md and docs/cam.md for what it
measured.
"""
from __future__ import annotations

import contextlib
import json
import time
from pathlib import Path

from _demo_cohort import recipe_parser, vit_setup  # noqa: E402  (benchmarks/ is on sys.path when run as a script)
from cnn_cam import _cases, cam_scores, overlays  # noqa: E402

import numpy as np

VIT_INDEX = 2  # the demo's index of the ViT among its architectures (seeds: seed + 1000 * index)


def background_edge_rho(manifest: Path, arch_dir: Path, task: str) -> float:
    """Spearman correlation, over the patch tokens with no lesion pixel (lesion cases of the positive class),
    between the fine-tuned checkpoint's positive-class token score ``w_1 . t_i`` (the written head's raw-unit
    class-1 row on the final layer norm's tokens: Grad-CAM's map before its ReLU, times N) and the token's
    edge orientation, its mean |d/dx| minus its mean |d/dy| (:func:`radlens.synth.steps.local_statistics`).
    Near +1: the model reads vertical edges anywhere (the body's outline included) as positive evidence."""
    import torch
    from safetensors.torch import load_file
    from scipy.stats import spearmanr
    from transformers import Dinov2Model

    from radlens.cam.model import load_classifier
    from radlens.synth.steps import local_statistics

    _, x, gts = _cases(manifest, task, load_classifier(arch_dir / f"classifier_ft_{task}.yaml"))
    bb = Dinov2Model.from_pretrained(str(arch_dir / f"ft_{task}")).eval()
    w1 = load_file(str(arch_dir / f"head_ft_{task}.safetensors"))["weight"][1]
    with torch.no_grad():
        tok = bb(pixel_values=x).last_hidden_state[:, 1:]
    side = int(round(tok.shape[1] ** 0.5))
    score = (tok @ w1).reshape(len(x), side, side).numpy()
    st = local_statistics(x, (side, side)).numpy()
    k = x.shape[2] // side
    lesion = np.stack([g.reshape(side, k, side, k).any(axis=(1, 3)) for g in gts])
    return float(spearmanr(score[~lesion], (st[:, 2] - st[:, 3])[~lesion])[0])


def peak_places(maps: dict, near_px: float = 4.0) -> dict:
    """Where the fine-tuned Grad-CAM maxima lie relative to the ROI: shares ``inside`` the mask, ``near`` it
    (within ``near_px`` px: beside a thin band) and ``far`` from it (elsewhere in the image), and the
    median distance in px of the far ones (nan when none)."""
    from scipy.ndimage import distance_transform_edt

    d = []
    for m, gt in zip(maps["gradcam"], maps["gt"]):
        yy, xx = np.unravel_index(np.argmax(m), m.shape)
        d.append(float(distance_transform_edt(~gt)[yy, xx]))
    d = np.asarray(d)
    far = d[d > near_px]
    return {"inside": float(np.mean(d == 0)), "near": float(np.mean((d > 0) & (d <= near_px))),
            "far": float(np.mean(d > near_px)), "far_median_px": float(np.median(far)) if far.size else float("nan")}


#: TrainConfig fields the ViT's pretext training depends on (besides the seed and the images)
PRETEXT_FIELDS = ("vit_hidden", "vit_layers", "vit_heads", "vit_patch", "vit_intensity", "vit_pretext_epochs",
                  "vit_batch_size", "vit_lr_pretext")


@contextlib.contextmanager
def cached_pretext(cache: Path, cfg, n_images: int):
    """Within the block, ``radlens.synth.train.pretrain`` of the ViT is memoised on disk under ``cache``, keyed
    by the seed, the number of images and :data:`PRETEXT_FIELDS`: a hit loads the pretrained backbone, the
    read-out and the torch / generator random states the real call leaves behind, so the fine-tuning that
    follows is the same as after a real pretext run (recipes that change only fine-tuning share it)."""
    import torch

    from radlens.synth import train as T

    real = T.pretrain
    key = "_".join([f"s{cfg.seed}", f"n{n_images}"] + [f"{k}-{getattr(cfg, k)}" for k in PRETEXT_FIELDS])
    path = cache / f"{key}.pt"

    def pretrain(model, x, cfg_, gen, log_rows):
        if path.exists():
            c = torch.load(path, weights_only=False)
            model.backbone.load_state_dict(c["backbone"])
            torch.set_rng_state(c["rng"])
            gen.set_state(c["gen"])
            log_rows.extend(c["log_rows"])
            return c["pretext"]
        rows: list = []
        out = real(model, x, cfg_, gen, rows)
        log_rows.extend(rows)
        cache.mkdir(parents=True, exist_ok=True)
        torch.save({"backbone": model.backbone.state_dict(), "rng": torch.get_rng_state(), "gen": gen.get_state(),
                    "log_rows": rows, "pretext": out}, path)
        return out

    T.pretrain = pretrain
    try:
        yield
    finally:
        T.pretrain = real


def run_seed(manifest: Path, work: Path, size, over: dict, seed: int, target: str | None, png: str | None,
             cache: bool = True):
    from radlens.synth import train as T

    cfg = T.TrainConfig(pretext_epochs=size.pretext_epochs, finetune_epochs=size.finetune_epochs, seed=seed, **over)
    data = T.load_cohort_arrays(manifest, cfg.val_fraction, cfg.seed)
    tag = "_".join(f"{k}-{v}" for k, v in sorted(over.items())).replace(" ", "").replace("'", "") or "default"
    mdir = work / f"vit_{tag}_s{seed}"
    if (mdir / "trained.json").exists():  # same settings trained before: explain those checkpoints again
        am, specs, wall, cpu = json.loads((mdir / "trained.json").read_text())
    else:
        t0, c0 = time.perf_counter(), time.process_time()
        with cached_pretext(work / "pretext_cache", cfg, len(data.images)) if cache else contextlib.nullcontext():
            _, am, specs, rows = T._train_arch(VIT_INDEX, "vit", data, mdir, cfg)
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        for task in cfg.tasks:  # the last fine-tuning epoch's training loss
            am["tasks"][task]["ft_loss"] = [r["loss"] for r in rows if r["stage"] == "finetune" and r["task"] == task][-1]
        (mdir / "trained.json").write_text(json.dumps([am, specs, wall, cpu]))
    res = {"set": over, "seed": seed, "target": target, "pretext_cached": cache, "train_wall_s": round(wall, 1),
           "train_cpu_s": round(cpu, 1), "pretext_wall_s": am.get("pretext_seconds"), "tasks": {}}
    print(f"{tag} seed {seed}: ViT trained in {wall:.0f} s wall, {cpu:.0f} s CPU "
          f"(pretext {am.get('pretext_seconds')} s wall)", flush=True)
    maps_by_task = {}
    for task in cfg.tasks:
        auc = am["tasks"][task]["val_auc"]
        r, maps_by_task[task] = cam_scores(manifest, specs, task, target)
        res["tasks"][task] = {"val_auc": auc, "ft_loss": am["tasks"][task].get("ft_loss"), **r,
                              "ft_gradcam_peak": peak_places(maps_by_task[task]),
                              "ft_background_edge_rho": background_edge_rho(manifest, mdir / "vit", task)}
        g, pk = r["ft/gradcam"], res["tasks"][task]["ft_gradcam_peak"]
        cells = "  ".join(f"{k}: {v['pg']:.2f}/{v['auc']:.2f} rho {v['sanity_rho']:+.2f}"
                          for k, v in r.items() if isinstance(v, dict))
        print(f"  {task:15s} AUC tl {auc['tl']:.3f} ft {auc['ft']:.3f} (ft loss {res['tasks'][task]['ft_loss']}); grid {r['grid']}, n {r['n']}; "
              f"ft Grad-CAM {g['pg']:.2f}/{g['auc']:.2f} (peak inside / near / far {pk['inside']:.2f} / "
              f"{pk['near']:.2f} / {pk['far']:.2f}; background score ~ edge orientation rho "
              f"{res['tasks'][task]['ft_background_edge_rho']:+.2f}); {cells}", flush=True)
    t = res["tasks"]
    res["ok"] = bool(all(v["val_auc"]["ft"] >= 0.85 for v in t.values())
                     and any(v["val_auc"]["ft"] - v["val_auc"]["tl"] >= 0.02 for v in t.values())
                     and all(v["ft/gradcam"]["pg"] >= 0.6 and v["ft/gradcam"]["auc"] >= 0.75 for v in t.values())
                     and all(v[f"{k}/gradcam"]["sanity_rho"] < 0.5 for v in t.values() for k in ("tl", "ft")))
    if png:
        overlays(maps_by_task, png.replace(".png", f"_s{seed}.png"),
                 f"ViT ({tag})", n=8)
    return res


def main(argv=None) -> None:
    p = recipe_parser(__doc__.split("\n")[0], "vit-cam-work")
    p.add_argument("--target", default=None, help="CAM target layer (default: the classifier spec's)")
    p.add_argument("--png", default=None, help="render fine-tuned Grad-CAM overlays (one PNG per seed: _s<seed>)")
    p.add_argument("--out", default=None, help="append the results as one JSON line per seed to this file")
    p.add_argument("--no-pretext-cache", action="store_true",
                   help="always run the pretext training (default: reuse one cached in --work/pretext_cache; "
                        "the training CPU seconds then exclude it)")
    a = p.parse_args(argv)
    size, over, work, manifest = vit_setup(a)
    for seed in (int(s) for s in a.seeds.split(",")):
        res = run_seed(manifest, work, size, over, seed, a.target, a.png, not a.no_pretext_cache)
        res["quick"] = a.quick
        print(f"  seed {seed}: targets met: {res['ok']}", flush=True)
        if a.out:
            with open(a.out, "a", encoding="utf-8") as f:
                f.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
