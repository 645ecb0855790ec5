"""``radlens demo``: a complete study on a phantom cohort with planted ground truth.

1. :func:`radlens.synth.make_cohort` draws chest-X-ray-like phantoms whose lesions carry independent
   texture, intensity and shape attributes, and three binary tasks each tied to **one** of them;
2. :mod:`radlens.synth.train` trains a small MONAI ResNet, a small MONAI DenseNet and a tiny HF
   DINOv2 ViT on the spot (local-statistics pretext -> per task a transfer-learning and a fully
   fine-tuned checkpoint);
3. a study YAML naming all of it is written (``<out>/study.yaml``) and run by :func:`radlens.study.run`
   into ``<out>`` — so the demo is also a template for a real study;
4. ``<out>/report.html`` shows every analysis and the planted-truth checks; ``<out>/demo.json`` holds
   the key numbers (schema in ``docs/synth.md``).
"""
from __future__ import annotations

import logging
import os
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import math

log = logging.getLogger(__name__)

#: feature classes the lens should put on top for each planted task
EXPECTED_CLASSES = {"task_texture": ["glcm", "glrlm", "glszm", "gldm", "ngtdm"],
                    "task_intensity": ["firstorder"],
                    "task_shape": ["shape2D"]}


#: embedding layer per architecture for the lens and the pooling probe. The demo ResNet's last grid
#: (once ``layer4``, 8x8, now the head's ``layer3``, 16x16) has tokens that see much of the 64 px image:
#: at ``layer4`` the lens explained 3% of its ROI embedding (held-out R², full demo, seed 0) and only
#: 3/10 top intensity-task features were first-order. ``layer2`` (32x32 grid) keeps ROI tokens local:
#: R² 0.55 and 8/10 first-order. The classifiers keep their head layer for predictions and CAMs.
EMBED_LAYER = {"cnn": "layer2", "densenet": "features.denseblock1.denselayer2"}
#: layers embedded from one forward pass per architecture (layer-wise lens, ``encoders.<arch>.layers``);
#: HF ViT layers are ``hidden_states`` indices (i = output of block i). The ResNet's are the stages up
#: to its head's ``layer3`` (its ``layer4`` is never run, see radlens.synth.models.ARCHS).
EMBED_LAYERS = {"cnn": ["layer1", "layer2", "layer3"],
                "densenet": ["features.denseblock1.denselayer1", "features.denseblock1.denselayer2", "features"],
                "vit": [2, 3, 4]}

#: the demo cohort's attribute ranges (lengths at 64 px): lesions large enough at the models' 64 px
#: input for texture and elongation to be visible (equivalent radius 6.5-9 px, 3-6 % of the image), a
#: texture amplitude well above the image noise, and each lesion seen against lung (DEMO_PLACEMENT):
#: * shape: round (elongation 1.0-1.15) vs elongated 4.0-5.5 with the major axis within 30 degrees of
#:   vertical, so a long lesion (major semi-axis 13-21 px) fits inside a lung field (semi-axes ~10 x
#:   18 px). With radius 7-11 px and 4.0-6.0 at any angle, elongated lesions (major semi-axis up to
#:   27 px) crossed the mediastinum and the body edge, their outline vanished over soft tissue, and the
#:   CNNs reached validation AUC 0.78-0.85 on shape; with these ranges 0.89-0.97 (shape-only training,
#:   400 images, seeds 0 and 1; elongation 3.0-4.5 gave 0.81-0.99, less reliably);
#: * intensity: faint 0.44-0.54 vs bright 0.62-0.76 (was 0.36-0.48 vs 0.56-0.70): a faint lesion on
#:   lung (~0.2-0.35) kept a median contrast of 0.03 against its surroundings, too little to see its shape;
#: * texture class 1 is the FINE (speckled) texture: with class 1 = coarse, the fine-tuned models told
#:   the classes apart by the speckle of class 0, so the positive class's evidence was "no speckle
#:   anywhere" and its Grad-CAM maps lit up the background (pixel AUC 0.35-0.65 at validation AUC 1.0).
DEMO_RANGES = {"radius": (6.5, 9.0), "elongation": ((1.0, 1.15), (4.0, 5.5)), "texture_amp": (0.10, 0.16),
               "corr_len": ((2.0, 3.2), (0.5, 0.8)), "intensity": ((0.44, 0.54), (0.62, 0.76)),
               "orientation": (math.pi / 2 - math.pi / 6, math.pi / 2 + math.pi / 6)}
#: the whole lesion inside a lung field where it fits (radlens.synth.render.render_case_2d)
DEMO_PLACEMENT = "inside"
DEMO_LESION_FREE = 0.1
#: CAM methods of the demo: Grad-CAM first (the maps that are localised; for heads that read the
#: mean of the target layer it is the exact per-position share of the logit, signed activations included)
CAM_METHODS = ["gradcam", "layercam", "gradcam++"]
#: CAM target layer per architecture where it differs from the classifier specs' ``target_layer``
#: (study ``cam_drift.options.target_layers``). None now: every demo head reads the mean of its CAM
#: target layer, so Grad-CAM is the exact per-position share of the logit (the ViT's shape heads score
#: every token of it, ``head.pooling: lse``: Grad-CAM is then each token's own score). The ResNet was explained at
#: ``layer3`` while its head read the 8x8 ``layer4`` (too coarse for a 5-6 px wide band: shape pointing
#: game 0.39); there Grad-CAM's mean-gradient channel weights were not the head's, and on two training
#: seeds of four the texture maps missed the lesion (pointing game / pixel AUC 0.48 / 0.49 and
#: 0.07 / 0.35: background lung and the image's top edge lit up). Its head now reads ``layer3``
#: (radlens.synth.models.ARCHS; docs/cam.md "Which CNN layer").
CAM_TARGET_LAYERS: dict = {}


@dataclass(frozen=True)
class DemoSize:
    """Sizes of one demo flavour (``probe_panel``: the pooling-probe panel over the packaged default)."""

    n_cases: int
    image_size: int
    pretext_epochs: int
    finetune_epochs: int
    n_null: int
    n_boot: int
    cam_boot: int
    probe_panel: dict = field(default_factory=dict)
    loc_figures: bool = True  # per-pair localization score figures (the report shows the tables)
    vit_epoch_factor: float = 0.75  # the ViT fine-tunes this many times finetune_epochs (its training then fits beside the ResNet's)
    vit_pretext_epochs: int = 8  # the ViT's pretext epochs (TrainConfig.vit_pretext_epochs; see QUICK)
    sanity_cases: int = 16
    task_epochs: dict = field(default_factory=dict)   # CNN fine-tuning epochs per task (TrainConfig.task_epochs)
    rot90_finetune_archs: tuple | None = None  # TrainConfig.rot90_finetune_archs (None: TrainConfig's default)
    densenet_blocks: tuple | None = None  # TrainConfig.densenet_blocks (None: TrainConfig's default)
    flip_consistent_archs: tuple | None = None  # TrainConfig.flip_consistent_archs (None: TrainConfig's default)
    figure_formats: tuple = ("png", "svg")   # study figure_formats


FULL = DemoSize(n_cases=400, image_size=64, pretext_epochs=4, finetune_epochs=20, n_null=200, n_boot=200,
                cam_boot=1000, probe_panel={
                    "images": {"query": "has_lesion == 0", "max_images": 40},
                    "lesion": {"findings": ["has_lesion"]},
                    "jitter": {"levels": [0.0, 0.25, 0.5, 1.0]},
                    "probe": {"n_boot": 500}})
QUICK = DemoSize(n_cases=160, image_size=64, pretext_epochs=2, finetune_epochs=12, n_null=40, n_boot=40,
                 cam_boot=200, loc_figures=False, probe_panel={
                     "images": {"query": "has_lesion == 0", "max_images": 16},
                     "panel": {"footprints": [0.05, 0.2],
                               "perturbations": {"nodule": {"strengths": [1.0]}, "texture": {"strengths": [1.0]}}},
                     "lesion": {"findings": []},
                     "jitter": {"levels": [0.0, 0.5]},
                     "probe": {"n_boot": 200}}, vit_epoch_factor=1.0, sanity_cases=10, vit_pretext_epochs=32,
                 task_epochs={"task_shape": 24}, rot90_finetune_archs=(), figure_formats=("png",),
                 densenet_blocks=(3,), flip_consistent_archs=())
#: QUICK's CNN recipe (docs/synth.md, "The quick demo"): about 100 labelled training images. The CNNs
#: fine-tune with flips only, like the ViT (TrainConfig.rot90_finetune_archs): with quarter turns they
#: had to learn "elongated either way" from ~100 images and did not (shape validation AUC 0.44-0.86 over
#: recipes), and texture and intensity do not need them. Shape gets 24 epochs (96 steps), the others
#: 12. SVG copies are skipped (a third of the figure time; the report embeds the PNGs).
#: QUICK's ViT pretext: 32 epochs of its 160 images (320 steps; the default demo: 8 of 400, 200 steps).
#: With 8 (80 steps) its pooled features barely told the texture classes apart (transfer AUC 0.47-0.57)
#: and fine-tuning did not learn texture (0.43-0.47, seeds 0-1); with 32, fine-tuned AUC texture
#: 0.93-1.00, intensity 0.93-0.97, shape 0.89-0.95 (seeds 0-2; docs/synth.md). Cost: the ViT trains
#: 16.7 s instead of 9.6 s; it starts when the DenseNet (7.5 s) ends, so the training stage took
#: 27.3-27.7 s instead of 20.1 s (two runs each, 2 cores; the ResNet: 14 s).
#: QUICK's DenseNet keeps the three-layer block without the mirror-consistency penalty (the default
#: demo's four layers with it, TrainConfig.flip_consistent_archs): with them (the penalty then on full
#: batches, twice the compute) its quick training took 26-27 s instead of 8-9 s (two runs each, shared
#: machine) and its fine-tuned texture AUC fell to 0.83; the quick demo's maps do not need them
#: (tests/test_demo.py's thresholds).


def draw_cohort(out_dir: str | os.PathLike, size: DemoSize, seed: int = 0):
    """Draw the demo's phantom cohort of flavour ``size`` into ``out_dir`` (manifest, images, masks);
    returns :func:`radlens.synth.make_cohort`'s result."""
    from radlens.synth.cohort import make_cohort

    return make_cohort(out_dir, n_cases=size.n_cases, image_size=size.image_size, seed=seed,
                       lesion_free_fraction=DEMO_LESION_FREE, ranges=DEMO_RANGES, placement=DEMO_PLACEMENT)


def train_config(size: DemoSize, seed: int = 0):
    """The :class:`radlens.synth.train.TrainConfig` of a demo flavour: what ``size`` sets, the rest
    ``TrainConfig``'s defaults (a ``None`` recipe field of ``size`` keeps TrainConfig's default)."""
    from radlens.synth.train import TrainConfig

    kw = {k: tuple(getattr(size, k)) for k in ("rot90_finetune_archs", "densenet_blocks", "flip_consistent_archs")
          if getattr(size, k) is not None}
    return TrainConfig(pretext_epochs=size.pretext_epochs, finetune_epochs=size.finetune_epochs,
                       task_epochs=dict(size.task_epochs), vit_epoch_factor=size.vit_epoch_factor,
                       vit_pretext_epochs=size.vit_pretext_epochs, seed=seed, **kw)


def study_dict(models: dict[str, dict[str, Any]], out: Path, size: DemoSize, seed: int = 0,
               threads: int | None = 1) -> dict[str, Any]:
    """The demo's study config (paths relative to ``out``)."""
    def rel(p):
        return os.path.relpath(p, out)

    encoders = {}
    for arch, specs in models.items():
        encoders[arch] = {"pre": rel(specs["pre"]),
                          "tasks": {t: {"transfer": rel(v["tl"]), "finetuned": rel(v["ft"])}
                                    for t, v in specs.items() if t != "pre"}}
        if arch in EMBED_LAYER:
            encoders[arch]["layer"] = EMBED_LAYER[arch]
        if arch in EMBED_LAYERS:
            encoders[arch]["layers"] = list(EMBED_LAYERS[arch])
    return {
        "name": "radlens demo (phantom cohort, planted ground truth)",
        "manifest": "cohort/manifest.csv",
        "out": ".",
        "seed": seed,
        "threads": threads,
        "stage_jobs": 2,   # independent stages at once (e.g. cam-drift beside the lens), in 2 forked processes
        "encoders": encoders,
        "radiomics": {"enabled": True, "params": None, "jobs": 1},
        # cases load in the embedding process: the other core runs another stage (stage_jobs)
        "embed": {"batch_size": 64, "device": "cpu", "workers": 0},
        "lens": {"enabled": True, "pooling": "auto", "top_k": 10, "n_permutations": 2000,
                 "n_null": size.n_null, "n_boot": size.n_boot, "expected_classes": EXPECTED_CLASSES,
                 # one process per lens stage: stage_jobs runs CAM drift etc. beside the lens chain, and
                 # layer workers on top of the two lanes raised the quick demo's memory (sum of PSS) from
                 # 1.1 to 1.4 GB (default demo: 1.8 GB) for no measurable gain; same files as jobs: 2
                 "layer_figures": "main", "jobs": 1},
        "cam_drift": {"enabled": True, "methods": list(CAM_METHODS), "n_boot": size.cam_boot,
                      "options": {"sanity_cases": size.sanity_cases, "channels_last": True,
                                  "target_layers": {a: v for a, v in CAM_TARGET_LAYERS.items() if a in models}}},
        "localization": {"enabled": True, "score": "auc", "positive_col": "has_lesion", "n_boot": size.cam_boot,
                         "options": {} if size.loc_figures else {"figure": False}},
        "pooling_probe": {"enabled": True, "post_task": "task_texture", "panel": size.probe_panel},
        "report": True,
        "figure_formats": list(size.figure_formats),
    }


def demo(out: str | os.PathLike = "radlens-demo", *, quick: bool = False, seed: int = 0, force: bool = False):
    """Phantom cohort -> demo encoders -> full study -> ``report.html``.

    Parameters
    ----------
    out : path
        Demo folder: ``cohort/``, ``models/``, ``study.yaml``, every stage's artefacts, ``report.html``.
    quick : bool
        Smaller cohort (160 images) and shorter training (used by the tests).
    seed : int
        Same seed -> same cohort, checkpoints and numbers.
    force : bool
        Regenerate the cohort and retrain even when ``out`` already holds them.

    Returns
    -------
    radlens.study.RunResult
    """
    from radlens.procmem import TreeMemory

    # the demo's processes run at once (training pool, two stage lanes): their summed PSS is the
    # memory a user needs, not one process's peak RSS
    with TreeMemory() as mem:
        return _demo(Path(out), quick=quick, seed=seed, force=force, mem=mem)


def _demo(out: Path, *, quick: bool, seed: int, force: bool, mem):
    import yaml

    from radlens.io.artifacts import atomic_write_text, read_json, write_json
    from radlens.study import run
    from radlens.synth.train import train_demo

    out = Path(out).resolve()
    out.mkdir(parents=True, exist_ok=True)
    size = QUICK if quick else FULL
    import resource

    t0 = time.perf_counter()
    c0 = time.process_time()
    k0 = resource.getrusage(resource.RUSAGE_CHILDREN)  # children reaped before the demo do not count
    # the code that draws the cohort / trains the models is part of the stamp: an upgraded radlens
    # regenerates them instead of silently reusing stale ones
    stamp = {"n_cases": size.n_cases, "image_size": size.image_size, "seed": seed, "ranges": DEMO_RANGES,
             "lesion_free_fraction": DEMO_LESION_FREE, "placement": DEMO_PLACEMENT,
             "code": _code_hash("radlens.synth.cohort", "radlens.synth.volume")}
    stamp_path = out / "cohort" / "demo_cohort.json"
    manifest = out / "cohort" / "manifest.csv"
    if force or not manifest.exists() or not stamp_path.exists() or read_json(stamp_path) != _jsonable(stamp):
        log.info("demo: drawing %d phantoms (%d px)", size.n_cases, size.image_size)
        draw_cohort(out / "cohort", size, seed)
        write_json(stamp_path, _jsonable(stamp))
    t_cohort = time.perf_counter() - t0
    tcfg = train_config(size, seed)
    train_stamp = {"cohort": stamp, "train": vars(tcfg),
                   "code": _code_hash("radlens.synth.train", "radlens.synth.train_config", "radlens.synth.models",
                                      "radlens.synth.steps", "radlens.synth.checkpoints", "radlens.synth.token_head")}
    train_json = out / "models" / "training.json"
    specs_path = out / "models" / "specs.json"
    if (force or not specs_path.exists() or not train_json.exists()
            or read_json(train_json).get("config") != _jsonable(vars(tcfg))
            or read_json(specs_path).get("stamp") != _jsonable(train_stamp)):
        log.info("demo: training the demo encoders (ResNet, DenseNet, ViT; %d pretext / %d fine-tuning epochs)",
                 size.pretext_epochs, size.finetune_epochs)
        res = train_demo(manifest, out / "models", tcfg)
        write_json(specs_path, {"stamp": train_stamp, "specs": res.specs})
    specs = read_json(specs_path)["specs"]
    t_train = time.perf_counter() - t0 - t_cohort
    study_path = out / "study.yaml"
    atomic_write_text(study_path, "# written by `radlens demo`; edit and re-run with `radlens run study.yaml`\n"
                      + yaml.safe_dump(study_dict(specs, out, size, seed), sort_keys=False))
    result = run(study_path, report=False)
    # report.html and demo.json read the same finished artefacts: the report is written by a forked
    # process while this one computes the summary (both ~3 s on one core)
    reporter = _start_report(out, size.figure_formats)
    seconds = {"cohort": round(t_cohort, 2), "training": round(t_train, 2),
               "study": round(time.perf_counter() - t0 - t_cohort - t_train, 2),
               "total": round(time.perf_counter() - t0, 2)}
    from radlens.demo_summary import demo_summary

    import pandas as pd

    man = pd.read_csv(manifest)
    cohort = {"n_cases": int(len(man)), "n_lesion": int(man["has_lesion"].sum()), "image_size": size.image_size,
              "lesion_free_fraction": DEMO_LESION_FREE, "ranges": _jsonable(DEMO_RANGES), "placement": DEMO_PLACEMENT,
              "median_lesion_area_frac": round(float(man.loc[man["has_lesion"] == 1, "lesion_area_frac"].median()), 4)}
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)  # reaped children: training workers, stage lanes
    kids_cpu = kids.ru_utime + kids.ru_stime - k0.ru_utime - k0.ru_stime
    mem.sample()
    summary = demo_summary(out, quick=quick, seed=seed, seconds=seconds,
                           cpu_seconds=round(time.process_time() - c0, 2), cohort=cohort,
                           cpu_seconds_all=round(time.process_time() - c0 + kids_cpu, 2),
                           peak_tree_mb=mem.peak_mb)
    write_json(out / "demo.json", summary)
    result.report = _finish_report(reporter, out, size.figure_formats)
    for w in summary["warnings"]:
        log.warning("demo: %s", w)
    return result


def _start_report(out: Path, formats):
    """Write ``out/report.html`` in a forked process (None where processes are not forked: the report
    is then written by :func:`_finish_report`)."""
    from radlens.study.lanes import fork_available

    if not fork_available():
        return None
    from radlens.parallel import ForkedChild

    (out / "report.html").unlink(missing_ok=True)   # a report of an earlier run must not pass for this one's
    return ForkedChild(_report_child, (out, tuple(formats)), name="radlens-demo-report", respawnable=False)


def _report_child(conn, out: Path, formats: tuple) -> None:
    """:func:`_start_report`'s process."""
    from radlens.study import write_report

    conn.close()
    write_report(out, formats)


def _finish_report(proc, out: Path, formats) -> Path | None:
    """Wait for :func:`_start_report`'s process (or write the report here); the report's path, None if
    it failed (the error is logged, its traceback in ``logs/report.log``)."""
    from radlens.study import write_report

    if proc is None:
        return write_report(out, tuple(formats))
    proc.join()
    proc.close()
    path = out / "report.html"
    if proc.exitcode != 0 or not path.exists():
        log.error("report failed (report process exit code %s; see %s)", proc.exitcode, out / "logs" / "report.log")
        return None
    return path


def _code_hash(*modules: str) -> str:
    """sha256 (first 16 hex) of the source files of ``modules``."""
    import hashlib
    import importlib

    h = hashlib.sha256()
    for name in modules:
        h.update(Path(importlib.import_module(name).__file__).read_bytes())
    return h.hexdigest()[:16]


def _jsonable(obj):
    import json

    return json.loads(json.dumps(obj, default=str))
