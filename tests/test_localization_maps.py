"""Map import, resizing and orientation (docs/localization.md, 'Map import')."""
import numpy as np
import pytest

from radlens.errors import InputError
from radlens.localization.maps import (
    OrientationError, check_orientation, load_maps, orient_map, prepare_map, resize_map,
)
from radlens.localization.scores import ground_truth, score_map


def _tent(n_out, n_in, centre):
    """Documented weights of the hot input pixel ``centre`` on each output pixel (half-pixel centres)."""
    src = (np.arange(n_out) + 0.5) * n_in / n_out - 0.5
    return np.clip(1 - np.abs(src - centre), 0, None)


def test_resize_matches_torch_interpolate_2d_3d():
    import torch
    import torch.nn.functional as F

    rng = np.random.default_rng(0)
    a = rng.random((5, 7))
    ref = F.interpolate(torch.tensor(a)[None, None], size=(13, 4), mode="bilinear", align_corners=False)
    np.testing.assert_allclose(resize_map(a, (13, 4)), ref[0, 0].numpy(), atol=1e-12)
    v = rng.random((3, 4, 5))
    ref = F.interpolate(torch.tensor(v)[None, None], size=(6, 9, 2), mode="trilinear", align_corners=False)
    np.testing.assert_allclose(resize_map(v, (6, 9, 2)), ref[0, 0].numpy(), atol=1e-12)


def test_16_to_256_documented_result(tmp_path):
    m16 = np.zeros((16, 16), np.float32)
    m16[5, 9] = 1.0
    np.savez(tmp_path / "m.npz", case_id=np.array(["c1"]), cam__a=m16[None])
    ms = load_maps(tmp_path / "m.npz")
    big, chk = prepare_map(ms.maps["c1"], (256, 256))
    assert chk == "ok" and big.shape == (256, 256)
    expected = np.outer(_tent(256, 16, 5), _tent(256, 16, 9))
    np.testing.assert_allclose(big, expected, atol=1e-7)
    g = ground_truth((256, 256), boxes=[(144, 80, 16, 16)])    # the 16x16 cell (row 5, col 9)
    r = score_map(big, g, binarize=("topk",))
    assert r["pointing_game"] == 1.0                 # maxima (31/32)^2 at rows 87-88, cols 151-152
    assert big.max() == pytest.approx((31 / 32) ** 2)
    # per axis the tent sums to 16 over the 32 support pixels and to 12 over the 16 inside the cell
    assert r["mass_inside"] == pytest.approx((12 / 16) ** 2)
    inside, outside = expected[g.mask], expected[~g.mask]
    wins = (inside[:, None] > outside[None, :]).sum() + 0.5 * (inside[:, None] == outside[None, :]).sum()
    assert r["auc"] == pytest.approx(wins / (inside.size * outside.size))
    # below 1: (row 87, col 143) just outside the cell scores (31/32)(15/32) > the corner (17/32)^2
    assert r["auc"] < 1 and big[87, 143] == pytest.approx(31 / 32 * 15 / 32) and big[80, 144] < big[87, 143]


def test_npz_per_case_npy_and_pt(tmp_path):
    import torch

    a, b = np.arange(12.0).reshape(3, 4), np.ones((3, 4))
    np.savez(tmp_path / "per.npz", c1=a, c2=b[None])          # channel axis (1, h, w) is dropped
    ms = load_maps(tmp_path / "per.npz")
    assert sorted(ms.maps) == ["c1", "c2"] and ms.maps["c2"].shape == (3, 4)
    np.save(tmp_path / "s.npy", np.stack([a, b]))
    (tmp_path / "s.case_id.txt").write_text("c1\nc2\n", encoding="utf-8")
    ms = load_maps(tmp_path / "s.npy")
    np.testing.assert_array_equal(ms.maps["c1"], a)
    torch.save({"c1": torch.tensor(a), "c2": torch.tensor(b)}, tmp_path / "d.pt")
    ms = load_maps(tmp_path / "d.pt")
    np.testing.assert_array_equal(ms.maps["c2"], b)
    torch.save({"case_id": ["x", "y"], "attn": torch.tensor(np.stack([a, b]))}, tmp_path / "s.pt")
    assert load_maps(tmp_path / "s.pt").maps["x"].shape == (3, 4)


def test_import_errors_name_file_key_and_fix(tmp_path):
    stack = np.zeros((2, 4, 4))
    np.savez(tmp_path / "two.npz", case_id=np.array(["a", "b"]), gc__a=stack, gc__b=stack)
    with pytest.raises(InputError, match=r"2 stacked map arrays \['gc__a', 'gc__b'\].*--map-key"):
        load_maps(tmp_path / "two.npz")
    with pytest.raises(InputError, match="key 'nope' not found"):
        load_maps(tmp_path / "two.npz", key="nope")
    np.save(tmp_path / "lonely.npy", stack)
    with pytest.raises(InputError, match="lonely.case_id.txt"):
        load_maps(tmp_path / "lonely.npy")
    with pytest.raises(InputError, match="shape .* but 3 case ids"):
        load_maps(tmp_path / "lonely.npy", case_ids=["a", "b", "c"])
    with pytest.raises(InputError, match="duplicate case_id"):
        np.savez(tmp_path / "dup.npz", case_id=np.array(["a", "a"]), m=stack)
        load_maps(tmp_path / "dup.npz")
    with pytest.raises(InputError, match="suffix '.png' not supported"):
        (tmp_path / "x.png").write_bytes(b"")
        load_maps(tmp_path / "x.png")
    with pytest.raises(InputError, match="does not exist"):
        load_maps(tmp_path / "missing.npz")


def test_orientation_checks_transpose_and_flip():
    assert check_orientation((20, 10), (80, 40)) == "ok"
    assert check_orientation((10, 20), (80, 40)) == "transposed"
    assert check_orientation((16, 16), (80, 40)) == "ok"        # square model input of any image
    assert check_orientation((30, 10), (80, 40)) == "aspect"
    m = np.zeros((10, 20))
    m[0, 19] = 1                                                  # top-right of a transposed map
    with pytest.raises(OrientationError, match="--transpose"):
        prepare_map(m, (40, 20))
    out, chk = prepare_map(m, (20, 10), transpose=True)
    assert chk == "ok" and out[19, 0] == 1.0                      # (0, 19) -> (19, 0)
    np.testing.assert_array_equal(orient_map(np.array([[1, 2], [3, 4]]), flip="h"), [[2, 1], [4, 3]])
    np.testing.assert_array_equal(orient_map(np.array([[1, 2], [3, 4]]), flip="v"), [[3, 4], [1, 2]])
    np.testing.assert_array_equal(orient_map(np.array([[1, 2], [3, 4]]), transpose=True, flip="hv"),
                                  [[4, 2], [3, 1]])
    with pytest.raises(InputError, match="flip='x'"):
        orient_map(m, flip="x")
