"""One entry point: atoms in, chemistry out (bonds, rings, defects, tracks)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd

from atomlens.chem.bonds import (
    DEFAULT_MAX_BOND_A,
    DEFAULT_MAX_COORDINATION,
    DEFAULT_MIN_ANGLE_DEG,
    coordination,
    find_bonds,
)
from atomlens.chem.defects import add_holes, dopant_geometry, find_defects
from atomlens.chem.rings import face_membership, find_faces, ring_counts
from atomlens.chem.tracking import link_atoms
from atomlens.io.atoms_table import AtomsTableError

REQUIRED_COLUMNS = ("frame", "y", "x", "cls")
CHEM_COLUMNS = ("coordination", "ring5", "ring6", "ring7", "ring8", "edge", "defect_id", "track_id")
#: Every per-atom column :func:`analyze` writes (``defect_type`` names ``defect_id``'s kind).
ATOM_CHEM_COLUMNS = (*CHEM_COLUMNS, "defect_type")


#: One atom-table error class for every layer (:mod:`atomlens.io.atoms_table` owns it).
AtomTableError = AtomsTableError


@dataclass
class ChemParams:
    """Everything :func:`analyze` can be told (no hidden keyword arguments).

    max_bond_A : maximum bond length (Å) per species pair (``{"C-Si": 2.1}``),
        merged over :data:`atomlens.chem.bonds.DEFAULT_MAX_BOND_A`.
    max_coordination : bonds per species, merged over C 3, Si 4.
    min_angle_deg : two bonds of one atom closer than this angle cannot both exist (the
        longer goes); removes detector duplicates next to bright dopants.
    host : lattice species; others are dopants.
    min_ring, max_ring : faces with this many members are rings (table, ring counts).
    hole_min_area_A2 : a bounded face larger than ``max_ring`` members is a vacancy
        face (part of a defect) below this area (Å²) and a hole above it (its atoms are
        edge atoms); 30 Å² as in the simulator (a single vacancy is ~16 Å²).
    track, max_disp_A, max_gap, match_species : tracking across frames (see
        :func:`atomlens.chem.tracking.link_atoms`); ``max_disp_A`` is Å per species
        (``"*"`` = any other): host atoms 1 Å, Si 3 Å (Si hops 1-2 sites per frame).
    """

    max_bond_A: dict = field(default_factory=dict)
    max_coordination: dict = field(default_factory=dict)
    min_angle_deg: float = DEFAULT_MIN_ANGLE_DEG
    host: str = "C"
    min_ring: int = 3
    max_ring: int = 8
    hole_min_area_A2: float = 30.0
    track: bool = True
    max_disp_A: dict = field(default_factory=lambda: {"*": 1.0, "Si": 3.0})
    max_gap: int = 2
    match_species: bool = True

    def bond_limits(self) -> dict:
        out = {"-".join(k): v for k, v in DEFAULT_MAX_BOND_A.items()}
        out.update(self.max_bond_A)
        return out

    def coordination_limits(self) -> dict:
        out = dict(DEFAULT_MAX_COORDINATION)
        out.update(self.max_coordination)
        return out


@dataclass
class ChemResult:
    """Output of :func:`analyze`.

    atoms : input table (index reset to 0..N-1) plus ``coordination, ring5..ring8,
        edge, defect_id, track_id`` (and ``defect_type``). ``edge``: on a hole face or
        on the outside of the sheet (this includes atoms at the frame border).
    bonds : ``frame, a, b, length_px, length_A, pair`` (a, b: rows of ``atoms``).
    rings : ``frame, ring_id, size, y, x, atoms, area_px2`` for faces of
        min_ring..max_ring members (ring centres = hollow sites, in pixels).
    faces : the same for larger bounded faces, with ``kind`` ``vacancy`` or ``hole``.
    defects : see :func:`atomlens.chem.defects.find_defects`.
    dopants : bond lengths (pm) and angles (deg) per dopant atom.
    pixel_size : Å per pixel used.
    params : the :class:`ChemParams` used.
    """

    atoms: pd.DataFrame
    bonds: pd.DataFrame
    rings: pd.DataFrame
    faces: pd.DataFrame
    defects: pd.DataFrame
    dopants: pd.DataFrame
    pixel_size: float
    params: ChemParams

    def graph(self, frame: int):
        """networkx bond graph of one frame (nodes: rows of ``atoms``)."""
        from atomlens.chem.bonds import bond_graph

        return bond_graph(self.atoms, self.bonds, frame)

    def ring_histogram(self) -> pd.Series:
        """Number of rings per size (all frames)."""
        return self.rings["size"].value_counts().sort_index()


def check_atoms(atoms: pd.DataFrame) -> pd.DataFrame:
    """Validate an atom table; returns a copy with a 0..N-1 index and int frames."""
    if not isinstance(atoms, pd.DataFrame):
        raise AtomTableError("atoms must be a pandas DataFrame with columns frame, y, x, cls")
    missing = [c for c in REQUIRED_COLUMNS if c not in atoms.columns]
    if "frame" in missing and {"y", "x", "cls"} <= set(atoms.columns):
        atoms = atoms.assign(frame=0)  # a single image
        missing.remove("frame")
    if missing:
        raise AtomTableError(
            f"the atom table lacks column(s) {missing}; it needs frame, y, x (pixels) and "
            "cls (species such as 'C' or 'Si')"
        )
    out = atoms.reset_index(drop=True).copy()
    if out[["y", "x"]].isna().any().any():
        raise AtomTableError("the atom table has NaN coordinates: drop those rows first")
    out["frame"] = out["frame"].astype(int)
    out["cls"] = out["cls"].astype(str)
    return out


def analyze(
    atoms: pd.DataFrame,
    pixel_size: float,
    params: ChemParams | None = None,
    *,
    track: bool | None = None,
) -> ChemResult:
    """Bond graph, rings, edge atoms, defects, dopant geometry and tracks.

    Parameters
    ----------
    atoms : atom table (``frame`` int, ``y, x`` pixels, ``cls`` species).
    pixel_size : Å per pixel (calibrate it first: see :mod:`atomlens.chem.calibrate`).
    params : :class:`ChemParams`; defaults suit graphene with Si.
    track : overrides ``params.track`` when given (False: per-frame chemistry only,
        ``track_id`` = -1, e.g. for chunks of a long movie tracked afterwards with
        :func:`track_atoms`).
    """
    p = params or ChemParams()
    if track is not None:
        p = replace(p, track=bool(track))
    if not (pixel_size and np.isfinite(pixel_size) and pixel_size > 0):
        raise AtomTableError(f"pixel_size must be a positive number of Å, got {pixel_size!r}")
    table = check_atoms(atoms)
    n = len(table)
    bonds = find_bonds(
        table, pixel_size, p.bond_limits(), p.coordination_limits(), min_angle_deg=p.min_angle_deg
    )
    coord = coordination(n, bonds)
    faces = find_faces(table, bonds, min_size=p.min_ring)
    ring_mask = (faces["size"] <= p.max_ring).to_numpy()
    rings = faces[ring_mask].reset_index(drop=True)
    big = faces[~ring_mask].reset_index(drop=True)
    big["kind"] = np.where(
        big["area_px2"].to_numpy(dtype=float) * pixel_size**2 < p.hole_min_area_A2,
        "vacancy",
        "hole",
    )
    holes = big[big["kind"] == "hole"]
    counts = ring_counts(n, rings)
    on_bounded = face_membership(n, faces)
    on_hole = face_membership(n, holes) > 0
    edge = on_hole | (on_bounded < coord) | (coord == 0)
    inner = pd.concat(
        [rings, big[big["kind"] == "vacancy"].drop(columns="kind")], ignore_index=True
    )
    defects, defect_id = find_defects(table, bonds, inner, coord, edge, p.host, p.max_ring)
    defects, defect_id = add_holes(defects, defect_id, holes, table, coord)
    table = table.drop(columns=[c for c in ATOM_CHEM_COLUMNS if c in table])
    table["coordination"] = coord
    for col in counts:
        table[col] = counts[col].to_numpy()
    table["edge"] = edge
    table["defect_id"] = defect_id
    kinds = defects.set_index("defect_id")["type"] if len(defects) else pd.Series(dtype=object)
    table["defect_type"] = table["defect_id"].map(kinds).fillna("none")
    if p.track:
        table["track_id"] = _link(table, pixel_size, p.max_disp_A, p.max_gap, p.match_species)
    else:
        table["track_id"] = -1
    dop = dopant_geometry(table, bonds, pixel_size, p.host)
    if len(dop):
        dop["defect_id"] = defect_id[dop["atom"].to_numpy(dtype=int)]
        dop["track_id"] = table["track_id"].to_numpy()[dop["atom"].to_numpy(dtype=int)]
    return ChemResult(table, bonds, rings, big, defects, dop, float(pixel_size), p)


def track_atoms(
    atoms: pd.DataFrame,
    pixel_size: float,
    max_displacement_A: float | Mapping[str, float] | None = None,
    max_gap: int = 2,
    match_species: bool = True,
) -> pd.DataFrame:
    """A copy of the atom table with a ``track_id`` column (see
    :func:`atomlens.chem.tracking.link_atoms`). ``max_displacement_A``: Å, one number
    or per species (default ``{"*": 1.0, "Si": 3.0}``)."""
    table = check_atoms(atoms)
    disp = ChemParams().max_disp_A if max_displacement_A is None else max_displacement_A
    table["track_id"] = _link(table, pixel_size, disp, max_gap, match_species)
    return table


def _link(
    table: pd.DataFrame,
    pixel_size: float,
    disp: float | Mapping[str, float],
    max_gap: int,
    match_species: bool,
) -> np.ndarray:
    """Track ids (one per row) by :func:`link_atoms`; per-species displacements (Å)
    collapse to their largest when species are not matched."""
    if isinstance(disp, Mapping) and not match_species:
        disp = max(disp.values())
    return link_atoms(table, pixel_size, disp, max_gap, match_species)
