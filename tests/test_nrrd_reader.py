"""radlens' numpy NRRD reader (radlens.io.nrrd) and array cases (radlens.io.arraycase) against
SimpleITK: pixels, dtype and geometry equal to what ``SimpleITK.ReadImage`` gives, on pyradiomics'
real cases (skipped when ../shared is absent) and on files written here (SimpleITK's writer and
hand-written headers: gzip/raw, dtypes, endianness, 2D/3D, RAS/LAS spaces, oblique directions);
files it does not handle are left to SimpleITK, visibly; radiomics extraction through it gives
the same features, diagnostics and errors as through SimpleITK."""
from __future__ import annotations

import gzip
import os
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import SimpleITK as sitk

from radlens.io import arraycase, nrrd
from radlens.radiomics.cases import image_mean

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "data" / "pyradiomics"
REAL = ("brain1", "brain2", "breast1", "lung1", "lung2")
needs_shared = pytest.mark.skipif(not SHARED.is_dir(), reason=f"pyradiomics' real test cases not found at {SHARED} "
                                  "(team data in ../shared, not part of a clone)")


def _same_as_sitk(path, reuse=None):
    vol = nrrd.read_nrrd(path, reuse=reuse)
    assert vol is not None, nrrd.why_not(path)
    img = sitk.ReadImage(str(path))
    ref = sitk.GetArrayFromImage(img)
    assert vol.array.dtype == ref.dtype and vol.array.dtype.isnative
    np.testing.assert_array_equal(vol.array, ref)
    assert vol.grid.size == img.GetSize()
    assert vol.grid.spacing == img.GetSpacing()  # exactly: diagnostics print them
    assert vol.grid.origin == img.GetOrigin()
    assert vol.grid.direction == img.GetDirection()
    return vol


@needs_shared
@pytest.mark.parametrize("case", REAL)
@pytest.mark.parametrize("kind", ["image", "label"])
def test_real_cases_equal_simpleitk(case, kind):
    vol = _same_as_sitk(SHARED / f"{case}_{kind}.nrrd")
    assert vol.inflate in ("libdeflate", "zlib")
    _same_as_sitk(SHARED / f"{case}_{kind}.nrrd", reuse="t")


def _direction(theta):
    c, s = np.cos(theta), np.sin(theta)
    return (c, -s, 0.0, s, c, 0.0, 0.0, 0.0, 1.0)


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "uint16", "int32", "uint32", "float32", "float64"])
@pytest.mark.parametrize("compress", [True, False], ids=["gzip", "raw"])
@pytest.mark.parametrize("dim", [2, 3])
def test_simpleitk_written_files(tmp_path, dtype, compress, dim):
    rng = np.random.default_rng(0)
    shape = (5, 7, 9) if dim == 3 else (11, 13)
    arr = (rng.normal(0, 50, shape) + 60).astype(dtype)
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.7, 1.3, 2.9)[:dim])
    img.SetOrigin((-12.5, 3.25, 100.0)[:dim])
    if dim == 3:
        img.SetDirection(_direction(0.3))
    p = tmp_path / "x.nrrd"
    sitk.WriteImage(img, str(p), compress)
    vol = _same_as_sitk(p)
    assert vol.inflate == ("raw" if not compress else vol.inflate)


def _write(path, arr, *, space="left-posterior-superior", dirs=None, origin=None, encoding="gzip",
           endian="little", extra=""):
    """A hand-written NRRD file (attached header) of ``arr`` (numpy order)."""
    dim = arr.ndim
    names = {"u1": "uchar", "i1": "signed char", "i2": "short", "u2": "ushort", "i4": "int", "u4": "uint",
             "f4": "float", "f8": "double"}
    dt = arr.dtype.newbyteorder("<" if endian == "little" else ">")
    sizes = " ".join(str(s) for s in arr.shape[::-1])
    dirs = dirs or [tuple(float(i == j) * (j + 1) * 0.5 for j in range(dim)) for i in range(dim)]
    head = ["NRRD0004", "# written by the test", f"type: {names[arr.dtype.str[1:]]}", f"dimension: {dim}"]
    head.append(f"space: {space}" if space else f"space dimension: {dim}")
    head += [f"sizes: {sizes}", "space directions: " + " ".join("(" + ",".join(repr(v) for v in d) + ")" for d in dirs),
             f"kinds: {' '.join(['domain'] * dim)}", f"endian: {endian}", f"encoding: {encoding}"]
    if origin is not None:
        head.append("space origin: (" + ",".join(repr(v) for v in origin) + ")")
    if extra:
        head.append(extra)
    payload = arr.astype(dt).tobytes()
    if encoding == "gzip":
        payload = gzip.compress(payload)
    path.write_bytes(("\n".join(head) + "\n\n").encode() + payload)
    return path


@pytest.mark.parametrize("endian", ["little", "big"])
@pytest.mark.parametrize("encoding", ["gzip", "raw"])
@pytest.mark.parametrize("space", ["left-posterior-superior", "right-anterior-superior", "left-anterior-superior", "RAS"])
def test_hand_written_headers(tmp_path, endian, encoding, space):
    rng = np.random.default_rng(1)
    arr = rng.integers(-1000, 3000, (4, 6, 5)).astype(np.int16)
    dirs = [(0.0, 0.8, 0.1), (-0.9, 0.0, 0.2), (0.0, 0.3, 2.5)]  # oblique, not orthonormal-scaled
    p = _write(tmp_path / "h.nrrd", arr, space=space, dirs=dirs, origin=(10.5, -20.25, 3.0), encoding=encoding,
               endian=endian, extra="ITK_InputFilterName:=NrrdImageIO")
    _same_as_sitk(p)


def test_plain_2d_space_and_float_big_endian(tmp_path):
    arr = np.linspace(-1, 1, 35, dtype=np.float64).reshape(5, 7)
    _same_as_sitk(_write(tmp_path / "two.nrrd", arr, space=None, dirs=[(0.5, 0.0), (0.0, 2.0)], origin=(1.0, 2.0),
                         endian="big"))


def test_what_it_does_not_read_is_left_to_simpleitk(tmp_path):
    arr = np.arange(24, dtype=np.int16).reshape(2, 3, 4)
    cases = {
        "bzip2": _write(tmp_path / "b.nrrd", arr, encoding="bzip2"),
        "singleton": _write(tmp_path / "s.nrrd", arr[:1].reshape(1, 3, 4).repeat(1, 0)),
        "space": _write(tmp_path / "sp.nrrd", arr, space="scanner-xyz"),
        "data file": _write(tmp_path / "d.nrrd", arr, extra="data file: elsewhere.raw"),
    }
    hdr = tmp_path / "v.nhdr"
    hdr.write_text("NRRD0004\ntype: short\ndimension: 3\nsizes: 4 3 2\nencoding: raw\nendian: little\n"
                   "data file: v.raw\n\n")
    (tmp_path / "v.raw").write_bytes(arr.tobytes())
    cases["nhdr"] = hdr
    (tmp_path / "junk.nrrd").write_bytes(b"not an nrrd file at all")
    cases["junk"] = tmp_path / "junk.nrrd"
    vec = tmp_path / "vec.nrrd"
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros((3, 4, 2), np.float32), isVector=True), str(vec))
    cases["vector"] = vec
    words = {"bzip2": "encoding", "singleton": "singleton", "space": "space", "data file": "data file",
             "nhdr": ".nrrd", "junk": "magic", "vector": "kinds"}
    for name, p in cases.items():
        assert nrrd.read_nrrd(p) is None, name
        assert words[name] in nrrd.why_not(p), (name, nrrd.why_not(p))


def test_reused_buffers_hold_the_latest_file(tmp_path):
    a = _write(tmp_path / "a.nrrd", np.full((3, 4, 5), 7, np.int16))
    b = _write(tmp_path / "b.nrrd", np.arange(2 * 3 * 4, dtype=np.int32).reshape(2, 3, 4))
    va = nrrd.read_nrrd(a, reuse="slot")
    assert (va.array == 7).all()
    vb = nrrd.read_nrrd(b, reuse="slot")
    np.testing.assert_array_equal(vb.array, np.arange(24).reshape(2, 3, 4))
    fresh = nrrd.read_nrrd(a)
    nrrd.read_nrrd(b, reuse="slot")
    assert (fresh.array == 7).all()  # without reuse the array owns its memory
    nrrd.release_buffers()


@pytest.mark.parametrize("dtype", ["uint8", "int8", "int16", "uint16"])
def test_integer_image_mean_bit_identical(dtype):
    rng = np.random.default_rng(4)
    info = np.iinfo(dtype)
    for shape in [(3, 5), (9, 64, 70), (2, 1, 7)]:
        a = rng.integers(info.min, info.max, size=shape, endpoint=True).astype(dtype)
        assert image_mean(a) == float(np.mean(a, dtype=np.float64))
    f = rng.normal(0, 1, (4, 5)).astype(np.float32)
    assert image_mean(f) == float(np.mean(f, dtype=np.float64))


# --------------------------------------------------------------------------- through radiomics()
def _radiomics(tmp_path, man, name, force_sitk, monkeypatch, params=None):
    from radlens.radiomics.extract import radiomics

    with monkeypatch.context() as mp:
        if force_sitk:
            mp.setattr(arraycase, "load_array_case", lambda row, **k: (None, "forced by the test"))
        return radiomics(man, params, out=tmp_path / f"{name}.parquet", use_cache=False, show_progress=False)


@needs_shared
def test_real_cases_same_features_and_diagnostics_as_simpleitk_path(tmp_path, monkeypatch):
    man = tmp_path / "m.csv"
    pd.DataFrame([{"case_id": c, "image": str(SHARED / f"{c}_image.nrrd"), "mask": str(SHARED / f"{c}_label.nrrd")}
                  for c in REAL]).to_csv(man, index=False)
    params = Path(__file__).resolve().parents[1] / "radlens" / "configs" / "radiomics_baseline.yaml"
    fast = _radiomics(tmp_path, man, "fast", False, monkeypatch, params)
    slow = _radiomics(tmp_path, man, "slow", True, monkeypatch, params)
    assert fast.n_failed == slow.n_failed == 0
    pd.testing.assert_frame_equal(fast.features, slow.features, check_exact=True)
    assert (fast.diagnostics["radlens_reader"] == "nrrd/libdeflate").all() or \
        (fast.diagnostics["radlens_reader"] == "nrrd/zlib").all()
    assert slow.diagnostics["radlens_reader"].str.startswith("SimpleITK (forced by the test").all()
    pd.testing.assert_frame_equal(fast.diagnostics.drop(columns="radlens_reader"),
                                  slow.diagnostics.drop(columns="radlens_reader"), check_exact=True)


def test_errors_name_case_and_file_as_the_simpleitk_path(tmp_path, monkeypatch):
    """Label absent, empty mask, grids that differ: the same failures table, word for
    word, through either reader; a grid mismatch the SimpleITK path resamples is left to it."""
    rng = np.random.default_rng(5)
    arr = rng.integers(0, 400, (6, 20, 22)).astype(np.int16)
    m = np.zeros(arr.shape, np.uint8)
    m[2:5, 5:12, 6:15] = 1
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.8, 0.8, 2.0))
    sitk.WriteImage(img, str(tmp_path / "img.nrrd"), True)
    good = sitk.GetImageFromArray(m)
    good.CopyInformation(img)
    sitk.WriteImage(good, str(tmp_path / "ok.nrrd"), True)
    moved = sitk.GetImageFromArray(m)
    moved.CopyInformation(img)
    moved.SetOrigin((5.0, 0.0, 0.0))
    sitk.WriteImage(moved, str(tmp_path / "moved.nrrd"), True)
    sitk.WriteImage(sitk.GetImageFromArray(np.zeros_like(m)), str(tmp_path / "empty.nrrd"), True)
    rows = [("ok", "ok.nrrd", None), ("absent", "ok.nrrd", 3), ("moved", "moved.nrrd", None),
            ("empty", "empty.nrrd", None)]
    man = tmp_path / "m.csv"
    pd.DataFrame([{"case_id": c, "image": str(tmp_path / "img.nrrd"), "mask": str(tmp_path / f), "label": lab}
                  for c, f, lab in rows]).to_csv(man, index=False)
    params = {"imageType": {"Original": {}}, "featureClass": {"firstorder": None, "glcm": None},
              "setting": {"binWidth": 25}}
    fast = _radiomics(tmp_path, man, "fast", False, monkeypatch, params)
    slow = _radiomics(tmp_path, man, "slow", True, monkeypatch, params)
    assert fast.features["case_id"].tolist() == ["ok"]
    pd.testing.assert_frame_equal(fast.features, slow.features, check_exact=True)
    pd.testing.assert_frame_equal(fast.failures, slow.failures)
    errs = dict(zip(fast.failures["case_id"], fast.failures["error"]))
    assert set(errs) == {"absent", "moved", "empty"}
    assert "label 3 does not occur in mask 'ok.nrrd'" in errs["absent"]
    assert "moved.nrrd" in errs["moved"] and "img.nrrd" in errs["moved"] and "origin" in errs["moved"]
    # a mismatch that --resample-mask resolves: the SimpleITK path resamples it, visibly
    case, why = arraycase.load_array_case({"case_id": "moved", "image": str(tmp_path / "img.nrrd"),
                                           "mask": str(tmp_path / "moved.nrrd")}, resample_mask=True)
    assert case is None and "resample" in why


def test_png_cases_still_go_through_simpleitk_visibly(tmp_path, monkeypatch):
    from radlens.synth import make_cohort

    man = make_cohort(tmp_path / "c", n_cases=2, image_size=32, seed=1, show_progress=False)
    res = _radiomics(tmp_path, man, "p", False, monkeypatch)
    assert res.n_failed == 0
    assert res.diagnostics["radlens_reader"].str.startswith("SimpleITK (").all()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_drop_inherited_buffers_leaves_parent_data_intact():
    """A forked worker gives back its copies of the parent's reading buffers: the buffers are gone
    there, and the parent's pixels are untouched (MADV_DONTNEED acts on the child's mapping only)."""
    from radlens.io import nrrd

    b = nrrd.buffer("test/drop", 1 << 20)
    b[:] = np.arange(b.size, dtype=np.uint64).astype(np.uint8)
    expect = b.copy()
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # child
        try:
            nrrd.drop_inherited_buffers()
            os.write(w, b"ok" if not nrrd._LOCAL.buffers else b"kept")
        finally:
            os._exit(0)
    os.close(w)
    got = os.read(r, 8)
    os.waitpid(pid, 0)
    assert got == b"ok"
    np.testing.assert_array_equal(b, expect)
    nrrd.release_buffers()


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_buffers_excluded_from_fork_are_not_the_childs():
    """Forked inside ``excluded_from_fork``, a child does not hold the parent's reading buffers (set
    aside at the fork, never freed there: their pages are not mapped there), allocates and uses its
    own, even when it leaves the block itself; the parent's buffers keep their content and are
    inherited again by a fork made after the block."""
    from radlens.io import nrrd

    b = nrrd.buffer("test/excl", 3 << 20)
    b[:] = np.arange(b.size, dtype=np.uint64).astype(np.uint8)
    expect = b.copy()

    def child(check):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:
            try:
                os.write(w, check())
            finally:
                os._exit(0)
        os.close(w)
        got = os.read(r, 64)
        _, status = os.waitpid(pid, 0)
        os.close(r)
        return got, status

    def fresh_buffers():
        held = bool(nrrd._LOCAL.buffers)
        bufs = [nrrd.buffer(f"test/new{k}", n) for k, n in enumerate((3 << 20, 100_000, 5 << 20))]
        for k, nb in enumerate(bufs):  # glibc must not hand out the parent's addresses again
            nb[:] = k + 1
        ok = all(int(nb.min()) == int(nb.max()) == k + 1 for k, nb in enumerate(bufs))
        return b"ok" if ok and not held else b"held" if held else b"bad"

    with nrrd.excluded_from_fork():
        got, status = child(fresh_buffers)
        b[:] = 7  # the parent writes into its buffer after the fork
    assert (got, status) == (b"ok", 0)
    assert int(b.min()) == int(b.max()) == 7
    b[:] = expect
    with nrrd.excluded_from_fork():  # a child that leaves the block itself (as an ordinary fork user)
        r, w = os.pipe()
        pid = os.fork()
    if pid == 0:
        try:
            os.write(w, fresh_buffers())
        finally:
            os._exit(0)
    os.close(w)
    assert os.read(r, 64) == b"ok"
    assert os.waitpid(pid, 0)[1] == 0
    os.close(r)
    # after the block, a fork inherits the buffers again (MADV_DOFORK): the child reads the content
    got, status = child(lambda: b"same" if np.array_equal(nrrd.buffer("test/excl", 3 << 20), expect) else b"diff")
    assert (got, status) == (b"same", 0)
    np.testing.assert_array_equal(b, expect)
    nrrd.release_buffers()


def test_buffer_headroom_is_capped_so_buffers_stay_kept(monkeypatch):
    """A new buffer has HEADROOM x the size asked (the next, slightly larger volume fits without a
    new allocation), but never so much that it would no longer be kept between calls."""
    from radlens.io import nrrd

    monkeypatch.setattr(nrrd, "MAX_KEPT_BYTES", 1000)
    try:
        a = nrrd.buffer("test/head", 400)
        assert a.size == 400 and nrrd._LOCAL.buffers["test/head"].size == int(400 * nrrd.HEADROOM)
        base = nrrd._LOCAL.buffers["test/head"]
        assert nrrd.buffer("test/head", 550).base is base  # fits in the headroom: same memory
        nrrd.buffer("test/head", 900)  # 900 * HEADROOM > MAX_KEPT_BYTES: capped, still kept
        assert nrrd._LOCAL.buffers["test/head"].size == 1000
        big = nrrd.buffer("test/head", 1200)  # above MAX_KEPT_BYTES: used once, not kept
        assert big.size == 1200 and nrrd._LOCAL.buffers["test/head"].size == 1000
    finally:
        nrrd.release_buffers()
