"""Stitch two grains along a boundary line with bonds taken from geometry.

Under-coordinated atoms near the line are bonded shortest pair first (never making a
3- or 4-ring or a crossing, at most 3 bonds per atom), dangling atoms are removed and
the band is relaxed; repeating with a growing reach closes the seam into mostly 5-7
pairs (with some 8-rings and 2-fold atoms, as in real small-angle boundaries).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from atomlens.simulate.lattice import _segments_cross
from atomlens.simulate.sheet import Sheet


def _would_make_small_ring(sheet: Sheet, a: int, b: int) -> bool:
    if sheet.nbrs[a] & sheet.nbrs[b]:
        return True  # 3-ring
    return any(sheet.nbrs[p] & sheet.nbrs[b] for p in sheet.nbrs[a])  # 4-ring


def _crosses(sheet: Sheet, a: int, b: int, tree: cKDTree, alive_sites: np.ndarray) -> bool:
    near = alive_sites[tree.query_ball_point(sheet.pos[a], 5.0)]
    segs = [(p, q) for p in near for q in sheet.nbrs[p] if p < q and not {p, q} & {a, b}]
    if not segs:
        return False
    s = np.array(segs)
    return bool(
        _segments_cross(sheet.pos[a], sheet.pos[b], sheet.pos[s[:, 0]], sheet.pos[s[:, 1]]).any()
    )


def stitch(
    sheet: Sheet, point_A: np.ndarray, normal: np.ndarray, band_A: float = 4.0, relax: bool = True
) -> None:
    """Bond the two grains of ``sheet`` across the line through ``point_A`` (Å) with unit
    ``normal`` (y, x), in place."""

    def band() -> np.ndarray:
        d = np.abs((sheet.pos - point_A) @ normal)
        return np.flatnonzero(sheet.alive & (d < band_A))

    for reach in (1.8, 2.2, 2.6, 2.9):
        alive_sites = np.flatnonzero(sheet.alive)
        tree = cKDTree(sheet.pos[alive_sites])
        sites = band()
        cand = sites[sheet.degree()[sites] < 3]
        if len(cand) > 1:
            pairs = np.array(sorted(cKDTree(sheet.pos[cand]).query_pairs(reach)), dtype=np.int64)
            pairs = cand[pairs.reshape(-1, 2)]
            length = np.linalg.norm(sheet.pos[pairs[:, 0]] - sheet.pos[pairs[:, 1]], axis=1)
            for k in np.argsort(length, kind="stable"):
                a, b = int(pairs[k, 0]), int(pairs[k, 1])
                if b in sheet.nbrs[a] or len(sheet.nbrs[a]) >= 3 or len(sheet.nbrs[b]) >= 3:
                    continue
                if _would_make_small_ring(sheet, a, b) or _crosses(sheet, a, b, tree, alive_sites):
                    continue
                sheet.bond(a, b)
        # atoms with fewer than two bonds in the band leave
        while True:
            sites = band()
            bad = sites[(sheet.degree()[sites] < 2) & ~sheet.protected[sites]]
            if len(bad) == 0:
                break
            for i in bad:
                sheet.remove(int(i))
        if relax:
            sheet.relax(band(), hops=1, n_iter=120)
