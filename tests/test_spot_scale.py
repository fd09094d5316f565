"""Spot-width estimate (atomlens.atoms.spot_scale) and the resampling it drives at detection."""

from __future__ import annotations

import numpy as np
import pytest

from atomlens.atoms.spot_scale import (
    card_rule,
    estimate_spot_fwhm,
    network_pixel_size,
    pixel_noise,
)

RULE = {"spot_scale": {"target_fwhm_A": 1.2, "trigger_fwhm_A": 2.0, "max_factor": 4.0}}


def _spots(yx: np.ndarray, fwhm_px: float, shape: tuple[int, int], amp: float = 1.0) -> np.ndarray:
    s = fwhm_px / 2.3548
    yy, xx = np.indices(shape, dtype=float)
    img = np.zeros(shape)
    for y, x in yx:
        img += amp * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * s * s))
    return img


def _sparse(rng: np.random.Generator, n: int, size: int, min_d: float) -> np.ndarray:
    """Up to ``n`` points at least ``min_d`` px apart, 12 px from the edges."""
    pts: list[np.ndarray] = []
    for _ in range(200 * n):
        p = rng.uniform(12, size - 12, 2)
        if all(np.hypot(*(p - q)) > min_d for q in pts):
            pts.append(p)
            if len(pts) == n:
                break
    return np.array(pts)


@pytest.mark.parametrize("fwhm_A", [0.8, 1.5, 3.0])
def test_sparse_spots_known_width(fwhm_A: float) -> None:
    """Isolated Gaussian spots on a sloping background with shot-like noise: the estimate
    is within 15 % of the true FWHM (0.25 Å/px; 30 spots)."""
    rng = np.random.default_rng(int(fwhm_A * 10))
    px = 0.25
    yx = _sparse(rng, 30, 256, 2.2 * fwhm_A / px)
    yy, _ = np.indices((256, 256))
    img = 5.0 + 2.0 * yy / 256 + _spots(yx, fwhm_A / px, (256, 256))
    img = img + rng.normal(0, 0.12, img.shape)
    est = estimate_spot_fwhm(img, px)
    assert est.fwhm_A is not None and est.n_spots >= 20
    assert abs(est.fwhm_A / fwhm_A - 1) < 0.15, est.to_dict()


def test_dense_crystal_not_broad() -> None:
    """A square lattice of 1 Å spots 3 Å apart under slow 8 Å blobs (thickness,
    contamination): the estimate is the column width, far below any resampling trigger."""
    rng = np.random.default_rng(1)
    px = 0.15
    g = np.arange(6, 250, 3.0 / px)
    yx = np.array([(y, x) for y in g for x in g])
    img = _spots(yx, 1.0 / px, (256, 256)) + _spots(
        rng.uniform(0, 256, (6, 2)), 8.0 / px, (256, 256), amp=2.0
    )
    img = img + rng.normal(0, 0.05, img.shape)
    est = estimate_spot_fwhm(img, px)
    assert est.fwhm_A is not None and 0.7 < est.fwhm_A < 1.3, est.to_dict()


def test_noise_only_or_flat_gives_none() -> None:
    rng = np.random.default_rng(2)
    assert estimate_spot_fwhm(rng.normal(0, 1, (128, 128)), 0.2).fwhm_A is None
    assert estimate_spot_fwhm(np.ones((128, 128)), 0.2).fwhm_A is None
    assert pixel_noise(rng.normal(0, 2.0, (200, 200))) == pytest.approx(2.0, rel=0.1)


def test_bad_input_errors() -> None:
    with pytest.raises(ValueError, match="pixel size"):
        estimate_spot_fwhm(np.zeros((64, 64)), 0.0)
    with pytest.raises(ValueError, match="one \\(Y, X\\) frame"):
        estimate_spot_fwhm(np.zeros((2, 64, 64)), 0.1)
    with pytest.raises(ValueError, match="spot_scale must be"):
        network_pixel_size(np.zeros((64, 64)), 0.1, RULE, "wide")


def test_network_pixel_size_rule() -> None:
    """Resampled only for a model with a rule and spots above its trigger; the stated
    pixel shrinks by FWHM / target (capped); 'off' and rule-less models leave it."""
    assert card_rule({}) is None and card_rule({"spot_scale": {"target_fwhm_A": 1}}) is None
    assert card_rule({"spot_scale": {**RULE["spot_scale"], "threshold_factor": 2.0}}) is None
    img = np.zeros((64, 64))
    assert network_pixel_size(img, 0.3, {}, 3.0)[0] == 0.3
    assert network_pixel_size(img, 0.3, RULE, "off")[0] == 0.3
    assert network_pixel_size(img, 0.3, RULE, 1.8)[0] == 0.3  # below the trigger
    ps, rec = network_pixel_size(img, 0.3, RULE, 3.0)
    assert ps == pytest.approx(0.3 * 1.2 / 3.0) and rec["factor"] == pytest.approx(2.5)
    assert network_pixel_size(img, 0.3, RULE, 12.0)[0] == pytest.approx(0.3 / 4.0)
    # auto: measured on the frames
    rng = np.random.default_rng(3)
    yx = _sparse(rng, 30, 256, 14)
    frames = np.stack([_spots(yx, 3.0 / 0.3, (256, 256)) + rng.normal(0, 0.05, (256, 256))] * 2)
    ps, rec = network_pixel_size(frames, 0.3, RULE, "auto")
    assert 2.5 < rec["fwhm_A"] < 3.5 and ps == pytest.approx(0.3 * 1.2 / rec["fwhm_A"], rel=1e-3)


def test_general_model_finds_broad_atoms_after_resampling() -> None:
    """Broad (3 Å FWHM) isolated atoms at 0.3 Å/px on a noisy background: the general
    model with spot_scale auto records the resampling and finds most atoms; without it
    it finds fewer (the failure this fixes)."""
    from atomlens.atoms import detect
    from atomlens.atoms.match import match_atoms
    from atomlens.segment.registry import load_model

    det = load_model("general")
    rng = np.random.default_rng(4)
    px = 0.3
    yx = _sparse(rng, 25, 256, 16)
    img = 3.0 + _spots(yx, 3.0 / px, (256, 256)) + rng.normal(0, 0.1, (256, 256))
    on = detect(img.astype(np.float32), det, pixel_size=px)
    off = detect(img.astype(np.float32), det, pixel_size=px, spot_scale="off")
    assert on.spot_scale["factor"] > 2.0 and off.spot_scale["factor"] == 1.0
    # the card's threshold factor (and contrast verification's candidate factor, when
    # the card has that rule) apply on resampled images only
    verify = det.card.get("spot_verify", {}).get("candidate_factor", 1.0)
    assert on.spot_scale["threshold"] == pytest.approx(
        0.5 * det.card["spot_scale"]["threshold_factor"] * verify
    )
    assert ("verify" in on.spot_scale) == ("spot_verify" in det.card)
    assert "threshold" not in off.spot_scale

    def recall(res) -> float:
        pred = res.atoms[["y", "x"]].to_numpy(float)
        return len(match_atoms(pred, yx, 6.0)[0]) / len(yx) if len(pred) else 0.0

    assert recall(on) >= 0.8 and recall(on) > recall(off)
    assert len(on.atoms) <= 1.2 * len(yx)


def test_workflow_records_and_validates_spot_scale() -> None:
    from atomlens.workflows import detect as wf
    from atomlens.workflows.events import drain

    rng = np.random.default_rng(5)
    img = rng.normal(0, 1, (1, 64, 64)).astype(np.float32)
    with pytest.raises(ValueError, match="spot_scale must be"):
        drain(wf.run(img, wf.DetectRecipe(model="general", spot_scale="big"), pixel_size=0.2))
    res = drain(wf.run(img, wf.DetectRecipe(model="general", spot_scale="off"), pixel_size=0.2))
    assert res.spot_scale["why"] == "off"


def test_finetune_from_general_keeps_the_resampling() -> None:
    """Fine-tuning the general model on broad atoms trains on the frames as detection
    will show them (the measured factor) and keeps the rule in the new card, so detection
    with the fine-tuned model resamples the same way."""
    import pandas as pd

    from atomlens.atoms import detect
    from atomlens.atoms.finetune import finetune
    from atomlens.segment.registry import load_model

    rng = np.random.default_rng(6)
    px = 0.3
    yx = _sparse(rng, 25, 256, 16)
    img = 3.0 + _spots(yx, 3.0 / px, (256, 256)) + rng.normal(0, 0.1, (256, 256))
    labels = pd.DataFrame({"frame": 0, "y": yx[:, 0], "x": yx[:, 1], "cls": "Pt"})
    res = finetune(
        img[None].astype(np.float32), labels, [0], load_model("general"), pixel_size=px, steps=2
    )
    rec = res.card["finetune"]["spot_scale"]
    assert rec["factor"] > 2.0 and res.card["spot_scale"]["target_fwhm_A"] == 1.2
    assert res.detector.pixel_size == pytest.approx(0.2, rel=0.3)  # no second rescale
    assert "threshold_factor" not in res.card["spot_scale"]  # its own threshold
    assert res.card["spot_scale"]["fixed_fwhm_A"] == rec["fwhm_A"]  # its training scale
    out = detect(img.astype(np.float32), res.detector, pixel_size=px)
    assert out.spot_scale["factor"] == pytest.approx(rec["factor"], rel=0.05)
    # the base's contrast verification goes with it (verify_spots, on by default) and
    # runs at detection
    assert res.card["spot_verify"] == load_model("general").card["spot_verify"]
    assert out.spot_scale["verify"] == res.card["spot_verify"]


def test_fit_warning_judges_the_model_at_the_resampled_scale() -> None:
    """Broad atoms the general model finds after resampling: at the stated pixel size
    its probabilities sit below the threshold (the warning fires), but detection resamples,
    so the workflow judges the model as detection runs it (no warning) and measures the
    spot width once, recording the same choice it detected with."""
    from atomlens.atoms.match import match_atoms
    from atomlens.atoms.suitability import model_fit_warnings
    from atomlens.segment.registry import load_model
    from atomlens.workflows import detect as wf
    from atomlens.workflows.events import drain

    det = load_model("general")
    rng = np.random.default_rng(5)
    px = 0.3
    yx = _sparse(rng, 25, 256, 16)
    img = (3.0 + _spots(yx, 3.0 / px, (256, 256)) + rng.normal(0, 0.1, (256, 256))).astype(
        np.float32
    )
    nominal = model_fit_warnings(img, px, det)
    assert any("below the threshold" in w for w in nominal)
    res = drain(wf.run(img[None], wf.DetectRecipe(model="general"), pixel_size=px))
    assert not any("below the threshold" in w for w in res.warnings)
    ps_net, rec = network_pixel_size(img[None], px, det.card, "auto", [0])
    assert res.spot_scale["factor"] == rec["factor"] > 2.0
    pred = res.atoms[["y", "x"]].to_numpy(float)
    assert len(match_atoms(pred, yx, 6.0)[0]) >= 0.8 * len(yx)
