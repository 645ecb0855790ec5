"""``radlens run``: every stage of a study from one YAML, into one run folder.

Stages (each calls one library function, never the CLI)::

    radiomics                      radiomics/radiomics.parquet
    embed/<arch>/pre|<task>        embeddings/<arch>/<ckpt>.npz
    fit-pre/<arch>                 lens/<arch>/lens/
    refit-post/<arch>              lens/<arch>/shifts_<task>.parquet  (all tasks in one pass)
    compare/<arch>                 lens/<arch>/compare/
    enrichment/<arch>              lens/<arch>/enrichment.csv   (planted-truth / expected-class check)
    predictions                    predictions.parquet          (task scores of every classifier)
    cam-drift                      cam/drift.parquet, cam/maps*.npz, cam/figures/
    localize/<arch>/<task>         localization/<arch>_<task>.parquet
    tradeoff                       localization/tradeoff.csv
    pooling-probe/<arch>           probe/<arch>/probe.parquet
    report                         report.html

A stage is skipped when its *key* — a hash of its kind, its configuration and the content hashes
of its inputs (manifest + images, checkpoints, upstream artifacts) — equals the key recorded by
its last successful run and its outputs still exist. A failing stage is recorded
(``stages/<name>.json``, ``logs/<name>.log``) and every stage that does not depend on it still
runs; dependants are marked ``skipped``.
"""
from __future__ import annotations

import contextlib
import functools
import logging
import os
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from radlens.config import StudyConfig, check_paths, load_study, study_to_dict
from radlens.errors import ConfigError, RadlensError

log = logging.getLogger(__name__)

STATUSES = ("ok", "cached", "failed", "skipped")


@dataclass
class Stage:
    """One unit of work: ``fn()`` writes ``outputs``; ``inputs`` (paths) and ``config`` form its key.

    ``needs``: stages that must have finished ok (or cached), else this one is skipped; ``after``:
    stages that must have finished, whatever their outcome, before this one starts (``stage_jobs > 1``;
    in list order they come first anyway)."""

    name: str
    kind: str
    fn: Callable[[], Any]
    outputs: list[Path]
    inputs: dict[str, Any] = field(default_factory=dict)
    config: dict[str, Any] = field(default_factory=dict)
    needs: list[str] = field(default_factory=list)
    after: list[str] = field(default_factory=list)


@dataclass
class StageResult:
    name: str
    kind: str
    status: str
    seconds: float = 0.0
    key: str = ""
    outputs: list[str] = field(default_factory=list)
    error: str | None = None
    cpu_seconds: float = 0.0


@dataclass
class RunResult:
    """Outcome of :func:`run`: the run folder, one :class:`StageResult` per stage, the report path."""

    run_dir: Path
    stages: list[StageResult]
    report: Path | None = None

    @property
    def failed(self) -> list[StageResult]:
        return [s for s in self.stages if s.status == "failed"]


# --------------------------------------------------------------------------- hashing
class HashCache:
    """Content hashes of files/folders, memoised by (path, size, mtime) in a JSON file."""

    def __init__(self, path: Path):
        from radlens.io.artifacts import read_json

        self.path = path
        try:
            self.data = read_json(path) if path.exists() else {}
        except ValueError:
            self.data = {}

    def __call__(self, p: str | os.PathLike) -> str:
        from radlens.io.artifacts import file_hash

        p = Path(p)
        if not p.exists():
            return "missing"
        if p.is_dir():
            return file_hash(p)
        st = p.stat()
        k = str(p.resolve())
        stamp = [st.st_size, st.st_mtime_ns]
        hit = self.data.get(k)
        if hit and hit[0] == stamp:
            return hit[1]
        h = file_hash(p)
        self.data[k] = [stamp, h]
        return h

    def save(self) -> None:
        from radlens.io.artifacts import write_json

        write_json(self.path, self.data)


def manifest_files(manifest) -> list[Path]:
    """The manifest file and every image / mask it references."""
    files = [Path(manifest.path)]
    for col in ("image", "mask"):
        if col in manifest.df.columns:
            files += [Path(p) for p in manifest.df[col].dropna().astype(str)]
    return files


def spec_files(spec_path: str | os.PathLike) -> list[Path]:
    """An encoder or classifier spec YAML and every checkpoint file/folder it references."""
    import yaml

    spec_path = Path(spec_path)
    if spec_path.is_dir():
        return [spec_path]
    raw = yaml.safe_load(spec_path.read_text(encoding="utf-8")) or {}
    base = spec_path.parent
    out = [spec_path]

    def enc_files(enc, base):
        if isinstance(enc, str):
            return spec_files(base / enc)
        res = []
        for key in ("checkpoint", "path"):
            if isinstance(enc, dict) and enc.get(key):
                res.append(base / str(enc[key]))
        return res

    if "encoder" in raw:
        out += enc_files(raw["encoder"], base)
        head = raw.get("head") or {}
        if head.get("checkpoint"):
            out.append(base / str(head["checkpoint"]))
    else:
        out += enc_files(raw, base)
    return out


def is_classifier_spec(path: str | os.PathLike) -> bool:
    import yaml

    p = Path(path)
    if p.is_dir():
        return False
    raw = yaml.safe_load(p.read_text(encoding="utf-8")) or {}
    return isinstance(raw, dict) and "encoder" in raw and "head" in raw


def encoder_spec_of(path: str | os.PathLike, layer: str | None = None) -> Any:
    """The encoder spec of an encoder YAML / folder (returned as is) or of a classifier YAML
    (its ``encoder`` entry, with relative paths made absolute against the classifier's folder).

    ``layer``: return a spec dict whose ``layer`` is replaced by this one (the study's per-architecture
    embedding layer); an HF folder becomes ``{kind: hf, path: folder, layer: ...}``.
    """
    import yaml

    p = Path(path)
    if not is_classifier_spec(p):
        if layer is None:
            return str(p)
        if p.is_dir():
            return {"kind": "hf", "path": str(p.resolve()), "layer": layer}
        enc, base = yaml.safe_load(p.read_text(encoding="utf-8")) or {}, p.parent
    else:
        enc, base = (yaml.safe_load(p.read_text(encoding="utf-8")) or {})["encoder"], p.parent
        if isinstance(enc, str):
            q = Path(enc)
            q = q if q.is_absolute() else p.parent / q
            return str(q) if layer is None else encoder_spec_of(q, layer)
    enc = dict(enc)
    for key in ("checkpoint", "path"):
        if enc.get(key) and not Path(str(enc[key])).is_absolute():
            enc[key] = str((base / str(enc[key])).resolve())
    if layer is not None:
        enc["layer"] = layer
    return enc


# --------------------------------------------------------------------------- stage graph
def build_stages(cfg: StudyConfig, run_dir: Path, manifest) -> list[Stage]:
    """The stage graph of a study (in execution order)."""
    from radlens.study import stages as ss

    return ss.build(cfg, run_dir, manifest)


def _stage_key(stage: Stage, hashes: HashCache) -> str:
    from radlens.io.artifacts import obj_hash

    inp: dict[str, Any] = {}
    for k, v in stage.inputs.items():
        if isinstance(v, (list, tuple)):
            inp[k] = obj_hash([hashes(p) for p in v])
        elif v is None:
            inp[k] = None
        else:
            inp[k] = hashes(v)
    return obj_hash({"kind": stage.kind, "config": stage.config, "inputs": inp})


def _outputs_exist(paths: list[Path]) -> bool:
    return all(Path(p).exists() for p in paths)


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, RadlensError):
        return f"{type(exc).__name__}: {exc}"
    return f"{type(exc).__name__}: {exc}".strip()


def execute(stages: list[Stage], run_dir: Path, *, force: bool = False, jobs: int = 1,
            lane_init: Callable[[], None] | None = None,
            before_fork: Callable[[list[Stage]], None] | None = None) -> list[StageResult]:
    """Run (or skip) every stage; record each outcome under ``run_dir/stages``.

    ``jobs`` 1: in list order, in this process. ``jobs > 1``: independent stages at once in ``jobs``
    forked lane processes (:mod:`radlens.study.lanes`; ``before_fork(stages still to run)`` runs here
    once before they fork, ``lane_init`` first in each lane), a stage
    starting when its ``needs`` and ``after`` have finished; every stage computes, writes and records
    what it would in list order. Results are returned in list order either way.
    """
    from radlens.io.artifacts import read_json, write_json

    hashes = HashCache(run_dir / ".cache" / "hashes.json")
    results: dict[str, StageResult] = {}

    def rec_path(stage):
        return run_dir / "stages" / f"{stage.name.replace('/', '__')}.json"

    def prepare(stage):
        """``(final record, None)`` (skipped upstream / cached) or ``(None, key)`` to run the stage."""
        bad = [n for n in stage.needs if results.get(n) is None or results[n].status not in ("ok", "cached")]
        if bad:
            why = "; ".join(f"{n} {results[n].status if n in results else 'missing'}" for n in bad)
            log.warning("stage %s skipped: upstream %s", stage.name, why)
            return StageResult(stage.name, stage.kind, "skipped", error=f"not run: upstream {why}"), None
        key = _stage_key(stage, hashes)
        prev = read_json(rec_path(stage)) if rec_path(stage).exists() else None
        if (not force and prev and prev.get("key") == key and prev.get("status") in ("ok", "cached")
                and _outputs_exist(stage.outputs)):
            log.info("stage %s: inputs unchanged, skipped (cached)", stage.name)
            return StageResult(stage.name, stage.kind, "cached", prev.get("seconds", 0.0), key,
                               [str(p) for p in stage.outputs]), None
        return None, key

    def finish(stage, r):
        if not isinstance(r, StageResult):   # a lane died while running the stage
            r = StageResult(stage.name, stage.kind, "failed", 0.0, "", [str(p) for p in stage.outputs],
                            f"the stage's worker process ended without a result (exit code {r}; killed, out "
                            "of memory or a crash in native code); run it alone with `radlens run STUDY.yaml "
                            f"--only {stage.name}`")
            log.error("stage %s failed: %s", stage.name, r.error)
        results[stage.name] = r
        write_json(rec_path(stage), vars(r))
        hashes.save()

    from radlens.study.lanes import fork_available, lane_count, run_parallel

    jobs = lane_count(jobs, stages)
    if jobs > 1 and not fork_available():
        log.info("stage_jobs=%d: processes are not forked here (RADLENS_MP_START / platform); stages run one "
                 "after another", jobs)
        jobs = 1
    if jobs > 1:
        log.info("running %d stages in %d lane processes", len(stages), jobs)
        run_parallel(stages, jobs, prepare, lambda st, key: _run_stage(st, key, run_dir), finish, lane_init,
                     before_fork)
        hashes.save()
        return [results[s.name] for s in stages]

    from radlens.progress import progress

    bar = progress(stages, total=len(stages), desc="stages", unit="stage")
    for stage in bar:
        bar.set_postfix_str(stage.name, refresh=True)
        r, key = prepare(stage)
        finish(stage, r if r is not None else _run_stage(stage, key, run_dir))
    hashes.save()
    return list(results.values())


def _cpu_seconds() -> float:
    """CPU seconds of this process plus those of its ended (waited-for) child processes: a stage's
    ``cpu_seconds`` counts the worker processes it ran (lens layers, case loaders) too."""
    try:
        import resource

        own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
        return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime
    except ImportError:  # not on POSIX
        return time.process_time()


def _run_stage(stage: Stage, key: str, run_dir: Path) -> StageResult:
    """Run one stage's function; its record (ok, skipped for a stated reason, or failed with the
    traceback in ``logs/<name>.log``)."""
    from radlens.errors import NothingToDo
    from radlens.io.artifacts import atomic_write_text

    outs = [str(p) for p in stage.outputs]
    t0 = time.perf_counter()
    c0 = _cpu_seconds()
    log.info("stage %s: running", stage.name)
    try:
        stage.fn()
        missing = [o for o in outs if not Path(o).exists()]
        if missing:
            raise RuntimeError(f"stage finished but did not write {missing}")
        r = StageResult(stage.name, stage.kind, "ok", round(time.perf_counter() - t0, 2), key, outs,
                        cpu_seconds=round(_cpu_seconds() - c0, 2))
    except NothingToDo as exc:  # a stated, data-driven reason: nothing to compute, not an error
        r = StageResult(stage.name, stage.kind, "skipped", round(time.perf_counter() - t0, 2), "", outs,
                        f"nothing to do: {exc}")
        log.warning("stage %s skipped: %s", stage.name, exc)
    except Exception as exc:  # one stage's failure must not stop the others
        r = StageResult(stage.name, stage.kind, "failed", round(time.perf_counter() - t0, 2), "", outs,
                        _error_text(exc))
        atomic_write_text(run_dir / "logs" / f"{stage.name.replace('/', '__')}.log", traceback.format_exc())
        log.error("stage %s failed: %s (traceback in logs/)", stage.name, r.error)
    return r


# --------------------------------------------------------------------------- entry point
def run(study: str | os.PathLike | StudyConfig, out: str | os.PathLike | None = None, *, force: bool = False,
        report: bool | None = None, only: list[str] | None = None) -> RunResult:
    """Run a whole study (``radlens run STUDY.yaml``).

    Parameters
    ----------
    study : path of a study YAML, or a :class:`radlens.config.StudyConfig`
    out : run folder (default: the config's ``out``, relative to the YAML's folder)
    force : re-run every stage even when its inputs did not change
    report : write ``report.html`` (default: the config's ``report``)
    only : run only stages whose name starts with one of these prefixes (plus what they need)

    Returns
    -------
    RunResult
        Stage outcomes; ``run.json`` in the run folder holds the same, with versions and input hashes.

    Raises
    ------
    ConfigError
        The study config is invalid or names files that do not exist (all of them are listed).
    """
    from radlens.io.artifacts import versions, write_json
    from radlens.io.manifest import read_manifest

    cfg = study if isinstance(study, StudyConfig) else load_study(study)
    problems = check_paths(cfg)
    if problems:
        raise ConfigError("study config names missing files:\n  " + "\n  ".join(problems))
    run_dir = Path(out) if out is not None else cfg.resolve(cfg.out)
    run_dir.mkdir(parents=True, exist_ok=True)
    _write_config_copy(cfg, run_dir)
    manifest = read_manifest(cfg.resolve(cfg.manifest))
    stages = build_stages(cfg, run_dir, manifest)
    if only:
        stages = _select(stages, only)
    want_report = cfg.report if report is None else report
    t0 = time.perf_counter()
    from radlens.viz.style import figure_formats

    with _torch_threads(cfg.threads), figure_formats(cfg.figure_formats):
        results = execute(stages, run_dir, force=force, jobs=cfg.stage_jobs,
                          lane_init=functools.partial(_lane_threads, cfg.threads),
                          before_fork=functools.partial(_preimport, cfg))
    hashes = HashCache(run_dir / ".cache" / "hashes.json")
    inputs = {"manifest": {"path": str(manifest.path), "sha256": hashes(manifest.path)}}
    for arch, enc in cfg.encoders.items():
        inputs[f"{arch}/pre"] = {"path": str(cfg.resolve(enc.pre)), "sha256": _files_hash(spec_files(cfg.resolve(enc.pre)), hashes)}
        for task, tc in enc.tasks.items():
            for role in ("finetuned", "transfer"):
                p = getattr(tc, role)
                if p is not None:
                    inputs[f"{arch}/{task}/{role}"] = {"path": str(cfg.resolve(p)),
                                                       "sha256": _files_hash(spec_files(cfg.resolve(p)), hashes)}
    summary = {"study": cfg.name, "config": study_to_dict(cfg), "versions": versions(), "inputs": inputs,
               "seconds": round(time.perf_counter() - t0, 2), "stages": [vars(r) for r in results]}
    write_json(run_dir / "run.json", summary)
    res = RunResult(run_dir, results)
    if want_report:
        res.report = write_report(run_dir, cfg.figure_formats)
    n_fail = len(res.failed)
    log.info("run %s: %d stages (%d failed) in %.1f s -> %s", cfg.name, len(results), n_fail,
             summary["seconds"], run_dir)
    return res


def _preimport(cfg: StudyConfig, stages: list[Stage]) -> None:
    """Before the stage lanes fork: import what the stages still to run and the study's encoders
    need, once (not when every stage is cached: no lane starts then)."""
    from radlens.study.lanes import fork_available, preimport

    if not fork_available():
        return
    kinds = set()
    model_stages = any(s.kind in ("embed", "predictions", "cam-drift", "pooling-probe") for s in stages)
    for enc in cfg.encoders.values() if model_stages else ():
        try:
            spec = encoder_spec_of(cfg.resolve(enc.pre), "probe")
            kinds.add(spec.get("kind") if isinstance(spec, dict) else None)
        except Exception:  # noqa: BLE001 - a bad spec is reported by the stages that read it
            continue
    log.debug("lanes: imported %s before the fork", preimport(stages, sorted(k for k in kinds if k)))


def _lane_threads(n: int | None) -> None:
    """Start of a stage lane (forked): the run's torch thread count, set again in the new process."""
    import sys

    if n is not None and "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(n)


def write_report(run_dir: str | os.PathLike, formats=("png", "svg")) -> Path | None:
    """``report.html`` of a run folder (its figures in ``formats``); None when it fails (logged, the
    traceback in ``logs/report.log``: the run's artefacts stay valid without a report)."""
    from radlens.report import report as make_report
    from radlens.viz.style import figure_formats

    try:
        with figure_formats(formats):
            return make_report(Path(run_dir))
    except Exception as exc:  # noqa: BLE001
        log.error("report failed: %s", _error_text(exc))
        from radlens.io.artifacts import atomic_write_text

        atomic_write_text(Path(run_dir) / "logs" / "report.log", traceback.format_exc())
        return None


@contextlib.contextmanager
def _torch_threads(n: int | None):
    """Run with ``n`` torch intra-op threads (None: leave torch's setting alone)."""
    if n is None:
        yield
        return
    import torch

    old = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(old)


def _files_hash(paths: list[Path], hashes: HashCache) -> str:
    from radlens.io.artifacts import obj_hash

    return obj_hash([hashes(p) for p in paths])


def _select(stages: list[Stage], prefixes: list[str]) -> list[Stage]:
    by_name = {s.name: s for s in stages}
    keep: set[str] = set()

    def add(n):
        if n in keep or n not in by_name:
            return
        keep.add(n)
        for d in by_name[n].needs:
            add(d)

    for s in stages:
        if any(s.name.startswith(p) for p in prefixes):
            add(s.name)
    if not keep:
        raise ConfigError(f"only={prefixes!r} matches no stage; stages: {[s.name for s in stages]}")
    return [s for s in stages if s.name in keep]


def _write_config_copy(cfg: StudyConfig, run_dir: Path) -> None:
    import yaml

    from radlens.io.artifacts import atomic_write_text

    d = study_to_dict(cfg)
    d["manifest"] = str(cfg.resolve(cfg.manifest))
    for enc in d["encoders"].values():
        enc["pre"] = str(cfg.resolve(enc["pre"]))
        for tc in enc["tasks"].values():
            for role in ("finetuned", "transfer"):
                if tc.get(role):
                    tc[role] = str(cfg.resolve(tc[role]))
    if d["radiomics"].get("params"):
        d["radiomics"]["params"] = str(cfg.resolve(d["radiomics"]["params"]))
    atomic_write_text(run_dir / "study.yaml", yaml.safe_dump(d, sort_keys=False))
