"""The defects table of the "Defects" dock, and where a click on one row jumps to.

Headless (no Qt, no napari): rows are built from a :class:`~atomlens.chem.ChemResult`
(:func:`defect_table`) or from an atom table that already carries the chemistry columns
``defect_id, defect_type`` (:func:`defect_table_from_atoms`, e.g. the features of an
atoms layer the dock analysed before, or the atom table ``atomlens chem`` writes). No
chemistry is computed here: defects come from :func:`atomlens.chem.analyze`.

Columns of a defect table (one row per defect and frame):

``defect_id, frame, type, n_atoms, y_A, x_A, y_px, x_px, si_coordination, track_id,
radius_px, atoms``

``y_px, x_px`` is the centre (mean member position, as in
:func:`atomlens.chem.defects.find_defects`) in pixels, ``y_A, x_A`` the same in Å
(pixels x pixel size); ``si_coordination`` the bond count of each dopant
(comma-separated, ``""`` without dopant); ``track_id`` the track of the (first) dopant
atom, -1 when untracked or without dopant; ``radius_px`` the largest distance of a
member atom from the centre; ``atoms`` a tuple of atom rows (positional rows of the
atom table = point indices of the atoms layer).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

if TYPE_CHECKING:
    from atomlens.chem import ChemResult

TABLE_COLUMNS = [
    "defect_id", "frame", "type", "n_atoms", "y_A", "x_A", "y_px", "x_px",
    "si_coordination", "track_id", "radius_px", "atoms",
]  # fmt: skip
#: Columns shown in the dock (``atoms`` and ``radius_px`` stay hidden).
DISPLAY_COLUMNS = TABLE_COLUMNS[:10]
#: Side (Å) of the smallest square a jump shows: a few hexagons around the defect.
MIN_VIEW_A = 16.0
#: Space (Å) kept around a defect's atoms when it is larger than :data:`MIN_VIEW_A`.
VIEW_MARGIN_A = 4.0
ALL_TYPES = "all"


def _empty() -> pd.DataFrame:
    return pd.DataFrame(
        {
            c: pd.Series(dtype=object if c in ("type", "si_coordination", "atoms") else float)
            for c in TABLE_COLUMNS
        }
    )


def _finish(rows: list[dict]) -> pd.DataFrame:
    if not rows:
        return _empty()
    out = pd.DataFrame.from_records(rows, columns=TABLE_COLUMNS)
    for col in ("defect_id", "frame", "n_atoms", "track_id"):
        out[col] = out[col].astype(int)
    return out.sort_values(["frame", "defect_id"], kind="stable").reset_index(drop=True)


def _rows(
    groups: list[tuple[int, int, str, np.ndarray]],
    atoms: pd.DataFrame,
    pixel_size: float | None,
    host: str,
) -> pd.DataFrame:
    """Rows from ``(defect_id, frame, type, member rows)``; Å columns NaN without a
    pixel size."""
    px = float(pixel_size) if pixel_size else np.nan
    yx = atoms[["y", "x"]].to_numpy(dtype=float)
    cls = atoms["cls"].astype(str).to_numpy() if "cls" in atoms else np.full(len(atoms), host)
    coord = atoms["coordination"].to_numpy() if "coordination" in atoms else None
    track = atoms["track_id"].to_numpy() if "track_id" in atoms else None
    rows = []
    for did, frame, kind, members in groups:
        members = np.asarray(members, dtype=int)
        if len(members) == 0:
            continue
        cy, cx = yx[members].mean(axis=0)
        dops = members[cls[members] != host]
        si = ",".join(str(int(coord[d])) for d in dops) if coord is not None else ""
        tid = int(track[dops[0]]) if track is not None and len(dops) else -1
        radius = float(np.hypot(*(yx[members] - (cy, cx)).T).max())
        rows.append(
            {
                "defect_id": int(did),
                "frame": int(frame),
                "type": str(kind),
                "n_atoms": len(members),
                "y_A": cy * px,
                "x_A": cx * px,
                "y_px": float(cy),
                "x_px": float(cx),
                "si_coordination": si,
                "track_id": tid,
                "radius_px": radius,
                "atoms": tuple(int(m) for m in members),
            }
        )
    return _finish(rows)


def defect_table(result: ChemResult) -> pd.DataFrame:
    """The defects of a :class:`ChemResult` as dock rows (see the module docstring)."""
    d = result.defects
    groups = [
        (int(r.defect_id), int(r.frame), str(r.type), np.asarray(r.atoms, dtype=int))
        for r in d.itertuples(index=False)
    ]
    return _rows(groups, result.atoms, float(result.pixel_size), result.params.host)


def has_chemistry(atoms: pd.DataFrame) -> bool:
    """True when an atom table carries the per-atom defect columns of :func:`analyze`."""
    return {"defect_id", "defect_type"} <= set(atoms.columns)


def defect_table_from_atoms(
    atoms: pd.DataFrame, pixel_size: float | None, host: str = "C"
) -> pd.DataFrame:
    """Dock rows from an atom table that already went through :func:`analyze` (columns
    ``frame, y, x, defect_id, defect_type``; ``cls, coordination, track_id`` used when
    present; without ``pixel_size`` the Å columns are NaN). Rows are positional. A hole's boundary atoms that also
    belong to another defect count for that one only (as in ``defect_id``)."""
    if not has_chemistry(atoms):
        raise ValueError(
            "the atom table carries no chemistry (no defect_id / defect_type columns): "
            "run the chemistry first"
        )
    table = atoms.reset_index(drop=True)
    ids = table["defect_id"].to_numpy()
    ids = np.where(pd.isna(ids), -1, ids).astype(int)
    rows = np.flatnonzero(ids >= 0)
    frames = table["frame"].to_numpy(dtype=int) if "frame" in table else np.zeros(len(table), int)
    kinds = table["defect_type"].astype(str).to_numpy()
    groups = []
    # defect ids are unique over frames in analyze(); group by (frame, id) all the same
    grouped = pd.Series(rows).groupby([frames[rows], ids[rows]], sort=True).groups
    for (frame, did), idx in grouped.items():
        members = rows[np.asarray(idx, dtype=int)]
        groups.append((int(did), int(frame), str(kinds[members[0]]), members))
    return _rows(groups, table, pixel_size, host)


def defect_types(table: pd.DataFrame) -> list[str]:
    """The distinct defect types of a table, most frequent first (ties by name)."""
    if len(table) == 0:
        return []
    counts = table["type"].astype(str).value_counts()
    return sorted(counts.index, key=lambda k: (-int(counts[k]), k))


def filter_defects(table: pd.DataFrame, kind: str | None = None) -> pd.DataFrame:
    """Rows of type ``kind`` (``None`` or :data:`ALL_TYPES`: every row), index reset."""
    if kind in (None, "", ALL_TYPES):
        return table.reset_index(drop=True)
    return table[table["type"].astype(str) == str(kind)].reset_index(drop=True)


@dataclass(frozen=True)
class JumpTarget:
    """Where the viewer goes for one defect: ``frame``, the centre ``(y_px, x_px)`` and
    the side ``view_px`` of the square to show, all in data pixels, and the atom rows
    to select."""

    frame: int
    y_px: float
    x_px: float
    view_px: float
    atoms: tuple[int, ...]


def jump_target(row: pd.Series | dict, pixel_size: float | None) -> JumpTarget:
    """The :class:`JumpTarget` of one table row: the square to show spans the defect
    plus :data:`VIEW_MARGIN_A` on each side, at least :data:`MIN_VIEW_A` (without a
    pixel size, 0.1 Å per pixel is assumed for these two)."""
    px = float(pixel_size) if pixel_size else 0.1
    radius_A = float(row.get("radius_px", 0.0) or 0.0) * px
    view_A = max(MIN_VIEW_A, 2.0 * (radius_A + VIEW_MARGIN_A))
    atoms = row.get("atoms", ()) or ()
    return JumpTarget(
        int(row["frame"]),
        float(row["y_px"]),
        float(row["x_px"]),
        view_A / px,
        tuple(int(a) for a in atoms),
    )


def export_table(table: pd.DataFrame, path: str | Path) -> Path:
    """Write a defect table as CSV (``atoms``: space-separated rows); returns the path."""
    path = Path(path)
    if path.suffix.lower() != ".csv":
        path = path.with_name(path.name + ".csv")
    out = table.copy()
    if "atoms" in out:
        out["atoms"] = [" ".join(str(int(a)) for a in t) for t in out["atoms"]]
    from atomlens.io.atomic import write_csv

    return write_csv(path, out)  # whole or absent


__all__ = [
    "ALL_TYPES",
    "DISPLAY_COLUMNS",
    "MIN_VIEW_A",
    "TABLE_COLUMNS",
    "JumpTarget",
    "defect_table",
    "defect_table_from_atoms",
    "defect_types",
    "export_table",
    "filter_defects",
    "has_chemistry",
    "jump_target",
]
