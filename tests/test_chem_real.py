"""Chemistry and calibration on real experimental files (skipped when absent)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from atomlens.chem import ChemParams, analyze, calibrate_fft, calibrate_nn
from tests.conftest import real_file


def _npz(shared_data, name):
    return np.load(real_file(shared_data, f"real/{name}.npz"))


def test_grain_boundary_calibration_within_2_percent(shared_data):
    z = _npz(shared_data, "graphene_grainboundary-4nm")
    nominal = float(z["nominal_pixel_size_angstrom"])
    fft = calibrate_fft(z["image"], "graphene", nominal)
    assert abs(fft.discrepancy_pct) < 2.0
    nn = calibrate_nn(z["nn_rows_cols"], "graphene", nominal)
    assert abs(nn.discrepancy_pct) < 2.0


def test_si_2nm_metadata_overstates_pixel_size(shared_data):
    z = _npz(shared_data, "graphene_si-2nm")
    nominal = float(z["nominal_pixel_size_angstrom"])
    fft = calibrate_fft(z["image"], "graphene", nominal)
    nn = calibrate_nn(z["nn_rows_cols"], "graphene", nominal)
    # two independent estimates agree and both put the true pixel below the nominal one
    assert fft.pixel_size == pytest.approx(nn.pixel_size, rel=0.02)
    assert 1.0 < fft.discrepancy_pct < 10.0
    assert fft.pixel_size < nominal


def test_si_2nm_fft_calibration_matches_the_authors_atom_positions(shared_data):
    """An independent check of the FFT pixel size (0.0762 Å, nominal 0.0781 Å; the data
    README's "FFT says ~0.072" is not reproduced): the source authors' atom positions
    (``nn_rows_cols``) with the C-C bond 1.42 Å and the lattice constant 2.46 Å.

    Bonds are each atom's three nearest neighbours, for atoms with all three in view
    (third neighbour within 1.25x the first). The nearest neighbour alone is biased
    short: it is the minimum of three noisy, anisotropic bonds (median 17.9 px against
    18.4 px for all bonds), which would give 0.0793 Å.
    """
    from scipy.spatial import cKDTree

    z = _npz(shared_data, "graphene_si-2nm")
    nominal = float(z["nominal_pixel_size_angstrom"])
    fft = calibrate_fft(z["image"], "graphene", nominal).pixel_size
    yx = z["nn_rows_cols"].astype(float)
    dist, _ = cKDTree(yx).query(yx, k=10)
    full = dist[:, 3] < 1.25 * dist[:, 1]
    assert full.sum() >= 80
    bond_px = float(np.median(dist[full, 1:4]))
    from_bonds = 1.42 / bond_px
    second = dist[:, 4:].ravel()
    second = second[(second > 1.4 * bond_px) & (second < 2.0 * bond_px)]  # 6 at a = 2.46 Å
    from_lattice = 2.46 / float(np.median(second))
    assert fft == pytest.approx(from_bonds, rel=0.015)
    assert fft == pytest.approx(from_lattice, rel=0.015)
    # both put the pixel 1-4 % below the nominal 0.078 Å, well above the README's 0.072 Å
    for est in (fft, from_bonds, from_lattice):
        assert 0.96 * nominal < est < 0.99 * nominal
        assert est > 1.05 * 0.072


def test_grain_boundary_has_5_and_7_rings(shared_data):
    z = _npz(shared_data, "graphene_grainboundary-4nm")
    ps = calibrate_fft(z["image"], "graphene", float(z["nominal_pixel_size_angstrom"])).pixel_size
    yx = z["nn_rows_cols"].astype(float)
    atoms = pd.DataFrame({"frame": 0, "y": yx[:, 0], "x": yx[:, 1], "cls": "C"})
    res = analyze(atoms, ps, ChemParams(track=False))
    hist = res.ring_histogram()
    assert hist.get(5, 0) >= 5 and hist.get(7, 0) >= 5
    assert hist[6] > 10 * (hist[5] + hist[7]) / 2
    assert "grain_boundary" in set(res.defects["type"])


def test_annotated_si_is_three_fold_with_paper_geometry(shared_data):
    z = _npz(shared_data, "graphene_si1c3_movie")
    ps = calibrate_fft(
        z["frames"][:4], "graphene", float(z["nominal_pixel_size_angstrom"]), pad=1024
    ).pixel_size
    atoms = pd.DataFrame(
        {"frame": z["atom_frame"], "y": z["atom_row"], "x": z["atom_col"], "cls": z["atom_element"]}
    )
    res = analyze(atoms, ps, ChemParams(max_disp_A={"*": 1.0, "Si": 4.0}, max_gap=3))
    si = res.atoms[res.atoms["cls"] == "Si"]
    assert (si["coordination"] == 3).mean() >= 0.9
    assert si["track_id"].nunique() == 1
    lengths = np.concatenate([np.asarray(v) for v in res.dopants["bond_lengths_pm"]])
    angles = np.concatenate([np.asarray(v) for v in res.dopants["angles_deg"]])
    assert 140 < np.median(lengths) < 165  # paper: ~150 pm
    assert np.std(angles) < 10  # C-Si-C near 120° (mean is 120° by construction)
