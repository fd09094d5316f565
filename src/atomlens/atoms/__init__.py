"""Probability maps -> atom coordinates, sub-pixel refinement, species: the atom table.

``detect(stack)`` is the one headless entry point (``iter_detect`` for per-frame
progress); ``find_atoms`` and ``refine_*`` are the building blocks; ``match_atoms`` /
``detection_scores`` compare detections with a truth table.
"""

from atomlens.atoms.detect import (
    COLUMNS,
    DetectionResult,
    FrameResult,
    atoms_in_frame,
    detect,
    empty_table,
    iter_detect,
)
from atomlens.atoms.find import find_atoms
from atomlens.atoms.match import detection_scores, match_atoms
from atomlens.atoms.refine import refine_com, refine_gaussian

__all__ = [
    "COLUMNS",
    "DetectionResult",
    "FrameResult",
    "atoms_in_frame",
    "detect",
    "empty_table",
    "iter_detect",
    "find_atoms",
    "detection_scores",
    "match_atoms",
    "refine_com",
    "refine_gaussian",
]
