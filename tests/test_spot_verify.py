"""Contrast verification of sparse heavy atoms (atomlens.atoms.spot_verify), checked
against simulator truth, and where detection applies it (spot-resampled frames only)."""

from __future__ import annotations

import copy

import numpy as np
import pandas as pd
import pytest
from scipy import ndimage as ndi
from scipy.spatial import cKDTree

from atomlens.atoms.spot_verify import VerifyRule, spot_evidence, verify_spots

PX, FWHM_A = 0.3, 3.0


def _pt_on_carbon(seed: int, crop: int = 384):
    """A simulated HAADF frame of Pt single atoms (3 Å spots, 0.3 Å/px) on carbon with
    the support level ~1 x an atom's peak: (image, truth yx px)."""
    from atomlens.segment.general import general_config, render_native
    from atomlens.simulate.materials import single_atoms
    from atomlens.simulate.probe import Probe

    rng = np.random.default_rng(seed)
    img, yx, _ = render_native(
        general_config(crop=crop),
        rng,
        lambda s, r: single_atoms(s, r, element="Pt", density=0.004, support_ratio=1.0, lumps=0.05),
        pixel_size_A=PX,
        snr=6.0 * np.sqrt(2) / 3,
        z_exponent=1.7,
        probe_override=Probe.with_fwhm(FWHM_A, 200.0, 25.0),
    )
    return img, yx


def test_keeps_atoms_drops_support_maxima():
    """Candidates = the true atoms + the support's own local maxima (>= 1.5 FWHM from
    any atom): most support maxima fail, most atoms pass (the truth includes atoms out
    of focus at 0.35 x the peak, which cannot be told from the support)."""
    from skimage.feature import peak_local_max

    fw = FWHM_A / PX
    kept_atoms, kept_support = [], []
    for seed in (1, 2):
        img, yx = _pt_on_carbon(seed)
        sm = ndi.gaussian_filter(img, fw / 2.3548)
        pk = peak_local_max(sm, min_distance=int(fw / 2), exclude_border=int(fw)).astype(float)
        support = pk[cKDTree(yx).query(pk)[0] > 1.5 * fw]
        m = 1.5 * fw
        atoms = yx[np.all((yx > m) & (yx < img.shape[0] - 1 - m), axis=1)]
        tab = pd.DataFrame(np.vstack([atoms, support]), columns=["y", "x"])
        out, keep = verify_spots(img, tab, fw, VerifyRule())
        assert {"intensity", "intensity_sigma", "z", "support_t"} <= set(out.columns)
        kept_atoms.append(keep[: len(atoms)])
        kept_support.append(keep[len(atoms) :])
    ka, ks = np.concatenate(kept_atoms), np.concatenate(kept_support)
    assert len(ka) >= 30 and len(ks) >= 50
    assert ka.mean() >= 0.4, ka.mean()
    assert ks.mean() <= 0.05, ks.mean()


def test_evidence_orders_atoms_above_support():
    """The atoms' integrated intensity over the support is positive and significant;
    random support positions centre near zero in the robust support units."""
    img, yx = _pt_on_carbon(1)
    fw = FWHM_A / PX
    rng = np.random.default_rng(0)
    far = rng.uniform(40, img.shape[0] - 40, (400, 2))
    far = far[cKDTree(yx).query(far)[0] > 2 * fw]
    ev_a = spot_evidence(img, yx[np.all((yx > 20) & (yx < img.shape[0] - 21), axis=1)], fw)
    ev_s = spot_evidence(img, far, fw)
    assert np.median(ev_a["intensity"]) > 0
    assert np.median(ev_a["z"]) > 3.0
    assert abs(np.median(ev_s["support_t"])) < 0.5
    assert np.median(ev_a["support_t"]) > 2.0


def test_rule_from_card():
    assert VerifyRule.from_card(None) is None
    assert VerifyRule.from_card({"spot_scale": {"target_fwhm_A": 1.2}}) is None
    r = VerifyRule.from_card({"spot_verify": {"z_min": 2, "t_min": 1, "candidate_factor": 0.5}})
    assert (r.z_min, r.t_min, r.candidate_factor) == (2.0, 1.0, 0.5)
    assert VerifyRule.from_card({"spot_verify": {"candidate_factor": 2.0}}) is None
    assert VerifyRule.from_card({"spot_verify": {"z_min": "x"}}) is None


def test_bad_input_names_the_problem():
    img = np.zeros((32, 32))
    with pytest.raises(ValueError, match="spot FWHM"):
        spot_evidence(img, np.zeros((1, 2)), 0.0)
    with pytest.raises(ValueError, match=r"\(Y, X\) frame"):
        spot_evidence(np.zeros((2, 32, 32)), np.zeros((1, 2)), 5.0)


def test_detection_verifies_only_resampled_frames():
    """The general model: broad single atoms are spot-resampled and verified (fewer
    detections off the atoms than without the rule); a crystal of sharp columns is
    neither (same atoms with and without the rule)."""
    from atomlens.atoms import detect
    from atomlens.atoms.match import match_atoms
    from atomlens.segment.registry import load_model

    det = load_model("general")
    if "spot_verify" not in det.card:
        pytest.skip("the general model's card has no spot_verify rule")
    plain = copy.copy(det)
    plain.card = {k: v for k, v in det.card.items() if k != "spot_verify"}
    img, yx = _pt_on_carbon(1)
    on = detect(img, det, pixel_size=PX)
    off = detect(img, plain, pixel_size=PX)
    assert on.spot_scale.get("factor", 1.0) > 1 and "verify" in on.spot_scale
    a_on, a_off = on.atoms[["y", "x"]].to_numpy(), off.atoms[["y", "x"]].to_numpy()
    r = 0.6 * FWHM_A / PX
    fp_on = len(a_on) - len(match_atoms(a_on, yx, r)[0])
    fp_off = len(a_off) - len(match_atoms(a_off, yx, r)[0])
    assert fp_on < fp_off
    # a crystal: 1 Å columns on a 3.9 Å square lattice at 0.1 Å/px
    yy, xx = np.indices((256, 256), dtype=float)
    crystal = np.zeros((256, 256))
    for cy in np.arange(10, 250, 39.0):
        for cx in np.arange(10, 250, 39.0):
            crystal += np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / (2 * (10 / 2.3548) ** 2))
    crystal = np.random.default_rng(0).poisson(50 * crystal + 5) / 50.0
    c_on = detect(crystal, det, pixel_size=0.1)
    c_off = detect(crystal, plain, pixel_size=0.1)
    assert "verify" not in c_on.spot_scale
    assert np.array_equal(c_on.atoms[["y", "x"]].to_numpy(), c_off.atoms[["y", "x"]].to_numpy())


def test_frame_where_nothing_passes_keeps_the_unverified_atoms():
    """A rule no candidate can pass (z_min huge): the frame falls back to the network's
    atoms at the unverified threshold, the same as without the rule."""
    from atomlens.atoms import detect
    from atomlens.segment.registry import load_model

    det = load_model("general")
    strict, plain = copy.copy(det), copy.copy(det)
    strict.card = {**det.card, "spot_verify": {"z_min": 1e9, "candidate_factor": 0.6}}
    plain.card = {k: v for k, v in det.card.items() if k != "spot_verify"}
    img, _ = _pt_on_carbon(2)
    a = detect(img, strict, pixel_size=PX)
    b = detect(img, plain, pixel_size=PX)
    assert a.spot_scale.get("factor", 1.0) > 1 and len(b.atoms) >= 5
    assert np.allclose(a.atoms[["y", "x"]].to_numpy(), b.atoms[["y", "x"]].to_numpy())
