"""Benchmark of ``radlens embed``.

0. Stages: ms per image of decoding (``load_case``), preprocessing (resize, normalise, channels,
   ROI coverage map), ROI -> tokens, and the forward pass, in one process.
1. Throughput against a bare ``model(x)`` loop over preprocessed batches already in memory, every
   ratio from timings of the same (interleaved) repeat, reported as median (min, max):
   (a) ``forward_pool`` — all three poolings (+ ROI weights) from one pass over the *same*
   batches: what radlens adds to the forward pass. Target: ratio >= 0.9.
   (b) the same with four layers read from the one pass (``layers=``). Target >= 0.9.
   (c) ``embed`` end to end (manifest → npz: loading from disk, preprocessing, forward, pooling,
   chunked writes). Target >= 0.9.
2. Peak memory: ``embed`` over 1k vs 10k phantom images (each run in a fresh subprocess).
   Target: peak RSS ratio <= 1.2 (chunks stream to disk, so memory does not grow with the cohort).

Usage::

    python benchmarks/embed_bench.py --json benchmarks/results/embed_bench.json   # every part, CPU
    python benchmarks/embed_bench.py --device cuda     # throughput on a GPU
    python benchmarks/embed_bench.py --part memory --n-files 500

Prints one table; ``--json PATH`` also writes the numbers (with date and machine).
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np


def vit_spec(folder: Path, size: int, hidden: int, layers: int) -> dict:
    """A DINOv2-style ViT (random weights, saved locally) at ``size`` px, 14... 16-px patches."""
    import torch
    from transformers import Dinov2Config, Dinov2Model

    torch.manual_seed(0)
    cfg = Dinov2Config(hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=max(1, hidden // 64),
                       intermediate_size=4 * hidden, patch_size=16, image_size=size, num_channels=3)
    Dinov2Model(cfg).eval().save_pretrained(folder)
    return {"kind": "hf", "path": str(folder), "preprocess": {"spatial_size": [size, size], "intensity": "zscore"}}


def cnn_spec(width: int, size: int) -> dict:
    args = {"block": "basic", "layers": [1, 1, 1, 1], "block_inplanes": [width, 2 * width, 4 * width, 8 * width],
            "spatial_dims": 2, "n_input_channels": 1, "conv1_t_size": 3, "conv1_t_stride": 1,
            "no_max_pool": True, "feed_forward": False}
    return {"kind": "monai", "name": "ResNet", "args": args, "layer": "layer4",
            "preprocess": {"spatial_size": [size, size], "intensity": "zscore"}}


def make_manifest(work: Path, n_files: int, n_rows: int, image_size: int) -> Path:
    """A phantom cohort of ``n_files`` images; the manifest repeats them to ``n_rows`` rows."""
    import pandas as pd

    from radlens.synth import make_cohort

    src = work / f"cohort_{n_files}_{image_size}"
    mp = src / "manifest.csv"
    if not mp.exists():
        make_cohort(src, n_cases=n_files, image_size=image_size, seed=0, show_progress=False)
    df = pd.read_csv(mp, dtype=str)
    reps = int(np.ceil(n_rows / len(df)))
    big = pd.concat([df] * reps, ignore_index=True).iloc[:n_rows].copy()
    big["case_id"] = [f"r{i:06d}" for i in range(len(big))]
    big["patient_id"] = big["case_id"]
    out = src / f"manifest_{n_rows}.csv"
    big.to_csv(out, index=False)
    return out


# --------------------------------------------------------------------------- throughput
def _spread(v) -> dict:
    v = np.asarray(v, float)
    return {"min": float(v.min()), "median": float(np.median(v)), "max": float(v.max())}


def throughput(args, work: Path) -> dict:
    """Ratios against a bare ``model(x)`` loop, every ratio from timings of the SAME repeat (interleaved).

    * ``pooled``: ``forward_pool`` (cls+mean+roi) on the same in-memory batches;
    * ``pooled_4layers``: the same with four hidden layers read from the one pass (issue 15);
    * ``embed``: ``radlens embed`` manifest -> npz from disk (decode, preprocess, ROI -> tokens,
      forward, pooling, chunked writes), with ``--loader`` / ``--workers``.
    """
    import torch

    from radlens.encoders import embed, forward_pool, load_encoder
    from radlens.encoders.loader import CasePreparer
    from radlens.io.images import load_case
    from radlens.io.manifest import read_manifest

    torch.set_num_threads(args.threads)
    mp = make_manifest(work, args.n_files, args.n_throughput, args.image_size)
    spec = vit_spec(work / "vit", args.model_size, args.hidden, args.layers)
    enc = load_encoder(spec, device=args.device)
    four = [max(1, args.layers // 3), max(1, args.layers // 2), max(1, args.layers - 1), args.layers]
    enc4 = load_encoder(spec, device=args.device, layers=four)
    m = read_manifest(mp)
    rows = list(m.rows())
    # the same preprocessed batches for the bare loop (prepared once, outside the timing)
    xs = [enc.preprocess(load_case(r))[0] for r in rows]
    batches = [torch.stack(xs[i:i + args.batch_size]) for i in range(0, len(xs), args.batch_size)]
    sync = torch.cuda.synchronize if args.device.startswith("cuda") else (lambda: None)
    prep = CasePreparer(enc.preprocessor, enc.grid, enc.spec["roi"], True, True, None)
    ws = [np.stack([prep(r)[2][0][0] for r in rows[i:i + args.batch_size]]) for i in range(0, len(xs), args.batch_size)]
    names = enc.pool_names(("cls", "mean", "roi"))

    def bare():
        with torch.inference_mode():
            for b in batches:
                enc.module(pixel_values=b.to(args.device))
        sync()

    def pooled():
        for b, w in zip(batches, ws):
            forward_pool(enc, b, names, w)
        sync()

    def pooled4():
        for b, w in zip(batches, ws):
            forward_pool(enc4, b, names, w)
        sync()

    def ours():
        embed(m, enc, work / "tp.npz", batch_size=args.batch_size, autocast=False, resume=False,
              workers=args.workers, loader=args.loader, show_progress=False)
        sync()

    bare()  # warm-up (allocator, kernels, loader imports)
    ours()
    runs = {"bare": [], "pooled": [], "pooled_4layers": [], "embed": []}
    for _ in range(args.repeats):  # interleaved: each ratio compares timings of the same moment
        for k, f in (("bare", bare), ("pooled", pooled), ("pooled_4layers", pooled4), ("embed", ours)):
            t0 = time.perf_counter()
            f()
            runs[k].append(time.perf_counter() - t0)
    n = len(xs)
    tb = np.asarray(runs["bare"])
    res = {"model": f"DINOv2-style ViT h{args.hidden} x{args.layers} @ {args.model_size}px (grid {enc.grid})",
           "device": args.device, "n_images": n, "batch_size": args.batch_size, "torch_threads": args.threads,
           "loader": f"{args.loader} x{args.workers}", "layers_4": four, "repeats": args.repeats,
           "img_per_s": {k: _spread(n / np.asarray(v)) for k, v in runs.items()},
           "ratio": {k: _spread(tb / np.asarray(v)) for k, v in runs.items() if k != "bare"},
           # best of N against best of N: the least noise-affected estimate on a shared machine
           "ratio_of_best": {k: float(tb.min() / np.min(v)) for k, v in runs.items() if k != "bare"}}
    return res


def stages(args, work: Path) -> dict:
    """Where the time of one case goes: ms per image of each step, next to the forward pass per image."""
    import torch

    from radlens.encoders import load_encoder
    from radlens.encoders.tokens import select_tokens
    from radlens.io.images import load_case
    from radlens.io.manifest import read_manifest

    torch.set_num_threads(args.threads)
    mp = make_manifest(work, args.n_files, args.n_throughput, args.image_size)
    enc = load_encoder(vit_spec(work / "vit", args.model_size, args.hidden, args.layers), device=args.device)
    rows = list(read_manifest(mp).rows())
    pre, r = enc.preprocessor, enc.spec["roi"]
    out = {k: [] for k in ("decode", "preprocess", "roi_to_tokens", "forward")}
    c0 = load_case(rows[0])
    pre(c0.array, c0.roi, case_id=c0.case_id)  # warm-up: lazy imports (MONAI transforms) out of the timing
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        cases = [load_case(row) for row in rows]
        t1 = time.perf_counter()
        preps = [pre(c.array, c.roi, case_id=c.case_id) for c in cases]  # resize, normalise, channels, ROI map
        t2 = time.perf_counter()
        for p in preps:
            select_tokens(p.roi_cov, enc.grid, r["rule"], r["min_overlap"], "x")
        t3 = time.perf_counter()
        x = torch.stack([p.x for p in preps])
        with torch.inference_mode():
            for i in range(0, len(preps), args.batch_size):
                enc.module(pixel_values=x[i:i + args.batch_size].to(args.device))
        t4 = time.perf_counter()
        for k, a, b in (("decode", t0, t1), ("preprocess", t1, t2), ("roi_to_tokens", t2, t3), ("forward", t3, t4)):
            out[k].append(1e3 * (b - a) / len(rows))
    res = {"ms_per_image": {k: _spread(v) for k, v in out.items()}}
    fwd = np.asarray(out["forward"])
    res["fraction_of_forward"] = {k: _spread(np.asarray(v) / fwd) for k, v in out.items() if k != "forward"}
    return res


def device_check(args, work: Path) -> dict:
    """The same cases embedded on ``args.device`` (fp32 and autocast) vs the CPU: max abs differences."""
    import torch

    from radlens.encoders import embed, load_encoder
    from radlens.io.artifacts import read_embeddings

    mp = make_manifest(work, args.n_files, 64, args.image_size)
    spec = vit_spec(work / "vit_check", 64, 128, 2)
    ref = read_embeddings(embed(mp, load_encoder(spec, "cpu"), work / "c_cpu.npz", resume=False,
                                show_progress=False)).pools
    out = {}
    for amp in (False, True):
        got = read_embeddings(embed(mp, load_encoder(spec, args.device), work / f"c_dev{int(amp)}.npz",
                                    autocast=amp, resume=False, show_progress=False)).pools
        for k in ref:
            scale = float(np.abs(ref[k]).max())
            out[f"{'autocast' if amp else 'fp32'}_{k}_max_rel_diff"] = float(np.abs(got[k] - ref[k]).max()) / scale
    out["torch"] = torch.__version__
    return out


# --------------------------------------------------------------------------- memory
CHILD = r"""
import json, resource, sys, time, tracemalloc
import torch
torch.set_num_threads(int(sys.argv[4]))
from radlens.encoders import embed, load_encoder
spec = json.loads(sys.argv[3])
enc = load_encoder(spec)
tracemalloc.start()
t0 = time.perf_counter()
embed(sys.argv[1], enc, sys.argv[2], batch_size=64, chunk_size=1024, resume=False, show_progress=False)
dt = time.perf_counter() - t0
_, traced = tracemalloc.get_traced_memory()
print(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "loader_worker_peak_rss_mb": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024,
                  "traced_peak_mb": traced / 2**20, "seconds": dt}))
"""


def memory(args, work: Path) -> dict:
    spec = cnn_spec(args.cnn_width, args.image_size)
    out = {}
    for n in (1000, 10000):
        mp = make_manifest(work, args.n_files, n, args.image_size)
        env = dict(os.environ, RADLENS_PROGRESS="0")
        r = subprocess.run([sys.executable, "-c", CHILD, str(mp), str(work / f"mem_{n}.npz"), json.dumps(spec),
                            str(args.threads)], capture_output=True, text=True, env=env, check=True)
        out[n] = json.loads(r.stdout.strip().splitlines()[-1])
    return {"model": f"MONAI ResNet width {args.cnn_width} (D={8 * args.cnn_width}) @ {args.image_size}px",
            "1k": out[1000], "10k": out[10000],
            "rss_ratio": out[10000]["peak_rss_mb"] / out[1000]["peak_rss_mb"],
            "traced_ratio": out[10000]["traced_peak_mb"] / out[1000]["traced_peak_mb"]}


def _fmt(d: dict, scale: float = 1.0, spec: str = ".3f") -> str:
    return f"{d['median'] * scale:{spec}} (min {d['min'] * scale:{spec}}, max {d['max'] * scale:{spec}})"


def readme_result(res: dict) -> str:
    """The README table's cell for these numbers (``readme.result``, read by scripts/readme.py)."""
    parts = []
    t = res.get("throughput")
    if t:
        r = t["ratio"]
        parts.append(f"from disk {_fmt(r['embed'], spec='.2f')}×, same batches {_fmt(r['pooled'], spec='.2f')}×, "
                     f"4 layers in one pass {_fmt(r['pooled_4layers'], spec='.2f')}× "
                     f"(median (min, max) of {t['repeats']} interleaved repeats; {t['model']}, {t['device']}, "
                     f"loader {t['loader']})")
    st = res.get("stages")
    if st:
        f = st["fraction_of_forward"]
        parts.append("per image vs the forward pass: decode " + f"{f['decode']['median']:.3f}×, preprocess "
                     f"{f['preprocess']['median']:.3f}×, ROI→tokens {f['roi_to_tokens']['median']:.3f}×")
    m = res.get("memory")
    if m:
        parts.append(f"peak memory 10k / 1k images {m['rss_ratio']:.3f}×")
    mach = res.get("machine", {})
    load = mach.get("load_average_at_start")
    when = (f" [{str(res.get('date', ''))[:10]}, {mach.get('cpu_count', '?')} CPUs"
            + (f", load average {load[0]:.1f} at start" if load else "") + "]")
    return "; ".join(parts) + when


def machine() -> dict:
    import platform

    import torch

    load = os.getloadavg() if hasattr(os, "getloadavg") else None
    out = {"platform": platform.platform(), "cpu_count": os.cpu_count(), "torch": torch.__version__,
           "load_average_at_start": [round(v, 2) for v in load] if load else None}
    if torch.cuda.is_available():
        out["gpu"] = torch.cuda.get_device_name(0)
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=("all", "stages", "throughput", "memory", "check"), default="all")
    p.add_argument("--device", default="cpu")
    p.add_argument("--work", default=None, help="working folder (default: a temporary one)")
    p.add_argument("--n-files", type=int, default=1000, help="phantom images written (manifests repeat them)")
    p.add_argument("--image-size", type=int, default=32, help="phantom image side, px")
    p.add_argument("--n-throughput", type=int, default=128, help="images in the throughput run")
    p.add_argument("--model-size", type=int, default=128, help="ViT input side, px")
    p.add_argument("--hidden", type=int, default=384)
    p.add_argument("--layers", type=int, default=6)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--loader", default="auto", choices=("auto", "thread", "process"))
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--cnn-width", type=int, default=32)
    p.add_argument("--json", default=None, help="write the numbers here (e.g. benchmarks/results/embed_bench.json)")
    args = p.parse_args(argv)
    os.environ.setdefault("RADLENS_PROGRESS", "0")
    sys.stdout.reconfigure(line_buffering=True)
    import datetime
    import logging

    logging.basicConfig(level=logging.ERROR)
    ctx = tempfile.TemporaryDirectory() if args.work is None else None
    work = Path(ctx.name if ctx else args.work)
    work.mkdir(parents=True, exist_ok=True)
    res = {"benchmark": "embed_bench", "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
           "machine": machine(), "args": vars(args)}
    def save():  # after every part: a long run that is stopped keeps what it measured
        res["readme"] = {"result": readme_result(res)}
        if args.json:
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(res, indent=2, default=str) + "\n", encoding="utf-8")

    if args.part in ("all", "stages"):
        st = stages(args, work)
        res["stages"] = st
        print(f"stages      ms per image over {args.n_throughput} images, median (min, max) of {args.repeats} repeats")
        for k, v in st["ms_per_image"].items():
            frac = st["fraction_of_forward"].get(k)
            print(f"  {k:14s}: {_fmt(v, spec='.2f')} ms" + (f"   = {_fmt(frac)} x forward" if frac else ""))
        save()
    if args.part in ("all", "throughput"):
        t = throughput(args, work)
        res["throughput"] = t
        print(f"throughput  {t['model']}, {t['device']}, {t['n_images']} images, batch {t['batch_size']}, "
              f"loader {t['loader']}; ratio vs bare model(x), median (min, max) of {t['repeats']} interleaved repeats")
        ips = t["img_per_s"]
        print(f"  bare model(x) loop : {_fmt(ips['bare'], spec='.1f')} img/s")
        print(f"  forward_pool       : ratio {_fmt(t['ratio']['pooled'])}   (cls+mean+roi, same batches; target >= 0.9)")
        print(f"  forward_pool 4 lay.: ratio {_fmt(t['ratio']['pooled_4layers'])}   (layers {t['layers_4']}, one pass)")
        print(f"  radlens embed      : ratio {_fmt(t['ratio']['embed'])}   (from disk; target >= 0.9)")
        print("  best-of-repeats ratios: " + ", ".join(f"{k} {v:.3f}" for k, v in t["ratio_of_best"].items()))
        save()
    if args.part == "check":
        c = device_check(args, work)
        res["check"] = c
        for k, v in c.items():
            print(f"  {k}: {v}")
    if args.part in ("all", "memory"):
        m = memory(args, work)
        res["memory"] = m
        print(f"memory      {m['model']}, {args.n_files} phantom files")
        for k in ("1k", "10k"):
            r = m[k]
            print(f"  {k:>3} images : peak RSS {r['peak_rss_mb']:7.1f} MiB, traced Python heap "
                  f"{r['traced_peak_mb']:6.2f} MiB, {r['seconds']:6.1f} s")
        print(f"  ratio 10k/1k: RSS {m['rss_ratio']:.3f} (target <= 1.2), heap {m['traced_ratio']:.3f}")
    save()
    if ctx:
        ctx.cleanup()
    return 0


if __name__ == "__main__":
    sys.exit(main())
