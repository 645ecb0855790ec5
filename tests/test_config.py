"""Study config validation: YAML -> typed dataclasses, errors naming key, value and allowed values."""
from pathlib import Path

import pytest
import yaml

from radlens.config import check_paths, load_study, study_from_dict, study_to_dict
from radlens.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def _minimal(**over):
    d = {"manifest": "cohort/manifest.csv",
         "encoders": {"cnn": {"pre": "m/pre.yaml", "tasks": {"t1": {"finetuned": "m/ft.yaml", "transfer": "m/tl.yaml"},
                                                             "t2": "m/ft2.yaml"}}}}
    d.update(over)
    return d


def test_minimal_config_defaults_and_paths(tmp_path):
    cfg = study_from_dict(_minimal(), base_dir=tmp_path)
    assert cfg.resolve(cfg.manifest) == (tmp_path / "cohort" / "manifest.csv").resolve()
    assert cfg.out == "run" and cfg.seed == 0 and cfg.threads is None
    assert cfg.lens.enabled and cfg.lens.pooling == "auto" and cfg.lens.top_k == 20
    assert cfg.cam_drift.methods == ["layercam", "gradcam++"]
    # shorthand "task: finetuned.yaml" and label defaulting to the task name
    assert cfg.encoders["cnn"].tasks["t2"].finetuned == "m/ft2.yaml"
    assert cfg.encoders["cnn"].tasks["t2"].transfer is None
    assert cfg.encoders["cnn"].tasks["t1"].label == "t1"
    assert cfg.tasks == ["t1", "t2"]
    # defaults of one instance are not shared with another (mutable defaults)
    other = study_from_dict(_minimal(), base_dir=tmp_path)
    other.lens.options["x"] = 1
    assert cfg.lens.options == {}


def test_absolute_paths_are_kept(tmp_path):
    cfg = study_from_dict(_minimal(manifest=str(tmp_path / "abs.csv")), base_dir="/somewhere/else")
    assert cfg.resolve(cfg.manifest) == tmp_path / "abs.csv"


def test_unknown_key_names_key_and_suggests(tmp_path):
    with pytest.raises(ConfigError) as e:
        study_from_dict(_minimal(lens={"top_kk": 5}), base_dir=tmp_path)
    msg = str(e.value)
    assert "'top_kk'" in msg and "did you mean 'top_k'" in msg and "lens" in msg


def test_bad_choice_names_value_and_allowed(tmp_path):
    with pytest.raises(ConfigError) as e:
        study_from_dict(_minimal(lens={"pooling": "max"}), base_dir=tmp_path)
    msg = str(e.value)
    assert "'pooling'" in msg and "'max'" in msg and "'roi'" in msg and "'cls'" in msg


def test_bad_type_and_range(tmp_path):
    with pytest.raises(ConfigError, match=r"'top_k'.*'ten'.*expected a value of type int"):
        study_from_dict(_minimal(lens={"top_k": "ten"}), base_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"'top_k'.*0.*>= 1"):
        study_from_dict(_minimal(lens={"top_k": 0}), base_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"'enabled'.*expected a value of type bool"):
        study_from_dict(_minimal(cam_drift={"enabled": "yes"}), base_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"study: key 'seed'.*-1"):
        study_from_dict(_minimal(seed=-1), base_dir=tmp_path)


def test_required_keys(tmp_path):
    d = _minimal()
    del d["manifest"]
    with pytest.raises(ConfigError, match="'manifest' is required"):
        study_from_dict(d, base_dir=tmp_path)
    with pytest.raises(ConfigError, match="'encoders' is required"):
        study_from_dict({"manifest": "m.csv"}, base_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"encoders\.cnn.*'pre' is required"):
        study_from_dict(_minimal(encoders={"cnn": {"tasks": {"t": "x.yaml"}}}), base_dir=tmp_path)
    with pytest.raises(ConfigError, match=r"encoders\.cnn\.tasks\.t.*'finetuned' is required"):
        study_from_dict(_minimal(encoders={"cnn": {"pre": "p.yaml", "tasks": {"t": {"transfer": "a"}}}}),
                        base_dir=tmp_path)
    with pytest.raises(ConfigError, match="'tasks' must map task names"):
        study_from_dict(_minimal(encoders={"cnn": {"pre": "p.yaml"}}), base_dir=tmp_path)


def test_load_study_file_errors(tmp_path):
    with pytest.raises(ConfigError, match="does not exist"):
        load_study(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("manifest: [unclosed\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_study(bad)
    lst = tmp_path / "list.yaml"
    lst.write_text("- a\n- b\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="must be a YAML mapping"):
        load_study(lst)


def test_check_paths_lists_every_missing_file(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "pre.yaml").write_text("kind: hf\n", encoding="utf-8")
    cfg = study_from_dict(_minimal(), base_dir=tmp_path)
    problems = check_paths(cfg)
    keys = sorted(p.split(":")[0] for p in problems)
    assert keys == ["encoders.cnn.tasks.t1.finetuned", "encoders.cnn.tasks.t1.transfer",
                    "encoders.cnn.tasks.t2.finetuned", "manifest"]


def test_round_trip(tmp_path):
    cfg = study_from_dict(_minimal(lens={"top_k": 7, "expected_classes": {"t1": ["glcm"]}}), base_dir=tmp_path)
    d = study_to_dict(cfg)
    again = study_from_dict(yaml.safe_load(yaml.safe_dump(d)), base_dir=tmp_path)
    assert study_to_dict(again) == d
    assert again.lens.top_k == 7 and again.lens.expected_classes == {"t1": ["glcm"]}


def test_example_config_in_repo_is_valid():
    cfg = load_study(REPO / "configs" / "study.yaml")
    assert set(cfg.encoders) == {"cnn", "vit"}
    assert cfg.encoders["vit"].tasks["task_shape"].transfer is None
    assert cfg.lens.expected_classes["task_intensity"] == ["firstorder"]


def test_figure_formats(tmp_path):
    """``figure_formats`` chooses the files of every figure (PNG required: the report embeds it)."""
    assert study_from_dict(_minimal(), base_dir=tmp_path).figure_formats == ["png", "svg"]
    assert study_from_dict(_minimal(figure_formats=["PNG"]), base_dir=tmp_path).figure_formats == ["png"]
    for bad in (["svg"], ["png", "gif"]):
        with pytest.raises(ConfigError, match=r"'figure_formats'.*png is required"):
            study_from_dict(_minimal(figure_formats=bad), base_dir=tmp_path)
    import matplotlib.pyplot as plt

    from radlens.viz.style import figure_formats, save_figure

    with figure_formats(["png"]):
        written = save_figure(plt.figure(), tmp_path / "a")
    assert written == [tmp_path / "a.png"] and not (tmp_path / "a.svg").exists()
    assert [p.suffix for p in save_figure(plt.figure(), tmp_path / "b")] == [".png", ".svg"]   # default again


def test_saved_figures_are_byte_identical_across_runs(tmp_path):
    """The same figure saved twice gives the same files (no creation date, SVG ids from a fixed salt), so
    a rerun of the same inputs and seed changes no committed figure."""
    import time

    import matplotlib.pyplot as plt

    from radlens.viz.style import save_figure, use_agg

    use_agg()

    def draw(stem):
        fig, ax = plt.subplots()
        ax.plot([0, 1, 2], [1, 0, 2], label="a")
        ax.fill_between([0, 1], [0, 1], alpha=0.3)  # clip paths: SVG ids
        ax.legend()
        return save_figure(fig, tmp_path / stem, formats=("png", "svg", "pdf"))

    first = draw("one")
    time.sleep(1.1)  # a creation date in seconds would now differ
    second = draw("two")
    for a, b in zip(first, second):
        assert a.read_bytes() == b.read_bytes(), a.suffix
    assert b"<dc:date>" not in first[1].read_bytes()
