"""The pixel size from the detected C-C bond length of graphene (a real-space refinement).

The FFT calibration (:func:`atomlens.chem.calibrate.calibrate_lattice`) measures the
lattice period from a few broad spots; on a small, noisy crop (a 128² LibraryNet patch,
~8 periods) those spots scatter by a few %. Atoms give a second, independent reading:
graphene's C-C bond is 1.42 Å, so the median first-shell C-C distance of the detected C
(in pixels) implies ``pixel_size = 1.42 / median``. Only C away from every Si (beyond
``away_A``: the Si's out-of-plane distortion and its probe halo move its neighbours) and
away from the frame's edge count; each C contributes its distances to its three nearest
C, kept within ``tol`` of the expected bond (first shell only).

Measured 2026-12-05 (detections of the shipped model at the calibrated pixel size,
local pass off): on every 3rd frame of the 48-frame Si1C3 movie binned 2x2 (LibraryNet's
0.153 Å/px, 128² px; truth: the full movie's FFT) the lattice calibration errs by
-0.26 ± 0.37 % (max 0.71 %), this reading by +0.04 ± 0.74 % (max 1.74 %); on the
real graphene files (256² centre crop / 512² grain boundary) by +0.93 % (si-2nm),
+0.90 / +0.03 % (grain boundary), +0.93 % (movie frame 0), where the FFT is exact. On
the LibraryNet patches it reads +3 % above the lattice calibration on average at
0.15 Å/px and within 1 % at 0.077 Å/px; used as the patches' pixel size it scores
worse held out (bench/librarynet_cv.py --calib lattice,bond: 71/79 vs 73/79 all
found), so detection and calibration do not use it.

Units: positions in pixels (row, column); ``pixel_size`` in Å/px; distances in Å where
named ``_A``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from atomlens.chem.calibrate import BOND_LENGTHS
from atomlens.geometry.nearby import farther_than

#: Graphene's C-C bond (Å), as calibration knows it.
GRAPHENE_BOND_A = BOND_LENGTHS["graphene"]


@dataclass(frozen=True)
class BondScale:
    """The C-C bond length measured in one frame.

    Attributes
    ----------
    bond_px : median first-shell C-C distance (pixels); NaN when too few distances.
    n_bonds : distances that went into the median (each bond counted from both ends).
    spread_pct : interquartile range / median of those distances, %.
    pixel_size : ``bond_A / bond_px`` (Å/px); NaN when ``bond_px`` is.
    """

    bond_px: float
    n_bonds: int
    spread_pct: float
    pixel_size: float


def cc_bond_scale(
    yx: np.ndarray,
    cls: np.ndarray,
    pixel_size: float,
    shape: tuple[int, int],
    *,
    bond_A: float = GRAPHENE_BOND_A,
    away_A: float = 3.0,
    border_A: float = 1.5,
    tol: float = 0.2,
    min_bonds: int = 10,
    species: str = "C",
) -> BondScale:
    """The median C-C bond of atoms ``yx`` (N, 2) px with species ``cls`` (N,) in a frame
    of ``shape`` (Y, X), and the pixel size it implies.

    ``pixel_size`` (Å/px) is the current estimate: it sets ``away_A`` and ``border_A``
    in pixels and the first guess of the bond (``bond_A / pixel_size``); distances
    within ``tol + 0.1`` of that guess are kept, then those within ``tol`` of their
    median. Atoms of species other than ``species`` (Si) exclude the C within
    ``away_A`` of them. Fewer than ``min_bonds`` distances: NaN.
    """
    if not (pixel_size and np.isfinite(pixel_size) and pixel_size > 0):
        raise ValueError(f"pixel_size must be a positive number of Å per pixel, got {pixel_size!r}")
    yx = np.asarray(yx, float).reshape(-1, 2)
    cls = np.asarray(cls).astype(str)
    nan = BondScale(float("nan"), 0, float("nan"), float("nan"))
    c, other = yx[cls == species], yx[cls != species]
    if len(c) < 4:
        return nan
    ok = farther_than(c, other, pixel_size, away_A)
    m = border_A / pixel_size
    ok &= (c.min(1) >= m) & (c[:, 0] <= shape[0] - 1 - m) & (c[:, 1] <= shape[1] - 1 - m)
    if not ok.any():
        return nan
    d, _ = cKDTree(c).query(c[ok], k=4)
    d = d[:, 1:].ravel()
    d = d[np.isfinite(d) & (np.abs(d * pixel_size / bond_A - 1) < tol + 0.1)]
    if len(d) < min_bonds:
        return BondScale(float("nan"), len(d), float("nan"), float("nan"))
    d = d[np.abs(d / np.median(d) - 1) < tol]
    if len(d) < min_bonds:
        return BondScale(float("nan"), len(d), float("nan"), float("nan"))
    med = float(np.median(d))
    spread = float(100 * np.subtract(*np.percentile(d, [75, 25])) / med)
    return BondScale(med, int(len(d)), spread, bond_A / med)


def table_bond_scale(
    atoms: pd.DataFrame, pixel_size: float, shape: tuple[int, int], **kw
) -> BondScale:
    """:func:`cc_bond_scale` of one frame's atom table (``y``, ``x`` px, ``cls``)."""
    return cc_bond_scale(
        atoms[["y", "x"]].to_numpy(float),
        atoms["cls"].astype(str).to_numpy(),
        pixel_size,
        shape,
        **kw,
    )


__all__ = ["GRAPHENE_BOND_A", "BondScale", "cc_bond_scale", "table_bond_scale"]
