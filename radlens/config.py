"""Validated study configuration: one YAML -> typed dataclasses, with errors that say what to fix.

A study YAML names the cohort (manifest), the radiomics settings, the encoders (per architecture a
*pre* checkpoint and, per downstream task, a transfer-learning and a fine-tuned checkpoint) and the
analyses to run. Paths are relative to the YAML's folder. See ``configs/study.yaml`` for a
commented example; :func:`load_study` reads one, :func:`study_to_dict` writes it back.

Every error is a :class:`radlens.errors.ConfigError` naming the file, the key (dotted path), the
value found and the allowed values or type, with a did-you-mean suggestion for misspelt keys.
"""
from __future__ import annotations

import dataclasses
import difflib
import os
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from radlens.errors import ConfigError

ANALYSES = ("radiomics", "embed", "lens", "cam_drift", "pooling_probe", "localization")


def _opt(default=None, *, choices=None, minimum=None, maximum=None, help=""):
    """A dataclass field with validation metadata."""
    meta = {"choices": choices, "minimum": minimum, "maximum": maximum, "help": help}
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: type(d)(d), metadata=meta)
    return field(default=default, metadata=meta)


# --------------------------------------------------------------------------- sections
@dataclass
class RadiomicsConfig:
    """``radiomics:`` — pyradiomics extraction (``radlens radiomics``)."""

    enabled: bool = _opt(True)
    params: str | None = _opt(None, help="pyradiomics parameter YAML; null: radlens defaults")
    jobs: int = _opt(1, minimum=1, help="worker processes")


@dataclass
class EmbedConfig:
    """``embed:`` — embeddings of every checkpoint (``radlens embed``)."""

    batch_size: int = _opt(32, minimum=1)
    device: str = _opt("cpu")
    executor: str = _opt("local", choices=("local", "dask"),
                         help="dask: every embedding chunk is a task on a Dask cluster (same files as local)")
    scheduler: str | None = _opt(None, help="Dask scheduler address, e.g. tcp://host:8786 (null: a local "
                                            "cluster of `jobs` workers)")
    jobs: int = _opt(2, minimum=1, help="workers of the local Dask cluster when no scheduler is given")
    workers: int | None = _opt(None, minimum=0, help="processes loading cases ahead of the model in a local run "
                               "(0: in the embedding process; null: radlens.encoders.embed's default). Same files "
                               "either way; not part of the stage hashes")


@dataclass
class LensConfig:
    """``lens:`` — radiomic lens (``fit-pre`` / ``refit-post`` / ``compare``)."""

    enabled: bool = _opt(True)
    pooling: str = _opt("auto", choices=("auto", "cls", "global", "mean", "roi"),
                        help="embedding pooling the lens maps radiomics to; auto: roi if present")
    top_k: int = _opt(20, minimum=1, help="features per task in the top-k tables and enrichment check")
    n_permutations: int = _opt(2000, minimum=1, help="random top-k sets of the class-enrichment test")
    n_null: int = _opt(200, minimum=0, help="null replicates of refit-post")
    n_boot: int = _opt(200, minimum=0, help="bootstrap replicates of refit-post")
    expected_classes: dict = _opt({}, help="task -> radiomic feature classes expected on top (e.g. "
                                  "{task_texture: [glcm, glrlm, glszm]}); enables the enrichment check")
    options: dict = _opt({}, help="extra RadiomicLens parameters passed to fit-pre")
    layer_figures: str = _opt("all", choices=("all", "main"),
                              help="layer-wise lens: compare figures of every layer, or only of the main layer "
                                   "(encoders.<arch>.layer, else the deepest; the one the report shows); "
                                   "tables are written for every layer either way")
    jobs: int = _opt(1, minimum=1, help="worker processes over the layers of a layer-wise lens (fit-pre, "
                     "refit-post, compare); every layer runs on one BLAS thread, so the results equal jobs=1's "
                     "bit for bit")


@dataclass
class CamDriftConfig:
    """``cam_drift:`` — CAM drift between transfer-learning and fine-tuned classifiers."""

    enabled: bool = _opt(True)
    methods: list = _opt(["layercam", "gradcam++"], help="attribution methods")
    max_cases: int | None = _opt(None, minimum=1, help="use only the first rows of the manifest (null: all)")
    n_boot: int = _opt(1000, minimum=0)
    options: dict = _opt({}, help="extra keyword arguments passed to radlens.cam.run.cam_drift_study")


@dataclass
class ProbeConfig:
    """``pooling_probe:`` — does small-lesion signal survive pooling?"""

    enabled: bool = _opt(True)
    panel: dict = _opt({}, help="panel settings merged over radlens/configs/panel_default.yaml")
    post_task: str | None = _opt(None, help="task whose fine-tuned encoder is probed after (null: first task)")


@dataclass
class LocalizationConfig:
    """``localization:`` — reference-based scores of the CAMs against the ROIs."""

    enabled: bool = _opt(True)
    score: str = _opt("auc", help="localization score of the accuracy-interpretability trade-off")
    positive_col: str | None = _opt(None, help="score only rows where this column is 1 (e.g. has_lesion)")
    n_boot: int = _opt(1000, minimum=0)
    options: dict = _opt({}, help="extra keyword arguments passed to radlens.localization.localize")


@dataclass
class TaskCheckpoints:
    """One downstream task of one architecture.

    ``finetuned`` is a classifier spec YAML (encoder + head; needed for CAM drift) or an encoder spec
    YAML (enough for the lens and the probe); ``transfer`` a classifier spec of the frozen pre
    backbone with a trained head (CAM drift only). ``label``: the manifest column holding the task's
    labels (default: the task's name).
    """

    finetuned: str = _opt(None)
    transfer: str | None = _opt(None)
    label: str | None = _opt(None)


@dataclass
class EncoderConfig:
    """One architecture: ``pre`` encoder spec YAML and ``tasks: {name: TaskCheckpoints}``.

    ``layer`` (optional) embeds every checkpoint of this architecture at that layer for the lens and
    the pooling probe (e.g. a CNN stage whose tokens stay local to the ROI), while classifier specs
    keep their own layer for their head, predictions and CAMs. ``layers`` (optional) embeds several
    layers from one forward pass (arrays ``pooling@layer``) for the layer-wise lens; the pooling
    probe then uses ``layer`` when given (it must be one of ``layers``), else the first of ``layers``.
    """

    pre: str = _opt(None)
    tasks: dict = _opt({})
    layer: str | None = _opt(None)
    layers: list | None = _opt(None, help="several embedding layers from one forward pass (dotted names; "
                                          "ViT blocks by index)")

    @property
    def embed_layers(self) -> list | None:
        """The layers the embed stages read (None: each spec's own layer)."""
        return list(self.layers) if self.layers else None

    @property
    def main_layer(self):
        """The layer of single-layer analyses (pooling probe): ``layer``, else the first of ``layers``."""
        if self.layer is not None:
            return self.layer
        return self.layers[0] if self.layers else None


@dataclass
class StudyConfig:
    """A whole study (``radlens run STUDY.yaml``)."""

    manifest: str = _opt(None, help="manifest CSV/parquet (relative to this YAML)")
    encoders: dict = _opt({}, help="{architecture name: EncoderConfig}")
    name: str = _opt("study")
    out: str = _opt("run", help="run folder (relative to this YAML); `radlens run --out` overrides")
    seed: int = _opt(0, minimum=0)
    threads: int | None = _opt(None, minimum=1, help="torch intra-op threads during the run (null: torch default)")
    stage_jobs: int = _opt(1, minimum=1, help="stages run at once in forked processes (independent ones; "
                           "1: one after another in this process). Not part of the stage hashes")
    radiomics: RadiomicsConfig = _opt(None)
    embed: EmbedConfig = _opt(None)
    lens: LensConfig = _opt(None)
    cam_drift: CamDriftConfig = _opt(None)
    pooling_probe: ProbeConfig = _opt(None)
    localization: LocalizationConfig = _opt(None)
    report: bool = _opt(True, help="write report.html at the end")
    figure_formats: list = _opt(["png", "svg"], help="file formats of every figure the run draws (png required: "
                                "the report embeds it; [png] skips the SVG copies)")
    base_dir: str = _opt(".", help="folder relative paths are resolved against (set by load_study)")

    def resolve(self, p: str | None) -> Path | None:
        """Absolute path of a config path (relative ones against the YAML's folder)."""
        if p is None:
            return None
        q = Path(os.path.expanduser(str(p)))
        return q if q.is_absolute() else (Path(self.base_dir) / q).resolve()

    @property
    def tasks(self) -> list[str]:
        """Every task name, in first-seen order across architectures."""
        out: list[str] = []
        for enc in self.encoders.values():
            out += [t for t in enc.tasks if t not in out]
        return out


_SECTIONS = {"radiomics": RadiomicsConfig, "embed": EmbedConfig, "lens": LensConfig, "cam_drift": CamDriftConfig,
             "pooling_probe": ProbeConfig, "localization": LocalizationConfig}


# --------------------------------------------------------------------------- validation
def _type_name(tp) -> str:
    return getattr(tp, "__name__", str(tp)).replace("typing.", "")


def _check_value(where: str, key: str, value: Any, tp, meta: Mapping[str, Any]) -> Any:
    """Coerce/validate one scalar/list/dict value against its annotation and metadata."""
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if origin in (typing.Union, getattr(__import__("types"), "UnionType", None)):
        if value is None and type(None) in args:
            return None
        tp = next(a for a in args if a is not type(None))
    if value is None:
        if meta.get("_required"):
            raise ConfigError(f"{where}: key {key!r} is required (a {_type_name(tp)})")
        return None
    ok = True
    if tp is bool:
        ok = isinstance(value, bool)
    elif tp is int:
        ok = isinstance(value, int) and not isinstance(value, bool)
    elif tp is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        value = float(value) if ok else value
    elif tp is str:
        ok = isinstance(value, (str, os.PathLike))
        value = str(value) if ok else value
    elif tp is list:
        ok = isinstance(value, (list, tuple))
        value = list(value) if ok else value
    elif tp is dict:
        ok = isinstance(value, Mapping)
        value = dict(value) if ok else value
    if not ok:
        raise ConfigError(f"{where}: key {key!r} has value {value!r} ({type(value).__name__}); "
                          f"expected a value of type {_type_name(tp)}")
    choices = meta.get("choices")
    if choices is not None and value not in choices:
        raise ConfigError(f"{where}: key {key!r} has value {value!r}; allowed values: {list(choices)}")
    lo, hi = meta.get("minimum"), meta.get("maximum")
    if lo is not None and value < lo or hi is not None and value > hi:
        rng = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ConfigError(f"{where}: key {key!r} has value {value!r}; must be {rng}")
    return value


def _unknown(where: str, key: str, allowed) -> ConfigError:
    near = difflib.get_close_matches(key, list(allowed), n=1)
    hint = f" (did you mean {near[0]!r}?)" if near else ""
    return ConfigError(f"{where}: unknown key {key!r}{hint}; allowed keys: {sorted(allowed)}")


def _build(cls, raw: Any, where: str, required: tuple[str, ...] = ()):
    """Instantiate dataclass ``cls`` from mapping ``raw`` (validated; nested sections recurse)."""
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{where}: expected a mapping of keys to values, got {raw!r} ({type(raw).__name__})")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for k in raw:
        if k not in fields or k == "base_dir":
            raise _unknown(where, str(k), [f for f in fields if f != "base_dir"])
    kw = {}
    for name, f in fields.items():
        tp = hints[name]
        sub = f"{where}.{name}" if where else name
        if isinstance(tp, type) and dataclasses.is_dataclass(tp):
            kw[name] = _build(tp, raw.get(name), sub)
            continue
        if name not in raw:
            if name in required:
                raise ConfigError(f"{where or 'study'}: key {name!r} is required; {f.metadata.get('help', '')}".rstrip("; "))
            continue
        meta = dict(f.metadata, _required=name in required)
        kw[name] = _check_value(where or "study", name, raw[name], tp, meta)
    return cls(**kw)


def _build_encoders(raw: Any, where: str) -> dict[str, EncoderConfig]:
    if not isinstance(raw, Mapping) or not raw:
        raise ConfigError(f"{where}: 'encoders' must map architecture names to "
                          "{pre: encoder.yaml, tasks: {task: {finetuned: ..., transfer: ...}}}; got "
                          f"{raw!r}")
    out = {}
    for arch, enc_raw in raw.items():
        w = f"{where}.encoders.{arch}"
        enc = _build(EncoderConfig, enc_raw, w, required=("pre",))
        if enc.layers is not None:
            bad = [v for v in enc.layers if isinstance(v, bool) or not isinstance(v, (str, int))]
            if bad or not enc.layers:
                raise ConfigError(f"{w}: key 'layers' has value {enc.layers!r}; expected a non-empty list of layer "
                                  "names (e.g. [layer1, layer2, layer3]) or block indices (e.g. [2, 4, 6])")
            if enc.layer is not None and str(enc.layer) not in [str(v) for v in enc.layers]:
                raise ConfigError(f"{w}: layer={enc.layer!r} is not one of layers={enc.layers!r}; 'layer' names "
                                  "the layer of single-layer analyses and must be one of 'layers'")
        if not isinstance(enc.tasks, Mapping) or not enc.tasks:
            raise ConfigError(f"{w}: key 'tasks' must map task names to {{finetuned: ..., transfer: ...}}; "
                              f"got {enc.tasks!r}")
        tasks = {}
        for task, t_raw in enc.tasks.items():
            if isinstance(t_raw, str):  # shorthand: task: finetuned.yaml
                t_raw = {"finetuned": t_raw}
            tc = _build(TaskCheckpoints, t_raw, f"{w}.tasks.{task}", required=("finetuned",))
            tc.label = tc.label or str(task)
            tasks[str(task)] = tc
        enc.tasks = tasks
        out[str(arch)] = enc
    return out


def study_from_dict(raw: Mapping[str, Any], base_dir: str | Path = ".", source: str = "study") -> StudyConfig:
    """Validate a study mapping (as read from YAML) into a :class:`StudyConfig`.

    Raises
    ------
    ConfigError
        naming ``source``, the dotted key, the value and what is allowed.
    """
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{source}: a study config must be a YAML mapping, got {type(raw).__name__}")
    raw = dict(raw)
    enc_raw = raw.pop("encoders", None)
    if enc_raw is None:
        raise ConfigError(f"{source}: key 'encoders' is required (architecture name -> pre/tasks checkpoints)")
    cfg = _build(StudyConfig, raw, source, required=("manifest",))
    from radlens.viz.style import check_formats

    try:
        cfg.figure_formats = list(check_formats(cfg.figure_formats))
    except ValueError as exc:
        raise ConfigError(f"{source}: key 'figure_formats' has value {cfg.figure_formats!r}; {exc}") from None
    cfg.encoders = _build_encoders(enc_raw, source)
    cfg.base_dir = str(Path(base_dir).resolve())
    return cfg


def load_study(path: str | Path) -> StudyConfig:
    """Read and validate a study YAML (paths inside resolve against its folder)."""
    import yaml

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"study config {str(path)!r} does not exist; write one like configs/study.yaml "
                          "or run `radlens demo` to get a complete example")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"study config {str(path)!r} is not valid YAML: {exc}") from None
    return study_from_dict(raw or {}, path.parent, source=str(path))


def check_paths(cfg: StudyConfig) -> list[str]:
    """Every referenced file that does not exist, as messages naming the key (empty list: all present)."""
    problems = []
    items = [("manifest", cfg.manifest), ("radiomics.params", cfg.radiomics.params)]
    for arch, enc in cfg.encoders.items():
        items.append((f"encoders.{arch}.pre", enc.pre))
        for task, tc in enc.tasks.items():
            items += [(f"encoders.{arch}.tasks.{task}.finetuned", tc.finetuned),
                      (f"encoders.{arch}.tasks.{task}.transfer", tc.transfer)]
    for key, p in items:
        if p is not None and not cfg.resolve(p).exists():
            problems.append(f"{key}: {str(cfg.resolve(p))!r} does not exist")
    return problems


def study_to_dict(cfg: StudyConfig) -> dict[str, Any]:
    """Plain mapping of a study (round-trips through :func:`study_from_dict`; no ``base_dir``)."""
    d = dataclasses.asdict(cfg)
    d.pop("base_dir", None)
    for enc in d["encoders"].values():
        for tc in enc["tasks"].values():
            if tc.get("transfer") is None:
                tc.pop("transfer")
    return d
