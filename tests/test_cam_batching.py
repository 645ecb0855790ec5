"""The batched CAM post-processing (torch, float32) equals the float64 numpy reference value for value."""
import numpy as np
import pytest

torch = pytest.importorskip("torch")

from radlens.cam.base import normalise_max, normalise_max_torch  # noqa: E402


@pytest.mark.parametrize("shape", [(16, 64, 64), (5, 3, 7, 9), (4, 10)])
def test_normalise_max_torch_equals_numpy(shape):
    rng = np.random.default_rng(1)
    scale = rng.uniform(1e-6, 1e6, size=(shape[0],) + (1,) * (len(shape) - 1))
    a = (np.abs(rng.normal(size=shape)) * scale).astype(np.float32)
    a[0] = 0  # an all-zero map stays zero
    got = normalise_max_torch(torch.from_numpy(a)).numpy()
    assert got.dtype == np.float32
    np.testing.assert_array_equal(got, normalise_max(a))
    assert got[0].max() == 0 and np.allclose(got[1:].reshape(shape[0] - 1, -1).max(1), 1.0)
