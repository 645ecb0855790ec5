"""Demo encoder training: contract-conformant specs/checkpoints, determinism, learning, bad input."""
import numpy as np
import pandas as pd
import pytest
import torch
import yaml

from radlens.errors import InputError
from radlens.synth.train import CohortArrays, TrainConfig, split_indices, train_demo_encoders

TINY = dict(pretext_epochs=1, finetune_epochs=1, batch_size=16, finetune_batch_size=8, cnn_width=4, densenet_width=8,
            vit_hidden=16, vit_layers=1, vit_heads=2, vit_patch=8, vit_pretext_epochs=1, vit_finetune_batch_size=8)


def _blob_data(n=48, size=32, seed=0):
    """Noise images; task_bright: a bright disc (1) vs a faint one (0) at a random place."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    imgs, y = [], []
    for i in range(n):
        lab = i % 2
        cy, cx = rng.integers(8, size - 8, 2)
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 <= 16
        img = rng.normal(0.3, 0.05, (size, size)) + disc * (0.6 if lab else 0.1)
        imgs.append(img.astype(np.float32))
        y.append(lab)
    table = pd.DataFrame({"case_id": [f"c{i:03d}" for i in range(n)], "patient_id": [f"p{i // 2}" for i in range(n)],
                          "task_bright": y, "task_other": rng.integers(0, 2, n).astype(float)})
    table.loc[0, "task_other"] = np.nan  # unlabelled rows are left out of that task
    tr, va = split_indices(table, 0.3, seed)
    return CohortArrays(table["case_id"].to_numpy(), np.stack(imgs), table, tr, va)


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    torch.set_num_threads(1)
    out = tmp_path_factory.mktemp("models")
    data = _blob_data()
    res = train_demo_encoders(data, out, TrainConfig(tasks=("task_bright", "task_other"), **TINY))
    return data, out, res


def test_specs_follow_the_contracts(trained):
    data, out, res = trained
    assert set(res.specs) == {"cnn", "densenet", "vit"}
    enc = yaml.safe_load((out / "cnn" / "encoder_pre.yaml").read_text(encoding="utf-8"))
    assert enc["kind"] == "monai" and enc["name"] == "ResNet" and enc["layer"] == "layer3"
    assert enc["checkpoint"] == "pre.safetensors" and (out / "cnn" / "pre.safetensors").exists()
    assert enc["preprocess"]["spatial_size"] == [32, 32] and enc["preprocess"]["channels"] == 1
    # a fixed [0, 1] window, never a per-image rescale (a per-image min-max let the intensity task be
    # read from the background); the ViT gets a per-image z-score
    assert enc["preprocess"]["clip"] == [0.0, 1.0] and enc["preprocess"]["intensity"] == "none"
    denc = yaml.safe_load((out / "densenet" / "encoder_pre.yaml").read_text(encoding="utf-8"))
    assert denc["kind"] == "monai" and denc["name"] == "DenseNet" and denc["layer"] == "features"
    venc = yaml.safe_load((out / "vit" / "encoder_pre.yaml").read_text(encoding="utf-8"))
    assert venc["kind"] == "hf" and (out / "vit" / "pre" / "config.json").exists()
    assert venc["preprocess"]["intensity"] == "zscore"
    for arch, pooling, target in (("cnn", "global", "layer3"), ("densenet", "global", "features"),
                                  ("vit", "mean", "layernorm")):
        for kind in ("tl", "ft"):
            clf = yaml.safe_load((out / arch / f"classifier_{kind}_task_bright.yaml").read_text(encoding="utf-8"))
            # every head reads the mean of its target layer: no target_input detour
            assert set(clf) == {"encoder", "head", "target_layer", "classes"}
            assert clf["head"]["pooling"] == pooling and clf["target_layer"] == target
            from safetensors.torch import load_file

            head = load_file(str(out / arch / clf["head"]["checkpoint"]))
            assert head["weight"].shape[0] == 2 and head["bias"].shape == (2,)
        tl = yaml.safe_load((out / arch / "classifier_tl_task_bright.yaml").read_text(encoding="utf-8"))
        ft = yaml.safe_load((out / arch / "classifier_ft_task_bright.yaml").read_text(encoding="utf-8"))
        # transfer learning keeps the pre backbone; fine-tuning points at its own weights
        assert tl["encoder"] == {"cnn": enc, "densenet": denc, "vit": venc}[arch]
        assert ft["encoder"] != tl["encoder"]


def test_backbones_frozen_vs_changed(trained):
    from safetensors.torch import load_file

    _, out, res = trained
    pre = load_file(str(out / "cnn" / "pre.safetensors"))
    ft = load_file(str(out / "cnn" / "ft_task_bright.safetensors"))
    assert pre.keys() == ft.keys()
    assert any(not torch.equal(pre[k], ft[k]) for k in pre if pre[k].is_floating_point())
    ch = res.metrics["archs"]["cnn"]["tasks"]["task_bright"]["backbone_change"]
    num = sum(float(((ft[k] - pre[k]) ** 2).sum()) for k in pre if pre[k].is_floating_point() and "running_" not in k)
    den = sum(float((pre[k] ** 2).sum()) for k in pre if pre[k].is_floating_point() and "running_" not in k)
    assert ch["total"] == pytest.approx(np.sqrt(num / den), rel=1e-5)


def test_loaded_classifier_reproduces_training_logits(trained):
    """The classifier spec, loaded the way CAM drift loads it, computes head(pool(backbone(x)))."""
    from safetensors.torch import load_file

    from radlens.cam.model import load_classifier
    from radlens.synth.models import build_cnn, cnn_args

    data, out, _ = trained
    clf = load_classifier(out / "cnn" / "classifier_ft_task_bright.yaml")
    x = torch.from_numpy(np.clip(data.images[:4], 0.0, 1.0))[:, None].float()  # the spec's fixed window
    net = build_cnn(cnn_args(4))
    net.load_state_dict(load_file(str(out / "cnn" / "ft_task_bright.safetensors")))
    net.eval()
    head = load_file(str(out / "cnn" / "head_ft_task_bright.safetensors"))
    with torch.no_grad():
        # the head reads layer3's mean (the demo ResNet's layer4 is never run)
        feats = net.layer3(net.layer2(net.layer1(net.act(net.bn1(net.conv1(x)))))).mean((2, 3))
        ref = feats @ head["weight"].T + head["bias"]
        got = clf.module(x)
    assert torch.allclose(got, ref, atol=1e-4)


def test_same_seed_same_checkpoints(trained, tmp_path):
    from safetensors.torch import load_file

    data, out, res = trained
    res2 = train_demo_encoders(data, tmp_path, TrainConfig(tasks=("task_bright", "task_other"), archs=("cnn",), **TINY))
    a = load_file(str(out / "cnn" / "ft_task_other.safetensors"))
    b = load_file(str(tmp_path / "cnn" / "ft_task_other.safetensors"))
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert res2.metrics["archs"]["cnn"]["tasks"]["task_other"]["val_auc"] == \
        res.metrics["archs"]["cnn"]["tasks"]["task_other"]["val_auc"]


def test_training_restores_torch_state(trained, tmp_path):
    data, _, _ = trained
    torch.set_num_threads(1)
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    train_demo_encoders(data, tmp_path, TrainConfig(tasks=("task_bright",), archs=("vit",), **TINY))
    assert torch.equal(torch.rand(3), expected)  # global RNG untouched
    assert not torch.are_deterministic_algorithms_enabled()
    assert torch.get_num_threads() == 1


def test_fine_tuning_learns_a_planted_task(tmp_path):
    torch.set_num_threads(1)
    data = _blob_data(n=64)
    cfg = TrainConfig(tasks=("task_bright",), archs=("cnn",), **{**TINY, "finetune_epochs": 4})
    res = train_demo_encoders(data, tmp_path, cfg)
    auc = res.metrics["archs"]["cnn"]["tasks"]["task_bright"]["val_auc"]
    assert auc["ft"] >= 0.9, auc


def test_bad_inputs_name_the_parameter(tmp_path):
    with pytest.raises(InputError, match=r"archs=\['resnet'\].*\['cnn', 'densenet', 'vit'\]"):
        TrainConfig(archs=("resnet",))
    with pytest.raises(InputError, match="finetune_epochs=-1"):
        TrainConfig(finetune_epochs=-1)
    with pytest.raises(InputError, match="val_fraction=1.5"):
        TrainConfig(val_fraction=1.5)
    with pytest.raises(InputError, match=r"task_epochs=\{'task_nope': 3\}.*keys must be among tasks"):
        TrainConfig(task_epochs={"task_nope": 3})
    with pytest.raises(InputError, match=r"rot90_finetune_archs=\['resnet'\].*\['cnn', 'densenet', 'vit'\]"):
        TrainConfig(rot90_finetune_archs=("resnet",))
    with pytest.raises(InputError, match=r"vit_intensity='minmax'.*\['window', 'zscore'\]"):
        TrainConfig(vit_intensity="minmax")
    with pytest.raises(InputError, match=r"vit_pooling=\{'task_nope': 'lse'\}.*'lse', 'mean' or a dict"):
        TrainConfig(vit_pooling={"task_nope": "lse"})
    with pytest.raises(InputError, match=r"vit_pooling='max'"):
        TrainConfig(vit_pooling="max")
    with pytest.raises(InputError, match=r"vit_sharpness=0"):
        TrainConfig(vit_sharpness=0)
    with pytest.raises(InputError, match=r"mirror-consistency penalty is not implemented for the ViT's lse heads"):
        TrainConfig(flip_consistent_archs=("densenet", "vit"))
    TrainConfig(flip_consistent_archs=("densenet", "vit"), vit_pooling="mean")  # the mean head: allowed
    with pytest.raises(InputError, match=r"vit_head_init='warm'.*\['tl', 'zero'\]"):
        TrainConfig(vit_head_init="warm")
    data = _blob_data(n=16)
    with pytest.raises(InputError, match=r"tasks \['task_missing'\]: not columns"):
        train_demo_encoders(data, tmp_path, TrainConfig(tasks=("task_missing",), **TINY))


def test_youden_threshold_hand_worked():
    from radlens.synth.train import youden_threshold

    # scores 1..6, positives {3, 5, 6}: cut at 2.5 -> TPR 1, FPR 1/3 (J 2/3); at 4.5 -> TPR 2/3, FPR 0 (J 2/3);
    # tie -> the threshold closest to 0
    y = np.array([0, 0, 1, 0, 1, 1])
    s = np.array([1.0, 2.0, 3.0, 4.0, 5.0, 6.0])
    assert youden_threshold(y, s) == 2.5
    # perfectly separated at the top: any cut between 2 and 3 has J = 1; the midpoint 2.5 is the candidate
    assert youden_threshold(np.array([0, 0, 1, 1]), np.array([1.0, 2.0, 3.0, 4.0])) == 2.5
    # a head that calls everything negative (all scores < 0) but ranks perfectly is moved to its gap
    assert youden_threshold(np.array([0, 1]), np.array([-5.0, -3.0])) == -4.0
    assert youden_threshold(np.array([1, 1]), np.array([0.3, 0.4])) == 0.0  # one class: no shift


@pytest.mark.parametrize("arch", ["cnn", "densenet", "vit"])
def test_written_classifiers_reproduce_the_trained_models_through_radlens_preprocessing(trained, arch):
    """The specs the demo writes, loaded and preprocessed by radlens itself, give the validation AUC the
    training measured: every later analysis sees the models exactly as they were trained."""
    from sklearn.metrics import roc_auc_score

    from radlens.cam.model import load_classifier
    from types import SimpleNamespace

    data, out, res = trained
    metrics = yaml.safe_load((out / "training.json").read_text(encoding="utf-8"))
    va = data.val_idx
    y = data.table["task_bright"].to_numpy()[va].astype(int)
    for kind in ("tl", "ft"):
        clf = load_classifier(out / arch / f"classifier_{kind}_task_bright.yaml")
        x = torch.stack([clf.encoder.preprocess(
            SimpleNamespace(case_id=str(data.case_id[i]), array=data.images[i], roi=None))[0]
                         for i in va])
        with torch.no_grad():
            d = np.diff(clf.module(x).numpy(), axis=1)[:, 0]
        want = metrics["archs"][arch]["tasks"]["task_bright"]["val_auc"][kind]
        assert roc_auc_score(y, d) == pytest.approx(want, abs=1e-9)


def test_training_in_processes_equals_training_in_one_process(trained, tmp_path):
    """The fixture trains its three architectures in worker processes (forked on Linux; 2+ cores) or in-process (1 core);
    ``processes=1`` must give the same checkpoints and metrics bit for bit."""
    from safetensors.torch import load_file

    data, out, res = trained
    res1 = train_demo_encoders(data, tmp_path, TrainConfig(tasks=("task_bright", "task_other"), **TINY), processes=1)
    for arch in ("cnn", "densenet", "vit"):
        name = "head_ft_task_bright.safetensors" if arch == "vit" else "ft_task_bright.safetensors"
        a = load_file(str(out / arch / name))
        b = load_file(str(tmp_path / arch / name))
        assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a), arch
        for task in ("task_bright", "task_other"):
            assert res1.metrics["archs"][arch]["tasks"][task] == res.metrics["archs"][arch]["tasks"][task]
    with pytest.raises(InputError, match="processes=0"):
        train_demo_encoders(data, tmp_path, TrainConfig(tasks=("task_bright",), **TINY), processes=0)


def test_vit_gradcam_is_the_per_token_logit_share_of_the_written_checkpoint(trained):
    """The fine-tuned ViT as the demo writes it (save_pretrained folder + a head trained on standardised
    features and folded back into raw units), loaded by radlens: Grad-CAM on its target layer equals the
    per-sample reference computed from the HF model's own tokens and the head file, ReLU(w_c . t_i) / N
    per patch token, and those shares plus the bias add up to the logit."""
    from safetensors.torch import load_file
    from transformers import Dinov2Model

    from radlens.cam.methods import attribute_methods
    from radlens.cam.model import load_classifier

    data, out, _ = trained
    clf = load_classifier(out / "vit" / "classifier_ft_task_bright.yaml")
    x = torch.from_numpy(data.images[:6])[:, None].float()
    x = (x - x.mean((1, 2, 3), keepdim=True)) / x.std((1, 2, 3), keepdim=True)  # the spec's per-image z-score
    targets = [1, 0, 1, 1, 0, 1]
    res = attribute_methods(["gradcam"], clf.module, clf.target_layer, x, targets, token_layout=clf.token_layout)
    net = Dinov2Model.from_pretrained(str(out / "vit" / "ft_task_bright")).eval()
    head = load_file(str(out / "vit" / "head_ft_task_bright.safetensors"))
    with torch.no_grad():
        tok = net(pixel_values=x).last_hidden_state[:, 1:].double()      # (B, N, D) patch tokens
    n = tok.shape[1]
    side = int(round(n ** 0.5))
    w, b = head["weight"].double(), head["bias"].double()
    for i, t in enumerate(targets):
        share = tok[i] @ w[t] / n                                          # (N,) signed shares
        assert float(share.sum() + b[t]) == pytest.approx(float(res["gradcam"].logits[i, t]), abs=1e-4)
        ref = np.maximum(share.numpy(), 0).reshape(side, side)
        np.testing.assert_allclose(res["gradcam"].raw[i], ref, rtol=1e-4, atol=1e-6)


def test_task_epochs_set_the_cnn_epochs_of_one_task(tmp_path):
    """``task_epochs`` gives a task its own number of CNN fine-tuning epochs; the ViT keeps its own."""
    import pandas as pd

    torch.set_num_threads(1)
    data = _blob_data(n=32)
    cfg = TrainConfig(tasks=("task_bright", "task_other"), archs=("densenet", "vit"), flip_consistent_archs=(),
                      **{**TINY, "finetune_epochs": 2, "task_epochs": {"task_other": 3}, "vit_epoch_factor": 1.0})
    train_demo_encoders(data, tmp_path, cfg, processes=1)
    log = pd.read_csv(tmp_path / "training_log.csv")
    n = log[log["stage"] == "finetune"].groupby(["arch", "task"]).size().to_dict()
    assert n == {("densenet", "task_bright"): 2, ("densenet", "task_other"): 3,
                 ("vit", "task_bright"): 2, ("vit", "task_other"): 2}


def test_flip_consistent_fine_tuning_keeps_the_steps_and_the_step_size(tmp_path, monkeypatch):
    """An arch of ``flip_consistent_archs`` fine-tunes on half batches plus their mirror images over half
    the epochs (rounded up): 4 and 3 epochs of 8-image batches -> 2 epochs of 4 + 4 mirrored images each."""
    import pandas as pd

    from radlens.synth import train as T

    sizes = []
    orig = T._flip_consistent_loss

    def spy(model, lin, xb, yb, weight):
        sizes.append(int(xb.shape[0]))
        return orig(model, lin, xb, yb, weight)

    monkeypatch.setattr(T, "_flip_consistent_loss", spy)
    torch.set_num_threads(1)
    data = _blob_data(n=32)
    cfg = TrainConfig(tasks=("task_bright", "task_other"), archs=("densenet",), flip_consistent_archs=("densenet",),
                      **{**TINY, "finetune_epochs": 4, "task_epochs": {"task_other": 3}})
    train_demo_encoders(data, tmp_path, cfg, processes=1)
    log = pd.read_csv(tmp_path / "training_log.csv")
    n = log[log["stage"] == "finetune"].groupby(["arch", "task"]).size().to_dict()
    assert n == {("densenet", "task_bright"): 2, ("densenet", "task_other"): 2}
    n_train = int(np.isfinite(data.table["task_bright"].to_numpy(float)[data.train_idx]).sum())
    steps = len(T._batches(n_train, 4, torch.Generator(), shuffle=False))
    assert len(sizes) == 2 * 2 * steps  # two tasks, two epochs each
    assert max(sizes) <= 4 + 3 and sorted(set(sizes))[0] >= 4  # half batches (a 1-3 image tail joins the last)


def test_augment_without_rotation_keeps_orientation():
    """Fine-tuning augmentation of archs outside ``rot90_finetune_archs``: flips only, so a vertical bar stays
    vertical (a quarter turn would make it horizontal); with rotations some bars come out horizontal."""
    from radlens.synth.train import _augment

    x = torch.zeros(64, 1, 8, 8)
    x[:, 0, 1:7, 3] = 1.0  # a vertical bar, off-centre in x
    flips = {x[0].numpy().tobytes(), x[0].flip(1).numpy().tobytes(), x[0].flip(2).numpy().tobytes(),
             x[0].flip(1).flip(2).numpy().tobytes()}
    out = _augment(x, torch.Generator().manual_seed(0), strong=False, rotate=False)
    assert all(o.numpy().tobytes() in flips for o in out)
    assert all(float(o[0, :, 3:5].sum()) == 6.0 for o in out)  # the bar stays in a column
    rot = _augment(x, torch.Generator().manual_seed(0), strong=False, rotate=True)
    horizontal = [float(o[0].sum(1).max()) == 6.0 for o in rot]  # all 6 bright pixels in one row
    assert 0 < sum(horizontal) < len(rot)


def test_training_cost_puts_the_longest_architecture_first():
    """The pool gets the longest job first (quick demo: the ViT's 32 pretext epochs; default: the ResNet)."""
    from radlens.synth.train import training_cost

    cfg = TrainConfig(pretext_epochs=2, finetune_epochs=12, task_epochs={"task_shape": 24}, vit_epoch_factor=1.0,
                      vit_pretext_epochs=32)
    # pretext epochs x 160 images x ms + fine-tuning epochs (all tasks) x 112 images x ms
    assert training_cost("vit", cfg, 160, 112) == pytest.approx(32 * 160 * 3.0 + 36 * 112 * 1.5)
    assert training_cost("cnn", cfg, 160, 112) == pytest.approx(2 * 160 * 4.0 + 48 * 112 * 3.0)
    assert training_cost("densenet", cfg, 160, 112) == pytest.approx(2 * 160 * 1.7 + 48 * 112 * 0.6)
    default = TrainConfig(pretext_epochs=4, finetune_epochs=20)
    order = sorted(default.archs, key=lambda a: -training_cost(a, default, 400, 280))
    assert order == ["cnn", "vit", "densenet"]


def test_flip_consistent_loss_penalises_maps_that_do_not_mirror():
    """_flip_consistent_loss = CE(image) and CE(mirror) averaged + weight * mean (map - mirrored map of the
    mirror)^2. A grid that is the image itself mirrors exactly (penalty 0); a grid that is the image
    shifted one column right gives, mirrored back, the image shifted one column LEFT: the penalty is
    the mean of (x[j-1] - x[j+1])^2, computed here by hand for a single bright column."""
    import torch.nn.functional as F

    from radlens.synth.train import _flip_consistent_loss

    class Net(torch.nn.Module):
        def __init__(self, shift):
            super().__init__()
            self.shift = shift
            self.head = torch.nn.Linear(1, 2)
            with torch.no_grad():
                self.head.weight.copy_(torch.tensor([[0.0], [2.0]]))  # w1 - w0 = 2
                self.head.bias.zero_()

        def grid(self, x):
            return torch.roll(x, self.shift, dims=3) if self.shift else x

    x = torch.zeros(1, 1, 4, 6)
    x[0, 0, :, 2] = 1.0  # one bright column
    y = torch.tensor([1])
    logits = torch.tensor([[0.0, 2.0 * 4 / 24]])  # pooled mean 1/6 of the image, times w1 = 2
    ce = float(F.cross_entropy(logits, y))  # the image and its mirror have the same pooled mean
    for shift, penalty in ((0, 0.0), (1, 4.0 * (4 + 4) / 24)):  # columns 1 and 3 differ by 2 -> 4 each
        net = Net(shift)
        got = _flip_consistent_loss(net, net.head, x, y, weight=0.5).item()
        assert got == pytest.approx(ce + 0.5 * penalty, rel=1e-6), shift


def test_flip_consistent_loss_of_a_standardised_head_divides_the_map_by_the_batch_sd():
    """A standardised head (the ViT's: BatchNorm1d without affine, then the linear layer) reads pooled
    / batch SD, so its map in logit units is (w1 - w0) / SD . A: the penalty is divided by SD^2 (the
    SD over the images and their mirrors, biased, + the BatchNorm eps), computed here by hand for two
    images whose one bright column is 1 and 2 (pooled means 1/6 and 1/3, SD 1/12)."""
    import torch.nn.functional as F

    from radlens.synth.train import _flip_consistent_loss

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            lin = torch.nn.Linear(1, 2)
            with torch.no_grad():
                lin.weight.copy_(torch.tensor([[0.0], [2.0]]))  # w1 - w0 = 2
                lin.bias.zero_()
            self.head = torch.nn.Sequential(torch.nn.BatchNorm1d(1, affine=False, track_running_stats=False), lin)

        def grid(self, x):
            return torch.roll(x, 1, dims=3)  # shifted one column right: does not mirror

    x = torch.zeros(2, 1, 4, 6)
    x[0, 0, :, 2], x[1, 0, :, 2] = 1.0, 2.0
    y = torch.tensor([1, 0])
    sd = (1 / 144 + 1e-5) ** 0.5
    z = torch.tensor([-1 / 12, 1 / 12]) / sd  # standardised pooled means of the two images (mirrors: the same)
    logits = torch.stack([torch.zeros(2), 2 * z], dim=1)
    ce = float(F.cross_entropy(logits, y))
    # 8 of each image's 24 cells differ by the column's value times 2 / sd: (4 + 16) * 8 / 48 / sd^2
    penalty = (4 + 16) * 8 / 48 / sd ** 2
    net = Net()
    got = _flip_consistent_loss(net, net.head[1], x, y, weight=0.5).item()
    assert got == pytest.approx(ce + 0.5 * penalty, rel=1e-5)


def _tiny_vit(layers=2):
    from radlens.synth.models import build_vit, make_classifier, vit_config

    torch.manual_seed(0)
    return make_classifier(build_vit(vit_config(image_size=16, patch_size=8, hidden_size=8, num_layers=layers,
                                                num_heads=2)), "vit")


def test_vit_param_groups_layer_decay_and_frozen_parts_by_hand():
    """Layer-wise decay 0.5 on a 2-block DINOv2 at lr 1e-3: embeddings 0.5^3, block 0 0.5^2, block 1 0.5,
    final layer norm 1 (x 1e-3); every parameter in exactly one group; frozen parts in none, not trainable."""
    from radlens.synth.steps import vit_param_groups

    bb = _tiny_vit().backbone
    groups = vit_param_groups(bb, 1e-3, 0.5)
    assert [g["layer_id"] for g in groups] == [0, 1, 2, 3]
    assert [g["lr"] for g in groups] == pytest.approx([1.25e-4, 2.5e-4, 5e-4, 1e-3])
    names = {id(p): n for n, p in bb.named_parameters()}
    got = [[names[id(p)] for p in g["params"]] for g in groups]
    assert sum(map(len, got)) == len(names) == len({n for g in got for n in g})
    assert "embeddings.patch_embeddings.projection.weight" in got[0] and "embeddings.cls_token" in got[0]
    assert all(n.startswith("encoder.layer.1.") for n in got[2]) and got[3] == ["layernorm.weight", "layernorm.bias"]
    groups = vit_param_groups(bb, 1e-3, 1.0, frozen=("attention", "embeddings"))
    kept = {names[id(p)] for g in groups for p in g["params"]}
    assert [g["lr"] for g in groups] == pytest.approx([1e-3] * 3)  # no decay; no embeddings group left
    assert not any(".attention." in n or n.startswith("embeddings.") for n in kept)
    assert {n for n, p in bb.named_parameters() if not p.requires_grad} == set(names.values()) - kept
    assert "encoder.layer.0.mlp.fc1.weight" in kept and "encoder.layer.0.norm1.weight" in kept


def _finetune_tiny(cfg_kw, pretext=None, n=16):
    from radlens.synth.train import finetune

    model = _tiny_vit()
    rng = np.random.default_rng(0)
    x = torch.as_tensor(rng.normal(size=(n, 1, 16, 16)), dtype=torch.float32)
    y = np.arange(n) % 2
    before = {k: v.clone() for k, v in model.backbone.state_dict().items()}
    rows: list = []
    cfg = TrainConfig(**{**TINY, "vit_hidden": 8, "vit_layers": 2, "vit_finetune_batch_size": 8, **cfg_kw})
    finetune(model, x, y, np.arange(n), cfg, torch.Generator().manual_seed(0), "t", rows, pretext=pretext)
    return model, before, rows, x


def test_vit_frozen_parts_do_not_move_and_the_rest_does():
    model, before, _, _ = _finetune_tiny({"vit_frozen": ("attention", "embeddings"), "finetune_epochs": 2})
    after = model.backbone.state_dict()
    moved = {k for k in before if not torch.equal(before[k], after[k])}
    assert moved and not any(".attention." in k or k.startswith("embeddings.") for k in moved)
    assert "encoder.layer.0.mlp.fc1.weight" in moved
    assert all(p.requires_grad for p in model.backbone.parameters())  # trainable again afterwards


def test_vit_pretext_aux_adds_the_readout_mse_to_the_loss():
    """Learning rate ~0 and a zero head: cross-entropy ln 2, plus w x the mean squared error of a constant
    read-out (bias b, zero weights) against each token's local statistics (flips only permute the tokens, so
    the flipped batches' error equals the unflipped images' one, computed here by hand)."""
    from radlens.synth.steps import local_statistics

    readout = torch.nn.Conv2d(8, 7, 1)
    with torch.no_grad():
        readout.weight.zero_()
        readout.bias.copy_(torch.linspace(-1, 1, 7))
    pretext = (readout, torch.zeros(1, 7, 1, 1), torch.ones(1, 7, 1, 1), (2, 2))
    kw = {"vit_lr_finetune": 1e-12, "vit_epoch_factor": 1.0, "vit_map_l2": 0.0}
    _, _, rows0, _ = _finetune_tiny(kw, pretext)
    _, _, rows, x = _finetune_tiny({**kw, "vit_pretext_aux": 0.5}, pretext)
    mse = float(((local_statistics(x, (2, 2)) - torch.linspace(-1, 1, 7)[None, :, None, None]) ** 2).mean())
    assert rows0[0]["loss"] == pytest.approx(np.log(2), abs=1e-6)
    assert rows[0]["loss"] == pytest.approx(np.log(2) + 0.5 * mse, rel=1e-5)
    with pytest.raises(InputError, match="vit_pretext_aux > 0 needs pretrain"):
        _finetune_tiny({"vit_pretext_aux": 0.5})


def test_random_shift_moves_each_image_by_at_most_pad():
    from radlens.synth.steps import _random_shift

    x = torch.zeros(32, 1, 12, 12)
    x[:, 0, 6, 6] = 1.0
    out = _random_shift(x, torch.Generator().manual_seed(0), 2)
    pos = [divmod(int(o.argmax()), 12) for o in out]
    assert all(o.sum() == 1 for o in out)  # the dot is moved, not duplicated or lost
    assert all(abs(r - 6) <= 2 and abs(c - 6) <= 2 for r, c in pos) and len(set(pos)) > 5


def test_bad_vit_recipe_fields_name_the_parameter():
    with pytest.raises(InputError, match=r"vit_layer_decay=1.5: must be a number in \(0, 1\]"):
        TrainConfig(vit_layer_decay=1.5)
    with pytest.raises(InputError, match=r"vit_frozen=\('qkv',\).*'attention'"):
        TrainConfig(vit_frozen=("qkv",))
    with pytest.raises(InputError, match="vit_pretext_aux=-1"):
        TrainConfig(vit_pretext_aux=-1)
    with pytest.raises(InputError, match="vit_map_l1=-0.1"):
        TrainConfig(vit_map_l1=-0.1)
    with pytest.raises(InputError, match="vit_finetune_shift=2.5"):
        TrainConfig(vit_finetune_shift=2.5)


def test_vit_map_l1_is_the_mean_absolute_token_share_of_the_positive_logit():
    """``_vit_finetune_loss`` with ``l1``: cross-entropy + l1 x mean over images and tokens of |w_1 . t_i|, the
    tokens ``t_i`` read from the HF model's ``last_hidden_state`` (CLS dropped); with a standardised head
    (BatchNorm1d, no affine) the weights are divided by the pooled features' batch SD (biased)."""
    import torch.nn.functional as F

    from radlens.synth.steps import _vit_finetune_loss

    model = _tiny_vit()
    model.eval()
    with torch.no_grad():
        model.head.weight.copy_(torch.linspace(-1, 1, 16).reshape(2, 8))
        model.head.bias.zero_()
    x = torch.as_tensor(np.random.default_rng(1).normal(size=(6, 1, 16, 16)), dtype=torch.float32)
    y = torch.tensor([0, 1, 0, 1, 1, 0])
    with torch.no_grad():
        tok = model.backbone(pixel_values=x).last_hidden_state[:, 1:]       # (6, 4, 8)
        pooled = tok.mean(1)
        w1 = model.head.weight[1]
        want = F.cross_entropy(pooled @ model.head.weight.T, y) + 0.2 * (tok @ w1).abs().mean()
        got = _vit_finetune_loss(model, model.head, x, y, 0.0, None, 0.2)
        assert float(got) == pytest.approx(float(want), rel=1e-5)
        lin = model.head
        model.head = torch.nn.Sequential(torch.nn.BatchNorm1d(8, affine=False, track_running_stats=False), lin)
        model.head.train()
        sd = (pooled.var(0, unbiased=False) + 1e-5).sqrt()
        z = (pooled - pooled.mean(0)) / sd
        want = F.cross_entropy(z @ lin.weight.T, y) + 0.2 * (tok @ (w1 / sd)).abs().mean()
        got = _vit_finetune_loss(model, lin, x, y, 0.0, None, 0.2)
        assert float(got) == pytest.approx(float(want), rel=1e-5)
        want = F.cross_entropy(z @ lin.weight.T, y) + 0.3 * (tok @ (w1 / sd)).pow(2).mean()
        got = _vit_finetune_loss(model, lin, x, y, 0.0, None, 0.0, 0.3)
        assert float(got) == pytest.approx(float(want), rel=1e-5)
def test_lse_pooled_vit_written_checkpoint_matches_the_per_token_reference(tmp_path):
    """A ViT task with ``vit_pooling`` lse (transfer head fitted by L-BFGS on standardised tokens, fine-tuning
    started from it, both folded back into raw units): the classifier spec says ``pooling: lse`` with its
    sharpness, the head's class-0 row is zero, and radlens' loaded classifier gives the logit
    ``(1/r) log mean_i exp(r (w . t_i + b))`` of the HF model's own patch tokens, with Grad-CAM equal to the
    per-token score ReLU(w . t_i) / N; the other task keeps the mean-pooled head."""
    import math

    from safetensors.torch import load_file
    from transformers import Dinov2Model

    from radlens.cam.methods import attribute_methods
    from radlens.cam.model import load_classifier

    torch.set_num_threads(1)
    data = _blob_data()
    cfg = TrainConfig(tasks=("task_bright", "task_other"), archs=("vit",),
                      **{**TINY, "vit_pooling": {"task_bright": "lse"}, "vit_head_init": "tl", "vit_sharpness": 2.0})
    train_demo_encoders(data, tmp_path, cfg)
    assert yaml.safe_load((tmp_path / "vit" / "classifier_ft_task_other.yaml").read_text())["head"] == {
        "checkpoint": "head_ft_task_other.safetensors", "pooling": "mean"}
    x = torch.from_numpy(data.images[:6])[:, None].float()
    x = (x - x.mean((1, 2, 3), keepdim=True)) / x.std((1, 2, 3), keepdim=True)  # the spec's per-image z-score
    for kind in ("tl", "ft"):
        spec = yaml.safe_load((tmp_path / "vit" / f"classifier_{kind}_task_bright.yaml").read_text())
        assert spec["head"]["pooling"] == "lse" and spec["head"]["sharpness"] == 2.0
        clf = load_classifier(tmp_path / "vit" / f"classifier_{kind}_task_bright.yaml")
        res = attribute_methods(["gradcam"], clf.module, clf.target_layer, x, [1] * 6, token_layout=clf.token_layout)
        enc = "pre" if kind == "tl" else "ft_task_bright"
        net = Dinov2Model.from_pretrained(str(tmp_path / "vit" / enc)).eval()
        head = load_file(str(tmp_path / "vit" / f"head_{kind}_task_bright.safetensors"))
        assert float(head["weight"][0].abs().max()) == 0.0 and float(head["bias"][0]) == 0.0
        w, b = head["weight"][1].double().numpy(), float(head["bias"][1])
        assert np.abs(w).max() > 0  # a fitted head
        with torch.no_grad():
            tok = net(pixel_values=x).last_hidden_state[:, 1:].double().numpy()
        for i in range(6):
            s = tok[i] @ w
            z = 2.0 * (s + b)
            ref = (z.max() + math.log(np.exp(z - z.max()).sum()) - math.log(s.size)) / 2.0
            assert float(res["gradcam"].logits[i, 1]) == pytest.approx(ref, abs=1e-4)
            side = int(round(s.size ** 0.5))
            np.testing.assert_allclose(res["gradcam"].raw[i], np.maximum(s, 0).reshape(side, side) / s.size,
                                       rtol=1e-4, atol=1e-6)


def test_fold_token_head_by_hand():
    """A score fitted on standardised tokens, (w . (t - mu) / sd) + b, folded into the raw-unit head row 1
    (row 0 zero): hand-worked two-channel case."""
    from radlens.synth.models import build_vit, make_classifier, vit_config
    from radlens.synth.train import _fold_token_head

    m = make_classifier(build_vit(vit_config(image_size=16, patch_size=8, hidden_size=2, num_layers=1,
                                             num_heads=1)), "vit", pooling="lse")
    _fold_token_head(m, torch.tensor([2.0, -1.0]), torch.tensor(0.5), torch.tensor([1.0, 3.0]), torch.tensor([4.0, 0.5]))
    # w / sd = (0.5, -2); b - (w / sd) . mu = 0.5 - (0.5 * 1 - 2 * 3) = 6.0
    np.testing.assert_allclose(m.head.weight.detach().numpy(), [[0.0, 0.0], [0.5, -2.0]])
    np.testing.assert_allclose(m.head.bias.detach().numpy(), [0.0, 6.0])
    t = torch.tensor([[3.0, 2.0]])
    assert float(m.head(t)[0, 1].detach()) == pytest.approx(2.0 * (3 - 1) / 4 - 1.0 * (2 - 3) / 0.5 + 0.5)
