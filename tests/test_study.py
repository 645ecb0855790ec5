"""The stage engine of `radlens run`: skipping by input hashes, failure isolation, dependants, force."""
import json
from pathlib import Path

import pytest

from radlens.errors import ConfigError
from radlens.study import HashCache, Stage, _select, execute, spec_files, encoder_spec_of, is_classifier_spec


def _stages(tmp_path: Path, calls: list, cfg_value=1, fail_b=False):
    src = tmp_path / "input.txt"
    a_out, b_out, c_out, d_out = (tmp_path / f"{n}.txt" for n in "abcd")

    def a():
        calls.append("a")
        a_out.write_text(src.read_text(encoding="utf-8").upper())

    def b():
        calls.append("b")
        if fail_b:
            raise ValueError("boom in b")
        b_out.write_text(a_out.read_text(encoding="utf-8") + "!")

    def c():
        calls.append("c")
        c_out.write_text(b_out.read_text(encoding="utf-8") * 2)

    def d():
        calls.append("d")
        d_out.write_text("independent", encoding="utf-8")

    return [Stage("a", "kind-a", a, [a_out], {"src": src}, {"v": cfg_value}),
            Stage("b", "kind-b", b, [b_out], {"a": a_out}, {}, ["a"]),
            Stage("c/x", "kind-c", c, [c_out], {"b": b_out}, {}, ["b"]),
            Stage("d", "kind-d", d, [d_out], {"src": [src]}, {})]


def _status(results):
    return {r.name: r.status for r in results}


def test_runs_then_skips_unchanged_then_reruns_changed(tmp_path):
    run = tmp_path / "run"
    (tmp_path / "input.txt").write_text("hello", encoding="utf-8")
    calls = []
    res = execute(_stages(tmp_path, calls), run)
    assert _status(res) == {"a": "ok", "b": "ok", "c/x": "ok", "d": "ok"}
    assert (tmp_path / "c.txt").read_text(encoding="utf-8") == "HELLO!HELLO!"
    assert calls == ["a", "b", "c", "d"]
    rec = json.loads((run / "stages" / "c__x.json").read_text(encoding="utf-8"))
    assert rec["status"] == "ok" and len(rec["key"]) == 64

    calls.clear()
    res = execute(_stages(tmp_path, calls), run)
    assert set(_status(res).values()) == {"cached"} and calls == []

    # changing the input's content (not only its mtime) re-runs its consumers
    (tmp_path / "input.txt").write_text("world", encoding="utf-8")
    calls.clear()
    res = execute(_stages(tmp_path, calls), run)
    assert calls == ["a", "b", "c", "d"]
    assert (tmp_path / "c.txt").read_text(encoding="utf-8") == "WORLD!WORLD!"

    # rewriting identical content: everything cached (content hash, not mtime)
    (tmp_path / "input.txt").write_text("world", encoding="utf-8")
    calls.clear()
    execute(_stages(tmp_path, calls), run)
    assert calls == []


def test_config_change_and_deleted_output_rerun(tmp_path):
    run = tmp_path / "run"
    (tmp_path / "input.txt").write_text("x", encoding="utf-8")
    execute(_stages(tmp_path, []), run)
    calls = []
    execute(_stages(tmp_path, calls, cfg_value=2), run)
    # a's config changed -> a re-runs; its output has the same content, so b, c are still cached
    assert calls == ["a"]
    (tmp_path / "b.txt").unlink()
    calls.clear()
    execute(_stages(tmp_path, calls, cfg_value=2), run)
    assert calls == ["b"]


def test_failure_is_recorded_and_others_run(tmp_path):
    run = tmp_path / "run"
    (tmp_path / "input.txt").write_text("x", encoding="utf-8")
    calls = []
    res = execute(_stages(tmp_path, calls, fail_b=True), run)
    st = _status(res)
    assert st == {"a": "ok", "b": "failed", "c/x": "skipped", "d": "ok"}
    by = {r.name: r for r in res}
    assert "ValueError: boom in b" in by["b"].error
    assert "upstream b failed" in by["c/x"].error
    assert "boom in b" in (run / "logs" / "b.log").read_text(encoding="utf-8")
    assert calls == ["a", "b", "d"]
    # after the fix, the failed stage and its dependant run; the others stay cached
    calls.clear()
    res = execute(_stages(tmp_path, calls), run)
    assert calls == ["b", "c"]
    assert _status(res)["a"] == "cached"


def test_force_reruns_everything(tmp_path):
    run = tmp_path / "run"
    (tmp_path / "input.txt").write_text("x", encoding="utf-8")
    execute(_stages(tmp_path, []), run)
    calls = []
    execute(_stages(tmp_path, calls), run, force=True)
    assert calls == ["a", "b", "c", "d"]


def test_stage_that_writes_nothing_fails(tmp_path):
    res = execute([Stage("lazy", "k", lambda: None, [tmp_path / "never.txt"])], tmp_path / "run")
    assert res[0].status == "failed" and "did not write" in res[0].error


def test_select_keeps_dependencies(tmp_path):
    st = _stages(tmp_path, [])
    assert [s.name for s in _select(st, ["c"])] == ["a", "b", "c/x"]
    assert [s.name for s in _select(st, ["d"])] == ["d"]
    with pytest.raises(ConfigError, match="matches no stage"):
        _select(st, ["zzz"])


def test_hash_cache_memoises_and_detects_change(tmp_path):
    f = tmp_path / "f.bin"
    f.write_bytes(b"abc")
    hc = HashCache(tmp_path / "h.json")
    import hashlib

    assert hc(f) == hashlib.sha256(b"abc").hexdigest()
    hc.save()
    hc2 = HashCache(tmp_path / "h.json")
    assert str(f.resolve()) in hc2.data
    f.write_bytes(b"abcd")
    assert hc2(f) == hashlib.sha256(b"abcd").hexdigest()
    assert hc2(tmp_path / "missing") == "missing"


def test_spec_files_and_classifier_detection(tmp_path):
    (tmp_path / "m").mkdir()
    (tmp_path / "m" / "enc.yaml").write_text("kind: monai\nname: ResNet\ncheckpoint: w.safetensors\n", encoding="utf-8")
    (tmp_path / "m" / "clf.yaml").write_text(
        "encoder: {kind: hf, path: vit/}\nhead: {checkpoint: head.safetensors, pooling: cls}\ntarget_layer: x\n")
    (tmp_path / "m" / "clf2.yaml").write_text("encoder: enc.yaml\nhead: {checkpoint: h2.safetensors}\n", encoding="utf-8")
    assert spec_files(tmp_path / "m" / "enc.yaml") == [tmp_path / "m" / "enc.yaml", tmp_path / "m" / "w.safetensors"]
    assert spec_files(tmp_path / "m" / "clf.yaml")[1:] == [tmp_path / "m" / "vit", tmp_path / "m" / "head.safetensors"]
    assert tmp_path / "m" / "w.safetensors" in spec_files(tmp_path / "m" / "clf2.yaml")
    assert is_classifier_spec(tmp_path / "m" / "clf.yaml") and not is_classifier_spec(tmp_path / "m" / "enc.yaml")
    enc = encoder_spec_of(tmp_path / "m" / "clf.yaml")
    assert enc["kind"] == "hf" and Path(enc["path"]) == (tmp_path / "m" / "vit").resolve()
    assert encoder_spec_of(tmp_path / "m" / "clf2.yaml") == str(tmp_path / "m" / "enc.yaml")
    assert encoder_spec_of(tmp_path / "m" / "enc.yaml") == str(tmp_path / "m" / "enc.yaml")
    # a per-architecture embedding layer replaces the spec's layer, paths made absolute
    m = (tmp_path / "m").resolve()
    assert encoder_spec_of(tmp_path / "m" / "enc.yaml", "layer2") == {
        "kind": "monai", "name": "ResNet", "checkpoint": str(m / "w.safetensors"), "layer": "layer2"}
    assert encoder_spec_of(tmp_path / "m" / "clf2.yaml", "layer3")["layer"] == "layer3"
    assert encoder_spec_of(tmp_path / "m" / "clf.yaml", "encoder.layer.1") == {
        "kind": "hf", "path": str(m / "vit"), "layer": "encoder.layer.1"}


def test_study_embeds_at_the_architecture_layer(tmp_path, monkeypatch):
    """encoders.<arch>.layer reaches every embed stage of that architecture (and its hash)."""
    import yaml

    from radlens.config import load_study
    from radlens.study import build_stages

    (tmp_path / "enc.yaml").write_text("kind: monai\nname: ResNet\ncheckpoint: w.safetensors\nlayer: layer4\n",
                                       encoding="utf-8")
    (tmp_path / "ft.yaml").write_text("kind: monai\nname: ResNet\ncheckpoint: f.safetensors\nlayer: layer4\n",
                                      encoding="utf-8")
    (tmp_path / "m.csv").write_text("case_id,image,bbox_x,bbox_y,bbox_w,bbox_h\n", encoding="utf-8")
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({
        "manifest": "m.csv", "encoders": {"cnn": {"pre": "enc.yaml", "layer": "layer2",
                                                  "tasks": {"t": {"finetuned": "ft.yaml"}}}},
        "cam_drift": {"enabled": False}, "pooling_probe": {"enabled": False}}), encoding="utf-8")
    cfg = load_study(tmp_path / "s.yaml")
    assert cfg.encoders["cnn"].layer == "layer2"
    calls = []
    import radlens.encoders

    import pandas as pd

    class M:
        path = str(tmp_path / "m.csv")
        df = pd.DataFrame({"case_id": [], "image": []})

    monkeypatch.setattr(radlens.encoders, "embed", lambda manifest, spec, out, **kw: calls.append(spec))
    stages = [s for s in build_stages(cfg, tmp_path / "run", M()) if s.kind == "embed"]
    assert {s.config["layer"] for s in stages} == {"layer2"}
    for s in stages:
        s.fn()
    assert [c["layer"] for c in calls] == ["layer2", "layer2"]
    assert {Path(c["checkpoint"]).name for c in calls} == {"w.safetensors", "f.safetensors"}


def test_localize_finds_the_maps_of_the_only_pair_that_kept_cases(tmp_path):
    """cam-drift writes maps.npz when one of several configured pairs kept cases; localize must use it."""
    import numpy as np

    from radlens.io.artifacts import write_npz
    from radlens.study.stages import _maps_file_of

    single, per_pair = tmp_path / "maps.npz", tmp_path / "maps.cnn.t1.npz"
    assert _maps_file_of(per_pair, single, {"architecture": "cnn", "task": "t1"}) is None
    write_npz(single, {"case_id": np.array(["a"])}, meta={"architecture": "cnn", "task": "t1"})
    assert _maps_file_of(per_pair, single, {"architecture": "cnn", "task": "t1"}) == single
    assert _maps_file_of(tmp_path / "maps.vit.t1.npz", single, {"architecture": "vit", "task": "t1"}) is None
    write_npz(per_pair, {"case_id": np.array(["a"])}, meta={"architecture": "cnn", "task": "t1"})
    assert _maps_file_of(per_pair, single, {"architecture": "cnn", "task": "t1"}) == per_pair


def test_cam_stage_removes_stale_maps_before_running(tmp_path, monkeypatch):
    """A pair that kept cases last run but none now must not leave its old maps for localize to score."""
    import pandas as pd
    import yaml

    import radlens.cam.run
    from radlens.config import load_study
    from radlens.study import build_stages

    for n in ("tl", "ft"):
        (tmp_path / f"{n}.yaml").write_text("encoder: {kind: monai, name: ResNet}\nhead: {checkpoint: h.safetensors}\n"
                                            "target_layer: layer4\n", encoding="utf-8")
    (tmp_path / "enc.yaml").write_text("kind: monai\nname: ResNet\n", encoding="utf-8")
    (tmp_path / "m.csv").write_text("case_id,image,bbox_x,bbox_y,bbox_w,bbox_h\n", encoding="utf-8")
    tasks = {t: {"finetuned": "ft.yaml", "transfer": "tl.yaml"} for t in ("t1", "t2")}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump({
        "manifest": "m.csv", "encoders": {"cnn": {"pre": "enc.yaml", "tasks": tasks}},
        "lens": {"enabled": False}, "pooling_probe": {"enabled": False}}), encoding="utf-8")

    class M:
        path = str(tmp_path / "m.csv")
        df = pd.DataFrame({"case_id": [], "image": []})

    run = tmp_path / "run"
    cam = [s for s in build_stages(load_study(tmp_path / "s.yaml"), run, M()) if s.kind == "cam-drift"][0]
    (run / "cam").mkdir(parents=True)
    stale = [run / "cam" / "maps.cnn.t1.npz", run / "cam" / "maps.npz"]
    for f in stale:
        f.write_bytes(b"old")
    seen = []
    monkeypatch.setattr(radlens.cam.run, "cam_drift_study",
                        lambda *a, **k: seen.append([f.exists() for f in stale]))
    cam.fn()
    assert seen == [[False, False]]


def test_study_layers_reach_the_embed_stages(tmp_path, monkeypatch):
    """encoders.<arch>.layers: every embed stage embeds all of them (one pass); the probe uses layer."""
    import pandas as pd
    import yaml

    import radlens.encoders
    from radlens.config import load_study
    from radlens.errors import ConfigError
    from radlens.study import build_stages

    (tmp_path / "enc.yaml").write_text("kind: monai\nname: ResNet\ncheckpoint: w.safetensors\nlayer: layer4\n",
                                       encoding="utf-8")
    (tmp_path / "m.csv").write_text("case_id,image,bbox_x,bbox_y,bbox_w,bbox_h\n", encoding="utf-8")
    study = {"manifest": "m.csv", "encoders": {"cnn": {"pre": "enc.yaml", "layers": ["layer1", "layer2", "layer3"],
                                                       "layer": "layer2", "tasks": {"t": {"finetuned": "enc.yaml"}}}},
             "cam_drift": {"enabled": False}}
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(study), encoding="utf-8")
    cfg = load_study(tmp_path / "s.yaml")
    assert cfg.encoders["cnn"].main_layer == "layer2"

    class M:
        path = str(tmp_path / "m.csv")
        df = pd.DataFrame({"case_id": [], "image": []})

    calls = []
    monkeypatch.setattr(radlens.encoders, "embed", lambda manifest, spec, out, **kw: calls.append((spec, kw)))
    stages = build_stages(cfg, tmp_path / "run", M())
    emb = [s for s in stages if s.kind == "embed"]
    assert len(emb) == 2 and all(s.config["layers"] == ["layer1", "layer2", "layer3"] for s in emb)
    for s in emb:
        s.fn()
    assert [kw["layers"] for _, kw in calls] == [["layer1", "layer2", "layer3"]] * 2
    assert [s for s in stages if s.kind == "pooling-probe"][0].config["layer"] == "layer2"
    study["encoders"]["cnn"]["layer"] = "layer4"
    (tmp_path / "s.yaml").write_text(yaml.safe_dump(study), encoding="utf-8")
    with pytest.raises(ConfigError, match=r"layer='layer4' is not one of layers="):
        load_study(tmp_path / "s.yaml")
