"""The column-lattice reference (atomlens.atoms.column_lattice) on synthetic lattices
whose period drifts across the frame (scan compression): every column gets a site."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from atomlens.atoms.column_lattice import fit_square_lattice, lattice_scores


def _chirped_lattice(chirp: float, size: int = 384, a_px: float = 16.0, seed: int = 0):
    """Gaussian columns on a square lattice whose x period grows by ``chirp`` (fraction)
    from the left to the right edge (a scan that slows down); (image, truth (N, 2) px)."""
    rng = np.random.default_rng(seed)
    n = int(size / a_px) + 3
    # x positions: cumulative sum of a period that drifts linearly across the frame
    periods = a_px * (1 - chirp / 2 + chirp * np.arange(2 * n) / (2 * n))
    xs = np.cumsum(periods) - 2 * a_px
    ys = np.arange(-2, n) * a_px + 5.0
    yy, xx = np.meshgrid(ys, xs[xs < size + 2 * a_px], indexing="ij")
    truth = np.column_stack([yy.ravel(), xx.ravel()])
    gy, gx = np.mgrid[:size, :size]
    img = np.zeros((size, size))
    s = 2.2
    for y, x in truth:
        if -8 < y < size + 8 and -8 < x < size + 8:
            sl = (slice(max(0, int(y) - 9), int(y) + 10), slice(max(0, int(x) - 9), int(x) + 10))
            img[sl] += np.exp(-((gy[sl] - y) ** 2 + (gx[sl] - x) ** 2) / (2 * s * s))
    img += rng.normal(0, 0.1, img.shape)
    return img, truth


def test_every_column_has_a_site_where_the_period_drifts():
    """A 40 % drift of the period across the frame puts ~4 more columns per row on the
    right half than the mean lattice has: the displacement wraps by a lattice vector, and
    enumerating cells alone left a column of sites empty (fixed by snapping and filling)."""
    img, truth = _chirped_lattice(0.4)
    fit = fit_square_lattice(img, 0.2)
    sc = lattice_scores(truth, fit, img.shape)
    assert sc["on_lattice"] >= 0.99 and sc["sites_found"] >= 0.99, sc
    # one site per column: no duplicates either
    assert abs(sc["n_sites"] - sc["n_detections"]) <= 0.01 * sc["n_detections"], sc


def test_regular_lattice_unchanged():
    img, truth = _chirped_lattice(0.0)
    fit = fit_square_lattice(img, 0.2)
    sc = lattice_scores(truth, fit, img.shape)
    assert sc["on_lattice"] == 1.0 and sc["sites_found"] == 1.0, sc
    assert abs(fit.period_A - 16 * 0.2) < 0.06 * 3.2  # FFT bins: period to a few %


REAL_ABF = Path(__file__).resolve().parents[2] / "shared/data/formats/srtio3_abf_movie.hspy"


@pytest.mark.skipif(not REAL_ABF.exists(), reason=f"{REAL_ABF} not found (shared data absent)")
def test_real_abf_movie_is_fitted_as_srtio3_110():
    """The SrTiO3 ABF movie is a [110] projection: a rectangular a/sqrt2 x a cell (side
    ratio sqrt 2) with SrO at the corner, Ti on the a edge and O at the centre, all
    three dark. Its a-axis first-order spot is weak, so the innermost strong spots alone
    gave the centred SrO+O cell (|a| 2.4 Å, 109°) and the Ti columns fell off it."""
    from atomlens.io import read_stack

    st = read_stack(REAL_ABF)
    frame = np.asarray(st.data[0], np.float64)
    fit = fit_square_lattice(frame, float(st.pixel_size), bright=False)
    side = np.sort(np.linalg.norm(fit.basis, axis=1))
    cosang = fit.basis[0] @ fit.basis[1] / side.prod()
    assert side[1] / side[0] == pytest.approx(np.sqrt(2), rel=0.03), side
    assert abs(np.degrees(np.arccos(cosang)) - 90) < 3
    # metadata 0.092 Å/px: within 6 % of SrTiO3's a/sqrt2 = 2.76 Å and a = 3.905 Å
    assert side * float(st.pixel_size) == pytest.approx([3.905 / np.sqrt(2), 3.905], rel=0.06)
    assert len(fit.decorations) == 3  # SrO, Ti, O
    assert set(np.unique(fit.site_kind)) == {0, 1, 2}


@pytest.mark.skipif(not REAL_ABF.exists(), reason=f"{REAL_ABF} not found (shared data absent)")
def test_general_model_puts_abf_detections_on_the_110_columns():
    """The general model on the ABF movie's first frame, contrast found by itself: its
    detections lie on the SrO, Ti and O columns of the fitted [110] cell (bench/general.py
    srtio3: 99.7 % on a column, 99.8 % of columns found on this frame)."""
    from atomlens.io import read_stack
    from atomlens.workflows import detect as wf
    from atomlens.workflows.events import drain

    st = read_stack(REAL_ABF)
    res = drain(wf.run(st, wf.DetectRecipe(model="general", save_maps=False), [0]))
    assert "inverted" in res.model_choice
    frame = np.asarray(st.data[0], np.float64)
    fit = fit_square_lattice(frame, float(st.pixel_size), bright=False)
    sc = lattice_scores(res.atoms[["y", "x"]].to_numpy(float), fit, frame.shape)
    assert sc["on_lattice"] >= 0.95 and sc["sites_found"] >= 0.95, sc
    assert min(sc["sites_found_by_kind"].values()) >= 0.9, sc
