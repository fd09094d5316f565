"""Training data (structures, rendering, masks), augmentation, the training loop."""

from __future__ import annotations

import numpy as np
import torch

from atomlens.segment.augment import AugmentConfig, augment_pair
from atomlens.segment.model_file import load_detector
from atomlens.segment.nets import NetConfig
from atomlens.segment.train import iter_train, make_batch, preset, train_detector
from atomlens.simulate.lattice import CC_BOND_A
from atomlens.simulate.patches import graphene_patch
from atomlens.simulate.training import Imaging, label_mask, render_positions, render_sample


def test_patch_is_graphene_with_dopants():
    rng = np.random.default_rng(3)
    p = graphene_patch(30.0, rng, si_frac=0.05, defects=False)
    from scipy.spatial import cKDTree

    d, _ = cKDTree(p.yx_A).query(p.yx_A, k=2)
    assert abs(np.median(d[:, 1]) - CC_BOND_A) < 0.05
    assert 0 < (p.species == "Si").sum() < 0.15 * len(p.species)


def test_label_mask_disks_and_priority():
    yx = np.array([[10.0, 10.0], [10.0, 12.0]])
    m = label_mask(yx, np.array([1, 2]), (24, 24), 1.75)
    assert m[10, 10] == 1 and m[10, 12] == 2 and m[10, 11] == 2  # overlap -> higher class
    assert m[0, 0] == 0 and m[13, 10] == 0
    alone = label_mask(yx[:1], np.array([1]), (24, 24), 1.75)
    assert (alone == 1).sum() == 9  # pixel centres within 1.75 px: the 3x3 block


def test_render_peaks_at_atoms_and_noise_scales_with_snr():
    rng = np.random.default_rng(0)
    yx = np.array([[20.3, 30.7]])
    clean = Imaging(snr=1e4, film_bg=0.0, offset=1.0)
    img = render_positions(yx, np.array(["C"]), (48, 64), 0.1, clean, rng)
    py, px = np.unravel_index(np.argmax(img), img.shape)
    assert abs(py - 20.3) <= 1 and abs(px - 30.7) <= 1
    noisy = render_positions(
        yx, np.array(["C"]), (48, 64), 0.2, Imaging(snr=2.0, film_bg=0.0, offset=1.0), rng
    )
    assert 0.3 < noisy[:, :10].std() < 0.8  # noise std ~ 1/snr on the background


def test_render_sample_labels_match_image():
    rng = np.random.default_rng(5)
    p = graphene_patch(40.0, rng)
    img, mask, yx, sp = render_sample(
        p,
        (96, 96),
        0.2,
        classes=("background", "C", "Si"),
        radius_A=0.35,
        rng=rng,
        imaging=Imaging(snr=1e4),
    )
    assert img.shape == mask.shape == (96, 96)
    iy = np.clip(np.round(yx[:, 0]).astype(int), 0, 95)
    ix = np.clip(np.round(yx[:, 1]).astype(int), 0, 95)
    assert np.all(mask[iy, ix] > 0)
    assert img[mask > 0].mean() > img[mask == 0].mean()


def test_augment_reproducible_and_mask_follows_image():
    rng0 = np.random.default_rng(0)
    img = rng0.random((64, 64)).astype(np.float32)
    mask = np.zeros((64, 64), np.uint8)
    mask[20:30, 40:50] = 2
    img[mask == 2] += 5
    a1 = augment_pair(img, mask, np.random.default_rng(42))
    a2 = augment_pair(img, mask, np.random.default_rng(42))
    np.testing.assert_array_equal(a1[0], a2[0])
    np.testing.assert_array_equal(a1[1], a2[1])
    geo_only = AugmentConfig(
        p_gauss=0, p_poisson=0, p_blur=0, p_gamma=0, p_gradient=0, p_jitter=0, p_contamination=0
    )
    im2, m2 = augment_pair(img, mask, np.random.default_rng(7), geo_only)
    assert set(np.unique(m2)) <= {0, 2} and (m2 == 2).sum() > 40
    assert im2[m2 == 2].mean() > im2[m2 == 0].mean() + 0.3  # the bright square moved with it


def test_batches_are_seeded():
    cfg = preset("graphene", batch=2, crop=32)
    x1, y1 = make_batch(cfg, np.random.default_rng(9))
    x2, y2 = make_batch(cfg, np.random.default_rng(9))
    assert x1.shape == (2, 1, 32, 32) and y1.shape == (2, 32, 32)
    assert torch.equal(x1, x2) and torch.equal(y1, y2)


def test_tiny_training_learns_and_writes_a_model(tmp_path):
    net = NetConfig(base_filters=4, levels=2, dilations=(1, 2))
    cfg = preset("graphene", batch=4, crop=48, steps=40, lr=1e-2, net=net, threads=1)
    losses = [ev["loss"] for ev in iter_train(cfg) if "loss" in ev]
    assert np.mean(losses[-8:]) < 0.8 * np.mean(losses[:4])
    cfg.steps = 2
    det = train_detector(cfg, tmp_path / "tiny.pt", log=lambda s: None)
    back = load_detector(tmp_path / "tiny.pt")
    assert back.card["seed"] == 0 and back.card["classes"] == ["background", "C", "Si"]
    assert (tmp_path / "tiny_card.json").exists()
    for a, b in zip(det.net.state_dict().values(), back.net.state_dict().values()):
        assert torch.equal(a, b)


def test_cli_train_detector(tmp_path, capsys):
    from atomlens.cli import main

    assert main(["train-detector", "--steps", "0", "--out", str(tmp_path / "x.pt")]) == 2
    assert "--steps must be" in capsys.readouterr().err
    assert main(["train-detector", "--preset", "mos2", "--out", str(tmp_path / "x.pt")]) == 2
    rc = main(
        [
            "train-detector",
            "--steps",
            "1",
            "--seed",
            "3",
            "--threads",
            "1",
            "--no-validate",
            "--out",
            str(tmp_path / "m.pt"),
        ]
    )
    assert rc == 0
    card = load_detector(tmp_path / "m.pt").card
    assert card["seed"] == 3 and card["training"]["steps"] == 1
    assert card["command"].startswith("atomlens train-detector --preset graphene")


def test_checkpoint_resume_gives_the_same_model(tmp_path):
    from atomlens.segment.train import checkpoint_path

    net = NetConfig(base_filters=4, levels=2, dilations=(1, 2))
    cfg = preset("graphene", batch=2, crop=32, steps=4, net=net, threads=1)
    whole = train_detector(cfg, tmp_path / "whole.pt", log=lambda s: None)
    # an interrupted run: stop after the checkpoint at step 2, then resume
    out = tmp_path / "part.pt"
    for ev in iter_train(cfg, checkpoint=checkpoint_path(out), checkpoint_every=2):
        if ev["step"] == 3:
            break
    assert checkpoint_path(out).exists()
    lines: list[str] = []
    part = train_detector(cfg, out, log=lines.append, resume=True)
    assert any("resumed" in s and "step 2/4" in s for s in lines)
    assert not checkpoint_path(out).exists()  # removed once the model is written
    for a, b in zip(whole.net.state_dict().values(), part.net.state_dict().values()):
        assert torch.allclose(a.float(), b.float(), atol=1e-5)


def test_training_samples_are_rendered_at_native_pixel_sizes():
    from atomlens.segment.train import make_sample

    cfg = preset("graphene", crop=48, native_pixel_range=(0.05, 0.05))
    diffs = []
    for seed in range(8):  # random imaging (noise, contamination) per sample
        img, mask = make_sample(cfg, np.random.default_rng(seed))
        assert img.shape == mask.shape == (48, 48)
        diffs.append(img[mask > 0].mean() - img[mask == 0].mean())
    # labels sit on bright spots after the 4x resampling to the model grid
    assert np.mean(diffs) > 0.04 and np.median(diffs) > 0.04


def test_init_starts_from_a_model_and_refuses_another_network(tmp_path):
    import pytest

    from atomlens.segment.train import TrainConfigError

    net = NetConfig(base_filters=4, levels=2, dilations=(1, 2))
    cfg = preset("graphene", batch=2, crop=32, steps=1, net=net, threads=1, lr=1e-12)
    first = train_detector(cfg, tmp_path / "a.pt", log=lambda s: None)
    cfg2 = preset(
        "graphene",
        batch=2,
        crop=32,
        steps=1,
        net=net,
        threads=1,
        lr=1e-12,
        seed=5,
        init=str(tmp_path / "a.pt"),
    )
    second = train_detector(cfg2, tmp_path / "b.pt", log=lambda s: None)
    w1, w2 = first.net.state_dict(), second.net.state_dict()
    conv = [k for k in w1 if k.endswith("weight") and w1[k].ndim == 4][0]
    assert torch.allclose(w1[conv], w2[conv], atol=1e-6)  # tiny lr: still the init weights
    other = preset("graphene", batch=2, crop=32, steps=1, threads=1, init=str(tmp_path / "a.pt"))
    with pytest.raises(TrainConfigError, match="another network"):
        next(iter_train(other))


def test_weight_average_is_the_mean_of_the_late_weights_and_survives_resume(tmp_path):
    import pytest

    from atomlens.segment.train import TrainConfigError, checkpoint_path

    # without BatchNorm the written weights are exactly the mean of steps 2..4
    flat = NetConfig(base_filters=4, levels=2, dilations=(1, 2), batchnorm=False)
    cfg = preset("graphene", batch=2, crop=32, steps=4, net=flat, threads=1, average_from=2)
    snaps, final = [], None
    for ev in iter_train(cfg):
        if "net_ref" in ev and ev["step"] >= 2:
            snaps.append({k: v.detach().clone() for k, v in ev["net_ref"].state_dict().items()})
        if ev.get("done"):
            final = ev
    assert final["averaged"] == 3 and len(snaps) == 3
    got = final["net"].state_dict()
    for k in got:
        assert torch.allclose(got[k], sum(s[k] for s in snaps) / 3, atol=1e-6), k
    assert any(not torch.allclose(got[k], snaps[-1][k]) for k in got)  # not the last weights
    # with BatchNorm: statistics recomputed; an interrupted run resumes with its average
    net = NetConfig(base_filters=4, levels=2, dilations=(1, 2))
    cfg = preset("graphene", batch=2, crop=32, steps=4, net=net, threads=1, average_from=2)
    whole = train_detector(cfg, tmp_path / "whole.pt", log=lambda s: None)
    assert "steps 2-4 (3 steps)" in whole.card["weight_average"]
    assert whole.card["training"]["average_from"] == 2
    out = tmp_path / "part.pt"
    for ev in iter_train(cfg, checkpoint=checkpoint_path(out), checkpoint_every=3):
        if ev["step"] == 4 and "net_ref" in ev:
            break
    assert torch.load(checkpoint_path(out), weights_only=False)["average"] is not None
    part = train_detector(cfg, out, log=lambda s: None, resume=True)
    for k, v in whole.net.state_dict().items():
        assert torch.allclose(v.float(), part.net.state_dict()[k].float(), atol=1e-5), k
    bn = [k for k in whole.net.state_dict() if k.endswith("running_var")]
    assert bn and all(torch.isfinite(whole.net.state_dict()[k]).all() for k in bn)
    with pytest.raises(TrainConfigError, match="average-from"):
        next(iter_train(preset("graphene", steps=4, average_from=5)))
