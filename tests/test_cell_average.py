"""Unit-cell averages and the basis-site fit (atomlens.atoms.cell_average)."""

from __future__ import annotations

import numpy as np

from atomlens.atoms.cell_average import cell_average, fit_basis_offsets, mean_basis


def _hexagonal(a_px: float = 20.0, angle: float = 0.3) -> np.ndarray:
    c, s = np.cos(angle), np.sin(angle)
    a1 = a_px * np.array([c, s])
    a2 = a_px * np.array([np.cos(angle + 2 * np.pi / 3), np.sin(angle + 2 * np.pi / 3)])
    return np.stack([a1, a2])


def test_mean_basis_recovers_the_lattice_from_a_guess_ten_percent_off():
    rng = np.random.default_rng(1)
    basis = _hexagonal()
    i, j = np.meshgrid(np.arange(-6, 7), np.arange(-6, 7), indexing="ij")
    sites = np.column_stack([i.ravel(), j.ravel()]) @ basis + rng.normal(0, 0.3, (169, 2))
    guess = basis @ np.array([[1.1, 0.02], [-0.03, 0.92]])
    got = mean_basis(sites, guess)
    assert np.abs(got - basis).max() < 0.05  # pixels, from 0.3 px scatter
    assert np.array_equal(mean_basis(sites[:2], guess), guess)  # too few sites: the guess


def test_fit_basis_offsets_finds_a_dim_site_moved_beside_bright_neighbours():
    """Mo-like bright Gaussians on the lattice, a dim one at (1/3, 2/3) moved by a known
    vector: the average's fit finds the move to 0.08 px (noise-limited: exact without
    noise); the bright tails 11.5 px away would pull a centroid of the dim peak."""
    rng = np.random.default_rng(2)
    basis = _hexagonal()
    shift = np.array([1.2, -0.7])  # pixels
    size = 240
    yy, xx = np.mgrid[:size, :size].astype(float)
    i, j = np.meshgrid(np.arange(-12, 13), np.arange(-12, 13), indexing="ij")
    cells = np.column_stack([i.ravel(), j.ravel()]) @ basis + size / 2
    img = np.zeros((size, size))
    for amp, sig, off in ((1.0, 2.5, 0.0), (0.35, 3.2, np.array([1 / 3, 2 / 3]) @ basis + shift)):
        for y, x in cells + off:
            if -10 < y < size + 10 and -10 < x < size + 10:
                img += amp * np.exp(-((yy - y) ** 2 + (xx - x) ** 2) / (2 * sig**2))
    img += rng.normal(0, 0.1, img.shape)
    avg, grid, n = cell_average(img, cells, 16.0)
    assert n > 50 and avg.shape == grid.shape[:2]
    res = fit_basis_offsets(avg, grid, basis, [np.zeros(2), np.array([1 / 3, 2 / 3])], 2.5)
    assert np.hypot(*(res["shift_px"][0] - shift)) < 0.08, res["shift_px"]
    assert np.hypot(*res["centre"]) < 0.05
    assert abs(res["sigmas_px"][1] - 3.2) < 0.1 and abs(res["sigmas_px"][0] - 2.5) < 0.1
