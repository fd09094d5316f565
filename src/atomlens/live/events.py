"""Events between consecutive frames: Si hops, coordination changes, new or growing
vacancies and holes, ring-size changes.

Plain functions over per-frame tables (the chemistry workflow's atoms, defects and
rings of one frame, plus that frame's drift), so the same code serves a live watch
(one new frame at a time) and a finished movie (:func:`movie_events`).

Every event is one row of :data:`EVENT_COLUMNS`: ``frame`` (where it is first seen),
``y, x`` (pixels, in that frame's image coordinates), ``type``, ``atom_ids`` and
``track_ids`` (space-separated ids of the atoms and tracks involved; ``atom_id`` of
the atom table), ``detail`` (what changed, e.g. ``3->4`` or ``1.42 A``).

Positions are compared after drift registration (``y - drift_y``), so the sample
drifting under the beam is not reported as motion.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

EVENT_COLUMNS = ["frame", "y", "x", "type", "atom_ids", "track_ids", "detail"]
EVENT_TYPES = (
    "si_hop",
    "si_edge_move",
    "coordination_change",
    "vacancy_new",
    "vacancy_grow",
    "hole_new",
    "hole_grow",
    "ring_change",
)


@dataclass
class EventParams:
    """Thresholds of :func:`frame_events` (lengths in Å).

    hop_threshold_A : a dopant track that moves farther than this between frames has
        hopped (a lattice hop is 1.42 Å; position noise ~0.1 Å).
    hop_species : species whose tracks are checked for hops.
    hop_min_coordination : a hop starts from a substitutional site: the atom had at
        least this many bonds in the previous frame. Under-coordinated (edge) atoms that
        move are reported as ``<species>_edge_move`` instead (edge restructuring; on a
        sheet full of holes the detector also mistakes edge C for Si there).
    coordination_species : species whose coordination changes are reported (the host
        lattice changes coordination at every vacancy and edge: leave it out).
    match_A : a defect or ring of this frame is "the same" as one of the previous frame
        when their registered centres are closer than this.
    ring_match_A : the same for ring centres (hexagon centres are 2.46 Å apart).
    """

    hop_threshold_A: float = 0.7
    hop_species: tuple[str, ...] = ("Si",)
    hop_min_coordination: int = 3
    coordination_species: tuple[str, ...] = ("Si",)
    match_A: float = 2.0
    ring_match_A: float = 0.7


@dataclass
class FrameTables:
    """One frame's chemistry: ``atoms`` (``atom_id, y, x, cls, track_id``, optional
    ``coordination, edge, border``), ``defects`` (``y, x, type, n_atoms, atoms`` = rows
    of ``atoms``), ``rings`` (``y, x, size``), and its ``drift`` (dy, dx) in pixels."""

    frame: int
    atoms: pd.DataFrame
    defects: pd.DataFrame = field(default_factory=pd.DataFrame)
    rings: pd.DataFrame = field(default_factory=pd.DataFrame)
    drift: tuple[float, float] = (0.0, 0.0)


def empty_events() -> pd.DataFrame:
    return pd.DataFrame(
        {
            c: pd.Series(dtype=float if c in ("y", "x") else (np.int64 if c == "frame" else object))
            for c in EVENT_COLUMNS
        }
    )


def _reg(df: pd.DataFrame, drift: tuple[float, float]) -> np.ndarray:
    if not len(df):
        return np.zeros((0, 2))
    return df[["y", "x"]].to_numpy(dtype=float) - np.asarray(drift, float)[None, :]


def _ids(values) -> str:
    return " ".join(str(int(v)) for v in values)


def _row_ids(atoms: pd.DataFrame, rows) -> str:
    rows = np.asarray(rows, dtype=int)
    rows = rows[(rows >= 0) & (rows < len(atoms))]
    col = atoms["atom_id"].to_numpy() if "atom_id" in atoms else np.arange(len(atoms))
    return _ids(col[rows])


def _tracks_of(atoms: pd.DataFrame, rows) -> str:
    if "track_id" not in atoms:
        return ""
    rows = np.asarray(rows, dtype=int)
    rows = rows[(rows >= 0) & (rows < len(atoms))]
    return _ids(np.unique(atoms["track_id"].to_numpy()[rows]))


def hop_events(
    prev: FrameTables, cur: FrameTables, pixel_size: float, p: EventParams
) -> list[dict]:
    """Dopant tracks present in both frames whose registered position moved more than
    ``hop_threshold_A``."""
    a0, a1 = prev.atoms, cur.atoms
    if "track_id" not in a0 or "track_id" not in a1 or not len(a0) or not len(a1):
        return []
    s0 = a0[a0["cls"].astype(str).isin(p.hop_species)]
    s1 = a1[a1["cls"].astype(str).isin(p.hop_species)]
    if not len(s0) or not len(s1):
        return []
    both = s1.merge(s0[["track_id"]].assign(_r0=np.arange(len(s0))), on="track_id")
    if not len(both):
        return []
    r0 = _reg(s0, prev.drift)[both["_r0"].to_numpy()]
    r1 = _reg(both, cur.drift)
    step = np.hypot(*(r1 - r0).T) * pixel_size
    out = []
    prev_ids = s0["atom_id"].to_numpy() if "atom_id" in s0 else np.full(len(s0), -1)
    prev_coord = (
        s0["coordination"].to_numpy()
        if "coordination" in s0
        else np.full(len(s0), p.hop_min_coordination)
    )
    for k in np.flatnonzero(step > p.hop_threshold_A):
        row = both.iloc[k]
        sp = str(row["cls"]).lower()
        kind = "hop" if prev_coord[int(row["_r0"])] >= p.hop_min_coordination else "edge_move"
        out.append(
            {
                "frame": cur.frame,
                "y": float(row["y"]),
                "x": float(row["x"]),
                "type": f"{sp}_{kind}",
                "atom_ids": _ids([prev_ids[int(row["_r0"])], row.get("atom_id", -1)]),
                "track_ids": str(int(row["track_id"])),
                "detail": f"{step[k]:.2f} A",
            }
        )
    return out


def coordination_events(prev: FrameTables, cur: FrameTables, p: EventParams) -> list[dict]:
    """Tracks of ``coordination_species`` whose coordination changed (atoms on an edge
    or at the frame border in either frame are left out: their bonds leave the view)."""
    a0, a1 = prev.atoms, cur.atoms
    need = {"track_id", "coordination"}
    if not (need <= set(a0) and need <= set(a1)) or not len(a0) or not len(a1):
        return []

    def usable(a: pd.DataFrame) -> pd.DataFrame:
        keep = a["cls"].astype(str).isin(p.coordination_species).to_numpy().copy()
        if "border" in a:
            keep &= ~a["border"].to_numpy(dtype=bool)
        return a[keep]

    s0, s1 = usable(a0), usable(a1)
    both = s1.merge(
        s0[["track_id", "coordination", "atom_id"]].rename(
            columns={"coordination": "prev_coordination", "atom_id": "prev_atom_id"}
        ),
        on="track_id",
    )
    both = both[both["coordination"].to_numpy() != both["prev_coordination"].to_numpy()]
    return [
        {
            "frame": cur.frame,
            "y": float(r.y),
            "x": float(r.x),
            "type": "coordination_change",
            "atom_ids": _ids([r.prev_atom_id, r.atom_id]),
            "track_ids": str(int(r.track_id)),
            "detail": f"{int(r.prev_coordination)}->{int(r.coordination)}",
        }
        for r in both.itertuples(index=False)
    ]


def _kind(defect_type: str) -> str | None:
    t = str(defect_type)
    if t == "hole" or t.startswith("hole"):
        return "hole"
    if "vacanc" in t:
        return "vacancy"
    return None


def defect_events(
    prev: FrameTables, cur: FrameTables, pixel_size: float, p: EventParams
) -> list[dict]:
    """Vacancies and holes of this frame with no counterpart in the previous frame
    (``*_new``) or with more atoms around them than their counterpart (``*_grow``)."""
    d1 = cur.defects
    if not len(d1):
        return []
    d0 = prev.defects
    out = []
    k0 = d0["type"].map(_kind).to_numpy() if len(d0) else np.zeros(0, object)
    k1 = d1["type"].map(_kind).to_numpy()
    r0, r1 = _reg(d0, prev.drift), _reg(d1, cur.drift)
    for kind in ("vacancy", "hole"):
        i1 = np.flatnonzero(k1 == kind)
        if not len(i1):
            continue
        # earlier vacancies and holes both count as "there before" (a vacancy grows into a hole)
        i0 = np.flatnonzero(np.isin(k0, ("vacancy", "hole")))
        tree = cKDTree(r0[i0]) if len(i0) else None
        for j in i1:
            row = d1.iloc[j]
            atoms = row["atoms"] if "atoms" in row else ()
            n1 = int(row["n_atoms"]) if "n_atoms" in row else len(atoms)
            base = {
                "frame": cur.frame,
                "y": float(row["y"]),
                "x": float(row["x"]),
                "atom_ids": _row_ids(cur.atoms, atoms),
                "track_ids": _tracks_of(cur.atoms, atoms),
            }
            dist, near = tree.query(r1[j]) if tree is not None else (np.inf, -1)
            if dist * pixel_size > p.match_A:
                out.append({**base, "type": f"{kind}_new", "detail": f"{row['type']}, {n1} atoms"})
                continue
            before = d0.iloc[i0[near]]
            n0 = int(before["n_atoms"]) if "n_atoms" in before else len(before["atoms"])
            if n1 > n0:
                out.append({**base, "type": f"{kind}_grow", "detail": f"{n0}->{n1} atoms"})
    return out


def ring_events(
    prev: FrameTables, cur: FrameTables, pixel_size: float, p: EventParams
) -> list[dict]:
    """Rings whose registered centre matches a ring of the previous frame of another
    size (a 6-ring turning into a 5 or 7, e.g. a Stone-Wales rotation)."""
    g0, g1 = prev.rings, cur.rings
    if not len(g0) or not len(g1):
        return []
    r0, r1 = _reg(g0, prev.drift), _reg(g1, cur.drift)
    dist, near = cKDTree(r0).query(r1, distance_upper_bound=p.ring_match_A / pixel_size)
    s0 = g0["size"].to_numpy(dtype=int)
    s1 = g1["size"].to_numpy(dtype=int)
    out = []
    for j in np.flatnonzero(np.isfinite(dist)):
        if s1[j] == s0[near[j]]:
            continue
        row = g1.iloc[j]
        members = row["atoms"] if "atoms" in row else ()
        out.append(
            {
                "frame": cur.frame,
                "y": float(row["y"]),
                "x": float(row["x"]),
                "type": "ring_change",
                "atom_ids": _row_ids(cur.atoms, members),
                "track_ids": _tracks_of(cur.atoms, members),
                "detail": f"{s0[near[j]]}->{s1[j]}",
            }
        )
    return out


def frame_events(
    prev: FrameTables | None, cur: FrameTables, pixel_size: float, params: EventParams | None = None
) -> pd.DataFrame:
    """All events between two consecutive frames (empty for the first frame)."""
    if prev is None:
        return empty_events()
    p = params or EventParams()
    rows = (
        hop_events(prev, cur, pixel_size, p)
        + coordination_events(prev, cur, p)
        + defect_events(prev, cur, pixel_size, p)
        + ring_events(prev, cur, pixel_size, p)
    )
    if not rows:
        return empty_events()
    out = pd.DataFrame(rows)[EVENT_COLUMNS]
    out["frame"] = out["frame"].astype(np.int64)
    return out


def split_frames(
    atoms: pd.DataFrame,
    defects: pd.DataFrame | None = None,
    rings: pd.DataFrame | None = None,
    drift: np.ndarray | None = None,
) -> list[FrameTables]:
    """Whole-movie tables -> one :class:`FrameTables` per frame. ``defects`` and
    ``rings`` member rows (``atoms`` column) index the whole ``atoms`` table and are
    re-indexed to the frame's rows."""
    out = []
    frames = np.unique(atoms["frame"].to_numpy()) if len(atoms) else []
    for f in frames:
        sel = np.flatnonzero(atoms["frame"].to_numpy() == f)
        lookup = {int(r): i for i, r in enumerate(sel)}
        d = tuple(np.asarray(drift)[int(f)]) if drift is not None else (0.0, 0.0)
        out.append(
            FrameTables(
                int(f),
                atoms.iloc[sel].reset_index(drop=True),
                _frame_part(defects, int(f), lookup),
                _frame_part(rings, int(f), lookup),
                d,
            )
        )
    return out


def _frame_part(tab: pd.DataFrame | None, frame: int, lookup: dict[int, int]) -> pd.DataFrame:
    """Rows of one frame; member rows (``atoms``) re-indexed through ``lookup``."""
    if tab is None or not len(tab):
        return pd.DataFrame()
    t = tab[tab["frame"].to_numpy() == frame].copy()
    if "atoms" in t:
        t["atoms"] = [tuple(lookup.get(int(r), -1) for r in m) for m in t["atoms"]]
    return t.reset_index(drop=True)


def movie_events(
    atoms: pd.DataFrame,
    pixel_size: float,
    defects: pd.DataFrame | None = None,
    rings: pd.DataFrame | None = None,
    drift: np.ndarray | None = None,
    params: EventParams | None = None,
) -> pd.DataFrame:
    """Events of a whole movie (the chemistry workflow's tables; ``drift`` (T, 2) px or
    taken from ``atoms.attrs["drift_px"]``)."""
    if drift is None and "drift_px" in atoms.attrs:
        drift = np.asarray(atoms.attrs["drift_px"], float)
    parts = split_frames(atoms, defects, rings, drift)
    tables = [frame_events(a, b, pixel_size, params) for a, b in zip(parts[:-1], parts[1:])]
    tables = [t for t in tables if len(t)]
    return pd.concat(tables, ignore_index=True) if tables else empty_events()


__all__ = [
    "EVENT_COLUMNS",
    "EVENT_TYPES",
    "EventParams",
    "FrameTables",
    "empty_events",
    "frame_events",
    "movie_events",
    "split_frames",
]
