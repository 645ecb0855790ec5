"""Batched CAMs vs the per-sample loop, same model, same images, same targets.

    python benchmarks/cam_bench.py [--batch 16] [--size 64] [--threads 1] [--repeats 7] [--nchw]

Models: the demo CNN (MONAI ResNet, basic blocks, widths 8-64, ``layer4`` target) and the demo
ViT (tiny DINOv2, 4 blocks, CLS head, last block input), both with a linear 2-class head.

Two comparisons are reported, each as best (min) and median wall time over ``--repeats``
interleaved runs (batched, loop, batched, loop, ...) and the speed-up ``loop / batched`` (min/min):

* **single method** — one method object (e.g. ``LayerCAM``) called once on the batch vs the *same
  object* called once per sample (batch of 1) in a Python loop. The two paths share the model and
  its settings, so this ratio is the batching gain alone;
* **multi-method** — ``MultiCAM`` computing all ``--methods`` from ONE forward and ONE backward
  pass per batch vs the per-sample loop that runs each method separately (one forward+backward per
  sample *and* method, what a user of a single-method CAM library does). This ratio includes the
  pass shared between methods, so it is larger than the single-method ratio by up to the number of
  methods; it is labelled as such.

Unless ``--nchw`` is given, the CAM objects store the model's convolution weights channels-last
(``channels_last=True``, values unchanged; opt-in in the library: ``make_method(...,
channels_last=True)``, ``MultiCAM``, ``cam_drift_study(channels_last=True)``); the loop then uses
the same channels-last model (a per-sample loop gains nothing from it, NCHW or not). The plain forward pass (no CAM code) is
timed for both layouts as the ceiling set by torch's CPU kernels. The maps of the batched and
per-sample paths are checked to agree (max abs difference). Target: >= 3x at batch 16 on CPU.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import time


def _models(size: int):
    import torch

    from radlens.synth.models import build_cnn, build_vit, cnn_args, make_classifier, vit_config

    torch.manual_seed(0)
    cnn = make_classifier(build_cnn(cnn_args(8)), "cnn").eval()
    vit = make_classifier(build_vit(vit_config(image_size=size, patch_size=8)), "vit").eval()
    from radlens.cam.vit import TokenLayout

    g = size // 8
    return {"cnn": (cnn, "backbone.layer4", None, False),
            "vit": (vit, f"backbone.encoder.layer.{len(vit.backbone.encoder.layer) - 1}", TokenLayout((g, g), 1), True)}


def _time_pair(fa, fb, repeats):
    """Wall times of ``fa`` and ``fb`` over ``repeats`` runs, interleaved (a, b, a, b, ...) so load
    from other processes hits both alike. Returns ((min_a, median_a), (min_b, median_b)); the
    minimum is the least noise-affected estimate."""
    fa(), fb()  # warm-up
    ta, tb = [], []
    for _ in range(repeats):
        t0 = time.perf_counter()
        fa()
        ta.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        fb()
        tb.append(time.perf_counter() - t0)
    return (min(ta), statistics.median(ta)), (min(tb), statistics.median(tb))


ROWS: list = []


def readme_result(res: dict) -> str:
    """The README table's cell for these numbers (``readme.result``, read by scripts/readme.py)."""
    def rng(rows):
        v = [r["speedup_min"] for r in rows]
        if not v:
            return "–"
        return f"{min(v):.1f}×" if f"{min(v):.1f}" == f"{max(v):.1f}" else f"{min(v):.1f}–{max(v):.1f}×"

    rows = res["rows"]
    parts = []
    for model in ("cnn", "vit"):
        single = [r for r in rows if r["row"].startswith(model) and r["row"].endswith("(single)")]
        multi = [r for r in rows if r["row"].startswith(model) and r["row"].endswith("(multi)")]
        if single or multi:
            parts.append(f"{model.upper()} single method {rng(single)}, multi-method {rng(multi)}")
    a, m = res["args"], res["machine"]
    return ("; ".join(parts) + f" (best of {a['repeats']} interleaved runs, batch {a['batch']}, {a['size']} px, "
            f"{a['threads']} thread(s); {res['date'][:10]}, {m['cpu_count']} CPUs)")


def _row(label, tb, tl, diff):
    speed = tl[0] / tb[0]
    print(f"{label:26s} {tb[0]:8.4f}/{tb[1]:<8.4f} {tl[0]:8.4f}/{tl[1]:<8.4f} {speed:6.1f}x "
          f"({tl[1] / tb[1]:4.1f}x) {diff:9.2e}")
    ROWS.append({"row": label, "batched_s": {"min": tb[0], "median": tb[1]},
                 "loop_s": {"min": tl[0], "median": tl[1]}, "speedup_min": speed,
                 "speedup_median": tl[1] / tb[1], "max_abs_diff": diff})
    return speed


def main(argv=None) -> int:
    import numpy as np
    import torch

    from radlens.cam.methods import MultiCAM, make_method

    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--size", type=int, default=64)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--methods", default="layercam,gradcam++,gradcam")
    ap.add_argument("--nchw", action="store_true", help="keep the model's NCHW weights (no channels_last)")
    ap.add_argument("--models", default="cnn,vit", help="comma-separated subset of cnn,vit")
    ap.add_argument("--json", default=None, help="write the numbers here (e.g. benchmarks/results/cam_bench.json)")
    a = ap.parse_args(argv)
    torch.set_num_threads(a.threads)
    x = torch.randn(a.batch, 1, a.size, a.size, generator=torch.Generator().manual_seed(0))
    targets = [i % 2 for i in range(a.batch)]
    methods = a.methods.split(",")
    cl = not a.nchw
    print(f"batch {a.batch}, {a.size}x{a.size}, torch threads {a.threads}, channels_last={cl}, "
          f"min/median of {a.repeats} interleaved runs (s); speed-up = loop min / batched min (medians)")
    print(f"{'model / comparison':26s} {'batched':>17s} {'per-sample loop':>17s} {'speed-up':>14s} {'max|diff|':>9s}")
    single_ok, multi_ok, ceilings = True, True, {}
    wanted = a.models.split(",")
    for name, (model, lname, layout, use_input) in _models(a.size).items():
        if name not in wanted:
            continue
        for layout_name, m in (("NCHW", model), ("channels-last", copy.deepcopy(model))):
            if layout_name == "channels-last":
                from radlens.cam.base import to_channels_last

                to_channels_last(m)
            with torch.no_grad():  # the ceiling: plain forward, batch vs loop (no CAM code at all)
                fb, fl = _time_pair(lambda: m(x), lambda: [m(x[i:i + 1]) for i in range(a.batch)], a.repeats)
            ceilings[(name, layout_name)] = fl[0] / fb[0]
        layer = dict(model.named_modules())[lname]
        kw = dict(token_layout=layout, use_input=use_input, channels_last=cl)
        cams = {meth: make_method(meth, model, layer, **kw) for meth in methods}
        for meth, cam in cams.items():
            tb, tl = _time_pair(lambda: cam(x, targets),
                                lambda: [cam(x[i:i + 1], [targets[i]]) for i in range(a.batch)], a.repeats)
            rl = np.concatenate([cam(x[i:i + 1], [targets[i]]).maps for i in range(a.batch)])
            diff = float(np.abs(cam(x, targets).maps - rl).max())
            single_ok &= _row(f"{name} {meth} (single)", tb, tl, diff) >= 3.0
        multi = MultiCAM(model, layer, methods, **kw)
        tb, tl = _time_pair(lambda: multi(x, targets),
                            lambda: [cams[meth](x[i:i + 1], [targets[i]]) for meth in methods
                                     for i in range(a.batch)], a.repeats)
        res = multi(x, targets)
        diff = max(float(np.abs(res[meth].maps - cams[meth](x, targets).maps).max()) for meth in methods)
        multi_ok &= _row(f"{name} all {len(methods)} (multi)", tb, tl, diff) >= 3.0
    for (name, layout_name), c in ceilings.items():
        print(f"{name}: plain forward pass alone (no CAM, {layout_name}), batch vs loop: {c:.1f}x")
    print("multi-method rows: ONE batched pass for all methods vs the loop running each method separately;"
          " max|diff| there compares MultiCAM maps with the single-method batched maps")
    print(f"target >= 3x at batch {a.batch}: single method", "met" if single_ok else "NOT met",
          "| multi-method", "met" if multi_ok else "NOT met")
    if a.json:
        import datetime
        import json
        import os
        import platform
        from pathlib import Path

        load = os.getloadavg() if hasattr(os, "getloadavg") else None
        res = {"benchmark": "cam_bench",
               "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
               "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
                           "load_average_at_end": [round(v, 2) for v in load] if load else None},
               "args": vars(a), "rows": ROWS,
               "plain_forward_batch_vs_loop": {f"{n} {lay}": c for (n, lay), c in ceilings.items()},
               "target_met": {"single": bool(single_ok), "multi": bool(multi_ok)}}
        res["readme"] = {"result": readme_result(res)}
        Path(a.json).parent.mkdir(parents=True, exist_ok=True)
        Path(a.json).write_text(json.dumps(res, indent=2) + "\n", encoding="utf-8")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
