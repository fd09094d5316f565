"""Linking atoms across frames, per-track time series, switching and cluster rotation.

Linking is a global assignment (:func:`scipy.optimize.linear_sum_assignment`) between
the atoms of a frame and the tracks alive in the last ``max_gap + 1`` frames, solved
separately on each connected group of candidate pairs (pairs closer than
``max_disp_A``), so 2000 atoms per frame cost milliseconds.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components
from scipy.spatial import cKDTree


def link_atoms(
    atoms: pd.DataFrame,
    pixel_size: float,
    max_disp_A: float | Mapping[str, float] = 1.0,
    max_gap: int = 2,
    match_species: bool = True,
    gap_penalty_A: float = 0.05,
) -> np.ndarray:
    """Track id per atom row.

    Parameters
    ----------
    atoms : atom table (``frame``, ``y``, ``x`` pixels, ``cls``); when it has
        ``y_reg``/``x_reg`` (drift-registered, see :mod:`atomlens.chem.registration`)
        those are linked instead, so sample drift is not mistaken for motion.
    pixel_size : Å per pixel.
    max_disp_A : largest allowed displacement between linked detections (Å), one
        number or a mapping species -> Å (key ``"*"`` for the rest; needs
        ``match_species``). Keep it below the bond length (1.42 Å) for the host
        lattice so neighbours are not confused; sparse dopants that hop one or two
        lattice sites per frame (Si: 1.4-3 Å) need more, e.g. ``{"*": 1.0, "Si": 4.0}``.
    max_gap : a track may miss up to this many frames and still be continued.
    match_species : link only atoms of the same ``cls``.
    gap_penalty_A : cost (Å) added per missed frame, so recent tracks win ties.

    Returns
    -------
    (N,) int array of track ids (0, 1, ... in order of first appearance).
    """
    n = len(atoms)
    if isinstance(max_disp_A, Mapping):
        if not match_species:
            raise ValueError("a per-species max_disp_A needs match_species=True")
        species = atoms["cls"].astype(str).to_numpy()
        track = np.full(n, -1, dtype=int)
        offset = 0
        for sp in np.unique(species):
            rows = np.flatnonzero(species == sp)
            radius = float(max_disp_A.get(sp, max_disp_A.get("*", 1.0)))
            sub = link_atoms(atoms.iloc[rows], pixel_size, radius, max_gap, True, gap_penalty_A)
            track[rows] = sub + offset
            offset += int(sub.max()) + 1 if len(sub) else 0
        return _renumber(track, atoms["frame"].to_numpy())
    track = np.full(n, -1, dtype=int)
    if n == 0:
        return track
    frame = atoms["frame"].to_numpy()
    # registered coordinates (atomlens.chem.registration.apply_drift) when present
    cols = ["y_reg", "x_reg"] if {"y_reg", "x_reg"} <= set(atoms.columns) else ["y", "x"]
    yx = atoms[cols].to_numpy(dtype=float) * pixel_size  # Å
    species = atoms["cls"].astype(str).to_numpy() if "cls" in atoms else np.zeros(n, str)
    _, spec_code = np.unique(species, return_inverse=True)
    frames = np.unique(frame)
    # state of each track: last position, last frame, species
    last_yx = np.zeros((0, 2))
    last_f = np.zeros(0, dtype=int)
    last_sp = np.zeros(0, dtype=int)
    next_id = 0
    for f in frames:
        rows = np.flatnonzero(frame == f)
        alive = np.flatnonzero(last_f >= f - 1 - max_gap) if len(last_f) else np.zeros(0, int)
        assigned = np.full(len(rows), -1, dtype=int)
        if len(alive) and len(rows):
            tree_t = cKDTree(last_yx[alive])
            tree_d = cKDTree(yx[rows])
            sdm = tree_t.sparse_distance_matrix(tree_d, max_disp_A, output_type="ndarray")
            ti = sdm["i"].astype(int)
            di = sdm["j"].astype(int)
            dist = sdm["v"].astype(float)
            ok = np.ones(len(ti), dtype=bool)
            if match_species:
                ok &= last_sp[alive[ti]] == spec_code[rows[di]]
            ti, di, dist = ti[ok], di[ok], dist[ok]
            cost = dist + gap_penalty_A * (f - 1 - last_f[alive[ti]])
            assigned = _assign(ti, di, cost, len(alive), len(rows))
            assigned = np.where(assigned >= 0, alive[np.maximum(assigned, 0)], -1)
        new = assigned < 0
        n_new = int(new.sum())
        assigned[new] = np.arange(next_id, next_id + n_new)
        next_id += n_new
        if n_new:
            last_yx = np.vstack([last_yx, np.zeros((n_new, 2))])
            last_f = np.concatenate([last_f, np.zeros(n_new, dtype=int)])
            last_sp = np.concatenate([last_sp, np.zeros(n_new, dtype=int)])
        last_yx[assigned] = yx[rows]
        last_f[assigned] = f
        last_sp[assigned] = spec_code[rows]
        track[rows] = assigned
    return track


def _renumber(track: np.ndarray, frame: np.ndarray) -> np.ndarray:
    """Track ids 0, 1, ... in order of first appearance (frame, then row)."""
    if len(track) == 0:
        return track
    order = np.lexsort((np.arange(len(track)), frame))
    _, first = np.unique(track[order], return_index=True)
    ids = track[order][np.sort(first)]
    mapping = np.empty(int(track.max()) + 1, dtype=int)
    mapping[ids] = np.arange(len(ids))
    return mapping[track]


def _assign(ti: np.ndarray, di: np.ndarray, cost: np.ndarray, nt: int, nd: int) -> np.ndarray:
    """Min-cost maximum matching on a sparse bipartite candidate set; returns for each
    detection the local track index or -1."""
    out = np.full(nd, -1, dtype=int)
    if len(ti) == 0:
        return out
    # connected groups of candidates: nodes 0..nt-1 tracks, nt.. detections
    g = coo_matrix((np.ones(len(ti)), (ti, nt + di)), shape=(nt + nd, nt + nd))
    _, lab = connected_components(g, directed=False)
    comp = lab[ti]
    order = np.argsort(comp, kind="stable")
    comp_s = comp[order]
    starts = np.flatnonzero(np.r_[True, comp_s[1:] != comp_s[:-1]])
    ends = np.r_[starts[1:], len(comp_s)]
    single = (ends - starts) == 1
    idx = order[starts[single]]
    out[di[idx]] = ti[idx]  # a group with one candidate pair: link directly
    big = 1e6
    for s, e in zip(starts[~single], ends[~single]):
        sel = order[s:e]
        tu, tinv = np.unique(ti[sel], return_inverse=True)
        du, dinv = np.unique(di[sel], return_inverse=True)
        mat = np.full((len(tu), len(du)), big)
        mat[tinv, dinv] = cost[sel]
        r, c = linear_sum_assignment(mat)
        good = mat[r, c] < big
        out[du[c[good]]] = tu[r[good]]
    return out


def track_series(
    atoms: pd.DataFrame, track_id: int, defects: pd.DataFrame | None = None
) -> pd.DataFrame:
    """Time series of one track: ``atom`` (row in ``atoms``), ``frame, y, x`` (pixels),
    ``cls``, ``coordination`` and ``defect_type`` (when a defects table and a
    ``defect_id`` column are given)."""
    sub = atoms[atoms["track_id"] == track_id].sort_values("frame")
    cols = [c for c in ("frame", "y", "x", "cls", "coordination", "defect_id") if c in sub]
    out = sub[cols].copy()
    if defects is not None and "defect_id" in out and len(defects):
        kinds = defects.set_index("defect_id")["type"]
        out["defect_type"] = out["defect_id"].map(kinds).fillna("none")
    out.insert(0, "atom", out.index.to_numpy())
    return out.reset_index(drop=True)


def coordination_switches(
    atoms: pd.DataFrame, species: str = "Si", states: tuple[int, ...] | None = (3, 4)
) -> pd.DataFrame:
    """Changes of coordination along each track of ``species``.

    Returns ``track_id, frame_before, frame, from_coordination, to_coordination``;
    with ``states`` set only changes between those values (3-fold <-> 4-fold) count.
    """
    sub = atoms[atoms["cls"].astype(str) == species].sort_values(["track_id", "frame"])
    t = sub["track_id"].to_numpy()
    f = sub["frame"].to_numpy()
    c = sub["coordination"].to_numpy()
    same = t[1:] == t[:-1]
    change = same & (c[1:] != c[:-1])
    if states is not None:
        change &= np.isin(c[1:], states) & np.isin(c[:-1], states)
    i = np.flatnonzero(change)
    return pd.DataFrame(
        {
            "track_id": t[i + 1].astype(int),
            "frame_before": f[i].astype(int),
            "frame": f[i + 1].astype(int),
            "from_coordination": c[i].astype(int),
            "to_coordination": c[i + 1].astype(int),
        }
    )


def cluster_orientation(
    atoms: pd.DataFrame,
    defects: pd.DataFrame,
    species: str = "Si",
    turn_threshold_deg: float = 20.0,
) -> pd.DataFrame:
    """Orientation of dopant clusters (dimers, trimers, ...) over time.

    For a cluster of ``n`` dopants the angle of each dopant about the cluster centre
    is taken modulo its symmetry ``360/n`` degrees (180° for a dimer, 120° for a
    trimer) and averaged on the circle. Clusters are followed from frame to frame by
    the track ids of their dopants (``track_id`` column) or, without it, by ``n``.

    Returns ``frame, defect_id, cluster, n, y, x`` (pixels), ``angle_deg`` (image
    angle, counter-clockwise from +x with y pointing down, in ``[0, 360/n)``),
    ``delta_deg`` (change since the cluster's previous frame, wrapped to
    ``±180/n``) and ``turned`` (``|delta| > turn_threshold_deg``).
    """
    cls = atoms["cls"].astype(str).to_numpy()
    yx = atoms[["y", "x"]].to_numpy(dtype=float)
    tracks = atoms["track_id"].to_numpy() if "track_id" in atoms else None
    records = []
    for row in defects.itertuples(index=False):
        members = np.asarray(row.atoms, dtype=int)
        dops = members[cls[members] == species]
        if len(dops) < 2:
            continue
        nd = len(dops)
        centre = yx[dops].mean(axis=0)
        d = yx[dops] - centre
        theta = np.arctan2(-d[:, 0], d[:, 1])  # y down -> counter-clockwise angle
        z = np.exp(1j * nd * theta).mean()
        angle = (np.degrees(np.angle(z)) / nd) % (360.0 / nd)
        key = tuple(sorted(tracks[dops].tolist())) if tracks is not None else (nd,)
        records.append((int(row.frame), int(row.defect_id), key, nd, *centre, angle))
    df = pd.DataFrame(records, columns=["frame", "defect_id", "key", "n", "y", "x", "angle_deg"])
    if df.empty:
        return df.drop(columns="key").assign(cluster=[], delta_deg=[], turned=[])
    # clusters sharing any track id are the same cluster
    df["cluster"] = _cluster_labels(df["key"].tolist())
    df = df.sort_values(["cluster", "frame"], ignore_index=True)
    period = 360.0 / df["n"].to_numpy()
    delta = np.full(len(df), np.nan)
    same = df["cluster"].to_numpy()[1:] == df["cluster"].to_numpy()[:-1]
    same &= df["n"].to_numpy()[1:] == df["n"].to_numpy()[:-1]
    raw = np.diff(df["angle_deg"].to_numpy())
    p = period[1:]
    wrapped = (raw + p / 2) % p - p / 2
    delta[1:] = np.where(same, wrapped, np.nan)
    df["delta_deg"] = delta
    df["turned"] = np.abs(np.nan_to_num(delta)) > turn_threshold_deg
    cols = ["frame", "defect_id", "cluster", "n", "y", "x", "angle_deg", "delta_deg", "turned"]
    return df[cols]


def _cluster_labels(keys: list[tuple]) -> list[int]:
    parent: dict = {}

    def find(x):
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for key in keys:
        for k in key[1:]:
            parent[find(k)] = find(key[0])
    roots = [find(k[0]) for k in keys]
    _, lab = np.unique(np.array(roots, dtype=object).astype(str), return_inverse=True)
    return lab.tolist()
