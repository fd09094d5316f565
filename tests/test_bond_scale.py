"""The pixel size from the detected C-C bonds (chem/bond_scale.py) against simulator
truth."""

from __future__ import annotations

import numpy as np
import pytest

from atomlens.atoms import detect
from atomlens.chem.bond_scale import GRAPHENE_BOND_A, cc_bond_scale, table_bond_scale
from atomlens.simulate.patches import _grain
from tests.test_detect_dopants import SITE_IMAGING, render_site


def test_ideal_lattice_gives_the_pixel_size_and_skips_the_si():
    """A perfect 24 Å graphene crop at 0.155 Å/px with a Si whose three neighbours are
    pushed out to 1.8 Å, told a pixel size 7 % off: the bonds away from the Si give the
    true one within 0.2 %."""
    ps = 0.155
    yx_A = _grain(24.0, 0.3, np.zeros(2), np.eye(2)).copy()
    sp = np.full(len(yx_A), "C", dtype=object)
    si = int(np.argmin(np.hypot(*(yx_A - 12.0).T)))
    sp[si] = "Si"
    d = np.hypot(*(yx_A - yx_A[si]).T)
    nb = np.flatnonzero((d > 0) & (d < 1.6))
    yx_A[nb] = yx_A[si] + (yx_A[nb] - yx_A[si]) * (1.8 / d[nb, None])
    yx = yx_A / ps
    bs = cc_bond_scale(yx, sp, ps * 1.07, (155, 155))
    assert bs.n_bonds >= 100
    assert abs(bs.pixel_size / ps - 1) < 0.002, bs
    assert abs(bs.bond_px * ps - GRAPHENE_BOND_A) < 0.003


@pytest.mark.parametrize("seed", [21, 22, 23])
def test_detected_atoms_correct_a_wrong_pixel_size(seed):
    """Detection at a pixel size 6 % too small (a 128-px crop's FFT calibration can be
    a few % off) on a probe-rendered 20 Å Si1C3 site at 0.155 Å/px: the detected C-C
    bonds give the truth within 2.5 % where the told value was 6 % off (seeds 21-25:
    -0.3, +0.3, -0.6, -0.3, +2.0 %; the renderer's own positions scatter the bond by
    4-8 %, so one 20 Å crop is good to ~2 %)."""
    ps = 0.155
    img, _, _ = render_site("Si1C3", seed, ps, 20.0, SITE_IMAGING)
    told = ps * 0.94
    atoms = detect(img, pixel_size=told).atoms
    bs = table_bond_scale(atoms, told, img.shape)
    assert abs(bs.pixel_size / ps - 1) < 0.025, (bs, ps)
    assert bs.spread_pct < 10


def test_too_few_atoms_and_bad_input():
    bs = cc_bond_scale(np.zeros((2, 2)), np.array(["C", "C"]), 0.1, (50, 50))
    assert np.isnan(bs.pixel_size) and bs.n_bonds == 0
    with pytest.raises(ValueError, match="pixel_size"):
        cc_bond_scale(np.zeros((5, 2)), np.array(["C"] * 5), 0.0, (50, 50))
