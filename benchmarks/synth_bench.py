"""Phantom cohorts: generation speed, and how learnable the planted tasks are for a small CNN.

    python benchmarks/synth_bench.py                 # speed (ratio to bare NIfTI writing) + learnability
    python benchmarks/synth_bench.py --skip-learn    # speed only
    python benchmarks/synth_bench.py --skip-speed --configs default,easy_shape --seeds 5

Speed: ``make_cohort(200 cases, 64 px)`` against the same number of bare ``SimpleITK.WriteImage``
calls of random arrays (image + mask), in the same process: the ratio is the generation overhead.

Learnability: for each task, a small CNN (4 conv layers, global max pool) is trained from scratch
on whole images of the lesion cases of the training split, for a fixed number of epochs, and scored
by held-out AUC. ``--arch small``: 4 conv layers (receptive field ~19 px); ``deep``: 7 conv
layers with batch norm (~60 px), (mean and sd over seeds; also for small (radius <= 4 px) and larger lesions).
This is a check that the planted signals are visible to a network trained briefly, not a
benchmark of the demo's encoders.
"""
from __future__ import annotations

import argparse
import tempfile
import time

import numpy as np

CONFIGS = {
    "default": None,
    "hard_shape": {"elongation": ((1.0, 1.25), (2.5, 4.0))},
    "large": {"radius": (4.0, 12.0)},
}
TASKS = ("task_texture", "task_intensity", "task_shape")


def bench_speed(n=200, size=64, repeats=3):
    import SimpleITK as sitk

    from radlens.synth import make_cohort

    t_gen, t_ref = [], []
    rng = np.random.default_rng(0)
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            make_cohort(d, n_cases=n, image_size=size, seed=0, show_progress=False)
            t_gen.append(time.perf_counter() - t0)
        with tempfile.TemporaryDirectory() as d:
            t0 = time.perf_counter()
            for i in range(n):
                sitk.WriteImage(sitk.GetImageFromArray(rng.random((size, size), dtype=np.float32)), f"{d}/i{i}.nii.gz", True)
                sitk.WriteImage(sitk.GetImageFromArray((rng.random((size, size)) > 0.9).astype(np.uint8)),
                                f"{d}/m{i}.nii.gz", True)
            t_ref.append(time.perf_counter() - t0)
    g, r = min(t_gen), min(t_ref)
    print(f"make_cohort {n} x {size}px: {g:.2f} s; bare NIfTI writing of the same files: {r:.2f} s; "
          f"ratio {g / r:.1f}x")


def _auc(s, y):
    pos, neg = s[y == 1], s[y == 0]
    if len(pos) == 0 or len(neg) == 0:
        return float("nan")
    return float(((pos[:, None] > neg[None, :]).sum() + 0.5 * (pos[:, None] == neg[None, :]).sum())
                 / (len(pos) * len(neg)))


def _cnn(torch, arch="small"):
    nn = torch.nn
    if arch == "deep":  # receptive field covers the largest lesions (~60 px)
        layers, c_in = [], 1
        for c, stride in ((16, 1), (32, 2), (32, 1), (64, 2), (64, 1), (64, 2), (64, 1)):
            layers += [nn.Conv2d(c_in, c, 3, padding=1, stride=stride), nn.BatchNorm2d(c), nn.ReLU()]
            c_in = c
        return nn.Sequential(*layers, nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(c_in, 1))
    return nn.Sequential(
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.Conv2d(16, 32, 3, padding=1, stride=2), nn.ReLU(),
        nn.Conv2d(32, 32, 3, padding=1, stride=2), nn.ReLU(), nn.Conv2d(32, 32, 3, padding=1), nn.ReLU(),
        nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(32, 1))


def bench_learn(configs, n=600, size=64, epochs=25, seeds=3, lr=3e-3, arch="small"):
    import torch

    from radlens.synth import render_cohort

    dev = "cuda" if torch.cuda.is_available() else "cpu"
    if dev == "cpu":
        torch.set_num_threads(1)
    print(f"learnability ({arch} CNN): {n} cases of {size}px, lesion cases only, {epochs} epochs, {seeds} seeds, device {dev}")
    for name in configs:
        imgs, _, tab = render_cohort(n, size, seed=0, ranges=CONFIGS[name])
        les = (tab.has_lesion == 1).to_numpy()
        X = imgs[les]
        X = torch.tensor(np.array((X - X.mean()) / X.std()))[:, None].to(dev)
        t = tab[les]
        tr = (t.split == "train").to_numpy()
        small = (t.lesion_radius <= 4).to_numpy()[~tr]
        for task in TASKS:
            y = torch.tensor(t[task].to_numpy(np.float32)).to(dev)
            res = []
            t0 = time.perf_counter()
            for s in range(seeds):
                torch.manual_seed(s)
                net = _cnn(torch, arch).to(dev)
                opt = torch.optim.Adam(net.parameters(), lr)
                Xtr, ytr = X[tr], y[tr]
                for _ in range(epochs):
                    perm = torch.randperm(len(Xtr), device=dev)
                    for i in range(0, len(Xtr), 32):
                        b = perm[i:i + 32]
                        opt.zero_grad()
                        loss = torch.nn.functional.binary_cross_entropy_with_logits(net(Xtr[b]).squeeze(1), ytr[b])
                        loss.backward()
                        opt.step()
                net.eval()
                with torch.no_grad():
                    sc = net(X[~tr]).squeeze(1).cpu().numpy()
                yt = y[~tr].cpu().numpy()
                res.append((_auc(sc, yt), _auc(sc[small], yt[small]), _auc(sc[~small], yt[~small])))
            r = np.array(res)
            print(f"  {name:17s} {task:15s} AUC {r[:, 0].mean():.3f} +- {r[:, 0].std():.3f}   "
                  f"small {r[:, 1].mean():.3f}  larger {r[:, 2].mean():.3f}   "
                  f"({(time.perf_counter() - t0) / seeds:.1f} s per run)")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--skip-speed", action="store_true")
    ap.add_argument("--skip-learn", action="store_true")
    ap.add_argument("--configs", default="default", help=f"comma-separated, from {sorted(CONFIGS)}")
    ap.add_argument("--n", type=int, default=600)
    ap.add_argument("--epochs", type=int, default=25)
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--arch", choices=("small", "deep"), default="deep")
    a = ap.parse_args()
    if not a.skip_speed:
        bench_speed()
    if not a.skip_learn:
        bench_learn(a.configs.split(","), n=a.n, epochs=a.epochs, seeds=a.seeds, arch=a.arch)


if __name__ == "__main__":
    main()
