"""The demo ViT's training recipe, alone: pretext -> per task transfer (tl) and fine-tuned (ft) AUCs.

    python benchmarks/vit_recipe.py                                   # demo cohort (400 images), seed 0
    python benchmarks/vit_recipe.py --seeds 0,1,2 --set vit_lr_finetune=1e-4
    python benchmarks/vit_recipe.py --quick --set "rot90_finetune_archs=('cnn', 'densenet', 'vit')"

Draws the demo's cohort (``radlens.demo`` ranges, placement and lesion-free share; ``--quick``: the
quick demo's 160 images and 12 fine-tuning epochs) once into ``--work``, then per seed trains the
ViT exactly as ``radlens demo`` does (same seeds, same ``TrainConfig`` apart from ``--set``) and
prints, per task, the validation AUC of the transfer head and of the fine-tuned checkpoint, the
fine-tuned checkpoint's AUC on its own training images (under-fitting or over-fitting?) and the
fine-tuning loss per epoch. With all three tasks (the default) the numbers are the demo's own
(``models/training.json``); a subset of ``--tasks`` leaves the random stream in another state, so
its numbers differ from the demo's by seed noise. The pretext checkpoint is cached per pretext
setting, so fine-tuning variants cost ~7 s per task on one core. ``--out`` appends one JSON line.

A recipe experiment harness, not a speed benchmark: see docs/synth.md for what it measured. For the
checkpoints' CAM localisation and sanity as well, use ``vit_cam.py`` (trains through the demo's own
``_train_arch``, no pretext cache).
"""
from __future__ import annotations

import copy
import hashlib
import json
import time
from pathlib import Path

from _demo_cohort import recipe_parser, vit_setup  # noqa: E402  (benchmarks/ is on sys.path when run as a script)

import numpy as np

#: the demo's index of the ViT among its architectures (``TrainConfig.archs``): seeds are ``seed + 1000 * index``
VIT_INDEX = 2
PRETEXT_KEYS = ("vit_patch", "vit_hidden", "vit_layers", "vit_heads", "vit_pretext_epochs", "vit_batch_size",
                "vit_lr_pretext", "seed")


def run_seed(manifest: Path, work: Path, cfg, tasks: list[str]) -> dict:
    import torch

    from radlens.synth import train as T
    from radlens.synth.models import build_vit, make_classifier, vit_config

    data = T.load_cohort_arrays(manifest, cfg.val_fraction, cfg.seed)
    x, _ = T.model_inputs(data.images, intensity=T.ARCH_INTENSITY["vit"])
    key = json.dumps([str(manifest)] + [getattr(cfg, k) for k in PRETEXT_KEYS])
    cache = work / f"pretext_{hashlib.sha1(key.encode()).hexdigest()[:12]}.pt"
    out: dict = {"seed": cfg.seed}
    with T.torch_determinism(cfg.seed + 1000 * VIT_INDEX, cfg.threads):
        gen = torch.Generator().manual_seed(cfg.seed + 1000 * VIT_INDEX)
        vcfg = vit_config(image_size=data.images.shape[1], patch_size=cfg.vit_patch, hidden_size=cfg.vit_hidden,
                          num_layers=cfg.vit_layers, num_heads=cfg.vit_heads)
        pre = make_classifier(build_vit(vcfg), "vit", sharpness=cfg.vit_sharpness)
        t0 = time.perf_counter()
        if cache.exists():  # the pretext's weights and the generator state it leaves behind
            state = torch.load(cache)
            pre.load_state_dict(state["model"])
            gen.set_state(state["gen"])
        else:
            rows: list = []
            T.pretrain(pre, x, cfg, gen, rows)
            out["pretext_loss"] = [round(r["loss"], 3) for r in rows]
            torch.save({"model": pre.state_dict(), "gen": gen.get_state()}, cache)
        out["pretext_seconds"] = round(time.perf_counter() - t0, 1)
        pre.eval()
        for task in tasks:
            yf = data.table[task].to_numpy(dtype=float)
            lab = np.isfinite(yf)
            y = np.where(lab, yf, 0).astype(int)
            tr, va = data.train_idx[lab[data.train_idx]], data.val_idx[lab[data.val_idx]]
            tl = copy.deepcopy(pre)
            tl.pooling = cfg.vit_task_pooling(task)  # the demo's head per task (TrainConfig.vit_pooling)
            T.fit_linear_head(tl, x, y, tr, cfg.seed)
            ft = copy.deepcopy(tl)
            rows = []
            t1 = time.perf_counter()
            T.finetune(ft, x, y, tr, cfg, gen, task, rows)
            score = lambda m, idx: np.diff(T._logits(m, x[idx]), axis=1)[:, 0]  # noqa: E731
            out[task] = {"tl": T._auc(y[va], score(tl, va)), "ft": T._auc(y[va], score(ft, va)),
                         "ft_train": T._auc(y[tr], score(ft, tr)), "loss": [round(r["loss"], 3) for r in rows],
                         "seconds": round(time.perf_counter() - t1, 1)}
    return out


def main(argv=None) -> None:
    from radlens.synth.train import TASKS, TrainConfig

    p = recipe_parser(__doc__.split("\n")[0], "vit-recipe-work")
    p.add_argument("--tasks", default=",".join(TASKS))
    p.add_argument("--out", default=None, help="append the results as one JSON line to this file")
    a = p.parse_args(argv)
    size, over, work, manifest = vit_setup(a)
    tasks = a.tasks.split(",")
    results = []
    for seed in (int(s) for s in a.seeds.split(",")):
        cfg = TrainConfig(archs=("vit",), pretext_epochs=size.pretext_epochs, finetune_epochs=size.finetune_epochs,
                          seed=seed, **over)
        r = run_seed(manifest, work, cfg, tasks)
        results.append(r)
        for t in tasks:
            m = r[t]
            print(f"seed {seed} {t:15s} tl {m['tl']:.3f}  ft {m['ft']:.3f}  ft train {m['ft_train']:.3f}  "
                  f"loss {m['loss'][0]:.3f} -> {m['loss'][-1]:.3f}  ({m['seconds']:.0f} s)", flush=True)
    for t in tasks:
        ft = [r[t]["ft"] for r in results]
        tl = " ".join(f"{r[t]['tl']:.2f}" for r in results)
        print(f"{t:15s} ft min/median/max {min(ft):.3f} / {float(np.median(ft)):.3f} / {max(ft):.3f}; tl {tl}")
    if a.out:
        with open(a.out, "a", encoding="utf-8") as f:
            f.write(json.dumps({"set": over, "quick": a.quick, "results": results}) + "\n")


if __name__ == "__main__":
    main()
