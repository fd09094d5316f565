"""Exact per-frame ground truth from the sample's construction topology.

Rings are the planar faces of the bond graph (:func:`atomlens.geometry.planar_faces`);
faces with more than 8 members and an area of at least ``hole_min_area_A2`` are holes,
smaller ones vacancy (clusters). Atoms on a hole face with fewer than 3 bonds are
``edge`` (a hole's boundary also passes 3-fold atoms, e.g. between armchair dimers).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from atomlens.geometry import planar_faces
from atomlens.simulate.build import Sample
from atomlens.simulate.sheet import Z_SI

RING_SIZES = (5, 6, 7, 8)
HOLE_CLEARANCE_A = 1.0
"""Hole-mask pixels keep at least this distance (Å) from every atom."""


@dataclass
class Topology:
    """Bond graph analysis of one state of the sheet (site indices)."""

    edges: np.ndarray  # (E, 2) site pairs
    degree: np.ndarray  # (N,)
    rings: list[tuple[tuple[int, ...], int]]  # (member sites, size), size <= 8
    ring_counts: np.ndarray  # (N, 4) adjacent rings of size 5, 6, 7, 8
    holes: list[tuple[int, list[int]]]  # (hole defect id, boundary sites in walking order)
    edge: np.ndarray  # (N,) bool, on a hole face with fewer than 3 bonds


def analyse(sample: Sample, hole_min_area_A2: float) -> Topology:
    """Rings, holes, edge atoms and coordination of the current sheet; assigns hole faces
    to hole defects (new hole ids for new holes, merged holes keep the smallest id)."""
    sheet = sample.sheet
    n = len(sheet.pos)
    alive = np.flatnonzero(sheet.alive)
    local = np.full(n, -1)
    local[alive] = np.arange(len(alive))
    edges = sheet.edges()
    pos = sheet.pos[alive]
    faces = planar_faces(pos, local[edges], max_size=len(alive) + 1)
    rings: list[tuple[tuple[int, ...], int]] = []
    counts = np.zeros((n, len(RING_SIZES)), np.int64)
    hole_faces: list[list[int]] = []
    for f in faces:
        sites = [int(alive[k]) for k in f.nodes]
        if f.size <= 8:
            rings.append((tuple(sites), f.size))
            if f.size in RING_SIZES:
                counts[sorted(set(sites)), RING_SIZES.index(f.size)] += 1
            continue
        p = sheet.pos[sites]
        area = 0.5 * abs(
            float(np.dot(p[:, 1], np.roll(p[:, 0], -1)) - np.dot(p[:, 0], np.roll(p[:, 1], -1)))
        )
        if area >= hole_min_area_A2:
            hole_faces.append(sites)
    edge = np.zeros(n, bool)
    holes: list[tuple[int, list[int]]] = []
    reg = sample.registry
    hole_defects = reg.of_kind("hole")
    degree = sheet.degree()
    for sites in hole_faces:
        edge[[s for s in sites if degree[s] < 3]] = True
        poly = sheet.pos[sites]
        inside = [d for d in hole_defects if point_in_polygon(np.array(d.sites_A[0]), poly)]
        if inside:
            keep = min(inside, key=lambda d: d.defect_id)
            for d in inside:
                if d is not keep:
                    reg.retire(d)  # merged into ``keep``
        else:
            keep = reg.new("hole", sites_A=[tuple(poly.mean(0))])
        holes.append((keep.defect_id, sites))
    live_ids = {h for h, _ in holes}
    for d in reg.of_kind("hole"):
        if d.defect_id not in live_ids:
            reg.retire(d)
    # defects whose atoms are gone, or vacancies swallowed by a hole, end here
    for d in list(reg.active):
        if d.kind in ("Si", "SW", "5-7", "vacancy"):
            sites = [s for s in (sheet.site_of(a) for a in d.atoms) if s is not None]
            d.atoms = [int(sheet.atom_id[s]) for s in sites]
            if not sites or (d.kind == "vacancy" and edge[sites].any()):
                reg.retire(d)
    return Topology(edges, degree, rings, counts, holes, edge)


def point_in_polygon(point: np.ndarray, poly: np.ndarray) -> bool:
    """Even-odd test of one (y, x) point against a polygon (K, 2) (same units)."""
    y, x = float(point[0]), float(point[1])
    y0, x0 = poly[:, 0], poly[:, 1]
    y1, x1 = np.roll(y0, -1), np.roll(x0, -1)
    crosses = (y0 <= y) != (y1 <= y)
    with np.errstate(divide="ignore", invalid="ignore"):
        xs = x0 + (y - y0) * (x1 - x0) / (y1 - y0)
    return bool(np.count_nonzero(crosses & (xs > x)) % 2)


def fill_polygon(rows: np.ndarray, cols: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """Pixels (r, c) whose centres lie inside the polygon with vertices (rows, cols)
    (even-odd rule), clipped to ``shape``; returns (K, 2) int."""
    r0, c0 = np.asarray(rows, float), np.asarray(cols, float)
    r1, c1 = np.roll(r0, -1), np.roll(c0, -1)
    lo = max(int(np.ceil(r0.min())), 0)
    hi = min(int(np.floor(r0.max())), shape[0] - 1)
    if hi < lo:
        return np.zeros((0, 2), np.int64)
    scan = np.arange(lo, hi + 1, dtype=float)[:, None]  # (R, 1)
    crosses = (r0 <= scan) != (r1 <= scan)  # (R, E)
    with np.errstate(divide="ignore", invalid="ignore"):
        xs = np.where(crosses, c0 + (scan - r0) * (c1 - c0) / (r1 - r0), np.inf)
    xs.sort(axis=1)
    out = []
    for k in range(xs.shape[0]):
        row = xs[k][np.isfinite(xs[k])]
        for a, b in zip(row[0::2], row[1::2]):
            ca, cb = max(int(np.ceil(a)), 0), min(int(np.floor(b)), shape[1] - 1)
            if cb >= ca:
                cc = np.arange(ca, cb + 1)
                out.append(np.stack([np.full(len(cc), lo + k), cc], 1))
    return np.concatenate(out) if out else np.zeros((0, 2), np.int64)


def hole_mask(
    sample: Sample, topo: Topology, offset_px: np.ndarray, shape: tuple[int, int], pixel_size: float
) -> np.ndarray:
    """(Y, X) bool: pixels inside a hole face and at least ``HOLE_CLEARANCE_A`` from every
    atom; sample positions are mapped to pixels as ``pos / pixel_size + offset_px``."""
    mask = np.zeros(shape, bool)
    if not topo.holes:
        return mask
    sheet = sample.sheet
    img = sheet.pos / pixel_size + offset_px
    lo, hi = np.full(2, np.inf), np.full(2, -np.inf)
    for _, sites in topo.holes:
        pix = fill_polygon(img[sites, 0], img[sites, 1], shape)
        mask[pix[:, 0], pix[:, 1]] = True
        lo, hi = np.minimum(lo, img[sites].min(0)), np.maximum(hi, img[sites].max(0))
    # clear a disc around every atom near the holes
    rad = HOLE_CLEARANCE_A / pixel_size
    near = sheet.alive & (img >= lo - rad - 1).all(1) & (img <= hi + rad + 1).all(1)
    r = int(np.ceil(rad))
    dy, dx = np.mgrid[-r : r + 1, -r : r + 1]
    centres = img[near]
    base = np.rint(centres).astype(np.int64)
    yy = base[:, 0, None, None] + dy
    xx = base[:, 1, None, None] + dx
    close = (yy - centres[:, 0, None, None]) ** 2 + (xx - centres[:, 1, None, None]) ** 2 < rad**2
    ok = close & (yy >= 0) & (yy < shape[0]) & (xx >= 0) & (xx < shape[1])
    mask[yy[ok], xx[ok]] = False
    return mask


# priority of per-atom labels: later entries overwrite earlier ones
_LABEL_ORDER = ("grain_boundary", "hole", "vacancy", "SW", "5-7", "Si")


def defect_labels(
    sample: Sample, topo: Topology
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, str, list[int], np.ndarray]]]:
    """Per-site ``defect`` label and ``defect_id``, plus the defect list
    ``(defect_id, type, core sites, centre (y, x) Å)``."""
    sheet = sample.sheet
    n = len(sheet.pos)
    label = np.full(n, "", dtype=object)
    did = np.full(n, -1, np.int64)
    found: dict[str, list[tuple[int, str, list[int], np.ndarray]]] = {k: [] for k in _LABEL_ORDER}
    reg = sample.registry
    for d in reg.active:
        sites = [s for s in (sheet.site_of(a) for a in d.atoms) if s is not None]
        if d.kind == "Si":
            if not sites:
                continue
            s = sites[0]
            found["Si"].append((d.defect_id, f"Si{int(topo.degree[s])}", [s], sheet.pos[s]))
        elif d.kind in ("SW", "5-7"):
            if sites:
                found[d.kind].append((d.defect_id, d.kind, sites, sheet.pos[sites].mean(0)))
        elif d.kind == "vacancy":
            k = len(d.sites_A)
            kind = "vacancy" if k == 1 else ("divacancy" if k == 2 else "multivacancy")
            found["vacancy"].append((d.defect_id, kind, sites, np.mean(d.sites_A, axis=0)))
    for hid, sites in topo.holes:
        uniq = sorted({s for s in sites if topo.edge[s]})
        found["hole"].append((hid, "hole", uniq, sheet.pos[uniq].mean(0)))
    gb = reg.of_kind("grain_boundary")
    if gb:
        near = sheet.alive & (sample.gb_distance(sheet.pos) < 4.0) & ~topo.edge
        odd = (topo.ring_counts[:, 1] != 3) | (topo.degree != 3)
        sites = [int(s) for s in np.flatnonzero(near & odd)]
        if sites:
            found["grain_boundary"].append(
                (gb[0].defect_id, "grain_boundary", sites, sheet.pos[sites].mean(0))
            )
    out = []
    for key in _LABEL_ORDER:
        for defect_id, kind, sites, centre in found[key]:
            label[sites] = kind
            did[sites] = defect_id
            out.append((defect_id, kind, sites, centre))
    out.sort(key=lambda t: t[0])
    return label, did, out


def is_si(sample: Sample) -> np.ndarray:
    """(N,) bool: site holds a Si atom."""
    return sample.sheet.z == Z_SI
