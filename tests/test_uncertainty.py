"""Per-atom position uncertainty (sigma_px / sigma_A) is honest against simulator truth.

Definition checked: per axis, |y - y_true| < σ and |x - x_true| < σ for 68.3 % of the
errors (95.4 % within 2σ). Frames: graphene rendered with the real-probe renderer
(:func:`atomlens.simulate.render_image`) at three pixel sizes, two doses, two seeds;
atoms start 0.3 px (rms) off the truth and are refined by the Gaussian fit.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from atomlens.atoms.refine import refine_gaussian
from atomlens.atoms.uncertainty import RADIAL_1SIGMA, add_sigma_columns, coverage, sigma_from_cov
from atomlens.chem.bonds import find_bonds
from atomlens.simulate import Probe, render_image
from atomlens.simulate.lattice import honeycomb

SIZE = 160


def _frame(seed: int, dose: float, pixel_size: float):
    """Refined interior atoms of one rendered frame: (estimate, truth, sigma) in px."""
    rng = np.random.default_rng(seed)
    side = SIZE * pixel_size
    pos, _, _ = honeycomb((0, side, 0, side), rng.uniform(0, np.pi))
    pos = pos + rng.normal(0, 0.02, pos.shape)  # Å, a little disorder
    img, truth = render_image(
        pos, ["C"] * len(pos), (SIZE, SIZE), pixel_size, Probe(), rng, dose=dose
    )
    radius = max(2.0, 0.65 / pixel_size)
    inside = (truth.min(1) > radius + 1) & (truth.max(1) < SIZE - 2 - radius)
    truth = truth[inside]
    start = truth + rng.normal(0, 0.3, truth.shape)
    yx, ok, _, cov = refine_gaussian(
        img, start, radius, max_shift_px=max(1.0, 0.3 / pixel_size), return_cov=True
    )
    return yx[ok], truth[ok], sigma_from_cov(cov)[ok]


@pytest.fixture(scope="module")
def runs():
    out = {}
    for ps in (0.06, 0.1, 0.16):
        for dose in (3e4, 3e5):
            parts = [_frame(seed, dose, ps) for seed in (11, 12)]
            out[(ps, dose)] = tuple(np.concatenate([p[i] for p in parts]) for i in range(3))
    return out


def test_sigma_covers_68_percent_of_true_positions(runs):
    every = tuple(np.concatenate([r[i] for r in runs.values()]) for i in range(3))
    pooled = coverage(*every)
    assert pooled["n"] > 1000
    assert 0.63 <= pooled["axis_1sigma"] <= 0.73, pooled
    assert 0.91 <= pooled["axis_2sigma"] <= 0.98, pooled
    assert 0.60 <= pooled["radial_1sigma"] <= 0.76, pooled
    for key, r in runs.items():  # no condition far off (small samples: ±12 points)
        c = coverage(*r)
        assert 0.56 <= c["axis_1sigma"] <= 0.80, (key, c)


def test_sigma_follows_the_dose(runs):
    """Ten times the dose: σ shrinks by about √10 (3.2x), and so does the real error."""
    for ps in (0.06, 0.1, 0.16):
        lo, hi = coverage(*runs[(ps, 3e4)]), coverage(*runs[(ps, 3e5)])
        assert 2.2 < lo["median_sigma_px"] / hi["median_sigma_px"] < 4.5
        assert 2.0 < lo["rms_error_px"] / hi["rms_error_px"] < 5.0


def test_bond_length_sigma_is_honest(runs):
    """Bonds from the refined atoms: (length - true length) within length_sigma_pm in
    about 68 % of bonds."""
    yx, truth, sigma = runs[(0.1, 3e4)]
    keep = np.arange(len(yx)) < len(yx) // 2  # the first seed's frame only
    yx, truth, sigma = yx[keep], truth[keep], sigma[keep]
    atoms = pd.DataFrame({"frame": 0, "y": yx[:, 0], "x": yx[:, 1], "cls": "C"})
    add_sigma_columns(atoms, sigma, 0.1)
    bonds = find_bonds(atoms, 0.1)
    assert len(bonds) > 30
    a, b = bonds["a"].to_numpy(), bonds["b"].to_numpy()
    true_pm = 100 * 0.1 * np.hypot(*(truth[a] - truth[b]).T)
    z = (100 * bonds["length_A"].to_numpy() - true_pm) / bonds["length_sigma_pm"].to_numpy()
    assert 0.55 <= (np.abs(z) < 1).mean() <= 0.82
    assert bonds["length_sigma_pm"].to_numpy() == pytest.approx(
        100 * 0.1 * np.hypot(sigma[a], sigma[b])
    )


def test_coverage_definition_on_known_gaussian_errors():
    rng = np.random.default_rng(0)
    truth = rng.uniform(0, 100, (20000, 2))
    sigma = rng.uniform(0.1, 1.0, 20000)
    est = truth + rng.normal(size=truth.shape) * sigma[:, None]
    c = coverage(est, truth, sigma)
    assert c["axis_1sigma"] == pytest.approx(0.683, abs=0.01)
    assert c["axis_2sigma"] == pytest.approx(0.954, abs=0.01)
    assert c["radial_1sigma"] == pytest.approx(0.683, abs=0.01) and RADIAL_1SIGMA == pytest.approx(
        1.515, abs=1e-3
    )
    # a stated sigma half the true one is caught
    assert coverage(est, truth, sigma / 2)["axis_1sigma"] < 0.45


def test_failed_fits_have_no_sigma():
    img = np.zeros((32, 32), np.float32)
    _, ok, _, cov = refine_gaussian(
        img, np.array([[16.0, 16.0]]), 3.0, sigma_px=1.5, return_cov=True
    )
    assert not ok[0] and np.isnan(sigma_from_cov(cov)[0])
    with pytest.raises(ValueError, match="one per atom"):
        add_sigma_columns(pd.DataFrame({"y": [1.0]}), np.ones(2), 0.1)
