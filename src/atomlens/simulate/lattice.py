"""Perfect graphene lattices and a bicrystal (two rotated grains joined along a line).

All positions here are (y, x) in Å in the sample frame; bonds are index pairs taken from
the lattice topology (and, across a grain boundary only, from geometry).
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

A_LATTICE_A = 2.46
"""Graphene lattice constant, Å."""
CC_BOND_A = A_LATTICE_A / np.sqrt(3.0)
"""C-C bond length of the perfect lattice, Å (1.420)."""


def honeycomb(
    bounds: tuple[float, float, float, float],
    angle_rad: float,
    offset: tuple[float, float] = (0.0, 0.0),
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Graphene atoms inside ``bounds = (y0, y1, x0, x1)`` (Å).

    Returns ``pos`` (N, 2) Å (y, x), ``sublattice`` (N,) 0/1 and ``edges`` (E, 2)
    nearest-neighbour index pairs from the lattice topology.
    """
    y0, y1, x0, x1 = bounds
    cy, cx = (y0 + y1) / 2, (x0 + x1) / 2
    radius = np.hypot(y1 - y0, x1 - x0) / 2 + 2 * A_LATTICE_A
    n = int(np.ceil(radius / (A_LATTICE_A * np.sqrt(3) / 2))) + 2
    i, j = np.meshgrid(np.arange(-n, n + 1), np.arange(-n, n + 1), indexing="ij")
    a = A_LATTICE_A
    # local frame (u, v): a1 = (a, 0), a2 = (a/2, a*sqrt(3)/2); basis A (0, 0), B (a/2, a/(2 sqrt 3))
    u_a = a * (i + j / 2.0) + offset[1]
    v_a = a * (np.sqrt(3) / 2) * j + offset[0]
    u_b, v_b = u_a + a / 2, v_a + a / (2 * np.sqrt(3))
    c, s = np.cos(angle_rad), np.sin(angle_rad)

    def place(u: np.ndarray, v: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        return cy + u * s + v * c, cx + u * c - v * s

    ya, xa = place(u_a, v_a)
    yb, xb = place(u_b, v_b)
    in_a = (ya >= y0) & (ya <= y1) & (xa >= x0) & (xa <= x1)
    in_b = (yb >= y0) & (yb <= y1) & (xb >= x0) & (xb <= x1)
    idx_a = np.full(i.shape, -1)
    idx_b = np.full(i.shape, -1)
    n_a = int(in_a.sum())
    idx_a[in_a] = np.arange(n_a)
    idx_b[in_b] = n_a + np.arange(int(in_b.sum()))
    pos = np.concatenate([np.stack([ya[in_a], xa[in_a]], 1), np.stack([yb[in_b], xb[in_b]], 1)])
    sub = np.concatenate([np.zeros(n_a, int), np.ones(int(in_b.sum()), int)])
    # B(i, j) bonds A(i, j), A(i+1, j), A(i, j+1)
    ib_pad = np.pad(idx_b, ((0, 1), (0, 1)), constant_values=-1)
    ia_pad = np.pad(idx_a, ((0, 1), (0, 1)), constant_values=-1)
    pairs = [
        (idx_b, idx_a),
        (ib_pad[:-1, :-1], ia_pad[1:, :-1]),
        (ib_pad[:-1, :-1], ia_pad[:-1, 1:]),
    ]
    edges = []
    for pb, pa in pairs:
        ok = (pb >= 0) & (pa >= 0)
        edges.append(np.stack([pb[ok], pa[ok]], 1))
    return pos, sub, np.concatenate(edges).astype(np.int64)


def _segments_cross(p1: np.ndarray, p2: np.ndarray, q1: np.ndarray, q2: np.ndarray) -> np.ndarray:
    """Proper crossings of segment p1-p2 with each segment q1[k]-q2[k] (shared ends excluded)."""

    def orient(a: np.ndarray, b: np.ndarray, c: np.ndarray) -> np.ndarray:
        return (b[..., 0] - a[..., 0]) * (c[..., 1] - a[..., 1]) - (b[..., 1] - a[..., 1]) * (
            c[..., 0] - a[..., 0]
        )

    d1, d2 = orient(q1, q2, p1), orient(q1, q2, p2)
    d3, d4 = orient(p1, p2, q1), orient(p1, p2, q2)
    eps = 1e-9
    return (d1 * d2 < -eps) & (d3 * d4 < -eps)


def bicrystal(
    bounds: tuple[float, float, float, float],
    angle_rad: float,
    misorientation_rad: float,
    line_point: np.ndarray,
    line_angle_rad: float,
    rng: np.random.Generator,
    min_dist_A: float = 1.1,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Two grains on either side of a line through ``line_point`` (Å).

    Grain 0 keeps its sublattice; grain 1 is rotated by ``misorientation_rad`` and gets
    sublattice -1. Grain-1 atoms closer than ``min_dist_A`` to a grain-0 atom are
    removed. ``edges`` are the lattice bonds inside each grain only; see
    :func:`atomlens.simulate.grain.stitch` for bonds across the line.
    Returns ``pos, sublattice, grain, edges``.
    """
    normal = np.array([np.cos(line_angle_rad), -np.sin(line_angle_rad)])  # (y, x)
    parts = []
    for g, ang in enumerate((angle_rad, angle_rad + misorientation_rad)):
        off = tuple(rng.uniform(0, A_LATTICE_A, 2))
        pos, sub, edges = honeycomb(bounds, ang, offset=off)  # type: ignore[arg-type]
        side = (pos - line_point) @ normal
        keep = side < 0 if g == 0 else side >= 0
        parts.append((pos, sub if g == 0 else np.full(len(pos), -1), edges, keep))
    # remove grain-1 atoms too close to grain 0
    tree0 = cKDTree(parts[0][0][parts[0][3]])
    d, _ = tree0.query(parts[1][0], k=1)
    parts[1] = (parts[1][0], parts[1][1], parts[1][2], parts[1][3] & (d >= min_dist_A))
    pos_all, sub_all, grain_all, edge_all = [], [], [], []
    base = 0
    for g, (pos, sub, edges, keep) in enumerate(parts):
        new_idx = np.full(len(pos), -1)
        new_idx[keep] = base + np.arange(int(keep.sum()))
        e = new_idx[edges]
        edge_all.append(e[(e >= 0).all(1)])
        pos_all.append(pos[keep])
        sub_all.append(sub[keep])
        grain_all.append(np.full(int(keep.sum()), g))
        base += int(keep.sum())
    pos = np.concatenate(pos_all)
    sub = np.concatenate(sub_all)
    grain = np.concatenate(grain_all)
    edges = np.concatenate(edge_all)
    return pos, sub, grain, edges
