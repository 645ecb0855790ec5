"""Manifest reading and up-front validation.

A manifest (CSV, TSV or parquet) has one row per ROI:

``case_id``  unique id of the ROI (required)
``image``    image file or DICOM series folder, relative to the manifest's folder (required)
``mask``     mask file (ROI voxels have value ``label``, default 1), **or**
``bbox_x, bbox_y, bbox_w, bbox_h``  a box in pixels of the stored image (2D images only)
``patient_id``  groups cases of one patient (defaults to ``case_id``)
``split``    optional split name
``slice_gaps``  optional, ``warn`` to accept a DICOM series with missing/duplicate/uneven slices
             (read with one uniform spacing, a warning in the case's row); empty = ``error``
anything else: task labels / attributes (:attr:`Manifest.task_columns`).

:func:`read_manifest` checks everything before any work starts and raises one
:class:`~radlens.errors.ManifestError` listing *all* problems, each with its row number (rows are
numbered from 1 = the first data row; in a CSV that is file line ``row + 1``).
"""
from __future__ import annotations

import difflib
import logging
import os
from pathlib import Path
from typing import Any, Iterator

import numpy as np

from radlens.errors import InputError, ManifestError

log = logging.getLogger(__name__)

BOX_COLUMNS = ("bbox_x", "bbox_y", "bbox_w", "bbox_h")
RESERVED = ("case_id", "image", "mask", "label") + BOX_COLUMNS + ("patient_id", "split", "slice_gaps")
#: Similarity (difflib ratio, case-insensitive) above which an unknown column is reported as a
#: probable typo of a reserved column that the manifest lacks.
TYPO_CUTOFF = 0.75
MAX_LISTED = 200


class Manifest:
    """A validated manifest.

    Attributes
    ----------
    df : pandas.DataFrame
        One row per ROI in file order: ``case_id`` (str, unique), ``image`` (absolute path),
        ``mask`` (absolute path or None), ``label`` (int), ``bbox_x, bbox_y, bbox_w, bbox_h``
        (float, NaN when a mask is given), ``patient_id`` (str), ``split`` (str or None), then
        the other columns as read. A manifest read with ``frame=False`` builds it (with pandas)
        on first access.
    path : pathlib.Path or None
        The manifest file (None when built from a DataFrame).
    root : pathlib.Path
        Folder that relative paths were resolved against.
    label_given : numpy.ndarray of bool, shape (n,), or None
        True where the manifest gave ``label`` explicitly (None: unknown).
    """

    def __init__(self, df: Any, path: Path | None, root: Path, label_given: Any = None, *,
                 columns: dict[str, list] | None = None):
        self._df, self.path, self.root, self.label_given = df, path, root, label_given
        #: without a DataFrame: the validated columns (reserved ones typed, the others as read)
        self._columns = columns

    def __repr__(self) -> str:
        return f"Manifest({str(self.path) if self.path is not None else '<DataFrame>'!r}, {len(self)} rows)"

    @property
    def df(self):
        if self._df is None:  # read with frame=False: the DataFrame read_manifest would have built
            self._df = manifest_from_frame(_read_frame(self.path), root=self.root, check_images=False,
                                           path=self.path).df
            self._columns = None
        return self._df

    @property
    def columns(self) -> list[str]:
        return list(self._columns) if self._columns is not None else [str(c) for c in self.df.columns]

    @property
    def task_columns(self) -> list[str]:
        """Columns that are not reserved: candidate task-label / attribute columns."""
        return [c for c in self.columns if c not in RESERVED]

    @property
    def case_ids(self) -> list[str]:
        if self._columns is not None:
            return list(self._columns["case_id"])
        return self.df["case_id"].tolist()

    def __len__(self) -> int:
        if self._columns is not None:
            return len(self._columns["case_id"])
        return len(self.df)

    def rows(self) -> Iterator[dict[str, Any]]:
        """Rows as plain dicts (what :func:`radlens.io.images.load_case` takes). Without a
        DataFrame (``frame=False``) the non-reserved columns are the text read."""
        if self._columns is not None:
            cols = list(self._columns)
            for values in zip(*self._columns.values()):
                yield dict(zip(cols, values))
            return
        cols = list(self.df.columns)
        for values in self.df.itertuples(index=False, name=None):
            yield dict(zip(cols, values))

    def subset(self, case_ids) -> "Manifest":
        """A manifest restricted to ``case_ids`` (in manifest order)."""
        keep = set(map(str, case_ids))
        sel = self.df["case_id"].isin(keep).to_numpy()
        lg = None if self.label_given is None else np.asarray(self.label_given)[sel]
        return Manifest(self.df[sel].reset_index(drop=True), self.path, self.root, lg)


# --------------------------------------------------------------------------- reading
def _read_frame(path: Path):
    import pandas as pd

    str_cols = {c: str for c in ("case_id", "image", "mask", "patient_id", "split")}
    suf = path.suffix.lower()
    try:
        if suf == ".parquet":
            df = pd.read_parquet(path)
        elif suf in (".csv", ".tsv", ".txt"):
            df = pd.read_csv(path, sep="\t" if suf == ".tsv" else ",", dtype=str_cols, keep_default_na=True)
        else:
            raise InputError(f"manifest {str(path)!r}: suffix {path.suffix!r} not supported; use .csv, .tsv "
                             "or .parquet")
    except InputError:
        raise
    except Exception as exc:
        raise InputError(f"manifest {str(path)!r} cannot be parsed: {exc}") from exc
    return df


#: cells pandas' CSV reader turns into NaN by default (``keep_default_na``)
_NA_TEXT = frozenset(["", "#N/A", "#N/A N/A", "#NA", "-1.#IND", "-1.#QNAN", "-NaN", "-nan", "1.#IND", "1.#QNAN",
                      "<NA>", "N/A", "NA", "NULL", "NaN", "None", "n/a", "nan", "null"])


def _read_text_columns(path: Path) -> tuple[list[str], dict[str, list]] | None:
    """A plain CSV/TSV manifest as (column names, {name: cells}) without pandas (cells pandas
    would read as NaN are None), or None for anything a plain reader could read differently from
    pandas (other suffixes, ragged rows, repeated or empty column names, stray quotes): the caller
    then reads it with pandas."""
    import csv

    suf = path.suffix.lower()
    if suf not in (".csv", ".tsv", ".txt"):
        return None
    try:
        with open(path, newline="", encoding="utf-8-sig") as fh:
            text = fh.read()
    except (OSError, UnicodeDecodeError):
        return None
    if '"' in text or "\r" in text:  # quoting / old line ends: pandas' rules, pandas' reader
        return None
    lines = [ln for ln in text.split("\n") if ln]  # pandas skips empty lines
    if not lines:
        return None
    rows = list(csv.reader(lines, delimiter="\t" if suf == ".tsv" else ","))
    header = [h.strip() for h in rows[0]]  # as manifest_from_frame strips them
    if any(not h for h in header) or len(set(header)) != len(header):
        return None
    if any(len(r) != len(header) for r in rows[1:]):
        return None
    cols = {h: [None if v in _NA_TEXT else v for v in col] for h, col in
            zip(header, zip(*rows[1:]) if len(rows) > 1 else [()] * len(header))}
    return header, {h: list(v) for h, v in cols.items()}


def read_manifest(path: str | os.PathLike, *, check_images: bool = True,
                  resample_mask: bool | None = None, frame: bool = True) -> Manifest:
    """Read and validate a manifest.

    Parameters
    ----------
    path : str or path-like
        CSV, TSV or parquet manifest. Relative image/mask paths are resolved against its folder.
    check_images : bool, default True
        Also open every image header and every mask, with the rules of
        :func:`radlens.io.images.load_case`: boxes outside the image or on 3D images, unreadable
        files, masks that are not label maps (non-integer values, too many distinct values, lossy
        JPEG), labels that are 0 or absent from their mask, masks not on their image's grid, DICOM
        series with slice gaps. When a row leaves ``label`` empty, the label is inferred as
        ``load_case`` does (1, else the mask's only non-zero value, e.g. 255 for 0/255 PNG masks).
    resample_mask : bool or None
        As in :func:`~radlens.io.images.load_case`: True accepts grid mismatches that resampling
        repairs; False names ``--resample-mask`` in the advice; None names no option.
    frame : bool, default True
        False: a plain CSV/TSV is read and validated without pandas (same checks, same
        messages); :attr:`Manifest.df` is built on first access. For commands that only need
        :meth:`Manifest.rows` (pandas costs ~0.15 s to import).

    Returns
    -------
    Manifest

    Raises
    ------
    InputError
        The file is missing or cannot be parsed.
    ManifestError
        Every problem found, one per line, with row numbers: missing required columns, columns
        that look like typos of reserved ones, empty or duplicate ``case_id``, missing files,
        rows with neither or both of mask and box, incomplete or non-numeric boxes, boxes outside
        the image, non-integer labels, labels absent from the mask.
    """
    path = Path(path).expanduser()
    if not path.exists():
        raise InputError(f"manifest {str(path)!r} does not exist")
    if not frame:
        got = _read_text_columns(path)
        if got is not None:
            names, cols = got
            return _validate(names, cols.__getitem__, len(cols[names[0]]), path.resolve().parent,
                             check_images=check_images, path=path.resolve(), resample_mask=resample_mask,
                             build_frame=False)
    df = _read_frame(path)
    return manifest_from_frame(df, root=path.resolve().parent, check_images=check_images, path=path.resolve(),
                               resample_mask=resample_mask)


def manifest_from_frame(df, root: str | os.PathLike = ".", *, check_images: bool = True,
                        path: str | os.PathLike | None = None, resample_mask: bool | None = None) -> Manifest:
    """Validate a DataFrame as a manifest (same rules as :func:`read_manifest`).

    Parameters
    ----------
    df : pandas.DataFrame
    root : path-like
        Folder that relative paths are resolved against.
    """
    df = df.copy()
    df.columns = [str(c).strip() for c in df.columns]
    return _validate(list(df.columns), lambda c: df[c].tolist(), len(df), root, check_images=check_images,
                     path=path, resample_mask=resample_mask, frame=df)


def _validate(cols: list[str], column, n: int, root, *, check_images: bool, path, resample_mask,
              frame=None, build_frame: bool = True) -> Manifest:
    """Validate a manifest's columns (``column(name)`` gives a column's cells as a list; column
    names already stripped); the Manifest, with a DataFrame when ``build_frame``."""
    root = Path(root).expanduser().resolve()
    where = str(path) if path is not None else "<DataFrame>"
    problems: list[str] = []

    # ---- columns
    for c in cols:
        if c in RESERVED:
            continue
        missing_reserved = [r for r in RESERVED if r not in cols]
        match = difflib.get_close_matches(c.lower(), missing_reserved, n=1, cutoff=TYPO_CUTOFF)
        if match:
            problems.append(f"column {c!r} is not a known column but looks like a typo of {match[0]!r}; "
                            f"rename it to {match[0]!r} (or give a task column a less similar name)")
    dup_cols = sorted({c for c in cols if cols.count(c) > 1})
    if dup_cols:
        problems.append(f"duplicate column name(s) {dup_cols}")
    for req in ("case_id", "image"):
        if req not in cols:
            near = difflib.get_close_matches(req, [c.lower() for c in cols], n=2, cutoff=0.5)
            hint = f" (similar: {near})" if near else ""
            problems.append(f"required column {req!r} is missing{hint}; columns present: {cols[:15]}")
    present_box = [c for c in BOX_COLUMNS if c in cols]
    structural = bool(dup_cols) or "case_id" not in cols or "image" not in cols
    if present_box and len(present_box) < 4:
        problems.append(f"box columns incomplete: have {present_box}, need all of {list(BOX_COLUMNS)}")
        structural = True
    if "mask" not in cols and len(present_box) < 4:
        problems.append("no ROI columns: give a 'mask' column or all of bbox_x, bbox_y, bbox_w, bbox_h")
        structural = True
    if structural:  # row checks would only repeat the same problem on every row
        _raise(where, problems)

    if n == 0:
        _raise(where, ["the manifest has no rows"])

    # ---- normalise columns
    def text(col) -> list:
        if col not in cols:
            return [None] * n
        return [None if _isna(v) or str(v).strip() == "" else str(v).strip() for v in column(col)]

    case_id = text("case_id")
    image = text("image")
    mask = text("mask")
    box, box_present = {}, {}
    for c in BOX_COLUMNS:
        raw = column(c) if c in cols else [None] * n
        present = np.array([not (_isna(v) or str(v).strip() == "") for v in raw], bool)
        num = np.full(n, np.nan)
        for i in np.flatnonzero(present):
            try:
                num[i] = float(raw[i])
            except (TypeError, ValueError):
                problems.append(_row(i, case_id[i]) + f"{c} = {str(raw[i])!r} is not a number")
        box[c], box_present[c] = num, present
    label_given = np.zeros(n, bool)
    label_bad = np.zeros(n, bool)
    label = np.ones(n, np.int64)
    if "label" in cols:
        for i, raw in enumerate(column("label")):
            if _isna(raw) or str(raw).strip() == "":
                continue
            label_given[i] = True
            try:
                v = float(raw)
                ok = v == int(v)
            except (TypeError, ValueError, OverflowError):
                ok = False
            if not ok:
                problems.append(_row(i, case_id[i]) + f"label = {str(raw)!r} is not an integer")
                label_bad[i] = True
            elif int(v) == 0:
                problems.append(_row(i, case_id[i]) + "label = 0 is the background and cannot be the ROI; set "
                                "'label' to the ROI's value or leave it empty")
                label_bad[i] = True
            else:
                label[i] = int(v)
    gaps = text("slice_gaps")
    for i, g in enumerate(gaps):
        if g is not None and g.lower() not in ("error", "warn"):
            problems.append(_row(i, case_id[i]) + f"slice_gaps = {g!r} is not allowed; use 'warn' (accept a DICOM "
                            "series with missing/uneven slices, with a warning) or leave it empty")
        elif g is not None:
            gaps[i] = g.lower()

    # ---- case ids
    groups: dict[str, list[int]] = {}
    for i, c in enumerate(case_id):
        if c is None:
            problems.append(_row(i, None) + "case_id is empty")
        else:
            groups.setdefault(c, []).append(i)
    for c, idx in groups.items():
        if len(idx) > 1:
            problems.append(f"rows {', '.join(str(i + 1) for i in idx)}: duplicate case_id {c!r}; "
                            "case_id must be unique (one row per ROI)")

    # ---- paths, ROI kind
    def resolve(p):
        if p is None:
            return None
        if p.startswith("~"):
            p = os.path.expanduser(p)
        return p if os.path.isabs(p) else os.path.join(root_s, p)

    root_s = str(root)
    image_abs = [resolve(p) for p in image]
    mask_abs = [resolve(p) for p in mask]
    has_mask = np.array([m is not None for m in mask_abs], bool)
    bp = np.column_stack([box_present[c] for c in BOX_COLUMNS])
    bx = np.column_stack([box[c] for c in BOX_COLUMNS])
    any_boxes, full_boxes, nan_boxes = bp.any(axis=1).tolist(), bp.all(axis=1).tolist(), np.isnan(bx).any(axis=1)
    for i in range(n):
        rid = None
        ip = image_abs[i]
        if ip is None:
            rid = _row(i, case_id[i])
            problems.append(rid + "image path is empty")
        elif not os.path.exists(ip):
            rid = _row(i, case_id[i])
            problems.append(rid + f"image file {image[i]!r} not found (looked for {ip!r})")
        any_box, full_box = any_boxes[i], full_boxes[i]
        if has_mask[i] and not any_box and os.path.exists(mask_abs[i]):
            continue  # the common, valid mask row
        rid = rid or _row(i, case_id[i])
        if has_mask[i] and any_box:
            problems.append(rid + "both a mask and a box are given; keep one ROI per row")
        elif not has_mask[i] and not any_box:
            problems.append(rid + "neither a mask nor a box is given; fill 'mask' or bbox_x, bbox_y, bbox_w, bbox_h")
        elif any_box and not full_box:
            miss = [c for c, ok in zip(BOX_COLUMNS, bp[i]) if not ok]
            problems.append(rid + f"box incomplete: {miss} empty")
        if has_mask[i] and not os.path.exists(mask_abs[i]):
            problems.append(rid + f"mask file {mask[i]!r} not found (looked for {mask_abs[i]!r})")
        if not has_mask[i] and full_box and not nan_boxes[i]:
            x, y, w, h = bx[i]
            if w <= 0 or h <= 0:
                problems.append(rid + f"box has non-positive size (w={w:g}, h={h:g})")
            elif x < 0 or y < 0:
                problems.append(rid + f"box (x={x:g}, y={y:g}, w={w:g}, h={h:g}) is outside the image "
                                "(negative coordinate)")

    # ---- image content checks
    if check_images:
        problems += _check_images(case_id, image_abs, mask_abs, box, label, label_given, has_mask & ~label_bad,
                                  has_mask, range(n), slice_gaps=gaps, resample_mask=resample_mask)

    if problems:
        _raise(where, problems)

    if not build_frame:
        mask_rows = has_mask.tolist()
        out = {"case_id": case_id, "image": image_abs, "mask": mask_abs, "label": label.tolist(),
               **{c: [float("nan") if m else float(v) for m, v in zip(mask_rows, box[c].tolist())]
                  for c in BOX_COLUMNS},
               "patient_id": [p if p is not None else c for p, c in zip(text("patient_id"), case_id)],
               "split": text("split"), "slice_gaps": gaps}
        out.update({c: column(c) for c in cols if c not in RESERVED})
        return Manifest(None, Path(path) if path is not None else None, root, label_given, columns=out)
    import pandas as pd

    df = frame
    idx = pd.RangeIndex(n)
    cols_out = {
        "case_id": pd.Series(case_id, index=idx, dtype=object),
        "image": pd.Series(image_abs, index=idx, dtype=object),
        "mask": pd.Series(mask_abs, index=idx, dtype=object),  # None for box rows
        "label": label,
        **{c: np.where(has_mask, np.nan, box[c]) for c in BOX_COLUMNS},
        "patient_id": pd.Series([p if p is not None else c for p, c in zip(text("patient_id"), case_id)],
                                index=idx, dtype=object),
        "split": pd.Series(text("split"), index=idx, dtype=object),
        "slice_gaps": pd.Series(gaps, index=idx, dtype=object),
    }
    for c in df.columns:
        if c not in RESERVED:
            cols_out[c] = df[c].to_numpy()
    out = pd.DataFrame(cols_out, index=idx)
    return Manifest(out, Path(path) if path is not None else None, root, label_given)


def validate_images(manifest: Manifest, rows=None, *, jobs: int = 1, resample_mask: bool | None = None) -> Manifest:
    """Run the image checks of :func:`read_manifest` (``check_images=True``) on some rows of a
    manifest read with ``check_images=False``.

    Parameters
    ----------
    manifest : Manifest
    rows : iterable of int or None
        Positions (0-based) in ``manifest.df`` to check; None checks all.
    jobs : int, default 1
        Check in this many local worker processes.
    resample_mask : bool or None
        See :func:`read_manifest`.

    Returns
    -------
    Manifest
        A copy whose ``label`` holds the inferred value for rows that left it empty and whose
        mask has a single non-zero value.

    Raises
    ------
    ManifestError
        All problems of the checked rows, numbered as in the manifest file.
    """
    df = manifest.df.copy()
    n = len(df)
    rows = list(range(n)) if rows is None else sorted(set(int(r) for r in rows))
    given = (np.ones(n, bool) if manifest.label_given is None else np.asarray(manifest.label_given, bool))
    label = df["label"].to_numpy(np.int64).copy()
    problems: list[str] = []
    if jobs > 1 and len(rows) > 1:
        from radlens.parallel import iter_cases

        size = -(-len(rows) // (4 * jobs))
        chunks = [rows[j:j + size] for j in range(0, len(rows), size)]
        for _, res in iter_cases(_check_chunk, [(manifest, c, given, resample_mask) for c in chunks], jobs=jobs):
            if not isinstance(res, tuple):
                raise RuntimeError(f"manifest image check failed in a worker: {res}")
            probs, labels = res
            problems += probs
            for i, lab in labels.items():
                label[i] = lab
    else:
        probs, labels = _check_chunk((manifest, rows, given, resample_mask), show_progress=None)
        problems += probs
        for i, lab in labels.items():
            label[i] = lab
    if problems:
        _raise(str(manifest.path) if manifest.path is not None else "<DataFrame>", problems)
    df["label"] = label
    return Manifest(df, manifest.path, manifest.root, given)


def _check_chunk(task, show_progress: bool | None = False) -> tuple[list[str], dict[int, int]]:
    """Image checks of some rows: (problems, {row: inferred label})."""
    manifest, rows, given, resample_mask = task
    df = manifest.df
    has_mask = df["mask"].notna().to_numpy()
    label = df["label"].to_numpy(np.int64).copy()
    before = label.copy()
    box = {c: df[c].to_numpy(float) for c in BOX_COLUMNS}
    gaps = df["slice_gaps"].tolist() if "slice_gaps" in df.columns else None
    problems = _check_images(df["case_id"].tolist(), df["image"].tolist(), df["mask"].tolist(), box, label, given,
                             has_mask, has_mask, rows, show_progress=show_progress, slice_gaps=gaps,
                             resample_mask=resample_mask)
    return problems, {int(i): int(label[i]) for i in np.flatnonzero(label != before)}


def _check_images(case_id, image_abs, mask_abs, box, label, label_given, check_label, has_mask, rows,
                  show_progress: bool | None = None, slice_gaps=None, resample_mask: bool | None = None) -> list[str]:
    """Open image headers and masks (the rules of ``load_case``); may set ``label`` in place where
    it was left empty."""
    import SimpleITK as sitk

    from radlens.errors import InputError as _InputError
    from radlens.io.images import image_grid, infer_label, label_map_problem, mask_grid_decision, read_mask
    from radlens.io.masks import distinct_values
    from radlens.progress import progress

    probs: list[str] = []
    grids: dict[tuple, Any] = {}
    masks: dict[str, Any] = {}
    rows = list(rows)
    for i in progress(rows, total=len(rows), desc="checking manifest", unit="row",
                      disable=None if show_progress is None else not show_progress):
        rid = _row(i, case_id[i])
        ip = image_abs[i]
        if ip is None or not Path(ip).exists():
            continue
        policy = (slice_gaps[i] if slice_gaps is not None else None) or "error"
        key = (ip, policy)
        if key not in grids:
            try:
                grids[key] = image_grid(ip, slice_gaps=policy)
            except Exception as exc:
                grids[key] = exc
        grid = grids[key]
        if isinstance(grid, Exception):
            probs.append(rid + f"image cannot be read: {grid}")
            continue
        size = grid.GetSize()
        if not has_mask[i]:
            x, y, w, h = (float(box[c][i]) for c in BOX_COLUMNS)
            if any(np.isnan(v) for v in (x, y, w, h)):
                continue
            if len(size) != 2:
                probs.append(rid + f"a box is given but the image is {len(size)}D {size}; boxes are 2D, "
                             "give a mask for 3D images")
            elif x + w > size[0] or y + h > size[1]:
                probs.append(rid + f"box (x={x:g}, y={y:g}, w={w:g}, h={h:g}) is outside the "
                             f"{size[0]}x{size[1]} (WxH) image")
            continue
        mp = mask_abs[i]
        if mp is None or not Path(mp).exists():
            continue
        if mp not in masks:
            try:
                mimg = read_mask(mp)
                masks[mp] = (distinct_values(sitk.GetArrayViewFromImage(mimg)), image_grid(mp))
            except Exception as exc:
                masks[mp] = exc
        got = masks[mp]
        if isinstance(got, Exception):
            probs.append(rid + f"mask cannot be read: {got}")
            continue
        vals, mgrid = got
        bad = label_map_problem(vals, mp, label_given=bool(label_given[i]))
        if bad is not None:
            probs.append(rid + bad)
            continue
        if check_label[i]:
            try:
                lab = infer_label(vals, int(label[i]) if label_given[i] else None, mp)
            except _InputError as exc:
                probs.append(rid + str(exc))
                continue
            if not label_given[i] and lab != label[i]:
                log.info("%s: no label given; using the mask's only non-zero value %s", rid.rstrip(": "), lab)
            label[i] = lab
        action, text = mask_grid_decision(grid, mgrid, ip, mp, resample_mask)
        if action == "error":
            probs.append(rid + text)
    return probs


def _isna(v) -> bool:
    if v is None or (isinstance(v, float) and v != v):
        return True
    if isinstance(v, str):
        return False
    import pandas as pd  # pandas' own missing values (pd.NA, NaT, ...) come only from pandas frames

    try:
        return bool(pd.isna(v))
    except (TypeError, ValueError):  # array-like cell
        return False


def _row(i: int, cid) -> str:
    return f"row {i + 1}" + (f" (case_id {cid!r})" if cid is not None else "") + ": "


def _raise(where: str, problems: list[str]) -> None:
    import re

    def key(p):
        m = re.match(r"rows? (\d+)", p)
        return int(m.group(1)) if m else 0

    problems = sorted(problems, key=key)  # stable: column problems first, then by row
    shown = problems[:MAX_LISTED]
    more = f"\n  ... and {len(problems) - MAX_LISTED} more" if len(problems) > MAX_LISTED else ""
    raise ManifestError(f"manifest {where}: {len(problems)} problem(s) (rows numbered from 1 = first data "
                        "row):\n  - " + "\n  - ".join(shown) + more)
