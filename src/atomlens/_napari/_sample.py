"""npe2 sample-data contribution: a simulated graphene-Si movie with its ground truth."""

from __future__ import annotations

from atomlens.viz.layers import LayerTuple, atoms_layer_tuple, image_layer_tuple


def simulated_movie() -> list[LayerTuple]:
    """The simulator's sample movie as an Image layer plus its true atoms as Points
    (features = the truth table, coloured by species)."""
    from atomlens.simulate import sample_movie

    movie = sample_movie()
    meta = {"atomlens": {"pixel_size_source": "simulation", "truth": True}}
    return [
        image_layer_tuple(movie.frames, movie.pixel_size, "simulated movie", metadata=meta),
        atoms_layer_tuple(movie.atoms, movie.pixel_size, "true atoms"),
    ]
