"""Rings (faces of the planar bond graph), ring centres and per-atom ring counts.

Uses :func:`atomlens.geometry.planar_faces`. Faces of up to ``max_ring`` (8) members
are rings; larger bounded faces are *vacancy faces* when their area is below
``hole_min_area_A2`` (a reconstructed single vacancy leaves a 9-member face, an
unreconstructed one a 12-member face of ~16 Å²) and *holes* otherwise, as in the
simulator's ground truth. The unbounded face is the outside of the sheet or frame.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from atomlens.geometry import planar_faces

RING_COLUMNS = ["frame", "ring_id", "size", "y", "x", "atoms", "area_px2"]
RING_COUNT_SIZES = (5, 6, 7, 8)


def find_faces(
    atoms: pd.DataFrame,
    bonds: pd.DataFrame,
    min_size: int = 3,
    max_size: int | None = None,
) -> pd.DataFrame:
    """Every bounded face of ``min_size..max_size`` members (all sizes when None), all
    frames.

    Returns a DataFrame ``frame, ring_id, size, y, x, atoms, area_px2`` where ``ring_id``
    is unique over the whole table, ``y, x`` is the mean of the member positions
    (pixels), ``atoms`` a tuple of positional atom rows in walking order and
    ``area_px2`` the polygon area in pixels².
    """
    frames = atoms["frame"].to_numpy()
    yx_all = atoms[["y", "x"]].to_numpy(dtype=float)
    bf = bonds["frame"].to_numpy()
    ab = bonds[["a", "b"]].to_numpy(dtype=np.int64)
    rows_out = []
    for f in np.unique(frames):
        rows = np.flatnonzero(frames == f)
        sel = ab[bf == f]
        if len(sel) == 0:
            continue
        local = np.searchsorted(rows, sel)  # rows is sorted
        limit = len(rows) + 1 if max_size is None else max_size
        yx = yx_all[rows]
        for face in planar_faces(yx, local, min_size=min_size, max_size=limit):
            members = tuple(int(rows[i]) for i in face.nodes)
            p = yx[list(face.nodes)]
            area = 0.5 * abs(
                float(np.dot(p[:, 1], np.roll(p[:, 0], -1)) - np.dot(p[:, 0], np.roll(p[:, 1], -1)))
            )
            rows_out.append((int(f), len(members), face.y, face.x, members, area))
    if not rows_out:
        return pd.DataFrame({c: pd.Series(dtype=t) for c, t in zip(RING_COLUMNS, "iiiffOf")})
    df = pd.DataFrame(rows_out, columns=["frame", "size", "y", "x", "atoms", "area_px2"])
    df.insert(1, "ring_id", np.arange(len(df)))
    return df


def ring_counts(n_atoms: int, rings: pd.DataFrame, sizes=RING_COUNT_SIZES) -> pd.DataFrame:
    """Per-atom number of rings of each size: DataFrame (n_atoms rows) ``ring5..ring8``.

    An atom listed twice in one face (a dangling atom) counts once for that face."""
    out = {}
    for s in sizes:
        sub = rings.loc[rings["size"] == s, "atoms"]
        members = [np.unique(np.asarray(m, dtype=int)) for m in sub]
        flat = np.concatenate(members) if members else np.zeros(0, dtype=int)
        out[f"ring{s}"] = np.bincount(flat, minlength=n_atoms).astype(int)
    return pd.DataFrame(out)


def face_membership(n_atoms: int, faces: pd.DataFrame) -> np.ndarray:
    """(n_atoms,) int: how many face corners (half-edge sectors) each atom has in
    ``faces``; an atom with fewer sectors than bonds touches a face not listed."""
    members = [np.asarray(m, dtype=int) for m in faces["atoms"]]
    flat = np.concatenate(members) if members else np.zeros(0, dtype=int)
    return np.bincount(flat, minlength=n_atoms).astype(int)
