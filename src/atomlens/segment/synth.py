"""Training structures and images: moved to :mod:`atomlens.simulate` (one renderer).

Kept as a thin import so older code keeps working; new code imports from
:mod:`atomlens.simulate.patches` (structures) and :mod:`atomlens.simulate.training`
(imaging, samples, masks).
"""

from atomlens.simulate.lattice import CC_BOND_A
from atomlens.simulate.patches import LATTICE_A, Patch, graphene_patch
from atomlens.simulate.training import (
    Imaging,
    amorphous_cover,
    film_mask,
    geometric_transform,
    label_mask,
    render_positions,
    render_sample,
)

__all__ = [
    "CC_BOND_A",
    "LATTICE_A",
    "Imaging",
    "Patch",
    "amorphous_cover",
    "film_mask",
    "geometric_transform",
    "graphene_patch",
    "label_mask",
    "render_positions",
    "render_sample",
]
