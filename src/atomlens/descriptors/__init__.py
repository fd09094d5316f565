"""Descriptors: subimage stacks around atoms, ring centres, wall pixels or a grid."""

from atomlens.descriptors.windows import (
    BORDERS,
    DescriptorError,
    Subimages,
    extract_time_delayed,
    extract_windows,
    grid_centres,
    normalize_stack,
)

__all__ = [
    "BORDERS",
    "DescriptorError",
    "Subimages",
    "extract_time_delayed",
    "extract_windows",
    "grid_centres",
    "normalize_stack",
]
