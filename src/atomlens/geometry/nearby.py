"""Which points lie away from others: the selector of "the C farther than ``away_A``
from every Si" that the Si motif's lattice direction
(:func:`atomlens.atoms.si_motif.lattice_angle`) and the C-C bond scale
(:func:`atomlens.chem.bond_scale.cc_bond_scale`) both use.

Units: positions in pixels (row, column); ``pixel_size`` in Å/px; distances in Å.
"""

from __future__ import annotations

import numpy as np


def farther_than(
    yx: np.ndarray, others: np.ndarray, pixel_size: float, away_A: float
) -> np.ndarray:
    """(N,) bool: which of the points ``yx`` (N, 2) px lie farther than ``away_A`` Å from
    every point of ``others`` (M, 2) px (``pixel_size`` Å/px). All True when there are
    no ``others``. Distances are exact (every pair: meant for a few dopants among a
    frame's atoms, M small)."""
    yx = np.asarray(yx, float).reshape(-1, 2)
    others = np.asarray(others, float).reshape(-1, 2)
    if not len(others) or not len(yx):
        return np.ones(len(yx), bool)
    d = np.hypot(*(yx[:, None] - others[None]).transpose(2, 0, 1)).min(1)
    return d * pixel_size > away_A


__all__ = ["farther_than"]
