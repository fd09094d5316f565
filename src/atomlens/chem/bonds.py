"""Bonds between atoms: species-pair length limits and maximum coordination.

Nodes are positional row numbers of the atom table (``0 .. N-1``); :func:`find_bonds`
handles every frame at once (one k-d tree with the frame as a far-apart third axis).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import networkx as nx
import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

#: Default maximum bond lengths (Å) per unordered species pair, chosen in the gap
#: between the first and second neighbour shells. C-C: 1.42 Å in graphene, up to
#: ~1.6 Å at strained defects; the second neighbour is at 2.46 Å, so 1.85 Å leaves
#: room for ~0.1 Å of detection noise. Si-C: ~1.5 Å apparent for a 3-fold Si (it sits
#: out of plane; 150 pm in Ziatdinov et al. 2017) to 1.7-2.0 Å for a 4-fold Si in a
#: divacancy (172 pm in the paper; up to 1.98 Å in the simulator); the nearest
#: non-bonded C is at >= 2.45 Å in the lattice but can come to 2.2 Å at a vacancy
#: next to the Si: 2.15 Å. Si-Si: 2.2-2.4 Å in dimers: 2.6 Å.
DEFAULT_MAX_BOND_A: dict[tuple[str, str], float] = {
    ("C", "C"): 1.85,
    ("C", "Si"): 2.15,
    ("Si", "Si"): 2.6,
}
#: Typical bond lengths (Å): over-coordinated atoms drop the bond that is longest
#: *relative to its pair's typical length* first, so a 1.6 Å Si-C bond (short for Si-C)
#: survives against a 1.5 Å C-C bond (long for C-C) to a spurious neighbour.
DEFAULT_TYPICAL_BOND_A: dict[tuple[str, str], float] = {
    ("C", "C"): 1.42,
    ("C", "Si"): 1.75,
    ("Si", "Si"): 2.3,
}
#: Used for species pairs not listed above (Å).
DEFAULT_OTHER_BOND_A = 2.2
#: Maximum number of bonds per species (C sp2: 3; Si in graphene: up to 4).
DEFAULT_MAX_COORDINATION: dict[str, int] = {"C": 3, "Si": 4}
DEFAULT_OTHER_COORDINATION = 4

#: Smallest angle between two bonds of one atom (degrees). Graphene has none below
#: ~80° (a 4-fold Si in a divacancy: ~82-98°; 5-rings: 108°); detector duplicates in the
#: halo of a bright Si make 40-65° angles.
DEFAULT_MIN_ANGLE_DEG = 65.0

BOND_COLUMNS = ["frame", "a", "b", "length_px", "length_A", "pair"]


@dataclass(frozen=True)
class SiRules:
    """Si-specific coordination rules from bonding geometry, applied by
    :func:`find_bonds` after the length cutoffs, the coordination trim and the angle
    trim (each off at 0; :data:`SIM_SI_RULES` has every threshold chosen on
    simulated sites).

    min_si_c_A : a C closer to a Si than this (Å) is no atom (a duplicate of the Si's
        halo or of a neighbour: no Si-C bond projects shorter than ~1.3 Å, a detected
        one on the Si's halo to ~1.15 Å); it gets no bonds at all, so it cannot displace a true bond of the Si or of a C.
    gap_deg : the "4th bond into the gap" rule. A Si with exactly three bonds, all to C,
        whose largest angular gap between them is at least this (degrees; a Si in a
        divacancy missing one bond leaves ~180°, a 3-fold Si ~120°) takes the nearest C
        inside that gap up to ``gap_max_A`` (Å) whose angles to both flanking bonds are
        at least ``find_bonds``' ``min_angle_deg`` (in a divacancy the Si-C bonds are
        1.85-2.0 Å and the detected Si may sit off-centre, so the 4th C can lie past the
        pair cutoff).
    gap_max_A : the longest Si-C bond the gap rule accepts (Å).
    gap_needs_room : the gap rule takes only a C that has fewer bonds than its maximum
        coordination (a C with three C-C bonds is a lattice atom, not the Si's).
    shape_gap_deg : a Si with four bonds, all to C, whose largest angular gap is at least
        this (degrees; a divacancy's four bonds leave gaps of ~82° and ~98°) drops the
        bond whose removal leaves the three gaps nearest 120° (a 3-fold Si with a
        spurious 4th neighbour).
    """

    min_si_c_A: float = 0.0
    gap_deg: float = 0.0
    gap_max_A: float = 2.35
    gap_needs_room: bool = True
    shape_gap_deg: float = 0.0

    @property
    def active(self) -> bool:
        return self.min_si_c_A > 0 or self.gap_deg > 0 or self.shape_gap_deg > 0


#: The Si rules with every threshold chosen on simulated sites (bench/si_bond_rules.py:
#: 840 probe-rendered Si1C3 / Si1C4 / Si2C4 / Si2C6 / Si3C6 sites at 0.05-0.2 Å/px,
#: seeds 10000-10839, detected as LibraryNet is: shipped model, local pass, ring search):
#: min_si_c_A 1.0 Å, the largest value that breaks no simulated site (the detector
#: places true C as close as 1.16 Å to a Si on its halo; 1.05 Å breaks 1 site, 1.2 Å 20;
#: 0.9-1.0 Å removes the 0.86-0.99 Å halo duplicates of 5 Si1C4). gap_deg 160°: between
#: the largest gap of a rightly 3-bonded Si (150°) and the smallest gap of a Si1C4 left
#: 3-fold without a duplicate (173°). gap_max_A 2.35 Å: the longest simulated Si1C4 bond
#: (2.03 Å) plus the largest detection elongation of one (0.30 Å); 2.2-2.8 Å score the
#: same. shape_gap_deg 115°: above the largest gap among a Si1C4's four detected bonds
#: (109°), below a 3-fold Si's 120° (it fires on no simulated site).
#: Held out (seeds 20000-20839): Si1C3+Si1C4 coordination right 467 -> 476/480, Si
#: clusters 357/360 either way, nothing broken. On the 79 real LibraryNet patches (never
#: used for a choice) it turns 41/44 into 40/44 (see docs/detection.md), so it is off.
SIM_SI_RULES = SiRules(min_si_c_A=1.0, gap_deg=160.0, gap_max_A=2.35, shape_gap_deg=115.0)
#: The Si rules :func:`find_bonds` applies unless told otherwise: off (``SIM_SI_RULES``
#: is a tested option, not the default).
DEFAULT_SI_RULES = SiRules()


def pair_key(s1: str, s2: str) -> tuple[str, str]:
    """Species pair in a canonical (sorted) order."""
    return (s1, s2) if s1 <= s2 else (s2, s1)


def _normalise_limits(max_bond_A: Mapping | None) -> dict[tuple[str, str], float]:
    limits = dict(DEFAULT_MAX_BOND_A)
    for key, value in (max_bond_A or {}).items():
        if isinstance(key, str):
            parts = key.replace("_", "-").split("-")
            if len(parts) != 2:
                raise ValueError(f"bond limit key {key!r} must name two species like 'C-Si'")
            key = tuple(parts)
        limits[pair_key(*key)] = float(value)
    return limits


def find_bonds(
    atoms: pd.DataFrame,
    pixel_size: float,
    max_bond_A: Mapping | None = None,
    max_coordination: Mapping[str, int] | None = None,
    other_bond_A: float = DEFAULT_OTHER_BOND_A,
    other_coordination: int = DEFAULT_OTHER_COORDINATION,
    min_angle_deg: float = DEFAULT_MIN_ANGLE_DEG,
    si_rules: SiRules | None = None,
) -> pd.DataFrame:
    """All bonds of all frames as a table.

    Parameters
    ----------
    atoms : the atom table (``frame``, ``y``, ``x`` in pixels, ``cls`` species).
    pixel_size : Å per pixel.
    max_bond_A : maximum bond length (Å) per species pair, e.g. ``{"C-Si": 2.1}``;
        merged over :data:`DEFAULT_MAX_BOND_A`.
    max_coordination : maximum bonds per species, merged over the defaults (C 3, Si 4).
        An over-coordinated atom loses its longest bonds first, lengths taken relative
        to :data:`DEFAULT_TYPICAL_BOND_A`.
    min_angle_deg : two bonds of one atom closer than this angle (degrees) cannot both
        be real (their far ends would be bonded: a 3-ring); the longer (relative) one
        goes. 0 switches the rule off.
    si_rules : :class:`SiRules` (default :data:`DEFAULT_SI_RULES`): the minimum Si-C
        distance, the 4th bond into a divacancy-wide gap and the 4-bond shape check.

    Returns
    -------
    DataFrame with ``frame, a, b`` (positional rows of ``atoms``, ``a < b``),
    ``length_px``, ``length_A`` and ``pair`` (``"C-Si"``), sorted by frame, a, b.
    When the atoms carry ``sigma_A`` (per-axis position standard error, Å; see
    :mod:`atomlens.atoms.uncertainty`), also ``length_sigma_pm``: the bond length's
    standard error in pm, ``100 · sqrt(σ_a² + σ_b²)`` (independent, isotropic errors
    of the two ends projected on the bond; NaN where an end has no σ).
    """
    if not (pixel_size and np.isfinite(pixel_size) and pixel_size > 0):
        raise ValueError(f"pixel_size must be a positive number of Å per pixel, got {pixel_size!r}")
    n = len(atoms)
    if n < 2:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(BOND_COLUMNS, "iiiffO")})
    rules = DEFAULT_SI_RULES if si_rules is None else si_rules
    limits = _normalise_limits(max_bond_A)
    coord = dict(DEFAULT_MAX_COORDINATION)
    coord.update(max_coordination or {})
    species = atoms["cls"].astype(str).to_numpy()
    names, codes = np.unique(species, return_inverse=True)
    k = len(names)
    limit_mat = np.full((k, k), float(other_bond_A))
    typical_mat = np.ones((k, k))
    for i in range(k):
        for j in range(k):
            key = pair_key(names[i], names[j])
            limit_mat[i, j] = limits.get(key, other_bond_A)
            typical_mat[i, j] = DEFAULT_TYPICAL_BOND_A.get(key, limit_mat[i, j] / 1.25)
    cap = np.array([coord.get(s, other_coordination) for s in names], dtype=int)[codes]

    frame = atoms["frame"].to_numpy()
    yx = atoms[["y", "x"]].to_numpy(dtype=float)
    span = float(np.ptp(yx)) + 1e3 if n else 1.0
    pts = np.column_stack([yx, (frame - frame.min()) * (10 * span)])
    rmax = float(limit_mat.max()) / pixel_size
    tree = cKDTree(pts)
    pairs = tree.query_pairs(rmax, output_type="ndarray")
    if len(pairs) == 0:
        return find_bonds(atoms.iloc[:0], pixel_size)
    a, b = pairs[:, 0], pairs[:, 1]
    length_px = np.hypot(*(yx[a] - yx[b]).T)
    keep = (length_px * pixel_size <= limit_mat[codes[a], codes[b]]) & (frame[a] == frame[b])
    if rules.min_si_c_A > 0:  # a C this close to a Si is no atom: none of its bonds
        si_c = ((species[a] == "Si") & (species[b] == "C")) | (
            (species[a] == "C") & (species[b] == "Si")
        )
        close = si_c & keep & (length_px * pixel_size < rules.min_si_c_A)
        ghost = np.zeros(n, bool)
        ghost[np.where(species[a[close]] == "C", a[close], b[close])] = True
        keep &= ~(ghost[a] | ghost[b])
    a, b, length_px = a[keep], b[keep], length_px[keep]
    a, b = np.minimum(a, b), np.maximum(a, b)

    # trim: bonds of over-coordinated atoms are accepted shortest first (lengths
    # relative to the pair's typical length) while both ends have room, so each such
    # atom keeps its shortest bonds and loses the longest; other bonds all stay
    relative = length_px * pixel_size / typical_mat[codes[a], codes[b]]
    deg = np.bincount(a, minlength=n) + np.bincount(b, minlength=n)
    over = deg > cap
    alive = np.ones(len(a), dtype=bool)
    contested = np.flatnonzero(over[a] | over[b])
    if len(contested):
        alive[contested] = False
        room = cap.copy()
        for k in contested[np.argsort(relative[contested], kind="stable")]:
            u, v = a[k], b[k]
            if room[u] > 0 and room[v] > 0:
                alive[k] = True
                room[u] -= 1
                room[v] -= 1
    a, b, length_px, relative = a[alive], b[alive], length_px[alive], relative[alive]
    if min_angle_deg > 0 and len(a):
        keep = _angle_trim(yx, a, b, relative, min_angle_deg)
        a, b, length_px = a[keep], b[keep], length_px[keep]
    if rules.active and len(a) and (species == "Si").any():
        a, b = _si_rules(yx, species, cap, tree, a, b, pixel_size, rules, min_angle_deg)
        a, b = np.minimum(a, b), np.maximum(a, b)
        length_px = np.hypot(*(yx[a] - yx[b]).T)
    pair = np.array(
        ["-".join(pair_key(s, t)) for s, t in zip(species[a], species[b])], dtype=object
    )
    out = pd.DataFrame(
        {
            "frame": frame[a].astype(int),
            "a": a.astype(int),
            "b": b.astype(int),
            "length_px": length_px,
            "length_A": length_px * pixel_size,
            "pair": pair,
        }
    )
    if "sigma_A" in atoms.columns:
        s = pd.to_numeric(atoms["sigma_A"], errors="coerce").to_numpy(dtype=float)
        out["length_sigma_pm"] = 100.0 * np.hypot(s[a], s[b])
    return out.sort_values(["frame", "a", "b"], ignore_index=True)


def _angle_trim(
    yx: np.ndarray, a: np.ndarray, b: np.ndarray, relative: np.ndarray, min_angle_deg: float
) -> np.ndarray:
    """(E,) bool bonds to keep: while two angularly adjacent bonds of one atom are
    closer than ``min_angle_deg``, the atom drops one of them (the bond in most narrow
    gaps, then the longer relative to its pair's typical length)."""
    keep = np.ones(len(a), dtype=bool)
    limit = np.radians(min_angle_deg)
    for _ in range(8):
        idx = np.flatnonzero(keep)
        src = np.concatenate([a[idx], b[idx]])
        dst = np.concatenate([b[idx], a[idx]])
        bond = np.concatenate([idx, idx])
        ang = np.arctan2(yx[dst, 0] - yx[src, 0], yx[dst, 1] - yx[src, 1])
        order = np.lexsort((ang, src))
        src, bond, ang = src[order], bond[order], ang[order]
        # next half-edge around the same atom (circularly)
        start = np.flatnonzero(np.r_[True, src[1:] != src[:-1]])
        end = np.r_[start[1:], len(src)]
        nxt = np.arange(1, len(src) + 1)
        nxt[end - 1] = start
        gap = (ang[nxt] - ang) % (2 * np.pi)
        bad = (gap < limit) & (nxt != np.arange(len(src)))
        if not bad.any():
            break
        # per atom, drop one bond: the one in most narrow gaps (the middle of three
        # crowded bonds), ties broken by the longer relative length
        pos = np.flatnonzero(bad)
        cand_src = np.concatenate([src[pos], src[pos]])
        cand_bond = np.concatenate([bond[pos], bond[nxt[pos]]])
        pairs, counts = np.unique(
            np.column_stack([cand_src, cand_bond]), axis=0, return_counts=True
        )
        score = counts + relative[pairs[:, 1]] / (1.0 + relative.max())
        order = np.lexsort((-score, pairs[:, 0]))
        first = np.r_[True, pairs[order, 0][1:] != pairs[order, 0][:-1]]
        keep[pairs[order][first, 1]] = False
    return keep


def _gaps(ang: np.ndarray) -> np.ndarray:
    """(k,) angular gaps (radians) from each sorted direction ``ang`` to the next."""
    return np.diff(np.r_[ang, ang[0] + 2 * np.pi])


def _si_rules(
    yx: np.ndarray,
    species: np.ndarray,
    cap: np.ndarray,
    tree: cKDTree,
    a: np.ndarray,
    b: np.ndarray,
    pixel_size: float,
    rules: SiRules,
    min_angle_deg: float,
) -> tuple[np.ndarray, np.ndarray]:
    """The bonds ``(a, b)`` after the :class:`SiRules` shape check and gap rule (the
    minimum distance is applied with the cutoffs). ``tree`` holds the atoms with the
    frame as a far-apart third axis (so a query never crosses frames)."""
    n = len(yx)
    edges = {(int(u), int(v)) for u, v in zip(a, b)}
    nbrs: dict[int, set[int]] = {}
    for u, v in edges:
        nbrs.setdefault(u, set()).add(v)
        nbrs.setdefault(v, set()).add(u)
    deg = np.zeros(n, int)
    for u, s in nbrs.items():
        deg[u] = len(s)

    def directions(i: int, js: np.ndarray) -> np.ndarray:
        d = yx[js] - yx[i]
        return np.arctan2(d[:, 0], d[:, 1])

    def drop(u: int, v: int) -> None:
        edges.discard((min(u, v), max(u, v)))
        nbrs[u].discard(v)
        nbrs[v].discard(u)
        deg[u] -= 1
        deg[v] -= 1

    all_c = lambda js: all(species[j] == "C" for j in js)  # noqa: E731
    shaped: set[int] = set()
    if rules.shape_gap_deg > 0:
        for i in np.flatnonzero(species == "Si"):
            js = np.array(sorted(nbrs.get(int(i), ())), int)
            if len(js) != 4 or not all_c(js):
                continue
            ang = np.sort(directions(i, js))
            if _gaps(ang).max() < np.radians(rules.shape_gap_deg):
                continue
            worst = [
                np.abs(_gaps(np.sort(directions(i, np.delete(js, k)))) - 2 * np.pi / 3).max()
                for k in range(4)
            ]
            drop(int(i), int(js[int(np.argmin(worst))]))
            shaped.add(int(i))
    if rules.gap_deg > 0:
        min_sep = np.radians(min_angle_deg if min_angle_deg > 0 else DEFAULT_MIN_ANGLE_DEG)
        for i in np.flatnonzero(species == "Si"):
            i = int(i)
            js = np.array(sorted(nbrs.get(i, ())), int)
            if i in shaped or len(js) != 3 or not all_c(js):
                continue
            ang = np.sort(directions(i, js))
            gaps = _gaps(ang)
            g = int(np.argmax(gaps))
            if gaps[g] < np.radians(rules.gap_deg):
                continue
            cand = np.array(tree.query_ball_point(tree.data[i], rules.gap_max_A / pixel_size), int)
            cand = cand[(species[cand] == "C") & ~np.isin(cand, js) & (cand != i)]
            if rules.gap_needs_room:
                cand = cand[deg[cand] < cap[cand]]
            if not len(cand):
                continue
            r = np.hypot(*(yx[cand] - yx[i]).T)
            far = r * pixel_size >= rules.min_si_c_A
            cand, r = cand[far], r[far]
            off = (directions(i, cand) - ang[g]) % (2 * np.pi)
            inside = (off >= min_sep) & (off <= gaps[g] - min_sep)
            if not inside.any():
                continue
            k = int(cand[inside][np.argmin(r[inside])])
            edges.add((min(i, k), max(i, k)))
            nbrs.setdefault(i, set()).add(k)
            nbrs.setdefault(k, set()).add(i)
            deg[i] += 1
            deg[k] += 1
    out = np.array(sorted(edges), int).reshape(-1, 2)
    return out[:, 0], out[:, 1]


def coordination(n_atoms: int, bonds: pd.DataFrame) -> np.ndarray:
    """(n_atoms,) int number of bonds per atom."""
    a = bonds["a"].to_numpy(dtype=int)
    b = bonds["b"].to_numpy(dtype=int)
    return np.bincount(a, minlength=n_atoms) + np.bincount(b, minlength=n_atoms)


def bond_graph(atoms: pd.DataFrame, bonds: pd.DataFrame, frame: int | None = None) -> nx.Graph:
    """networkx Graph of one frame (or all frames when ``frame`` is None).

    Nodes are positional atom rows with attributes ``y, x`` (pixels) and ``cls``;
    edges carry ``length_A``.
    """
    if frame is None:
        rows = np.arange(len(atoms))
        sel = bonds
    else:
        rows = np.flatnonzero(atoms["frame"].to_numpy() == frame)
        sel = bonds[bonds["frame"] == frame]
    g = nx.Graph()
    ys = atoms["y"].to_numpy()
    xs = atoms["x"].to_numpy()
    cls = atoms["cls"].astype(str).to_numpy()
    g.add_nodes_from((int(i), {"y": float(ys[i]), "x": float(xs[i]), "cls": cls[i]}) for i in rows)
    g.add_edges_from(
        (int(u), int(v), {"length_A": float(d)})
        for u, v, d in zip(sel["a"], sel["b"], sel["length_A"])
    )
    return g
