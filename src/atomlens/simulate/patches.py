"""Random graphene structures for detector training: lattice, Si motifs, defects, holes.

A :class:`Patch` is atom positions in Å plus species. :func:`graphene_patch` builds one
on the honeycomb of :func:`atomlens.simulate.lattice.honeycomb` (the project's one
lattice builder), strains and rotates it, then adds what real graphene movies show:

- Si dopants as the motifs seen in experiment (:data:`SI_MOTIFS`): 3-fold Si (Si1C3,
  out of plane: Si-C 1.42-1.8 Å in projection), 4-fold Si in a divacancy (Si1C4, Si-C
  1.7-1.95 Å), dimers (Si2C4 ortho, Si2C5 meta, Si2C6 para) and trimers (Si3C6 meta
  triangle, Si3C5 chain), with the neighbouring C relaxed outwards;
- vacancies, Stone-Wales rotations, holes with irregular edges (Si often on the edge),
  and sometimes a grain boundary between two rotated grains.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.spatial import cKDTree

from atomlens.simulate.lattice import A_LATTICE_A, CC_BOND_A, honeycomb

LATTICE_A = A_LATTICE_A
SI_MOTIFS = ("Si1C3", "Si1C4", "Si2C4", "Si2C5", "Si2C6", "Si3C6", "Si3C5")
"""Si motifs :func:`add_si_motif` can build (named by Si count and bonded C count)."""
_MOTIF_P = np.array([0.40, 0.22, 0.07, 0.07, 0.08, 0.11, 0.05])


@dataclass
class Patch:
    """Atom positions of a structure.

    yx_A : (N, 2) positions in Å; species : (N,) str ('C', 'Si'); size_A : edge of the
    square (Å) the structure covers; hole_centres_A (H, 2) / hole_radii_A (H,) describe
    the holes (vacuum) cut into the film; motifs : names of the Si motifs placed.
    """

    yx_A: np.ndarray
    species: np.ndarray
    size_A: float
    hole_centres_A: np.ndarray
    hole_radii_A: np.ndarray
    motifs: tuple[str, ...] = ()


def _grain(size_A: float, angle: float, offset: np.ndarray, strain: np.ndarray) -> np.ndarray:
    """Graphene atoms covering a ``size_A`` square (Å), rotated and strained; (N, 2) yx."""
    pos, _, _ = honeycomb((-2.0, size_A + 2.0, -2.0, size_A + 2.0), angle, tuple(offset))
    c = size_A / 2
    return (pos - c) @ strain.T + c


def _push(yx: np.ndarray, centre: np.ndarray, idx: np.ndarray, dist: np.ndarray) -> None:
    """Move atoms ``idx`` radially so they sit ``dist`` Å from ``centre`` (in place)."""
    v = yx[idx] - centre
    r = np.hypot(v[:, 0], v[:, 1])[:, None]
    yx[idx] = centre + v / np.maximum(r, 1e-6) * np.asarray(dist).reshape(-1, 1)


def add_si_motif(
    yx: np.ndarray,
    species: np.ndarray,
    keep: np.ndarray,
    site: int,
    kind: str,
    rng: np.random.Generator,
) -> bool:
    """Build Si motif ``kind`` (one of :data:`SI_MOTIFS`) around lattice atom ``site``,
    editing ``yx`` (Å), ``species`` and ``keep`` (atoms removed -> False) in place.

    Returns False (nothing changed) when the site lacks the neighbours the motif needs
    (edge of the patch, hole, another motif).
    """
    tree = cKDTree(yx)

    def nbrs(i: int) -> np.ndarray:
        j = np.array(
            [k for k in tree.query_ball_point(yx[i], 1.15 * CC_BOND_A) if k != i and keep[k]]
        )
        return j.astype(int)

    n0 = nbrs(site)
    if len(n0) != 3 or species[site] != "C" or any(species[k] != "C" for k in n0):
        return False
    # projected Si-C bond, Å: a 3-fold Si sits out of plane, so its bonds look 1.4-1.8 Å
    si_c = lambda m: rng.uniform(1.42, 1.8, m)  # noqa: E731
    if kind == "Si1C3":
        species[site] = "Si"
        _push(yx, yx[site], n0, si_c(3))
        return True
    if kind == "Si1C4":  # Si in a divacancy: remove a C-C pair, Si at its centre
        j = int(rng.choice(n0))
        outer = np.setdiff1d(np.concatenate([n0, nbrs(j)]), [site, j])
        if len(outer) != 4:
            return False
        mid = (yx[site] + yx[j]) / 2
        keep[j] = False
        yx[site] = mid
        species[site] = "Si"
        _push(yx, mid, outer, rng.uniform(1.7, 1.95, 4))
        return True
    # clusters on one hexagon through ``site``: its centre is site + (a - site) + (b - site)
    a, b = rng.choice(n0, 2, replace=False)
    centre = yx[a] + yx[b] - yx[site]
    ring = np.array([q for q in tree.query_ball_point(centre, 1.15 * CC_BOND_A) if keep[q]], int)
    if len(ring) != 6:
        return False
    ang = np.arctan2(*(yx[ring] - centre).T)
    ring = ring[np.argsort(ang)]
    ring = list(np.roll(ring, -int(np.flatnonzero(ring == site)[0])))
    pick = {
        "Si2C4": [0, 1],
        "Si2C5": [0, 2],
        "Si2C6": [0, 3],
        "Si3C6": [0, 2, 4],
        "Si3C5": [0, 1, 2],
    }.get(kind)
    if pick is None:
        raise ValueError(f"unknown Si motif {kind!r}; use one of {SI_MOTIFS}")
    si = [ring[p] for p in pick]
    if any(species[s] != "C" for s in si):
        return False
    for s in si:
        species[s] = "Si"
    for s in si:
        c_nb = np.array([q for q in nbrs(s) if species[q] == "C"], int)
        if len(c_nb):
            _push(yx, yx[s], c_nb, si_c(len(c_nb)))
        si_nb = np.array([q for q in nbrs(s) if species[q] == "Si"], int)
        for q in si_nb:  # Si-Si bonds ~2.2-2.3 Å: move both apart symmetrically
            mid = (yx[s] + yx[q]) / 2
            _push(yx, mid, np.array([s, q]), np.full(2, rng.uniform(1.05, 1.15)))
    return True


def graphene_patch(
    size_A: float,
    rng: np.random.Generator,
    *,
    si_frac: float | None = None,
    defects: bool = True,
    n_motifs: int | None = None,
) -> Patch:
    """A random graphene structure in a ``size_A`` x ``size_A`` Å square.

    Random orientation and strain (~1 %); ``n_motifs`` Si motifs (default: 1 + Poisson
    with 1.2 per 25 Å square, none in 10 % of patches) kept ≥ 6 Å apart; isolated
    substitutional Si at ``si_frac`` (default a random 0-3 %); with ``defects``:
    vacancies, Stone-Wales rotations, holes (edge atoms kept, Si often at edges) and
    sometimes a grain boundary. Positions in Å.
    """
    strain = np.eye(2) + rng.normal(0, 0.012, (2, 2))
    yx = _grain(size_A, rng.uniform(0, np.pi / 3), rng.uniform(-2, 2, 2), strain)
    if defects and rng.random() < 0.2:  # grain boundary: a second grain across a line
        yx2 = _grain(size_A, rng.uniform(0, np.pi / 3), rng.uniform(-2, 2, 2), strain)
        theta = rng.uniform(0, np.pi)
        normal = np.array([np.cos(theta), np.sin(theta)])
        c0 = size_A / 2 + rng.uniform(-0.3, 0.3) * size_A
        wav, k = rng.uniform(0, 3), rng.uniform(0.05, 0.3)

        def side(p: np.ndarray) -> np.ndarray:
            t = p @ np.array([-normal[1], normal[0]])
            return (p @ normal) - c0 - wav * np.sin(k * t)

        a, b = yx[side(yx) < 0], yx2[side(yx2) >= 0]
        if len(a) and len(b):
            d, _ = cKDTree(a).query(b)
            b = b[d > 1.15]
        yx = np.concatenate([a, b])
    yx = yx.copy()
    n = len(yx)
    species = np.full(n, "C", dtype=object)
    keep = np.ones(n, bool)
    motifs: list[str] = []
    # Si motifs first, on intact lattice
    if n_motifs is None:
        n_motifs = 0 if rng.random() < 0.1 else 1 + rng.poisson(1.2 * (size_A / 25.0) ** 2)
    placed: list[np.ndarray] = []
    inner = np.flatnonzero(np.all((yx > 3) & (yx < size_A - 3), axis=1))
    for _ in range(int(n_motifs) * 4):
        if len(motifs) >= n_motifs or not len(inner):
            break
        site = int(rng.choice(inner))
        if any(np.hypot(*(yx[site] - p)) < 6.0 for p in placed):
            continue
        kind = str(rng.choice(SI_MOTIFS, p=_MOTIF_P))
        if add_si_motif(yx, species, keep, site, kind, rng):
            motifs.append(kind)
            placed.append(yx[site].copy())
    holes_c, holes_r = np.zeros((0, 2)), np.zeros(0)
    if defects:
        tree = cKDTree(yx)
        for _ in range(rng.poisson(size_A**2 / 1500)):  # Stone-Wales-like bond rotations
            i = int(rng.integers(n))
            d, j = tree.query(yx[i], k=2)
            if d[1] < 1.6 and species[i] == "C" and species[j[1]] == "C":
                j = j[1]
                mid = (yx[i] + yx[j]) / 2
                for m in (i, j):
                    v = yx[m] - mid
                    yx[m] = mid + np.array([-v[1], v[0]])
        keep &= (rng.random(n) > rng.uniform(0, 0.015)) | (species == "Si")  # vacancies
        n_holes = rng.choice([0, 0, 0, 1, 1, 2])
        if n_holes:
            holes_c = rng.uniform(0, size_A, (n_holes, 2))
            holes_r = rng.uniform(2.5, max(3.0, size_A / 5), n_holes)
            for c, r in zip(holes_c, holes_r):
                v = yx - c
                ang = np.arctan2(v[:, 0], v[:, 1])
                rr = r * (
                    1
                    + 0.25 * np.sin(3 * ang + rng.uniform(0, 6))
                    + 0.15 * np.sin(5 * ang + rng.uniform(0, 6))
                )
                keep &= np.hypot(v[:, 0], v[:, 1]) > rr
    yx, species = yx[keep], species[keep]
    n = len(yx)
    if n:
        frac = rng.choice([0.0, 0.0, 0.003, 0.01, 0.02]) if si_frac is None else si_frac
        is_si = (rng.random(n) < frac) | (species == "Si")
        if defects and len(holes_c) and rng.random() < 0.6:
            cnt = np.array([len(v) - 1 for v in cKDTree(yx).query_ball_point(yx, 1.7)])
            edge = np.flatnonzero(cnt < 3)
            if len(edge):  # Si likes edges
                is_si[rng.choice(edge, min(len(edge), int(rng.integers(1, 4))), replace=False)] = (
                    True
                )
        species[is_si] = "Si"
    yx = yx + rng.normal(0, rng.uniform(0, 0.04), yx.shape)  # thermal / strain noise
    return Patch(yx, species.astype(str), float(size_A), holes_c, holes_r, tuple(motifs))
