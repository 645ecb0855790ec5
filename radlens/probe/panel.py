"""Small-scale perturbation panel: perturbations inserted at recorded positions into clean images.

Four perturbation kinds, each confined to a *footprint* (a disc — a ball in 3-D — of diameter
``d`` pixels around a recorded centre, with a flat top over the inner 70 % of the radius and a
raised-cosine taper to exactly zero at the rim, so nothing outside the footprint changes):

``blur``     isotropic Gaussian blur; strength = Gaussian σ in pixels.
``motion``   directional (motion) blur: the mean of the image along a line segment; strength =
             segment length in pixels; ``angle_deg`` (2-D, from the +x axis towards +y) fixed or
             ``"random"`` (drawn per image, recorded).
``texture``  fine reticular texture: a net of thin lines of period ``period_px`` at a random
             orientation and phase, zero-mean inside the footprint; strength = amplitude in units
             of the image's intensity standard deviation.
``nodule``   low-contrast nodule: a Gaussian blob of σ = d/4; strength = peak contrast in units of
             the image's intensity standard deviation (``polarity`` +1 brighter, −1 darker).

Arrays are numpy-ordered (``(H, W)`` or ``(D, H, W)``); centres are given in the same order.
A footprint's bounding box in contract order is ``(x, y, w, h)`` = ``(cx − d/2, cy − d/2, d, d)``.
"""
from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field
from typing import Any, Mapping, Sequence

import numpy as np

from radlens.errors import ConfigError, InputError

log = logging.getLogger(__name__)

KINDS = ("blur", "motion", "texture", "nodule")
_FLAT = 0.7  # flat-top fraction of the footprint radius


# --------------------------------------------------------------------------- footprint
def footprint_weights(shape: Sequence[int], center: Sequence[float], diameter: float) -> np.ndarray:
    """Blending weights of a footprint, shape ``shape``, values in [0, 1].

    1 within 0.7 × radius of ``center``, raised-cosine taper to 0 at the radius ``diameter/2``,
    exactly 0 at and beyond it (pixel centres at integer coordinates).
    """
    shape = tuple(int(s) for s in shape)
    if len(center) != len(shape):
        raise InputError(f"center {tuple(center)} has {len(center)} coordinates but the image has "
                         f"{len(shape)} dimensions {shape}")
    if not diameter > 0:
        raise InputError(f"footprint diameter={diameter!r} must be > 0 pixels")
    r_out = diameter / 2.0
    grids = np.ogrid[tuple(slice(0, s) for s in shape)]
    r2 = sum((g - c) ** 2 for g, c in zip(grids, center))
    r = np.sqrt(r2)
    r_in = _FLAT * r_out
    w = np.where(r <= r_in, 1.0, 0.5 * (1 + np.cos(np.pi * np.clip((r - r_in) / (r_out - r_in), 0, 1))))
    w[r >= r_out] = 0.0
    return w


def _crop(shape, center, radius) -> tuple[slice, ...]:
    return tuple(slice(max(0, int(math.floor(c - radius))), min(s, int(math.ceil(c + radius)) + 1))
                 for s, c in zip(shape, center))


def footprint_box(center: Sequence[float], diameter: float) -> tuple[float, ...]:
    """Contract box of a 2-D footprint: ``(x, y, w, h)`` for a numpy-order centre ``(cy, cx)``."""
    if len(center) != 2:
        raise InputError(f"footprint_box: contract boxes are 2-D; got a {len(center)}-D centre")
    cy, cx = center
    return (cx - diameter / 2.0, cy - diameter / 2.0, float(diameter), float(diameter))


# --------------------------------------------------------------------------- perturbations
def _intensity_scale(image: np.ndarray) -> float:
    s = float(np.std(image))
    return s if s > 0 else 1.0


def _motion_direction(ndim: int, angle_deg: float) -> np.ndarray:
    a = math.radians(angle_deg)
    d = np.zeros(ndim)
    d[-1] = math.cos(a)  # x
    d[-2] = math.sin(a)  # y
    return d


def _line_mean(patch: np.ndarray, direction: np.ndarray, length: float) -> np.ndarray:
    from scipy import ndimage as ndi

    k = max(3, int(math.ceil(length)) * 2 + 1)
    grid = np.indices(patch.shape, dtype=float)
    acc = np.zeros(patch.shape, dtype=float)
    for t in np.linspace(-length / 2.0, length / 2.0, k):
        coords = grid + (t * direction).reshape((-1,) + (1,) * patch.ndim)
        acc += ndi.map_coordinates(patch, coords, order=1, mode="reflect")
    return acc / k


def _reticular(shape, period: float, rng: np.random.Generator) -> np.ndarray:
    """Net of thin lines (period ``period`` px) at a random orientation and phase, in [0, 1]."""
    ndim = len(shape)
    q, _ = np.linalg.qr(rng.normal(size=(ndim, ndim)))
    grids = np.indices(shape, dtype=float)
    net = np.zeros(shape)
    width = 0.18 * period
    for a in range(ndim):
        u = np.tensordot(q[:, a], grids, axes=1) + rng.uniform(0, period)
        dist = np.abs(((u + period / 2) % period) - period / 2)
        net = np.maximum(net, np.exp(-0.5 * (dist / width) ** 2))
    return net


def apply_perturbation(image, kind: str, center: Sequence[float], diameter: float, strength: float,
                       *, rng: np.random.Generator | None = None, angle_deg: float | str = 0.0,
                       period_px: float = 3.0, polarity: float = 1.0,
                       scale: float | None = None) -> tuple[np.ndarray, dict[str, Any]]:
    """Insert one perturbation into a copy of ``image``.

    Parameters
    ----------
    image : ndarray, shape (H, W) or (D, H, W)
    kind : one of ``blur``, ``motion``, ``texture``, ``nodule``
    center : numpy-order centre of the footprint (pixels)
    diameter : footprint diameter (pixels)
    strength : kind-specific (see module docstring); 0 returns an exact copy.
    rng : random generator for the random parts (motion angle when ``"random"``, texture
        orientation/phase).
    scale : intensity unit for ``texture``/``nodule`` (default: the image's standard deviation).

    Returns
    -------
    perturbed : ndarray float32, same shape as ``image``; equal to ``image`` outside the footprint.
    record : dict of what was inserted (kind, centre, diameter, strength, angle, amplitude...).
    """
    from scipy import ndimage as ndi

    img = np.asarray(image, dtype=np.float32)
    if kind not in KINDS:
        raise InputError(f"perturbation kind={kind!r} is not known; allowed: {list(KINDS)}")
    if img.ndim not in (2, 3):
        raise InputError(f"perturbation needs a 2-D or 3-D image, got shape {img.shape}")
    if not np.isfinite(strength) or strength < 0:
        raise InputError(f"perturbation strength={strength!r} must be a finite number >= 0")
    if len(center) != img.ndim or any(not 0 <= c <= s - 1 for c, s in zip(center, img.shape)):
        raise InputError(f"perturbation center {tuple(float(c) for c in center)} is outside the image "
                         f"of shape {img.shape} (numpy order, pixels); give a centre inside it")
    rng = rng if rng is not None else np.random.default_rng(0)
    rec: dict[str, Any] = {"perturbation": kind, "center": [float(c) for c in center],
                           "diameter_px": float(diameter), "strength": float(strength)}
    out = img.copy()
    if strength == 0:
        return out, rec
    # work on a crop around the footprint (with room for the filter support)
    pad = {"blur": 4 * strength, "motion": strength / 2 + 2}.get(kind, 0.0)
    sl = _crop(img.shape, center, diameter / 2.0 + pad + 1)
    patch = img[sl].astype(np.float64)
    c_local = [c - s.start for c, s in zip(center, sl)]
    w = footprint_weights(patch.shape, c_local, diameter)
    if kind == "blur":
        target = ndi.gaussian_filter(patch, sigma=float(strength), mode="reflect")
        new = patch + w * (target - patch)
    elif kind == "motion":
        if angle_deg == "random":
            angle = float(rng.uniform(0, 180))
        else:
            angle = float(angle_deg)
        rec["angle_deg"] = angle
        target = _line_mean(patch, _motion_direction(img.ndim, angle), float(strength))
        new = patch + w * (target - patch)
    elif kind == "texture":
        unit = _intensity_scale(img) if scale is None else float(scale)
        net = _reticular(patch.shape, float(period_px), rng)
        inside = w > 0
        net = net - (net[inside] * w[inside]).sum() / w[inside].sum()  # zero weighted mean
        amp = strength * unit
        rec.update(period_px=float(period_px), amplitude=float(amp))
        new = patch + w * amp * net / max(np.abs(net[inside]).max(), 1e-12)
    else:  # nodule
        unit = _intensity_scale(img) if scale is None else float(scale)
        sig = diameter / 4.0
        grids = np.ogrid[tuple(slice(0, s) for s in patch.shape)]
        r2 = sum((g - c) ** 2 for g, c in zip(grids, c_local))
        amp = float(polarity) * strength * unit
        rec.update(amplitude=amp, sigma_px=sig)
        new = patch + w * amp * np.exp(-0.5 * r2 / sig ** 2)
    out[sl] = new.astype(np.float32)
    return out, rec


# --------------------------------------------------------------------------- panel spec
@dataclass(frozen=True)
class PanelCell:
    """One cell of the panel: a perturbation kind at one footprint size and one strength."""

    perturbation: str
    footprint_frac: float
    strength: float

    @property
    def cell_id(self) -> str:
        return f"{self.perturbation}|d={self.footprint_frac:g}|s={self.strength:g}"


@dataclass
class PanelSpec:
    """Perturbation grid.

    Attributes
    ----------
    perturbations : dict kind -> params; each params dict has ``strengths`` (list of floats) and
        optional kind parameters (``angle_deg``, ``period_px``, ``polarity``).
    footprints : footprint diameters as fractions of the image's shorter in-plane side.
    margin : centres keep at least ``margin`` × side plus half the largest footprint from the border.
    """

    perturbations: dict[str, dict[str, Any]]
    footprints: tuple[float, ...]
    margin: float = 0.05
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping[str, Any], where: str = "panel") -> "PanelSpec":
        if not isinstance(d, Mapping):
            raise ConfigError(f"{where}: expected a mapping with 'perturbations' and 'footprints', "
                              f"got {type(d).__name__}")
        unknown = set(d) - {"perturbations", "footprints", "margin"}
        if unknown:
            raise ConfigError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: "
                              "['footprints', 'margin', 'perturbations']")
        pert = d.get("perturbations")
        if not isinstance(pert, Mapping) or not pert:
            raise ConfigError(f"{where}.perturbations: give at least one of {list(KINDS)} with "
                              "'strengths', e.g. {blur: {strengths: [1.0, 2.0]}}")
        clean: dict[str, dict[str, Any]] = {}
        allowed = {"blur": set(), "motion": {"angle_deg"}, "texture": {"period_px"},
                   "nodule": {"polarity"}}
        for kind, p in pert.items():
            if kind not in KINDS:
                raise ConfigError(f"{where}.perturbations: kind {kind!r} is not known; allowed: {list(KINDS)}")
            p = dict(p or {})
            s = p.pop("strengths", None)
            if not isinstance(s, (list, tuple)) or not s or not all(
                    isinstance(v, (int, float)) and v > 0 for v in s):
                raise ConfigError(f"{where}.perturbations.{kind}.strengths={s!r}: give a non-empty "
                                  "list of positive numbers")
            bad = set(p) - allowed[kind]
            if bad:
                raise ConfigError(f"{where}.perturbations.{kind}: unknown key(s) {sorted(bad)}; "
                                  f"allowed: {sorted(allowed[kind] | {'strengths'})}")
            if kind == "motion" and "angle_deg" in p and p["angle_deg"] != "random" and not isinstance(
                    p["angle_deg"], (int, float)):
                raise ConfigError(f"{where}.perturbations.motion.angle_deg={p['angle_deg']!r}: give "
                                  "degrees or 'random'")
            clean[kind] = {"strengths": [float(v) for v in s], **p}
        fp = d.get("footprints")
        if not isinstance(fp, (list, tuple)) or not fp or not all(
                isinstance(v, (int, float)) and 0 < v < 1 for v in fp):
            raise ConfigError(f"{where}.footprints={fp!r}: give a non-empty list of diameters as "
                              "fractions of the image side, each in (0, 1), e.g. [0.05, 0.1, 0.2]")
        margin = d.get("margin", 0.05)
        if not isinstance(margin, (int, float)) or not 0 <= margin < 0.5:
            raise ConfigError(f"{where}.margin={margin!r}: must be a number in [0, 0.5)")
        if max(fp) + 2 * margin >= 1:
            raise ConfigError(f"{where}: largest footprint {max(fp)} plus 2 × margin {margin} "
                              "does not fit in the image; lower them")
        return cls(clean, tuple(float(v) for v in fp), float(margin))

    def cells(self) -> list[PanelCell]:
        return [PanelCell(k, f, s) for k, p in self.perturbations.items()
                for f in self.footprints for s in p["strengths"]]

    def params(self, kind: str) -> dict[str, Any]:
        return {k: v for k, v in self.perturbations[kind].items() if k != "strengths"}


def choose_centers(shapes: Sequence[Sequence[int]], spec: PanelSpec, seed: int = 0,
                   ) -> list[np.ndarray]:
    """One footprint centre per image (numpy order), uniform over the positions where the
    largest footprint fits inside the image with the spec's margin. Same seed → same centres."""
    rng = np.random.default_rng(seed)
    out = []
    fmax = max(spec.footprints)
    for shape in shapes:
        side = min(shape[-2:])
        half = fmax * side / 2.0 + spec.margin * side
        c = [rng.uniform(half, s - 1 - half) if s - 1 - 2 * half > 0 else (s - 1) / 2.0
             for s in shape]
        out.append(np.asarray(c))
    return out


def perturb_cell(images: Sequence[np.ndarray], centers: Sequence[np.ndarray], cell: PanelCell,
                 spec: PanelSpec, seed: int = 0) -> tuple[list[np.ndarray], list[dict[str, Any]]]:
    """Perturbed copies of ``images`` for one panel cell (footprint at each recorded centre).

    The generator for image ``i`` is seeded by ``(seed, i, cell)``, so a cell is reproducible
    regardless of which other cells run.
    """
    out, recs = [], []
    params = spec.params(cell.perturbation)
    key = [ord(ch) for ch in cell.cell_id]
    for i, (img, c) in enumerate(zip(images, centers)):
        side = min(img.shape[-2:])
        diam = cell.footprint_frac * side
        rng = np.random.default_rng([seed, i, *key])
        p, rec = apply_perturbation(img, cell.perturbation, c, diam, cell.strength, rng=rng, **params)
        out.append(p)
        recs.append(rec)
    return out, recs


def footprint_boxes(images: Sequence[np.ndarray], centers: Sequence[np.ndarray],
                    footprint_frac: float) -> np.ndarray:
    """Contract ROI boxes ``(x, y, w, h)`` of the footprints, shape (n, 4) (2-D images only;
    3-D volumes use :func:`footprint_masks`)."""
    return np.array([footprint_box(c[-2:], footprint_frac * min(img.shape[-2:]))
                     for img, c in zip(images, centers)], dtype=float)


def footprint_masks(images: Sequence[np.ndarray], centers: Sequence[np.ndarray],
                    footprint_frac: float) -> list[np.ndarray]:
    """Boolean ROI masks of the footprints' bounding boxes (any dimension), one per image."""
    out = []
    for img, c in zip(images, centers):
        d = footprint_frac * min(img.shape[-2:])
        m = np.zeros(img.shape, dtype=bool)
        sl = tuple(slice(max(0, int(math.floor(ci - d / 2))), min(s, int(math.ceil(ci + d / 2))))
                   for s, ci in zip(img.shape, c))
        m[sl] = True
        out.append(m)
    return out
