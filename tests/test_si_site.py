"""The shared Si-site scene (atomlens.simulate.si_site) and the "away from every Si"
selector (atomlens.geometry.nearby) that the Si tests, bench/si_bond_rules.py,
si_motif.lattice_angle and chem.bond_scale use."""

from __future__ import annotations

import numpy as np
import pytest

from atomlens.geometry.nearby import farther_than
from atomlens.simulate.si_site import PATCH_A, render_si_site, si_site_patch


@pytest.mark.parametrize("kind,n_si", [("Si1C3", 1), ("Si1C4", 1), ("Si2C6", 2), ("Si3C6", 3)])
def test_site_patch_holds_the_motif_near_the_centre(kind, n_si):
    p = si_site_patch(kind, 7)
    assert p.motifs == (kind,) and p.size_A == PATCH_A
    si = p.yx_A[p.species == "Si"]
    assert len(si) == n_si and set(p.species) == {"C", "Si"}
    r = np.hypot(*(si - PATCH_A / 2).T)  # Å from the centre
    assert r.min() < 1.5 and r.max() < 5.0  # built at the atom nearest the centre
    with pytest.raises(ValueError, match="unknown Si motif"):
        si_site_patch("Si9C9", 7)


def test_rendered_site_is_deterministic_and_in_the_frame():
    img, yx, sp = render_si_site("Si1C4", 11, 0.1, 16.0)
    assert img.shape == (160, 160) and img.dtype == np.float32
    assert yx.shape == (len(sp), 2) and (sp == "Si").sum() == 1
    assert ((yx >= 0) & (yx <= 159)).all()
    again = render_si_site("Si1C4", 11, 0.1, 16.0)
    assert np.array_equal(img, again[0]) and np.array_equal(yx, again[1])
    # the Si's four C neighbours (Si1C4) at 1.4-2.1 Å in the rendered frame (0.1 Å/px)
    d = np.sort(np.hypot(*(yx[sp == "C"] - yx[sp == "Si"][0]).T)) * 0.1
    assert (d[:4] > 1.4).all() and (d[:4] < 2.1).all() and d[4] > 2.3


def test_farther_than():
    si = np.array([[50.0, 50.0]])
    c = np.array([[50.0, 79.0], [50.0, 81.0], [10.0, 10.0]])  # 2.9, 3.1, 5.7 Å at 0.1 Å/px
    assert farther_than(c, si, 0.1, 3.0).tolist() == [False, True, True]
    assert farther_than(c, np.zeros((0, 2)), 0.1, 3.0).tolist() == [True, True, True]
    assert farther_than(np.zeros((0, 2)), si, 0.1, 3.0).shape == (0,)
    two = np.vstack([si, [[10.0, 20.0]]])  # every Si counts: the third C is 1 Å from one
    assert farther_than(c, two, 0.1, 3.0).tolist() == [False, True, False]
