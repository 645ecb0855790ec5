"""The fast 2D NIfTI reader gives exactly SimpleITK's image, or declines (None) and SimpleITK reads."""
from __future__ import annotations

import numpy as np
import pytest

sitk = pytest.importorskip("SimpleITK")

from radlens.io.images import load_image  # noqa: E402
from radlens.io.nifti import read_nifti_2d  # noqa: E402


def _same(a, b):
    assert a.GetSize() == b.GetSize()
    assert a.GetPixelID() == b.GetPixelID()
    assert a.GetSpacing() == b.GetSpacing()
    assert a.GetOrigin() == b.GetOrigin()
    assert a.GetDirection() == b.GetDirection()
    assert np.array_equal(sitk.GetArrayViewFromImage(a), sitk.GetArrayViewFromImage(b))


@pytest.mark.parametrize("suffix", [".nii", ".nii.gz"])
@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint16, np.int32, np.float32, np.float64])
def test_fast_reader_equals_simpleitk(tmp_path, suffix, dtype):
    rng = np.random.default_rng(0)
    arr = (rng.random((7, 11)) * 200).astype(dtype)  # H=7, W=11: catches a transposed read
    img = sitk.GetImageFromArray(arr)
    img.SetSpacing((0.7, 1.25))
    img.SetOrigin((3.5, -12.25))
    p = tmp_path / f"x{suffix}"
    sitk.WriteImage(img, str(p))
    fast = read_nifti_2d(p)
    assert fast is not None, "a plain axis-aligned 2D NIfTI should take the fast path"
    ref = sitk.ReadImage(str(p))
    _same(ref, fast)
    assert fast.GetSize() == (11, 7)
    _same(ref, load_image(p))


def test_rotated_2d_declines_and_loads_the_same(tmp_path):
    img = sitk.GetImageFromArray(np.arange(20, dtype=np.float32).reshape(4, 5))
    img.SetDirection((0.0, 1.0, 1.0, 0.0))
    p = tmp_path / "rot.nii.gz"
    sitk.WriteImage(img, str(p))
    assert read_nifti_2d(p) is None
    _same(sitk.ReadImage(str(p)), load_image(p))


def test_3d_declines(tmp_path):
    img = sitk.GetImageFromArray(np.zeros((3, 4, 5), np.int16))
    p = tmp_path / "vol.nii.gz"
    sitk.WriteImage(img, str(p))
    assert read_nifti_2d(p) is None


def test_truncated_file_declines(tmp_path):
    img = sitk.GetImageFromArray(np.ones((40, 40), np.float32))
    p = tmp_path / "t.nii"
    sitk.WriteImage(img, str(p))
    data = p.read_bytes()
    p.write_bytes(data[: len(data) // 2])
    assert read_nifti_2d(p) is None


@pytest.mark.parametrize("dtype", [np.bool_, np.uint8, np.int16, np.uint16, np.int32, np.int64])
def test_distinct_values_equals_np_unique(dtype):
    from radlens.io.masks import distinct_values

    rng = np.random.default_rng(1)
    for arr in (np.zeros((3, 4), dtype), rng.integers(0, 2, (5, 6, 7)).astype(dtype),
                (rng.integers(-3, 40, (9, 9)) if np.dtype(dtype).kind == "i" else rng.integers(0, 2, (9, 9))).astype(dtype),
                np.array([], dtype)):
        got, ref = distinct_values(arr), np.unique(arr)
        assert got.dtype == ref.dtype
        assert np.array_equal(got, ref)


def test_distinct_values_float_keeps_np_unique():
    from radlens.io.masks import distinct_values

    arr = np.array([[0.0, 0.5, np.nan], [1.0, 0.0, np.nan]])
    assert np.array_equal(distinct_values(arr), np.unique(arr), equal_nan=True)
