"""Chemistry from atom coordinates: bonds, rings, defects, tracking, calibration.

Headless; no Qt. Entry point: :func:`analyze` (atom table + pixel size in Å ->
:class:`ChemResult`).
"""

from atomlens.chem.analyze import AtomTableError, ChemParams, ChemResult, analyze, track_atoms
from atomlens.chem.bonds import bond_graph, find_bonds
from atomlens.chem.calibrate import (
    Calibration,
    calibrate_fft,
    calibrate_lattice,
    calibrate_nn,
    calibrate_pixel_size,
)
from atomlens.chem.defects import dopant_environment, dopant_geometry, find_defects
from atomlens.chem.rings import find_faces, ring_counts
from atomlens.chem.tracking import (
    cluster_orientation,
    coordination_switches,
    link_atoms,
    track_series,
)

__all__ = [
    "AtomTableError",
    "Calibration",
    "ChemParams",
    "ChemResult",
    "analyze",
    "bond_graph",
    "calibrate_fft",
    "calibrate_lattice",
    "calibrate_nn",
    "calibrate_pixel_size",
    "cluster_orientation",
    "coordination_switches",
    "dopant_environment",
    "dopant_geometry",
    "find_bonds",
    "find_defects",
    "find_faces",
    "link_atoms",
    "ring_counts",
    "track_atoms",
    "track_series",
]
