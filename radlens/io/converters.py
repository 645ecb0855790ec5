"""Converters from public datasets' annotation formats to radlens manifests.

Each converter returns the manifest as a DataFrame; :func:`convert` writes it (CSV or parquet, with
a provenance sidecar).  Image paths are written relative to the manifest's folder, as the manifest
contract resolves them.

``chestxdet10``  ChestX-Det10 JSON: a list of ``{"file_name": "36199.png", "syms": [...],
                 "boxes": [[x1, y1, x2, y2], ...]}``; one row per box.
``nih-bbox``     NIH ChestX-ray14 ``BBox_List_2017.csv``: columns ``Image Index, Finding Label,
                 Bbox [x, y, w, h]``; one row per box.
``picai``        PI-CAI-like NIfTI/MHA layout (see :func:`picai`); one row per study (and lesion
                 label value).

Box conventions: ChestX-Det10 corners ``[x1, y1, x2, y2]`` become ``bbox_x = x1, bbox_y = y1,
bbox_w = x2 - x1, bbox_h = y2 - y1``; NIH boxes are already ``x, y, w, h``.  x is the column, y the
row, in pixels of the stored image; values are kept as given (floats).
"""
from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

import numpy as np

from radlens.errors import InputError

log = logging.getLogger(__name__)

FORMATS = ("chestxdet10", "nih-bbox", "picai")
NIH_COLUMNS = ("Image Index", "Finding Label", "Bbox [x", "y", "w", "h]")
_MAX_LISTED = 10


def task_column(finding: str) -> str:
    """``"Pleural Effusion"`` -> ``"task_pleural_effusion"`` (a manifest task column name)."""
    slug = re.sub(r"[^0-9a-zA-Z]+", "_", str(finding)).strip("_").lower()
    if not slug:
        raise InputError(f"finding label {finding!r} has no letters or digits; cannot name a task column for it")
    return f"task_{slug}"


def _raise_all(source: str, problems: list[str], fix: str) -> None:
    if problems:
        shown = "\n  ".join(problems[:_MAX_LISTED])
        more = f"\n  ... and {len(problems) - _MAX_LISTED} more" if len(problems) > _MAX_LISTED else ""
        raise InputError(f"{source}: {len(problems)} problem(s):\n  {shown}{more}\n{fix}")


def _rel(path: Path, base: Path | None) -> str:
    if base is None:
        return str(path)
    try:
        return os.path.relpath(path.resolve(), base.resolve())
    except ValueError:  # another drive (Windows)
        return str(path.resolve())


def _missing_images(df, image_col_abs: list[Path], source: str) -> None:
    missing = [f"row {i + 1} ({cid}): image {str(p)!r} does not exist"
               for i, (cid, p) in enumerate(zip(df["case_id"], image_col_abs)) if not p.exists()]
    _raise_all(source, missing, "Fix: pass the folder that holds the images, or --no-check-images to write "
                                "the manifest anyway (radlens validates it again when it reads it).")


def _finding_tasks(df, findings_col: str = "finding"):
    for f in sorted(df[findings_col].unique()):
        df[task_column(f)] = (df[findings_col] == f).astype(int)
    return df


def _number(v) -> float | None:
    if isinstance(v, bool):
        return None
    try:
        x = float(v)
    except (TypeError, ValueError):
        return None
    return x if np.isfinite(x) else None


# --------------------------------------------------------------------------- ChestX-Det10
def chestxdet10(json_path, image_dir, *, manifest_dir=None, negatives: str = "skip",
                check_images: bool = True):
    """Manifest rows from a ChestX-Det10 annotation JSON (one row per box).

    Parameters
    ----------
    json_path : path
        ``train.json`` / ``test.json``: a list of ``{"file_name", "syms", "boxes"}`` with one
        ``sym`` per box, boxes as ``[x1, y1, x2, y2]`` pixel corners.
    image_dir : path
        Folder holding the ``file_name`` images.
    manifest_dir : path, optional
        Folder the manifest will live in; image paths are written relative to it (absolute when None).
    negatives : {"skip", "full"}
        Images without boxes: leave them out, or add one row whose box is the whole image
        (``finding = "No Finding"``; needs the image to read its size).
    check_images : bool
        Require every image to exist.

    Returns
    -------
    pandas.DataFrame
        ``case_id`` (``<file stem>_<k>``, k = box index in the entry), ``image``, ``bbox_x, bbox_y,
        bbox_w, bbox_h``, ``patient_id`` (the file stem: boxes of one image stay in one split),
        ``finding``, ``box_index`` and one binary ``task_<finding>`` column per finding.
    """
    import pandas as pd

    if negatives not in ("skip", "full"):
        raise InputError(f"negatives={negatives!r} is not allowed; use 'skip' or 'full'")
    src = f"ChestX-Det10 JSON {str(json_path)!r}"
    try:
        data = json.loads(Path(json_path).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{src} does not exist; pass the train.json/test.json of ChestX-Det10") from None
    except json.JSONDecodeError as exc:
        raise InputError(f"{src} is not valid JSON ({exc}); pass the annotation file unchanged") from None
    if not isinstance(data, list):
        raise InputError(f"{src}: top level is a {type(data).__name__}, expected a list of "
                         "{'file_name', 'syms', 'boxes'} entries")
    image_dir = Path(image_dir)
    base = Path(manifest_dir) if manifest_dir is not None else None
    rows, problems, seen, n_neg = [], [], set(), 0
    for i, e in enumerate(data):
        where = f"entry {i}"
        if not isinstance(e, dict) or not {"file_name", "syms", "boxes"} <= set(e):
            have = sorted(e) if isinstance(e, dict) else type(e).__name__
            problems.append(f"{where}: needs keys 'file_name', 'syms', 'boxes' (has {have})")
            continue
        fn, syms, boxes = e["file_name"], e["syms"], e["boxes"]
        where = f"entry {i} ({fn!r})"
        if not isinstance(fn, str) or not fn:
            problems.append(f"{where}: file_name must be a non-empty string")
            continue
        if fn in seen:
            problems.append(f"{where}: file_name appears twice; merge its boxes into one entry")
            continue
        seen.add(fn)
        if not isinstance(syms, list) or not isinstance(boxes, list) or len(syms) != len(boxes):
            problems.append(f"{where}: 'syms' and 'boxes' must be lists of equal length "
                            f"(got {len(syms) if isinstance(syms, list) else syms!r} syms, "
                            f"{len(boxes) if isinstance(boxes, list) else boxes!r} boxes)")
            continue
        stem = Path(fn).stem
        img = image_dir / fn
        if not boxes:
            n_neg += 1
            if negatives == "full":
                rows.append(dict(case_id=f"{stem}_full", image=img, bbox_x=0.0, bbox_y=0.0, bbox_w=np.nan,
                                 bbox_h=np.nan, patient_id=stem, finding="No Finding", box_index=-1))
            continue
        for k, (sym, b) in enumerate(zip(syms, boxes)):
            vals = [_number(v) for v in b] if isinstance(b, (list, tuple)) else []
            if len(vals) != 4 or any(v is None for v in vals):
                problems.append(f"{where} box {k}: {b!r} is not four numbers [x1, y1, x2, y2]")
                continue
            x1, y1, x2, y2 = vals
            if x1 < 0 or y1 < 0 or x2 <= x1 or y2 <= y1:
                problems.append(f"{where} box {k}: [x1, y1, x2, y2] = {b!r} needs 0 <= x1 < x2 and 0 <= y1 < y2")
                continue
            if not isinstance(sym, str) or not sym.strip():
                problems.append(f"{where} box {k}: finding name {sym!r} is not a non-empty string")
                continue
            rows.append(dict(case_id=f"{stem}_{k}", image=img, bbox_x=x1, bbox_y=y1, bbox_w=x2 - x1,
                             bbox_h=y2 - y1, patient_id=stem, finding=sym.strip(), box_index=k))
    _raise_all(src, problems, "Fix: correct those entries (ChestX-Det10 format: "
                              "{'file_name': '36199.png', 'syms': ['Atelectasis'], 'boxes': [[x1, y1, x2, y2]]}).")
    if not rows:
        raise InputError(f"{src}: no boxes found in {len(data)} entries; a manifest needs at least one ROI")
    df = pd.DataFrame(rows)
    if check_images:
        _missing_images(df, list(df["image"]), src)
    if negatives == "full":
        _fill_full_boxes(df)
    df["image"] = [_rel(p, base) for p in df["image"]]
    if n_neg:
        log.info("%s: %d image(s) without boxes %s", src, n_neg,
                 "skipped" if negatives == "skip" else "given a whole-image box")
    return _finding_tasks(df)


def _fill_full_boxes(df) -> None:
    from PIL import Image

    for i in np.flatnonzero(df["bbox_w"].isna().to_numpy()):
        try:
            with Image.open(df["image"].iloc[i]) as im:
                w, h = im.size
        except OSError as exc:
            raise InputError(f"image {str(df['image'].iloc[i])!r}: cannot read its size for a whole-image box "
                             f"({exc}); use negatives='skip'") from None
        df.loc[df.index[i], ["bbox_w", "bbox_h"]] = [float(w), float(h)]


# --------------------------------------------------------------------------- NIH ChestX-ray14
def nih_bbox(csv_path, image_dir, *, manifest_dir=None, check_images: bool = True):
    """Manifest rows from NIH ChestX-ray14 ``BBox_List_2017.csv`` (one row per box).

    Parameters
    ----------
    csv_path : path
        Columns ``Image Index, Finding Label, Bbox [x, y, w, h]`` (trailing unnamed empty columns
        of the original file are ignored).
    image_dir : path
        Folder holding the images (``images/`` of the release, all tarballs extracted into one folder).
    manifest_dir : path, optional
        Folder the manifest will live in (relative image paths); absolute paths when None.
    check_images : bool
        Require every image to exist.

    Returns
    -------
    pandas.DataFrame
        ``case_id`` (``<image stem>_<k>``, k = the box's index among that image's rows, in file
        order), ``image``, ``bbox_x, bbox_y, bbox_w, bbox_h``, ``patient_id`` (the 8-digit prefix
        of the image name, as in ``00013118_008.png``), ``finding``, ``box_index``, and one binary
        ``task_<finding>`` column per finding label.
    """
    import pandas as pd

    src = f"NIH bounding-box list {str(csv_path)!r}"
    try:
        raw = pd.read_csv(csv_path, dtype=str, keep_default_na=False)
    except FileNotFoundError:
        raise InputError(f"{src} does not exist; pass BBox_List_2017.csv of ChestX-ray14") from None
    except (pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError(f"{src} is not a readable CSV ({exc})") from None
    raw.columns = [str(c).strip() for c in raw.columns]
    missing = [c for c in NIH_COLUMNS if c not in raw.columns]
    if missing:
        raise InputError(f"{src}: columns {missing} are missing (has {list(raw.columns)}); expected the header "
                         f"{', '.join(NIH_COLUMNS)} of BBox_List_2017.csv")
    image_dir = Path(image_dir)
    base = Path(manifest_dir) if manifest_dir is not None else None
    rows, problems, counter = [], [], {}
    for i, r in enumerate(raw.to_dict("records")):
        line = i + 2  # header is line 1
        name, finding = r["Image Index"].strip(), r["Finding Label"].strip()
        vals = [_number(r[c]) for c in NIH_COLUMNS[2:]]
        if not name:
            problems.append(f"line {line}: empty 'Image Index'")
            continue
        if not finding:
            problems.append(f"line {line} ({name}): empty 'Finding Label'")
            continue
        if any(v is None for v in vals):
            problems.append(f"line {line} ({name}): box {[r[c] for c in NIH_COLUMNS[2:]]} is not four numbers")
            continue
        x, y, w, h = vals
        if x < 0 or y < 0 or w <= 0 or h <= 0:
            problems.append(f"line {line} ({name}): box x={x}, y={y}, w={w}, h={h} needs x, y >= 0 and w, h > 0")
            continue
        stem = Path(name).stem
        k = counter.get(stem, 0)
        counter[stem] = k + 1
        m = re.match(r"^(\d+)_\d+$", stem)
        rows.append(dict(case_id=f"{stem}_{k}", image=image_dir / name, bbox_x=x, bbox_y=y, bbox_w=w, bbox_h=h,
                         patient_id=m.group(1) if m else stem, finding=finding, box_index=k))
    _raise_all(src, problems, "Fix: correct or delete those lines.")
    if not rows:
        raise InputError(f"{src}: no boxes (the file has a header only); a manifest needs at least one ROI")
    df = pd.DataFrame(rows)
    if check_images:
        _missing_images(df, list(df["image"]), src)
    df["image"] = [_rel(p, base) for p in df["image"]]
    return _finding_tasks(df)


# --------------------------------------------------------------------------- PI-CAI-like MRI
_PICAI_IMAGE = re.compile(r"^(?P<pid>[^_]+)_(?P<sid>[^_]+)_(?P<seq>[^_.]+)\.(?P<ext>mha|nii\.gz|nii|nrrd)$")


def picai(root, *, sequence: str = "t2w", labels_dir=None, marksheet=None, manifest_dir=None,
          empty: str = "skip"):
    """Manifest rows from a PI-CAI-like prostate-MRI folder (one row per study and lesion label value).

    Assumed layout (the PI-CAI public training data)::

        ROOT/images/<patient_id>/<patient_id>_<study_id>_t2w.mha   (also _adc, _hbv, ...; .mha/.nii.gz/.nrrd)
        ROOT/labels/<patient_id>_<study_id>.nii.gz                 (lesion mask in the T2w grid)

    ``labels_dir`` points elsewhere, e.g. ``picai_labels/csPCa_lesion_delineations/human_expert/resampled``.

    Parameters
    ----------
    root : path
    sequence : str
        Which image of the study to use (``t2w``, ``adc``, ``hbv``, ...).
    labels_dir : path, optional
        Default ``ROOT/labels``.
    marksheet : path, optional
        A CSV with ``patient_id, study_id`` and clinical columns (PI-CAI ``marksheet.csv``); its other
        columns are joined (``YES``/``NO`` become 1/0).
    manifest_dir : path, optional
        Folder the manifest will live in (relative paths); absolute when None.
    empty : {"skip", "error"}
        Studies whose label mask is empty (no lesion): leave them out (logged), or raise.

    Returns
    -------
    pandas.DataFrame
        ``case_id`` (``<patient_id>_<study_id>``, ``_L<value>`` appended when a mask holds several
        lesion values), ``image``, ``mask``, ``label`` (the mask value of the ROI), ``patient_id``,
        ``study_id``, ``lesion_voxels`` (+ marksheet columns).
    """
    import pandas as pd
    import SimpleITK as sitk

    if empty not in ("skip", "error"):
        raise InputError(f"empty={empty!r} is not allowed; use 'skip' or 'error'")
    root = Path(root)
    img_root = root / "images"
    lab_root = Path(labels_dir) if labels_dir is not None else root / "labels"
    src = f"PI-CAI folder {str(root)!r}"
    for d, what in ((img_root, "images/<patient_id>/"), (lab_root, "labels/")):
        if not d.is_dir():
            raise InputError(f"{src}: {str(d)!r} is not a folder; expected ROOT/{what} "
                             "(layout: images/<patient_id>/<patient_id>_<study_id>_t2w.mha, "
                             "labels/<patient_id>_<study_id>.nii.gz)")
    base = Path(manifest_dir) if manifest_dir is not None else None
    studies = {}
    for p in sorted(img_root.glob("*/*")):
        m = _PICAI_IMAGE.match(p.name)
        if m and m["seq"] == sequence:
            if m["pid"] != p.parent.name:
                log.warning("%s: %s sits in folder %s; using the patient id of the file name", src, p.name,
                            p.parent.name)
            studies[(m["pid"], m["sid"])] = p
    if not studies:
        raise InputError(f"{src}: no '*_{sequence}' images under {str(img_root)!r}; expected "
                         f"images/<patient_id>/<patient_id>_<study_id>_{sequence}.mha (check --sequence)")
    rows, problems, n_empty = [], [], 0
    for (pid, sid), img in studies.items():
        cands = [lab_root / f"{pid}_{sid}{ext}" for ext in (".nii.gz", ".nii", ".mha", ".nrrd")]
        lab = next((c for c in cands if c.exists()), None)
        if lab is None:
            problems.append(f"study {pid}_{sid}: no label file {pid}_{sid}.nii.gz in {str(lab_root)!r}")
            continue
        try:
            arr = sitk.GetArrayFromImage(sitk.ReadImage(str(lab)))
        except RuntimeError as exc:
            problems.append(f"study {pid}_{sid}: cannot read {str(lab)!r} ({str(exc).strip().splitlines()[0]})")
            continue
        values, counts = np.unique(arr[arr > 0], return_counts=True)
        if values.size == 0:
            n_empty += 1
            if empty == "error":
                problems.append(f"study {pid}_{sid}: label {lab.name} is empty (no lesion)")
            continue
        for v, c in zip(values, counts):
            v = int(v) if float(v).is_integer() else float(v)
            cid = f"{pid}_{sid}" if values.size == 1 else f"{pid}_{sid}_L{v}"
            rows.append(dict(case_id=cid, image=_rel(img, base), mask=_rel(lab, base), label=v, patient_id=pid,
                             study_id=sid, lesion_voxels=int(c)))
    _raise_all(src, problems, "Fix: add the missing/broken label files, point --labels at the folder that "
                              "holds them, or remove those studies.")
    if n_empty:
        log.info("%s: %d stud%s with an empty lesion mask skipped", src, n_empty, "y" if n_empty == 1 else "ies")
    if not rows:
        raise InputError(f"{src}: every label mask is empty; a manifest needs at least one ROI")
    df = pd.DataFrame(rows)
    if marksheet is not None:
        df = _join_marksheet(df, marksheet)
    return df


def _join_marksheet(df, path):
    import pandas as pd

    src = f"marksheet {str(path)!r}"
    try:
        ms = pd.read_csv(path, dtype={"patient_id": str, "study_id": str})
    except FileNotFoundError:
        raise InputError(f"{src} does not exist") from None
    missing = [c for c in ("patient_id", "study_id") if c not in ms.columns]
    if missing:
        raise InputError(f"{src}: columns {missing} missing (has {list(ms.columns)}); it must have "
                         "patient_id and study_id to join on")
    for c in ms.columns:
        vals = set(ms[c].dropna().astype(str).str.upper())
        if vals and vals <= {"YES", "NO"}:
            ms[c] = ms[c].astype(str).str.upper().map({"YES": 1, "NO": 0})
    clash = [c for c in ms.columns if c in df.columns and c not in ("patient_id", "study_id")]
    ms = ms.rename(columns={c: f"ms_{c}" for c in clash})
    return df.merge(ms.drop_duplicates(["patient_id", "study_id"]), on=["patient_id", "study_id"], how="left")


# --------------------------------------------------------------------------- entry point
def convert(fmt: str, inputs, out, *, check_images: bool = True, **options) -> Path:
    """Convert a public dataset's annotations to a manifest file and write it.

    Parameters
    ----------
    fmt : {"chestxdet10", "nih-bbox", "picai"}
    inputs : sequence of path
        ``[JSON, IMAGE_DIR]``, ``[CSV, IMAGE_DIR]`` or ``[ROOT]``.
    out : path
        ``.csv`` or ``.parquet`` manifest; image paths are written relative to its folder.
    check_images : bool
        Box formats: require the images to exist.
    **options
        Passed to the converter (``negatives``, ``sequence``, ``labels_dir``, ``marksheet``, ``empty``).

    Returns
    -------
    pathlib.Path
        The written manifest (plus a ``.meta.json`` provenance sidecar for CSV).
    """
    from radlens.io.artifacts import provenance, write_table

    need = {"chestxdet10": 2, "nih-bbox": 2, "picai": 1}
    if fmt not in need:
        raise InputError(f"format {fmt!r} is not known; use one of {list(FORMATS)}")
    inputs = list(inputs)
    if len(inputs) != need[fmt]:
        raise InputError(f"convert {fmt}: expected {need[fmt]} input path(s), got {len(inputs)} ({inputs})")
    out = Path(out)
    if out.suffix not in (".csv", ".parquet"):
        raise InputError(f"--out {str(out)!r}: use a .csv or .parquet file name")
    mdir = out.parent
    if fmt == "chestxdet10":
        df = chestxdet10(inputs[0], inputs[1], manifest_dir=mdir, check_images=check_images, **options)
    elif fmt == "nih-bbox":
        df = nih_bbox(inputs[0], inputs[1], manifest_dir=mdir, check_images=check_images, **options)
    else:
        df = picai(inputs[0], manifest_dir=mdir, **options)
    src = inputs[0]
    meta = provenance(f"convert {fmt}", {"inputs": [str(i) for i in inputs], **{k: str(v) for k, v in options.items()}},
                      inputs={"annotations": src} if Path(src).is_file() else None)
    write_table(df, out, meta=meta)
    log.info("convert %s: %d rows (%d images/studies) -> %s", fmt, len(df), df["image"].nunique(), out)
    return out
