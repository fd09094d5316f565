"""npe2 sample-data contribution: a simulated graphene-Si movie with its ground truth."""

from __future__ import annotations

from atomlens.viz.layers import LayerTuple, atoms_layer_tuple, image_layer_tuple


def simulated_movie() -> list[LayerTuple]:
    """The simulator's sample movie as an Image layer plus its true atoms as Points
    (features = the truth table, coloured by species)."""
    from atomlens._napari.autosave import on_first_use
    from atomlens.simulate import sample_movie

    on_first_use()  # the plugin's first use in this viewer: autosave, restore offer
    movie = sample_movie()
    meta = {"atomlens": {"pixel_size_source": "simulation", "truth": True}}
    return [
        image_layer_tuple(movie.frames, movie.pixel_size, "simulated movie", metadata=meta),
        atoms_layer_tuple(movie.atoms, movie.pixel_size, "true atoms"),
    ]


def pfm_movie() -> list[LayerTuple]:
    """A simulated PFM phase movie (20 frames, 128², walls moving under bias and pinning)
    as an Image layer plus its true walls as Labels (for the PFM domain walls dock)."""
    from atomlens._napari.autosave import on_first_use
    from atomlens.pfm.simulate import simulate_pfm

    on_first_use()
    movie = simulate_pfm(n_frames=20, size=128, seed=0)
    meta = {"atomlens": {"pixel_size_source": "simulation", "truth": True, "kind": "stack"}}
    phase = image_layer_tuple(movie.phase, None, "simulated PFM phase", metadata=meta)
    walls = (
        movie.walls.astype("uint8"),
        {
            "name": "true walls",
            "opacity": 0.5,
            "visible": False,
            "units": phase[1]["units"],
            "axis_labels": phase[1]["axis_labels"],
            "metadata": {"atomlens": {"kind": "walls"}},
        },
        "labels",
    )
    return [phase, walls]
