"""Pooling-probe configuration (YAML → validated :class:`ProbeConfig`).

The packaged default is ``radlens/configs/panel_default.yaml``; a user file (``--panel``) is
merged over it section by section, so it only needs the keys it changes. Every unknown key or bad
value raises :class:`radlens.errors.ConfigError` naming the key, the value and what is allowed.
"""
from __future__ import annotations

import copy
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Mapping

from radlens.errors import ConfigError
from radlens.probe.panel import PanelSpec

POOLING_NAMES = ("cls", "global", "mean", "roi")
_SECTIONS = {
    "seed": None, "poolings": None, "batch_size": None,
    "images": {"query", "max_images"},
    "panel": {"footprints", "margin", "perturbations"},
    "probe": {"n_splits", "C", "n_boot", "alpha"},
    "lesion": {"findings", "size_threshold", "image_poolings", "box_level", "query"},
    "jitter": {"levels", "footprints", "strength", "lesion"},
}


def default_config_path() -> Path:
    return Path(__file__).resolve().parent.parent / "configs" / "panel_default.yaml"


@dataclass
class ProbeConfig:
    """Validated settings of ``radlens pooling-probe`` (see ``docs/probe.md``)."""

    panel: PanelSpec
    seed: int = 0
    poolings: tuple[str, ...] | str = "auto"
    batch_size: int = 32
    query: str | None = None
    max_images: int | None = 200
    n_splits: int = 5
    C: float = 1.0
    n_boot: int = 1000
    alpha: float = 0.05
    findings: tuple[str, ...] = ()
    lesion_query: str | None = None
    size_threshold: float | str = 0.01
    image_poolings: tuple[str, ...] = ("cls", "global", "mean")
    box_level: bool = True
    jitter_levels: tuple[float, ...] = (0.0, 0.1, 0.25, 0.5, 1.0)
    jitter_footprints: tuple[float, ...] | str = "smallest"
    jitter_strength: str | float = "max"
    jitter_lesion: bool = True
    raw: dict[str, Any] = field(default_factory=dict)


def _merge(base: dict, over: Mapping) -> dict:
    out = copy.deepcopy(base)
    for k, v in over.items():
        if k == "panel" and isinstance(v, Mapping) and "perturbations" in v:
            # a user panel replaces the perturbation list wholesale (no silent extra kinds)
            out[k] = {**out.get(k, {}), **copy.deepcopy(dict(v))}
        elif isinstance(v, Mapping) and isinstance(out.get(k), dict):
            out[k] = _merge(out[k], v)
        else:
            out[k] = copy.deepcopy(v)
    return out


def _num(v, key, lo=None, hi=None, integer=False, open_lo=False):
    ok = isinstance(v, (int, float)) and not isinstance(v, bool)
    if ok and integer:
        ok = float(v).is_integer()
    if ok and lo is not None:
        ok = v > lo if open_lo else v >= lo
    if ok and hi is not None:
        ok = v <= hi
    if not ok:
        rng = f"{'>' if open_lo else '>='} {lo}" if lo is not None else ""
        rng += f" and <= {hi}" if hi is not None else ""
        raise ConfigError(f"{key}={v!r}: must be {'an integer' if integer else 'a number'} {rng}".rstrip())
    return int(v) if integer else float(v)


def load_probe_config(panel: str | Path | Mapping | None = None) -> ProbeConfig:
    """Read the packaged default and merge ``panel`` (a YAML path or a mapping) over it."""
    import yaml

    base = yaml.safe_load(default_config_path().read_text(encoding="utf-8"))
    where = "panel config"
    if panel is None:
        user: Mapping = {}
    elif isinstance(panel, Mapping):
        user = panel
    else:
        p = Path(panel)
        if not p.exists():
            raise ConfigError(f"panel config {str(p)!r} does not exist; pass a YAML file like "
                              "configs/panel.yaml or leave --panel out for the packaged default")
        try:
            user = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as exc:
            raise ConfigError(f"panel config {str(p)!r} is not valid YAML: {exc}") from exc
        where = f"panel config {str(p)!r}"
        if not isinstance(user, Mapping):
            raise ConfigError(f"{where}: top level must be a mapping, got {type(user).__name__}")
    for k, v in user.items():
        if k not in _SECTIONS:
            raise ConfigError(f"{where}: unknown key {k!r}; allowed: {sorted(_SECTIONS)}")
        allowed = _SECTIONS[k]
        if allowed is not None:
            if not isinstance(v, Mapping):
                raise ConfigError(f"{where}: {k!r} must be a mapping with keys {sorted(allowed)}")
            bad = set(v) - allowed
            if bad:
                raise ConfigError(f"{where}: unknown key(s) {sorted(bad)} in {k!r}; allowed: {sorted(allowed)}")
    d = _merge(base, user)
    spec = PanelSpec.from_dict(d["panel"], where="panel")
    pools = d.get("poolings", "auto")
    if pools != "auto":
        if isinstance(pools, str):
            pools = [pools]
        if not isinstance(pools, (list, tuple)) or not pools or any(p not in POOLING_NAMES for p in pools):
            raise ConfigError(f"poolings={pools!r}: give 'auto' or a list among {list(POOLING_NAMES)}")
        pools = tuple(pools)
    img = d.get("images", {})
    mi = img.get("max_images")
    les = d.get("lesion", {})
    findings = les.get("findings") or []
    if isinstance(findings, str):
        findings = [findings]
    if not isinstance(findings, (list, tuple)) or not all(isinstance(f, str) for f in findings):
        raise ConfigError(f"lesion.findings={findings!r}: give a list of binary label column names")
    thr = les.get("size_threshold", 0.01)
    if thr != "median":
        _num(thr, "lesion.size_threshold", 0, 1, open_lo=True)
    ip = les.get("image_poolings", ["cls", "global", "mean"])
    if not isinstance(ip, (list, tuple)) or not ip or any(p not in ("cls", "global", "mean") for p in ip):
        raise ConfigError(f"lesion.image_poolings={ip!r}: give a list among ['cls', 'global', 'mean']")
    jit = d.get("jitter", {})
    levels = jit.get("levels", [0.0])
    if not isinstance(levels, (list, tuple)) or not levels:
        raise ConfigError(f"jitter.levels={levels!r}: give a list of jitter levels >= 0, e.g. [0, 0.25, 0.5]")
    levels = tuple(_num(v, "jitter.levels[]", 0) for v in levels)
    jfp = jit.get("footprints", "smallest")
    if jfp not in ("smallest", "all"):
        if not isinstance(jfp, (list, tuple)) or any(f not in spec.footprints for f in jfp):
            raise ConfigError(f"jitter.footprints={jfp!r}: give 'smallest', 'all' or a subset of "
                              f"panel.footprints {list(spec.footprints)}")
        jfp = tuple(float(f) for f in jfp)
    jst = jit.get("strength", "max")
    if jst != "max":
        _num(jst, "jitter.strength", 0, open_lo=True)
    q = img.get("query")
    lq = les.get("query")
    for key, val in (("images.query", q), ("lesion.query", lq)):
        if val is not None and not isinstance(val, str):
            raise ConfigError(f"{key}={val!r}: give a pandas query string such as 'has_lesion == 0'")
    return ProbeConfig(
        panel=spec, seed=_num(d.get("seed", 0), "seed", 0, integer=True), poolings=pools,
        batch_size=_num(d.get("batch_size", 32), "batch_size", 1, integer=True),
        query=q, max_images=None if mi is None else _num(mi, "images.max_images", 2, integer=True),
        n_splits=_num(d["probe"].get("n_splits", 5), "probe.n_splits", 2, integer=True),
        C=_num(d["probe"].get("C", 1.0), "probe.C", 0, open_lo=True),
        n_boot=_num(d["probe"].get("n_boot", 1000), "probe.n_boot", 50, integer=True),
        alpha=_num(d["probe"].get("alpha", 0.05), "probe.alpha", 0, 0.5, open_lo=True),
        findings=tuple(findings), lesion_query=lq, size_threshold=thr, image_poolings=tuple(ip),
        box_level=bool(les.get("box_level", True)), jitter_levels=levels, jitter_footprints=jfp,
        jitter_strength=jst, jitter_lesion=bool(jit.get("lesion", True)), raw=d)
