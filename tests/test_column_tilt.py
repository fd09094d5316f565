"""Tilt-split chalcogen columns of 2H TMDs (atomlens.simulate.column_tilt), checked on
simulator truth: the column's centroid moves by half the split, the rendered column is
displaced and broadened as real MoS2 S2 columns are, other structures are untouched."""

import numpy as np
import pytest
from scipy.optimize import curve_fit

from atomlens.simulate import materials as M
from atomlens.simulate.column_tilt import (
    chalcogen_rows,
    column_centroids,
    tilt_chalcogen_columns,
)
from atomlens.simulate.image import render_image
from atomlens.simulate.probe import Probe


def _mos2(seed: int = 3, size_A: float = 30.0) -> M.Columns:
    return M.tmd_2h(size_A, np.random.default_rng(seed), "MoS2")


def test_centroid_moves_by_half_the_split_along_the_tilt():
    cols = _mos2()
    split, theta = 0.4, 0.7
    out = tilt_chalcogen_columns(cols, np.random.default_rng(0), split_A=split, direction_rad=theta)
    amp = out.count * (out.z / 6.0) ** 1.7
    moved = column_centroids(out.yx_A, amp, out.column) - column_centroids(
        cols.yx_A, cols.count, cols.column
    )
    x2 = np.unique(cols.column[chalcogen_rows(cols)])
    metal = np.setdiff1d(np.arange(len(moved)), x2)
    assert np.abs(moved[metal]).max() < 1e-9  # Mo columns stay where they were
    d = np.linalg.norm(moved[x2], axis=1)
    assert abs(np.mean(d) - split / 2) < 0.01  # half the split (10 % per-column jitter)
    assert np.all(np.abs(d - split / 2) < 0.35 * split / 2)
    ang = np.arctan2(*moved[x2].mean(0))  # (y, x) -> angle from x towards y
    assert abs(ang - theta) < 0.05
    # the total chalcogen weight is count x one per-image factor in the weight range
    w = np.bincount(out.column, out.count * (out.z == 16))[x2] / 2.0
    assert np.allclose(w, w[0]) and 0.75 <= w[0] <= 1.1


def test_rendered_s2_column_is_displaced_broadened_and_fainter():
    """Noise-free render at 0.1 Å/px, a Gaussian fit to each column: the S2 column's
    centre moves by half the split, its width grows and its peak over Mo's drops, while
    the Mo columns do not move."""
    cols = _mos2(size_A=24.0)
    px, probe = 0.1, Probe.with_fwhm(0.9)
    split, theta = 0.5, 0.0  # along +x
    tilted = tilt_chalcogen_columns(
        cols,
        np.random.default_rng(1),
        split_A=split,
        direction_rad=theta,
        extra_sigma_A=(0.0, 0.0),
        weight_range=(1.0, 1.0),
    )
    n = int(24.0 / px)

    def fit(win: np.ndarray) -> tuple[float, float, float]:
        """Gaussian + floor fit of a window: (x centre px from the window centre,
        sigma along x px, height)."""
        r = win.shape[0] // 2
        yy, xx = np.mgrid[-r : r + 1, -r : r + 1].astype(float)

        def g(_, a, y0, x0, sy, sx, b):
            e = ((yy - y0) / sy) ** 2 + ((xx - x0) / sx) ** 2
            return (a * np.exp(-e / 2) + b).ravel()

        p, _ = curve_fit(g, None, win.ravel(), p0=[np.ptp(win), 0, 0, 3.0, 3.0, win.min()])
        return float(p[2]), abs(float(p[4])), float(p[0])

    def look(c: M.Columns) -> tuple[float, float, float, float]:
        img, _ = render_image(c.yx_A, c.z, (n, n), px, probe, 0, z_exponent=1.7, weights=c.count)
        img = np.asarray(img, np.float64)
        r = 6  # 0.6 Å half-window
        shifts, widths, s_peaks, mo_peaks, mo_shift = [], [], [], [], []
        for k in np.unique(cols.column):
            rows = cols.column == k
            yx = cols.yx_A[rows][0] / px
            iy, ix = np.round(yx).astype(int)
            if min(iy, ix) < 3 * r or max(iy, ix) >= n - 3 * r:
                continue
            x0, sig, h = fit(img[iy - r : iy + r + 1, ix - r : ix + r + 1])
            off = (x0 + ix - yx[1]) * px
            if cols.z[rows][0] == 16:
                shifts.append(off)
                widths.append(sig * px)
                s_peaks.append(h)
            else:
                mo_peaks.append(h)
                mo_shift.append(abs(off))
        return (
            float(np.median(shifts)),
            float(np.median(widths)),
            float(np.median(s_peaks) / np.median(mo_peaks)),
            float(np.max(mo_shift)),
        )

    s0, w0, r0, m0 = look(cols)
    s1, w1, r1, m1 = look(tilted)
    assert abs(s0) < 0.02 and m0 < 0.02
    assert abs(s1 - split / 2) < 0.03  # the fitted column centre: half the split
    assert m1 < 0.02  # the metal columns do not move
    assert w1 > 1.15 * w0  # broader along the split (0.39 -> 0.48 Å sigma)
    assert r1 < 0.85 * r0  # peak over Mo 0.38 -> 0.30 at the same integrated weight


def test_other_structures_and_supports_are_untouched_without_draws():
    rng = np.random.default_rng(5)
    for cols in (M.perovskite(20.0, rng), M.fcc(20.0, rng), M.honeycomb_2d(20.0, rng)):
        g = np.random.default_rng(9)
        state = g.bit_generator.state
        assert tilt_chalcogen_columns(cols, g) is cols
        assert g.bit_generator.state == state
    # single S atoms on a support (count 1, support) are not a column to split
    sup = M.amorphous_support(20.0, rng, density=0.5)
    assert not chalcogen_rows(sup).any()


def test_visible_columns_and_labels_survive_the_split():
    cols = _mos2()
    out = tilt_chalcogen_columns(cols, np.random.default_rng(2), split_A=0.3)
    for n in (0.7, 1.7):  # ABF-like and HAADF exponents
        v0 = np.unique(cols.column[M.visible(cols, n)])
        v1 = np.unique(out.column[M.visible(out, n)])
        assert np.array_equal(v0, v1)
    # the chalcogen smear keeps each column's centroid within the split's reach
    c = column_centroids(out.yx_A, out.count, out.column)
    c0 = column_centroids(cols.yx_A, cols.count, cols.column)
    assert np.linalg.norm(c - c0, axis=1).max() < 0.3 / 2 * 1.4


def test_column_centroids_weights_and_bad_split():
    yx = np.array([[0.0, 0.0], [0.0, 1.0], [5.0, 5.0], [2.0, 2.0], [4.0, 2.0]])
    w = np.array([3.0, 1.0, 2.0, 0.0, 0.0])
    col = np.array([4, 4, 7, 9, 9])
    c = column_centroids(yx, w, col)
    assert np.allclose(c, [[0.0, 0.25], [5.0, 5.0], [3.0, 2.0]])
    with pytest.raises(ValueError, match="split_A"):
        tilt_chalcogen_columns(_mos2(), np.random.default_rng(0), split_A=-0.1)


def test_tmd_sample_and_extra_share_render_tmds(monkeypatch):
    import atomlens.segment.general as G
    from atomlens.simulate.column_tilt import tmd_sample

    cols = tmd_sample(30.0, np.random.default_rng(4))
    assert "2H" in cols.name and chalcogen_rows(cols).any()
    monkeypatch.setattr(G, "TMD_EXTRA_SHARE", 1.0)
    cfg = G.general_config()
    rng = np.random.default_rng(11)
    for _ in range(3):
        img, yx, info = G.render_native(cfg, rng)
        assert "2H" in info["structure"]
        assert np.isfinite(img).all() and len(yx) > 0
