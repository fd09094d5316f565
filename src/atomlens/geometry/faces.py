"""Rings as the bounded faces of an embedded (planar) bond graph.

Rings are faces, not all simple cycles: for a graph drawn in the plane, every half-edge
belongs to exactly one face, and walking "turn to the next neighbour clockwise" around
each vertex enumerates them. Faces with the opposite orientation are outer boundaries
(of each sheet fragment) and are dropped; holes in a sheet are bounded faces with many
members and are dropped by ``max_size``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Face:
    """One ring: member vertex indices in walking order and its centre (y, x) in the
    same units as the input coordinates."""

    nodes: tuple[int, ...]
    y: float
    x: float

    @property
    def size(self) -> int:
        return len(self.nodes)


def planar_faces(
    yx: np.ndarray, edges: np.ndarray, min_size: int = 3, max_size: int = 8
) -> list[Face]:
    """Bounded faces of a straight-line embedded graph.

    Parameters
    ----------
    yx : (N, 2) float array of vertex positions (pixels or Å; only angles matter).
    edges : (E, 2) int array of undirected edges (vertex indices), no duplicates needed.
    min_size, max_size : keep faces whose number of half-edges lies in this range.

    Returns
    -------
    Faces sorted by their smallest vertex index. A vertex that a face visits twice
    (a dangling atom inside a ring) is listed twice, so ``size`` counts boundary steps.
    """
    yx = np.asarray(yx, dtype=float)
    edges = np.asarray(edges, dtype=np.int64).reshape(-1, 2)
    if len(edges) == 0:
        return []
    edges = edges[edges[:, 0] != edges[:, 1]]
    edges = np.unique(np.sort(edges, axis=1), axis=0)
    n = len(yx)
    # half-edges u->v, both directions
    src = np.concatenate([edges[:, 0], edges[:, 1]])
    dst = np.concatenate([edges[:, 1], edges[:, 0]])
    ang = np.arctan2(yx[dst, 0] - yx[src, 0], yx[dst, 1] - yx[src, 1])
    order = np.lexsort((ang, src))  # half-edges grouped by source, sorted by angle
    src_s, dst_s = src[order], dst[order]
    start = np.searchsorted(src_s, np.arange(n + 1))
    # position of each sorted half-edge inside its source's fan
    pos_in_fan = np.arange(len(src_s)) - start[src_s]
    deg = start[1:] - start[:-1]
    # index of half-edge (u->v) in the sorted arrays
    key = src_s * n + dst_s
    key_sorter = np.argsort(key)
    key_sorted = key[key_sorter]

    def half_edge_index(u: np.ndarray, v: np.ndarray) -> np.ndarray:
        return key_sorter[np.searchsorted(key_sorted, u * n + v)]

    # next(u->v) = v->w where w is the neighbour of v just before u in angular order
    twin = half_edge_index(dst_s, src_s)  # index of v->u
    prev_pos = (pos_in_fan[twin] - 1) % deg[dst_s]
    nxt = start[dst_s] + prev_pos

    visited = np.zeros(len(src_s), dtype=bool)
    faces: list[Face] = []
    for h0 in range(len(src_s)):
        if visited[h0]:
            continue
        cycle = []
        h = h0
        while not visited[h]:
            visited[h] = True
            cycle.append(int(src_s[h]))
            h = int(nxt[h])
            if len(cycle) > max_size:
                # walk the rest of this face only to mark it visited
                while not visited[h]:
                    visited[h] = True
                    h = int(nxt[h])
                cycle = []
                break
        if not (min_size <= len(cycle) <= max_size):
            continue
        pts = yx[cycle]
        # shoelace in (x, y): interior faces have positive orientation with this turning rule
        x, y = pts[:, 1], pts[:, 0]
        area2 = float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1)))
        if area2 <= 0:
            continue
        faces.append(Face(tuple(cycle), float(y.mean()), float(x.mean())))
    faces.sort(key=lambda f: min(f.nodes))
    return faces
