"""Pure helpers that turn AtomLens data into display data (no Qt, no napari import).

``layers`` builds napari layer-data tuples (plain ``(data, kwargs, type)`` tuples) from
stacks, probability maps and atom tables, and maps Points data back to atom tables;
``colours`` decides how a feature column is coloured (fixed categorical species colours,
cyclic maps for angles, contrast limits fixed over all frames); ``animation`` writes GIFs.
"""

from atomlens.viz.colours import SPECIES_COLOURS, ColourSpec, colour_spec, species_colour_cycle
from atomlens.viz.layers import (
    atoms_layer_tuple,
    image_layer_tuple,
    points_to_atoms,
    probability_layer_tuples,
)

__all__ = [
    "SPECIES_COLOURS",
    "ColourSpec",
    "atoms_layer_tuple",
    "colour_spec",
    "image_layer_tuple",
    "points_to_atoms",
    "probability_layer_tuples",
    "species_colour_cycle",
]
