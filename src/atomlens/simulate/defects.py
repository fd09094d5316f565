"""Defect operations on a :class:`Sheet` and the registry that gives defects their ids.

Operations: substitutional 3-fold Si, 4-fold Si in a divacancy, vacancy, bond rotation
(Stone-Wales 5-7-7-5, or a 5-7 pair next to a vacancy), hole. Each edits the bond graph
explicitly, so the truth topology comes from construction, not from distances.
"""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

import numpy as np

from atomlens.simulate.lattice import _segments_cross
from atomlens.simulate.sheet import Z_C, Z_SI, Sheet


@dataclass
class Defect:
    """One defect with a persistent id.

    ``kind``: ``'Si'`` (type from its coordination: Si3, Si4, Si2...), ``'SW'``, ``'5-7'``,
    ``'vacancy'``, ``'hole'`` or ``'grain_boundary'``. ``atoms``: core atom ids (the Si;
    the rotated bond's two atoms; a vacancy's under-coordinated neighbours). ``sites_A``:
    positions (Å, sample frame) of removed sites (vacancy) or the seed of a hole.
    """

    defect_id: int
    kind: str
    atoms: list[int] = field(default_factory=list)
    sites_A: list[tuple[float, float]] = field(default_factory=list)


class Registry:
    """All defects ever made, in creation order; ``active`` ones are still present."""

    def __init__(self) -> None:
        self.defects: list[Defect] = []
        self.active: list[Defect] = []

    def new(
        self,
        kind: str,
        atoms: list[int] | None = None,
        sites_A: list[tuple[float, float]] | None = None,
    ) -> Defect:
        d = Defect(len(self.defects), kind, list(atoms or []), list(sites_A or []))
        self.defects.append(d)
        self.active.append(d)
        return d

    def retire(self, d: Defect) -> None:
        if d in self.active:
            self.active.remove(d)

    def of_kind(self, *kinds: str) -> list[Defect]:
        return [d for d in self.active if d.kind in kinds]

    def core_ids(self, *kinds: str) -> set[int]:
        return {a for d in self.of_kind(*kinds) for a in d.atoms}


# ---------------------------------------------------------------- operations
def make_si3(sheet: Sheet, i: int) -> None:
    """Substitute the C on site ``i`` with Si (3-fold)."""
    sheet.z[i] = Z_SI


def make_si4(sheet: Sheet, i: int, j: int) -> int:
    """Remove the bonded C pair (i, j) and put one Si at their midpoint bonded to the
    four former neighbours; returns the new site."""
    outer = sorted((sheet.nbrs[i] | sheet.nbrs[j]) - {i, j})
    mid = (sheet.pos[i] + sheet.pos[j]) / 2
    grain = int(sheet.grain[i])
    sheet.remove(i)
    sheet.remove(j)
    s = sheet.add_site(mid, Z_SI, sublattice=-1, grain=grain)
    for k in outer:
        sheet.bond(s, k)
    return s


def make_vacancy(sheet: Sheet, i: int) -> list[int]:
    """Remove the atom on site ``i``; returns its former neighbour sites."""
    nb = sorted(sheet.nbrs[i])
    sheet.remove(i)
    return nb


def rotate_bond(sheet: Sheet, i: int, j: int) -> bool:
    """Rotate bond i-j by 90° about its midpoint and reconnect (a Stone-Wales step).

    Both atoms need two other neighbours. The four outer neighbours are shared out two
    and two by shortest total distance. Returns ``False`` (and changes nothing) if the
    result would cross another bond or crowd atoms.
    """
    ni, nj = sorted(sheet.nbrs[i] - {j}), sorted(sheet.nbrs[j] - {i})
    if j not in sheet.nbrs[i] or len(ni) != 2 or len(nj) != 2 or set(ni) & set(nj):
        return False
    old_pos = sheet.pos[[i, j]].copy()
    mid = old_pos.mean(0)
    rot = np.array([[0.0, -1.0], [1.0, 0.0]])
    new_pos = mid + (old_pos - mid) @ rot.T
    outer = ni + nj
    best, best_cost = None, np.inf
    for pick in itertools.combinations(range(4), 2):
        to_i = [outer[k] for k in pick]
        to_j = [outer[k] for k in range(4) if k not in pick]
        cost = sum(np.linalg.norm(sheet.pos[k] - new_pos[0]) for k in to_i) + sum(
            np.linalg.norm(sheet.pos[k] - new_pos[1]) for k in to_j
        )
        if cost < best_cost:
            best, best_cost = (to_i, to_j), cost
    assert best is not None
    to_i, to_j = best
    if sorted(to_i) == sorted(ni):
        return False  # nothing would change
    # planarity and crowding checks against the neighbourhood
    region = sheet.neighbourhood([i, j], 3)
    others = [int(s) for s in region if s not in (i, j)]
    if len(others):
        d = np.linalg.norm(sheet.pos[others][:, None, :] - new_pos[None], axis=2)
        if d.min() < 1.0:
            return False
    new_bonds = [(i, k) for k in to_i] + [(j, k) for k in to_j]
    trial = sheet.pos.copy()
    trial[[i, j]] = new_pos
    local = [(a, b) for a in others for b in sheet.nbrs[a] if a < b and b not in (i, j)]
    if local:
        la = np.array(local)
        for a, b in new_bonds:
            keep = (la[:, 0] != b) & (la[:, 1] != b)
            if (
                keep.any()
                and _segments_cross(
                    trial[a], trial[b], trial[la[keep, 0]], trial[la[keep, 1]]
                ).any()
            ):
                return False
    for k in ni:
        sheet.unbond(i, k)
    for k in nj:
        sheet.unbond(j, k)
    for a, b in new_bonds:
        sheet.bond(a, b)
    sheet.pos[[i, j]] = new_pos
    sheet.sublattice[[i, j]] = -1
    return True


def make_hole(sheet: Sheet, centre_A: np.ndarray, radius_A: float) -> list[int]:
    """Remove every unprotected atom within ``radius_A`` of ``centre_A`` (Å), then
    atoms left with fewer than two bonds; returns the removed sites."""
    d = np.linalg.norm(sheet.pos - centre_A, axis=1)
    removed = [int(i) for i in np.flatnonzero(sheet.alive & ~sheet.protected & (d < radius_A))]
    for i in removed:
        sheet.remove(i)
    removed += prune_dangling(sheet, min_degree=2)
    return removed


def prune_dangling(sheet: Sheet, min_degree: int = 1) -> list[int]:
    """Repeatedly remove unprotected atoms with fewer than ``min_degree`` bonds."""
    removed: list[int] = []
    while True:
        deg = sheet.degree()
        bad = np.flatnonzero(sheet.alive & ~sheet.protected & (deg < min_degree))
        if len(bad) == 0:
            return removed
        for i in bad:
            sheet.remove(int(i))
        removed += [int(i) for i in bad]


def is_plain_c(sheet: Sheet, i: int) -> bool:
    """A living, unprotected 3-fold C whose neighbours are all 3-fold C."""
    if not sheet.alive[i] or sheet.protected[i] or sheet.z[i] != Z_C or len(sheet.nbrs[i]) != 3:
        return False
    return all(sheet.z[j] == Z_C and len(sheet.nbrs[j]) == 3 for j in sheet.nbrs[i])
