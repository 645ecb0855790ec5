"""`radlens localize` through the command line (argument parsing, files written, user errors)."""
import pandas as pd

from radlens.cli import main
from test_localization_run import cohort  # noqa: F401  (fixture; tests/ is on sys.path under pytest)


def test_cli_localize_and_bad_key(cohort, capsys):
    tmp, man = cohort
    out = tmp / "cli.csv"
    rc = main(["-q", "localize", "--manifest", str(man), "--maps", str(tmp / "maps.npz"), "--map-key", "cam__a",
               "--maps-b", str(tmp / "maps.npz"), "--map-key-b", "cam__b", "--out", str(out), "--n-boot", "20",
               "--binarize", "topk"])
    assert rc == 0 and out.exists()
    assert (tmp / "cli.summary.csv").exists() and (tmp / "cli.paired.csv").exists()
    assert (tmp / "cli_scores.png").exists()
    assert "iou_topk" in pd.read_csv(out).columns and "iou_otsu" not in pd.read_csv(out).columns
    rc = main(["localize", "--manifest", str(man), "--maps", str(tmp / "maps.npz"), "--out", str(out)])
    assert rc == 2
    assert "choose one with --map-key" in capsys.readouterr().err
