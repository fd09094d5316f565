"""The probe (aperture + aberration phase) against abTEM, and the probe renderer."""

from __future__ import annotations

import numpy as np
import pytest

from atomlens.simulate import Probe, ScanDistortion, render_image
from atomlens.simulate.patches import SI_MOTIFS, _grain, add_si_motif, graphene_patch
from atomlens.simulate.probe import wavelength_A
from atomlens.simulate.training import Imaging, render_sample


def test_wavelength_matches_relativistic_values():
    assert wavelength_A(60) == pytest.approx(0.04866, abs=2e-5)
    assert wavelength_A(200) == pytest.approx(0.02508, abs=2e-5)


@pytest.mark.parametrize(
    "aber",
    [
        {"defocus": 0.0, "Cs": 0.0, "C50": 0.0},
        {"defocus": 20.0, "Cs": 3e4, "C50": 2e7},
        {"defocus": -30.0, "Cs": -5e4, "C50": -3e7},
    ],
)
def test_probe_intensity_matches_abtem(aber):
    abtem = pytest.importorskip("abtem", reason="abtem not installed (pip install -e .[testing])")
    ap = abtem.transfer.Aperture(semiangle_cutoff=30, soft=False)
    ref = abtem.Probe(energy=60e3, aperture=ap, extent=12, sampling=0.05, device="cpu", **aber)
    ref = np.asarray(ref.build().intensity().array, float)
    ref /= ref.sum()
    mine = Probe(
        voltage_kV=60, alpha_mrad=30, defocus_A=aber["defocus"], Cs_A=aber["Cs"], C5_A=aber["C50"]
    ).coherent_intensity(ref.shape, 0.05)
    mine = np.fft.fftshift(mine)
    assert np.abs(mine - ref).max() < 1e-4 * ref.max()
    # the sign convention matters: the opposite defocus is a different probe
    if aber["defocus"]:
        flipped = np.fft.fftshift(
            Probe(
                alpha_mrad=30, defocus_A=-aber["defocus"], Cs_A=aber["Cs"], C5_A=aber["C50"]
            ).coherent_intensity(ref.shape, 0.05)
        )
        assert np.abs(flipped - ref).max() > 0.1 * ref.max()


def test_aberration_free_probe_is_diffraction_limited_with_airy_tail():
    p = Probe(voltage_kV=60, alpha_mrad=31)
    # Airy FWHM = 0.514 λ / α
    assert p.fwhm_A() == pytest.approx(0.514 * wavelength_A(60) / 0.031, rel=0.03)
    # an Airy disk keeps 16.2 % of its intensity outside the first dark ring (0.61 λ/α)
    outside = 1 - p.encircled(0.61 * wavelength_A(60) / 0.031)
    assert outside == pytest.approx(0.162, abs=0.02)
    # aberrations move intensity into the tails; a source widens the core
    worse = Probe(alpha_mrad=31, defocus_A=40)
    assert worse.encircled(0.7) < p.encircled(0.7) - 0.1
    assert Probe(alpha_mrad=31, source_fwhm_A=0.6).fwhm_A() > p.fwhm_A() + 0.15


def test_render_image_peaks_contrast_and_positions():
    ps = 0.1
    yx = np.array([[3.213, 4.071], [1.0, 1.0]])
    img, app = render_image(yx, ["C", "Si"], (64, 80), ps, Probe(source_fwhm_A=0.3))
    assert img[10, 10] == pytest.approx((14 / 6) ** 1.7, rel=0.02)  # Si peak, C = 1
    assert img[32, 41] == pytest.approx(1.0, abs=0.03)
    np.testing.assert_allclose(app, yx / ps)
    # centroid of the C spot is at its position (sub-pixel)
    win = img[26:39, 34:48].astype(float)
    yy, xx = np.mgrid[26:39, 34:48]
    assert (win * yy).sum() / win.sum() == pytest.approx(32.13, abs=0.1)
    assert (win * xx).sum() / win.sum() == pytest.approx(40.71, abs=0.1)


def test_render_image_dose_sets_noise_and_scan_moves_labels():
    rng = np.random.default_rng(0)
    flat = np.zeros((0, 2))
    img, _ = render_image(
        flat, [], (128, 128), 0.1, None, rng, background=1.0, dose=2e5, detector_efficiency=0.05
    )
    counts = 2e5 * 0.01 * 0.05  # per C-peak unit
    assert img.std() == pytest.approx(np.sqrt(counts) / counts, rel=0.1)
    # a drifting scan: the label follows where the spot shows up
    yx = np.array([[2.0, 6.4]])
    scan = ScanDistortion(drift=(0.0, 0.02))
    img, app = render_image(yx, ["Si"], (128, 128), 0.1, None, rng, scan=scan)
    py, px = np.unravel_index(np.argmax(img), img.shape)
    assert abs(app[0, 0] - py) <= 1 and abs(app[0, 1] - px) <= 1
    assert abs(app[0, 1] - 64) > 0.5  # the drift really moved it


@pytest.mark.parametrize(
    "kind,n_si,n_c",
    [
        ("Si1C3", 1, 3),
        ("Si1C4", 1, 4),
        ("Si2C4", 2, 4),
        ("Si2C5", 2, 5),
        ("Si2C6", 2, 6),
        ("Si3C6", 3, 6),
    ],
)
def test_si_motifs_have_their_coordination(kind, n_si, n_c):
    from scipy.spatial import cKDTree

    rng = np.random.default_rng(1)
    yx = _grain(20.0, 0.3, np.zeros(2), np.eye(2)).copy()
    sp = np.full(len(yx), "C", dtype=object)
    keep = np.ones(len(yx), bool)
    site = int(np.argmin(np.hypot(*(yx - 10).T)))
    assert add_si_motif(yx, sp, keep, site, kind, rng)
    yx, sp = yx[keep], sp[keep]
    si = np.flatnonzero(sp == "Si")
    tree = cKDTree(yx)
    bonded_c = {q for s in si for q in tree.query_ball_point(yx[s], 2.05) if sp[q] == "C"}
    assert len(si) == n_si and len(bonded_c) == n_c
    d = np.hypot(*(yx[list(bonded_c)][:, None] - yx[si][None]).transpose(2, 0, 1)).min(1)
    assert np.all((d > 1.3) & (d < 2.05))  # projected Si-C bonds
    assert kind in SI_MOTIFS


def test_training_sample_covers_pixel_sizes_and_labels_match():
    rng = np.random.default_rng(4)
    for ps in (0.05, 0.1, 0.2):
        n = int(round(96 * 0.2 / ps))
        p = graphene_patch(n * ps + 8, rng, n_motifs=2)
        img, mask, yx, sp = render_sample(
            p,
            (n, n),
            ps,
            classes=("background", "C", "Si"),
            radius_A=0.35,
            rng=rng,
            imaging=Imaging(snr=1e3, probe=Probe(source_fwhm_A=0.4)),
        )
        assert img.shape == mask.shape == (n, n) and (sp == "Si").any()
        iy, ix = np.clip(np.round(yx).astype(int), 0, n - 1).T
        assert np.all(mask[iy, ix] > 0)
        si = sp == "Si"
        assert img[iy[si], ix[si]].mean() > 2.0 * img[iy[~si], ix[~si]].mean()
