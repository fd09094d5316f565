"""Fine-tuning the detector on corrected frames: labels, provenance, stop, self-training
labels, the CLI; all with a tiny network and tiny frames."""

from __future__ import annotations

import json
import threading

import numpy as np
import pandas as pd
import pytest
import torch

from atomlens.atoms.finetune import (
    FinetuneError,
    FinetuneFinished,
    FinetuneStarted,
    FinetuneStep,
    finetune,
    iter_finetune,
    label_frames,
    self_training_labels,
)
from atomlens.cli import main
from atomlens.io import Stack
from atomlens.io.atoms_table import write_atoms_csv
from atomlens.segment.model_file import Detector, load_detector, save_detector
from atomlens.segment.nets import NetConfig, build_net

PX = 0.2  # Å per pixel: the model grid equals the input grid, so positions map 1:1


def _tiny_detector(seed: int = 0) -> Detector:
    torch.manual_seed(seed)
    net = build_net(NetConfig(base_filters=4, levels=2, dilations=(1, 2)))
    net.eval()
    return Detector(net, net.config, 0.2, 0.35, 256, {"name": "tiny-base"})


def _frames_with_atoms(n_frames: int = 3, size: int = 48, seed: int = 0):
    """Gaussian atoms (sigma 1.2 px) on a noisy background at known sub-pixel positions."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[:size, :size]
    frames = rng.normal(0, 0.05, (n_frames, size, size)).astype(np.float32)
    rows = []
    for t in range(n_frames):
        g = np.stack(np.meshgrid(np.arange(6, size - 5, 7.0), np.arange(6, size - 5, 7.0)), -1)
        yx = g.reshape(-1, 2) + rng.uniform(-1, 1, (g.size // 2, 2))
        for i, (y, x) in enumerate(yx):
            amp = 3.0 if i % 9 == 0 else 1.0
            frames[t] += amp * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * 1.2**2))
            rows.append({"frame": t, "y": y, "x": x, "cls": "Si" if amp > 1 else "C"})
    return frames, pd.DataFrame(rows)


def test_label_frames_puts_class_disks_on_atoms():
    frames, truth = _frames_with_atoms()
    det = _tiny_detector()
    images, masks = label_frames(frames, truth, [0, 2], det, pixel_size=PX)
    assert images.shape == masks.shape == (2, 48, 48) and masks.dtype == np.uint8
    for k, t in enumerate([0, 2]):
        sub = truth[truth.frame == t]
        iy, ix = np.rint(sub.y).astype(int), np.rint(sub.x).astype(int)
        expect = np.where(sub.cls == "Si", 2, 1)
        assert (masks[k, iy, ix] == expect).all()
        # one ~3.5 px disk (radius 0.35 Å / 0.2 Å/px = 1.75 px) per atom, rest background
        assert 5 * len(sub) <= (masks[k] > 0).sum() <= 13 * len(sub)
    # a coarser stack: positions are mapped onto the model grid
    images2, masks2 = label_frames(frames, truth, [0], det, pixel_size=0.1)
    assert masks2.shape == (1, 24, 24)
    sub = truth[truth.frame == 0]
    assert (
        masks2[
            0,
            np.rint((sub.y + 0.5) / 2 - 0.5).astype(int),
            np.rint((sub.x + 0.5) / 2 - 0.5).astype(int),
        ]
        > 0
    ).mean() > 0.9
    # uncertain atoms become ignore rings (255) around, never over, the labels
    _, mi = label_frames(frames, truth, [0], det, pixel_size=PX, ignore=truth.iloc[:1])
    assert (mi == 255).sum() > 0 and (mi[masks[:1] > 0] == masks[:1][masks[:1] > 0]).all()
    y0, x0 = int(round(truth.y[0])), int(round(truth.x[0]))
    assert (
        mi[0, y0, x0] == masks[0, y0, x0] and (mi[0, y0 - 3 : y0 + 4, x0 - 3 : x0 + 4] == 255).any()
    )
    mos2 = truth.assign(cls=np.where(truth.cls == "Si", "Mo", "S"))
    with pytest.raises(FinetuneError, match="class_map"):
        label_frames(frames, mos2, [0], det, pixel_size=PX)
    _, m3 = label_frames(frames, mos2, [0], det, pixel_size=PX, class_map={"Mo": "Si", "S": "C"})
    assert (m3 == masks[:1]).all()


def test_finetune_trains_a_copy_and_records_provenance(tmp_path):
    frames, truth = _frames_with_atoms()
    truth["edited"] = False
    truth.loc[[0, 5, 80], "edited"] = True
    base = _tiny_detector()
    base_path = save_detector(base, tmp_path / "base.pt")
    before = {k: v.clone() for k, v in base.net.state_dict().items()}
    events = []
    res = finetune(
        Stack(frames, PX, "user", path="/data/movie.npy"),
        truth,
        [0, 1],
        str(base_path),
        out=tmp_path / "ft.pt",
        steps=16,
        seed=3,
        batch=2,
        crop=32,
        threads=1,
        progress=events.append,
    )
    assert isinstance(events[0], FinetuneStarted) and isinstance(events[-1], FinetuneFinished)
    steps = [e for e in events if isinstance(e, FinetuneStep)]
    assert [e.step for e in steps] == list(range(1, 17))
    # it learns: the loss over the last steps is below the first steps'
    assert np.mean([e.loss for e in steps[-4:]]) < np.mean([e.loss for e in steps[:4]])
    assert res.reason == "done" and res.path == tmp_path / "ft.pt"
    card = load_detector(res.path).card
    ft = card["finetune"]
    assert ft["base_model"] == str(base_path) and ft["base_model_name"] == "tiny-base"
    assert ft["frames"] == [0, 1] and ft["steps"] == 16 and ft["mode"] == "corrected frames"
    n01 = int((truth.frame < 2).sum())
    assert ft["n_labelled_atoms"] == n01 and ft["n_corrections"] == 2  # row 80 is on frame 2
    assert ft["stack"] == "/data/movie.npy" and ft["date"].startswith("20")
    assert card["base_card"] == {"name": "tiny-base"}
    # the base model is untouched; the new weights differ
    assert all(torch.equal(before[k], v) for k, v in base.net.state_dict().items())
    new = res.detector.net.state_dict()
    assert any(not torch.equal(before[k], new[k]) for k in before if before[k].is_floating_point())


def test_stop_and_errors():
    frames, truth = _frames_with_atoms(2)
    stop = threading.Event()
    reason = None
    for ev in iter_finetune(
        frames,
        truth,
        [0],
        _tiny_detector(),
        pixel_size=PX,
        steps=50,
        batch=2,
        crop=32,
        stop=stop,
        threads=1,
    ):
        if isinstance(ev, FinetuneStep) and ev.step == 2:
            stop.set()
        if isinstance(ev, FinetuneFinished):
            reason, steps = ev.reason, ev.result.card["finetune"]["steps"]
    assert reason == "stopped" and steps == 2
    # no step count given: the plan chooses it, and the card records it
    calls = iter(range(100))
    res = finetune(
        frames,
        truth,
        [0],
        _tiny_detector(),
        pixel_size=PX,
        batch=2,
        threads=1,
        stop=lambda: next(calls) >= 2,
    )
    assert res.reason == "stopped" and res.card["finetune"]["steps"] == 2
    assert res.card["finetune"]["steps_requested"] == res.card["finetune"]["plan"]["steps"] > 2
    with pytest.raises(FinetuneError, match="no labelled atoms"):
        finetune(frames, truth[truth.frame == 1], [0], _tiny_detector(), pixel_size=PX, steps=1)
    with pytest.raises(FinetuneError, match="unknown fine-tuning option"):
        finetune(frames, truth, [0], _tiny_detector(), pixel_size=PX, stpes=1)
    with pytest.raises(FinetuneError, match="out of range"):
        finetune(frames, truth, [5], _tiny_detector(), pixel_size=PX, steps=1)


def test_self_training_labels_keep_confident_refined_atoms():
    frames, truth = _frames_with_atoms(2, seed=1)
    rng = np.random.default_rng(2)
    det = truth.copy()
    det[["y", "x"]] = np.rint(det[["y", "x"]].to_numpy())  # pixel-level detections
    det["prob"] = rng.uniform(0.9, 1.0, len(det))
    low = rng.choice(len(det), 10, replace=False)
    det.loc[low, "prob"] = 0.3
    # a detection on empty background: the Gaussian fit fails and it is dropped
    det.loc[len(det)] = [0, 2.0, 45.0, "C", 0.95]
    table = self_training_labels(frames, [0, 1], atoms=det, min_prob=0.8, pixel_size=PX)
    assert len(table) == len(det) and table["label"].dtype == bool
    labels = table[table["label"]]
    assert not table["label"].iloc[-1]  # the background "atom" is not a label
    assert not table.loc[low, "label"].any() and (labels.prob >= 0.8).all()
    # positions move from the pixel grid to the true sub-pixel centres
    for t in (0, 1):
        lab = labels[labels.frame == t].reset_index(drop=True)
        tr = truth[truth.frame == t][["y", "x"]].to_numpy()
        d = np.hypot(*(lab[["y", "x"]].to_numpy()[:, None] - tr[None]).transpose(2, 0, 1))
        err = d.min(1)
        assert np.median(err) < 0.15 and err.max() < 0.5
    assert len(labels) >= len(det) - 11 - 3  # nearly all confident atoms fit
    # default: the least confident 30 % of each frame are not labels
    auto = self_training_labels(
        frames, [0, 1], atoms=det.assign(prob=np.linspace(0.5, 1, len(det))), pixel_size=PX
    )
    assert 0.6 * len(det) <= auto["label"].sum() <= 0.72 * len(det)


def test_cli_finetune(tmp_path, capsys):
    frames, truth = _frames_with_atoms(3)
    np.save(tmp_path / "movie.npy", frames)
    write_atoms_csv(tmp_path / "atoms.csv", truth)
    base = save_detector(_tiny_detector(), tmp_path / "base.pt")
    rc = main(
        [
            "finetune",
            str(tmp_path / "movie.npy"),
            str(tmp_path / "atoms.csv"),
            "--frames",
            "0:2",
            "--out",
            str(tmp_path / "ft.pt"),
            "--base",
            str(base),
            "--steps",
            "2",
            "--batch",
            "2",
            "--crop",
            "32",
            "--threads",
            "1",
            "--pixel-size",
            str(PX),
        ]
    )
    assert rc == 0
    out = json.loads(capsys.readouterr().out.strip().splitlines()[-1])
    assert out["frames"] == [0, 1] and out["steps"] == 2 and out["reason"] == "done"
    assert load_detector(tmp_path / "ft.pt").card["finetune"]["stack"].endswith("movie.npy")
    rc = main(
        [
            "finetune",
            str(tmp_path / "movie.npy"),
            "--out",
            str(tmp_path / "x.pt"),
            "--pixel-size",
            str(PX),
        ]
    )
    assert rc == 2
    assert "--self-train" in capsys.readouterr().err


def test_redetect_keeps_corrected_frames_and_counts():
    from atomlens.corrections import redetect

    frames, truth = _frames_with_atoms(3)
    current = truth.assign(prob=1.0, edited=False, source="detector")
    current.loc[current.frame == 1, "edited"] = True
    res = redetect(Stack(frames, PX), current, [1], model=_tiny_detector(), threshold=0.5)
    assert res.skipped_frames == [1] and res.detected_frames == [0, 2]
    kept = res.atoms[res.atoms.frame == 1].reset_index(drop=True)
    pd.testing.assert_frame_equal(
        kept[["y", "x", "cls"]],
        current[current.frame == 1].reset_index(drop=True)[["y", "x", "cls"]],
    )
    assert not res.atoms.loc[res.atoms.frame != 1, "edited"].any()
    assert res.counts["before"].tolist() == [36, 36, 36]
    assert res.counts["after"].tolist() == [int((res.atoms.frame == t).sum()) for t in range(3)]
    assert "kept 1 corrected frame(s) untouched (1)" in res.message


def test_augmented_crops_never_label_padding_as_background():
    from atomlens.atoms.finetune import IGNORE, _sample_batch
    from atomlens.segment.augment import AugmentConfig

    rng = np.random.default_rng(0)
    images = rng.normal(size=(1, 40, 40)).astype(np.float32)
    masks = np.ones((1, 40, 40), np.uint8)  # every pixel is an atom
    x, y = _sample_batch(images, masks, 40, 6, rng, AugmentConfig(zoom=(0.8, 0.8)))
    assert x.shape == (6, 1, 40, 40)
    values = set(np.unique(y.numpy()).tolist())
    assert values == {1, IGNORE}  # rotated/zoomed-out corners are ignored, not background


def _sparse_frames(
    n_frames: int = 2, shape=(96, 160), n_atoms: int = 14, sigma: float = 2.0, seed: int = 0
):
    """Sparse bright Gaussian atoms (sigma px) on a noisy, lumpy support."""
    from scipy import ndimage as ndi

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[: shape[0], : shape[1]]
    frames = np.zeros((n_frames, *shape), np.float32)
    rows = []
    for t in range(n_frames):
        frames[t] = ndi.gaussian_filter(rng.normal(0, 1, shape), 2.0) * 0.6 + rng.normal(
            0, 0.1, shape
        )
        yx = []
        while len(yx) < n_atoms:
            p = rng.uniform([6, 6], [shape[0] - 6, shape[1] - 6])
            if all(np.hypot(*(p - q)) > 12 for q in yx):
                yx.append(p)
        for y, x in yx:
            frames[t] += 1.5 * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * sigma**2))
            rows.append({"frame": t, "y": y, "x": x, "cls": "Pt"})
    return frames, pd.DataFrame(rows)


def test_measure_atom_fwhm_and_label_refinement():
    from atomlens.atoms.finetune import measure_atom_fwhm

    frames, truth = _sparse_frames(sigma=2.0)
    clicked = truth.assign(y=truth.y + 1.0, x=truth.x - 0.8)  # hand clicks ~1.3 px off
    fwhm, moved = measure_atom_fwhm(frames, clicked, 0.1, 20.0)
    assert fwhm == pytest.approx(2.355 * 2.0 * 0.1, rel=0.15)
    err = np.hypot(moved.y - truth.y, moved.x - truth.x)
    assert np.median(err) < 0.4


def test_plan_chooses_classes_grid_and_balance_from_the_data():
    from atomlens.atoms.finetune import FinetuneConfig, plan_finetune

    base = _tiny_detector()
    frames, truth = _sparse_frames(1, shape=(400, 400), n_atoms=3)  # 80 Å square, 3 atoms
    plan = plan_finetune(truth, frames.shape[1:], base, FinetuneConfig(), 0.2, 2.0)
    # a new species: the head predicts it under its own name
    assert plan.classes == ("background", "Pt") and plan.new_classes == ["Pt"]
    # atoms 2.1x wider than the base model's: a coarser model grid, radius scaled with it
    assert plan.model_pixel_size == pytest.approx(0.2 * 2.0 / 0.95, rel=1e-3)
    assert plan.radius_A == pytest.approx(0.35 * 2.0 / 0.95, rel=1e-3)
    # sparse atoms: crops centred on atoms and a heavier atom class
    assert plan.centre_fraction > 0.2 and 1.5 < plan.class_weights[1] <= 2.0
    assert plan.steps == 300 and plan.lr == 1e-3 and plan.notes
    assert plan.val_cut == 1.0  # < 8 atoms in the strip: too few to validate on
    # labels of species the base knows (dense C lattice): base classes, base grid, no centring
    f2, t2 = _frames_with_atoms()
    p2 = plan_finetune(t2, f2.shape[1:], base, FinetuneConfig(val_fraction=0), 0.2, 0.9)
    assert p2.classes == base.classes and p2.model_pixel_size == 0.2 and p2.new_classes == []
    assert p2.centre_fraction == 0.0 and p2.steps == 150 and p2.val_cut == 1.0
    # explicit classes must cover the labels
    with pytest.raises(FinetuneError, match="not in classes"):
        plan_finetune(truth, frames.shape[1:], base, FinetuneConfig(classes=("Au",)), 0.2, 2.0)


def test_validation_match_radius_is_capped_in_sample_angstrom():
    """Sparse atoms (neighbours ~20 px apart): the validation strip matches within 0.4
    neighbour distances, at most 1.5 Å of the sample; when broad spots are shown to the
    network at a smaller stated pixel size, the cap is 1.5 Å at the microscope's pixel
    size (the same pixels), not 1.5 stated Å (2.5x more pixels on pt_single_atoms)."""
    from atomlens.atoms.finetune import FinetuneConfig, plan_finetune

    base = _tiny_detector()
    frames, truth = _sparse_frames(2, shape=(160, 320), n_atoms=40)
    cfg = FinetuneConfig(rescale=False)
    nn_px = plan_finetune(truth, frames.shape[1:], base, cfg, 1.0, None).neighbour_A
    assert nn_px > 4.0  # at 1 Å/px: 0.4 neighbour distances > 1.5 Å, the cap applies
    plain = plan_finetune(truth, frames.shape[1:], base, cfg, 0.3, None)
    assert plain.score_radius_A == pytest.approx(1.5)  # 5 px at 0.3 Å/px
    stated = plan_finetune(truth, frames.shape[1:], base, cfg, 0.1, None, stack_pixel_size=0.3)
    assert stated.score_radius_A / 0.1 == pytest.approx(1.5 / 0.3)  # still 5 px
    near = plan_finetune(truth, frames.shape[1:], base, cfg, 0.02, None)  # 0.4 nn < 1.5 Å
    assert near.score_radius_A == pytest.approx(0.4 * near.neighbour_A)


def test_resize_head_keeps_known_rows_and_starts_new_ones_from_the_atom_rows():
    from atomlens.atoms.finetune import resize_head

    base = _tiny_detector()
    new = resize_head(base, ("background", "Si", "Mo"))
    w_old, w_new = base.net.head.weight, new.net.head.weight
    assert new.classes == ("background", "Si", "Mo") and w_new.shape[0] == 3
    assert torch.equal(w_new[0], w_old[0]) and torch.equal(w_new[1], w_old[2])
    assert torch.allclose(w_new[2], w_old[1:].mean(0))
    assert base.net.head.weight.shape[0] == 3 and base.classes == ("background", "C", "Si")


def test_new_species_validation_and_early_stopping_keep_the_best_weights(tmp_path):
    from atomlens.atoms.finetune import FinetuneValidation, validation_scores

    frames, truth = _sparse_frames(n_atoms=24, seed=3)
    events = []
    res = finetune(
        Stack(frames, PX),
        truth,
        [0, 1],
        _tiny_detector(),
        out=tmp_path / "pt.pt",
        steps=24,
        eval_every=4,
        patience=3,
        batch=4,
        threads=1,
        seed=0,
        calibrate_threshold=True,
        progress=events.append,
    )
    assert res.detector.classes == ("background", "Pt")
    started = events[0]
    assert started.before is not None and started.plan["new_classes"] == ["Pt"]
    vals = [e for e in events if isinstance(e, FinetuneValidation)]
    assert vals and all(e.step % 4 == 0 for e in vals)
    hist = res.scores["history"]
    best = max(h["f1"] for h in hist)
    after = res.scores["after"]["f1"]
    # the best validated weights, then the threshold with the best F1 folded into the head
    assert after >= best and res.scores["before"]["f1"] == started.before["f1"]
    cal = res.scores["threshold_calibration"]
    assert cal["at_0.5"]["f1"] == best and max(cal["f1_by_threshold"].values()) == after
    card = load_detector(tmp_path / "pt.pt").card
    assert card["classes"] == ["background", "Pt"]
    assert card["finetune"]["validation"]["after"]["f1"] == after
    x_score = 0.75 * frames.shape[-1]
    x0 = int(x_score) - int(np.ceil(16 * res.detector.pixel_size / PX))
    again = validation_scores(
        res.detector, frames[..., x0:], truth, PX, res.scores["radius_A"], x0, x_score
    )
    assert again["f1"] == pytest.approx(after, abs=1e-6)
    # a species name the head predicts: matched atoms are called "Pt"
    assert res.scores["after"]["n_matched"] == 0 or res.scores["after"]["species_accuracy"] == 1.0


def test_calibrated_threshold_folded_into_the_head_detects_the_same_atoms():
    import copy

    from atomlens.atoms import detect
    from atomlens.atoms.finetune import calibrate_threshold

    frames, truth = _frames_with_atoms(2)
    det = _tiny_detector(1)
    before = {
        t: len(detect(frames, det, pixel_size=PX, threshold=t, refine="none").atoms)
        for t in (0.3, 0.5, 0.7)
    }
    cal = calibrate_threshold(det, frames, truth, PX, 0.3, 0.0, 0.0, thresholds=(0.3, 0.5, 0.7))
    t = cal["threshold"]
    assert cal["scores"]["f1"] == max(cal["f1_by_threshold"].values())
    after = len(detect(frames, det, pixel_size=PX, refine="none").atoms)
    assert after == before[t]
    # folding is exact: the same components at 0.5 as at t before
    det2 = copy.deepcopy(det)
    with torch.no_grad():
        det2.net.head.bias[1:] -= float(np.log((1 - t) / t))
    a = detect(frames, det2, pixel_size=PX, threshold=t, refine="none").atoms
    b = detect(frames, det, pixel_size=PX, refine="none").atoms
    assert len(a) == len(b)
