"""Table writers without pandas, and library versions without importlib.metadata's parsing:
the same bytes / the same tables / the same numbers as the pandas and importlib ways."""
from __future__ import annotations

import importlib.metadata as md
import subprocess
import sys

import numpy as np
import pandas as pd
import pyarrow.parquet as pq

from radlens.io.artifacts import VERSIONED, read_table, read_table_meta, versions, write_columns, write_failures, \
    write_table


def test_versions_equal_importlib_metadata():
    code = ("import sys; from radlens.io.artifacts import versions; versions(); "
            "print('importlib.metadata' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"  # read from the .dist-info folder names, not by importlib.metadata
    v = versions()
    for name in VERSIONED:
        try:
            assert v[name] == md.version(name), name
        except md.PackageNotFoundError:
            assert name not in v


def test_platform_string_equals_platform_platform():
    import platform

    from radlens.io.artifacts import platform_string

    assert platform_string() == platform.platform()
    assert versions()["platform"] == platform.platform()


def test_write_columns_reads_back_as_write_table(tmp_path):
    cols = {"case_id": ["a", "b", "é"], "x": np.array([1.5, np.nan, -2.0]), "note": ["ok", None, "x,y"]}
    meta = {"n": 3}
    write_columns(cols, tmp_path / "new.parquet", meta)
    df = pd.DataFrame({k: pd.Series(v, dtype=object) if isinstance(v, list) else v for k, v in cols.items()})
    write_table(df, tmp_path / "old.parquet", meta)
    pd.testing.assert_frame_equal(read_table(tmp_path / "new.parquet"), read_table(tmp_path / "old.parquet"))
    assert read_table_meta(tmp_path / "new.parquet") == meta
    t = pq.read_table(tmp_path / "new.parquet")
    assert t.column("x").null_count == 1 and t.column("note").null_count == 1  # NaN/None as null, like pandas'
    write_columns({"case_id": []}, tmp_path / "empty.parquet")
    assert len(read_table(tmp_path / "empty.parquet")) == 0


def test_write_failures_bytes_equal_pandas_to_csv(tmp_path):
    rows = [{"case_id": "a,b", "stage": "load", "error": 'bad "x", y'}, {"case_id": "c", "stage": "extract",
            "error": "line1\nline2"}, {"case_id": "é", "stage": None, "error": ""}]
    for rs in (rows, []):
        write_failures(tmp_path / "new.csv", rs)
        pd.DataFrame(rs, columns=["case_id", "stage", "error"]).to_csv(tmp_path / "old.csv", index=False)
        assert (tmp_path / "new.csv").read_bytes() == (tmp_path / "old.csv").read_bytes()


def test_radiomics_command_imports_no_pandas_no_torch(tmp_path):
    """`radlens radiomics` on a CSV manifest with a parquet output: pandas (~0.15 s) and the deep
    learning stack are never imported."""
    from radlens.synth import make_cohort

    man = make_cohort(tmp_path / "c", n_cases=2, image_size=32, seed=0, show_progress=False)
    code = ("import sys; from radlens.cli import main; rc = main(['radiomics', sys.argv[1], '--no-cache', '--out', "
            "sys.argv[2]]); heavy = [m for m in ('pandas', 'torch', 'monai', 'transformers') if m in sys.modules]; "
            "print('HEAVY', heavy); sys.exit(rc)")
    p = subprocess.run([sys.executable, "-c", code, str(man), str(tmp_path / "f.parquet")], capture_output=True,
                       text=True, env={**__import__("os").environ, "RADLENS_PROGRESS": "0"})
    assert p.returncode == 0, p.stderr
    assert "HEAVY []" in p.stdout
    assert len(read_table(tmp_path / "f.parquet")) == 2


def test_help_imports_no_heavy_library():
    code = ("import sys\nfrom radlens.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
            "print('HEAVY', [m for m in ('pandas', 'pyarrow', 'torch', 'monai', 'transformers', 'SimpleITK') "
            "if m in sys.modules])")
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert p.returncode == 0, p.stderr
    assert "HEAVY []" in p.stdout


def test_radiomics_tables_mixed_feature_sets_and_failures(tmp_path):
    """Cases with different feature sets (e.g. 2D and 3D): columns in first-seen order, NaN where a
    case lacks a feature; a failure goes to the failures table only; diagnostics typed per column."""
    from radlens.radiomics.extract import _write_tables

    rows = [{"case_id": c} for c in ("a", "b", "c", "d")]
    recs = [{"features": {"f1": 1.0, "f2": 2.0}, "diagnostics": {"n": 3, "s": "x"}},
            {"features": {"f2": 5.0, "f3": 6.0}, "diagnostics": {"n": None, "s": None}, "warnings": ["w", "w"]},
            {"features": None, "error": "bad", "stage": "load", "diagnostics": {}},
            {"features": {"f1": 7.0, "f2": 8.0}, "diagnostics": {"n": 2.5, "s": 4}}]
    res = _write_tables(rows, recs, tmp_path / "t.parquet", tmp_path / "t.diagnostics.parquet",
                        tmp_path / "t.failures.csv", {"run_key": "k"}, None)
    f = read_table(tmp_path / "t.parquet")
    assert list(f.columns) == ["case_id", "f1", "f2", "f3"] and f["case_id"].tolist() == ["a", "b", "d"]
    np.testing.assert_array_equal(f[["f1", "f2", "f3"]].to_numpy(), [[1, 2, np.nan], [np.nan, 5, 6], [7, 8, np.nan]])
    pd.testing.assert_frame_equal(res.features, f, check_dtype=False)
    d = read_table(tmp_path / "t.diagnostics.parquet")
    np.testing.assert_array_equal(d["n"].to_numpy(float), [3, np.nan, np.nan, 2.5])
    assert d["s"].tolist()[0] == "x" and d["s"].tolist()[3] == "4" and pd.isna(d["s"].tolist()[1])
    assert d["radlens_warnings"].tolist()[1] == "w"
    assert read_table(tmp_path / "t.failures.csv").to_dict("records") == [{"case_id": "c", "stage": "load",
                                                                           "error": "bad"}]
    assert res.n_failed == 1 and res.n_features == 3
