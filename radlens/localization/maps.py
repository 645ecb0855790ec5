"""Import attribution / attention maps keyed by ``case_id`` and put them on the image grid.

Accepted files (see ``docs/localization.md``):

* ``.npz`` with a ``case_id`` array ``(n,)`` and one or more stacked arrays ``(n, *spatial)``
  (e.g. ``radlens cam-drift`` writes ``<method>__a`` / ``<method>__b``; pick one with ``key``);
* ``.npz`` with one array per case, named by its ``case_id``;
* ``.npy`` ``(n, *spatial)`` with a companion list of case ids (``<stem>.case_id.txt``, one per
  line, or ``case_ids=`` a .txt/.csv/.parquet file or a list);
* ``.pt`` / ``.pth`` loaded with ``torch.load(weights_only=True)``: a dict ``case_id -> tensor``,
  or a dict with ``case_id`` (list of str) and stacked tensors (pick one with ``key``).

Maps may have any resolution; :func:`prepare_map` orients them and resizes them onto the image
grid by bilinear interpolation with half-pixel centres (``align_corners=False``), identical to
``torch.nn.functional.interpolate(mode="bilinear"/"trilinear", align_corners=False)``.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Sequence

import numpy as np

from radlens.errors import InputError

log = logging.getLogger(__name__)

FLIPS = (None, "h", "v", "hv")


class OrientationError(InputError):
    """A map looks transposed relative to its image (a systematic problem: the run stops)."""


@dataclass
class MapSet:
    """Maps of one method / checkpoint, keyed by ``case_id``.

    Attributes
    ----------
    maps : dict str -> ndarray float32, shape (*spatial)
        One map per case at its stored resolution (2-D ``(h, w)`` or 3-D ``(d, h, w)``).
    source : str
        File the maps came from.
    key : str or None
        Array chosen inside the file.
    meta : dict
        Provenance found in the file (npz ``__meta__``), if any.
    """

    maps: dict
    source: str
    key: str | None = None
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.maps)

    @property
    def label(self) -> str:
        return f"{Path(self.source).name}" + (f"[{self.key}]" if self.key else "")


def _squeeze_channel(a: np.ndarray, name: str) -> np.ndarray:
    """Drop singleton channel axes: (1, h, w) / (h, w, 1) -> (h, w); keep 2-D and 3-D maps."""
    a = np.asarray(a)
    while a.ndim > 2 and (a.shape[0] == 1 or a.shape[-1] == 1):
        a = a[0] if a.shape[0] == 1 else a[..., 0]
    if a.ndim not in (2, 3):
        raise InputError(f"map {name!r} has shape {a.shape}; expected (h, w) or (d, h, w) "
                         "(a singleton channel axis is dropped; average multi-channel maps first)")
    if not np.issubdtype(a.dtype, np.number) and a.dtype != bool:
        raise InputError(f"map {name!r} has dtype {a.dtype}; expected a numeric array")
    return a.astype(np.float32, copy=False)


def _read_case_ids(spec, path: Path) -> list[str]:
    if spec is None:
        for cand in (path.with_suffix(".case_id.txt"), path.with_suffix(".case_ids.txt"),
                     path.with_suffix(".case_id.csv")):
            if cand.exists():
                spec = cand
                break
        else:
            raise InputError(f"maps {str(path)!r}: a .npy file needs its case ids; write them one per "
                             f"line to {path.with_suffix('.case_id.txt').name!r} next to it, or pass "
                             "case_ids= (--case-ids)")
    if isinstance(spec, (str, Path)):
        p = Path(spec)
        if not p.exists():
            raise InputError(f"case-id list {str(p)!r} does not exist")
        if p.suffix in (".csv", ".parquet", ".tsv"):
            from radlens.io.artifacts import read_table

            df = read_table(p)
            if "case_id" not in df.columns:
                raise InputError(f"case-id table {str(p)!r} has no 'case_id' column; columns: {list(df.columns)}")
            return df["case_id"].astype(str).tolist()
        return [ln.strip() for ln in p.read_text(encoding="utf-8").splitlines() if ln.strip()]
    return [str(c) for c in spec]


def _from_stacked(case_ids, arrays: dict, key, path: Path) -> tuple[dict, str]:
    n = len(case_ids)
    cands = {k: v for k, v in arrays.items() if k != "case_id" and np.ndim(v) >= 3 and np.shape(v)[0] == n}
    if key is None:
        if len(cands) != 1:
            raise InputError(f"maps {str(path)!r} hold {len(cands)} stacked map arrays {sorted(cands)}; "
                             "choose one with --map-key (map_key=)")
        key = next(iter(cands))
    if key not in arrays:
        raise InputError(f"maps {str(path)!r}: key {key!r} not found; available: {sorted(cands)}")
    if key not in cands:
        raise InputError(f"maps {str(path)!r}: array {key!r} has shape {np.shape(arrays[key])}; expected "
                         f"(n={n}, *spatial) to match the {n} case ids")
    u, c = np.unique(np.asarray(case_ids, str), return_counts=True)
    if (c > 1).any():
        raise InputError(f"maps {str(path)!r}: duplicate case_id(s) {u[c > 1][:10].tolist()}")
    stack = np.asarray(arrays[key])
    return {str(cid): _squeeze_channel(stack[i], f"{key}[{cid}]") for i, cid in enumerate(case_ids)}, key


def load_maps(path, key: str | None = None, case_ids=None) -> MapSet:
    """Read maps keyed by ``case_id`` from ``.npz``, ``.npy`` or ``.pt``.

    Parameters
    ----------
    path : str or Path
    key : str, optional
        Stacked array to use (required when the file holds several, e.g. ``layercam__a``).
    case_ids : path or sequence of str, optional
        Case ids of a ``.npy`` stack (default: ``<stem>.case_id.txt`` next to it).

    Returns
    -------
    MapSet
    """
    path = Path(path)
    if not path.exists():
        raise InputError(f"maps file {str(path)!r} does not exist")
    suf = path.suffix.lower()
    meta: dict = {}
    if suf == ".npz":
        from radlens.io.artifacts import read_npz

        try:
            arrays, meta = read_npz(path)
        except ValueError as exc:
            raise InputError(f"maps {str(path)!r} could not be read without pickle ({exc}); save plain "
                             "numeric arrays (np.savez) and case ids as a string array") from exc
        if "case_id" in arrays:
            maps, key = _from_stacked(arrays["case_id"].astype(str).tolist(), arrays, key, path)
        else:
            if key is not None:
                raise InputError(f"maps {str(path)!r} has no 'case_id' array, so its arrays are read as one "
                                 f"map per case id; map_key={key!r} does not apply")
            maps = {k: _squeeze_channel(v, k) for k, v in arrays.items()}
    elif suf == ".npy":
        stack = np.load(path, allow_pickle=False)
        ids = _read_case_ids(case_ids, path)
        if stack.ndim < 3 or stack.shape[0] != len(ids):
            raise InputError(f"maps {str(path)!r} have shape {stack.shape} but {len(ids)} case ids; expected "
                             "(n, *spatial) with one case id per map")
        maps, _ = _from_stacked(ids, {"maps": stack}, "maps", path)
    elif suf in (".pt", ".pth"):
        import torch

        try:
            obj = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as exc:  # weights_only refuses arbitrary objects
            raise InputError(f"maps {str(path)!r} could not be loaded with torch.load(weights_only=True): "
                             f"{exc}; save a dict of case_id -> tensor") from exc
        if not isinstance(obj, dict):
            raise InputError(f"maps {str(path)!r} hold a {type(obj).__name__}; expected a dict case_id -> tensor")
        conv = {str(k): (v.detach().cpu().float().numpy() if hasattr(v, "detach") else v) for k, v in obj.items()}
        if "case_id" in conv:
            maps, key = _from_stacked([str(c) for c in conv["case_id"]], conv, key, path)
        else:
            maps = {k: _squeeze_channel(v, k) for k, v in conv.items()}
    else:
        raise InputError(f"maps file {str(path)!r}: suffix {suf!r} not supported; use .npz, .npy or .pt")
    if not maps:
        raise InputError(f"maps file {str(path)!r} holds no maps")
    log.info("read %d maps from %s%s", len(maps), path, f" [{key}]" if key else "")
    return MapSet(maps, str(path), key, meta)


# --------------------------------------------------------------------------- geometry
def _axis_weights(n_in: int, n_out: int):
    """Source indices and weights of linear interpolation with half-pixel centres."""
    src = (np.arange(n_out) + 0.5) * (n_in / n_out) - 0.5
    src = np.clip(src, 0.0, n_in - 1)
    i0 = np.floor(src).astype(int)
    i1 = np.minimum(i0 + 1, n_in - 1)
    return i0, i1, src - i0


def resize_map(m, shape: Sequence[int]) -> np.ndarray:
    """Resize a map onto ``shape`` by separable linear interpolation (bilinear / trilinear).

    Output pixel ``j`` of an axis of length ``n_out`` samples the input at
    ``s = (j + 0.5) * n_in / n_out - 0.5`` clamped to ``[0, n_in - 1]``: the value is
    ``(1 - t) * m[floor(s)] + t * m[floor(s) + 1]`` with ``t = s - floor(s)`` (half-pixel centres,
    ``align_corners=False``, as ``torch.nn.functional.interpolate``).

    Parameters
    ----------
    m : array-like, shape (*spatial_in)
    shape : tuple of int, same length

    Returns
    -------
    ndarray float64, shape ``shape``
    """
    out = np.asarray(m, dtype=float)
    shape = tuple(int(s) for s in shape)
    if out.ndim != len(shape):
        raise InputError(f"resize_map: map has {out.ndim} dims {out.shape}, target {shape} has {len(shape)}")
    for ax, n_out in enumerate(shape):
        n_in = out.shape[ax]
        if n_in == n_out:
            continue
        i0, i1, t = _axis_weights(n_in, n_out)
        sh = [1] * out.ndim
        sh[ax] = n_out
        t = t.reshape(sh)
        out = np.take(out, i0, axis=ax) * (1 - t) + np.take(out, i1, axis=ax) * t
    return out


def check_orientation(map_shape: Sequence[int], image_shape: Sequence[int], rtol: float = 0.05) -> str:
    """Compare the in-plane aspect ratio (last two axes) of a map with its image.

    Returns
    -------
    ``"ok"`` (ratios agree within ``rtol``, or the map is square: a squashed model input),
    ``"transposed"`` (the map's ratio matches the *transposed* image and not the image), or
    ``"aspect"`` (matches neither: the map is stretched back onto the image).
    """
    mh, mw = map_shape[-2:]
    ih, iw = image_shape[-2:]
    rm, ri = mh / mw, ih / iw
    close = lambda a, b: abs(math.log(a / b)) <= math.log1p(rtol)  # noqa: E731
    if close(rm, ri) or mh == mw:
        return "ok"
    if close(rm, 1 / ri):
        return "transposed"
    return "aspect"


def orient_map(m, transpose: bool = False, flip: str | None = None) -> np.ndarray:
    """Transpose the last two axes (``(h, w) -> (w, h)``) and/or flip (``h``: left-right,
    ``v``: up-down, ``hv``: both), in that order."""
    if flip not in FLIPS:
        raise InputError(f"flip={flip!r} not allowed; choose from {FLIPS}")
    m = np.asarray(m)
    if transpose:
        m = np.swapaxes(m, -1, -2)
    if flip and "h" in flip:
        m = m[..., ::-1]
    if flip and "v" in flip:
        m = m[..., ::-1, :]
    return np.ascontiguousarray(m)


def prepare_map(m, image_shape: Sequence[int], *, transpose: bool = False, flip: str | None = None,
                orientation: str = "error", case_id: str = "?") -> tuple[np.ndarray, str]:
    """Orient a stored map and resize it onto the image grid.

    Parameters
    ----------
    m : array-like, shape (*spatial_map)
    image_shape : tuple of int, (H, W) or (D, H, W)
    transpose, flip : see :func:`orient_map` (applied first).
    orientation : {'error', 'warn', 'ignore'}
        What to do when the map looks transposed relative to the image (see
        :func:`check_orientation`); a plain aspect mismatch (e.g. a square model input of a
        non-square image) is only logged.
    case_id : str
        Used in messages.

    Returns
    -------
    map : ndarray float64, shape ``image_shape``
    check : str, the :func:`check_orientation` result after orienting
    """
    if orientation not in ("error", "warn", "ignore"):
        raise InputError(f"orientation={orientation!r} not allowed; choose from ('error', 'warn', 'ignore')")
    m = orient_map(m, transpose, flip)
    image_shape = tuple(int(s) for s in image_shape)
    if m.ndim != len(image_shape):
        raise InputError(f"case {case_id!r}: map has shape {m.shape} but the image has shape {image_shape}; "
                         "give maps with the image's number of dimensions")
    chk = check_orientation(m.shape, image_shape)
    if chk == "transposed":
        msg = (f"case {case_id!r}: map shape {m.shape[-2:]} has the aspect ratio of the transposed image "
               f"{image_shape[-2:]}; the map looks transposed. Pass --transpose (transpose=True) if it is, "
               "or --orientation warn/ignore if the model really squashed the image that way")
        if orientation == "error":
            raise OrientationError(msg)
        if orientation == "warn":
            log.warning(msg)
    elif chk == "aspect":
        log.debug("case %r: map %s and image %s differ in aspect ratio; stretching the map onto the image",
                  case_id, m.shape, image_shape)
    return resize_map(m, image_shape), chk
