"""Open the results of ``atomlens run`` / ``atomlens demo`` in napari (thin shell).

Layers: the movie and the atom table (through the project reader), the probability maps,
and the chemistry layers (bonds, ring centres, defects, tracks), all on one Å scale.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def results_layer_tuples(out: Path) -> list[tuple]:
    """Layer-data tuples for a results folder (``run/`` inside a demo folder works too)."""
    from atomlens._napari.chem_layers import (
        bonds_layer_tuple,
        defects_layer_tuple,
        rings_layer_tuple,
        tracks_layer_tuple,
    )
    from atomlens.io.project import load_project, project_layer_data
    from atomlens.viz.layers import probability_layer_tuples

    out = Path(out)
    if not (out / "project.atomlens").exists() and (out / "run" / "project.atomlens").exists():
        out = out / "run"
    project_dir = out / "project.atomlens"
    if not project_dir.exists():
        raise FileNotFoundError(f"{out} holds no AtomLens results (no project.atomlens inside)")
    layers = project_layer_data(project_dir)
    px = load_project(project_dir).pixel_size
    if (out / "maps.zarr").exists():
        import zarr

        z = zarr.open_array(str(out / "maps.zarr"), mode="r")
        layers += probability_layer_tuples(
            np.asarray(z, dtype=np.float32), list(z.attrs["classes"]), px, source="U-Net"
        )
    atoms = pd.read_parquet(out / "atoms.parquet")
    if (out / "bonds.csv").exists():
        layers.append(bonds_layer_tuple(atoms, pd.read_csv(out / "bonds.csv"), px))
    for name, build in (("rings", rings_layer_tuple), ("defects", defects_layer_tuple)):
        if (out / f"{name}.csv").exists():
            layers.append(build(pd.read_csv(out / f"{name}.csv"), px))
    if "track_id" in atoms and (atoms["track_id"] >= 0).any():
        layers.append(tracks_layer_tuple(atoms, px, species="Si"))
    return layers


def open_results_in_napari(out: Path) -> None:
    """Start napari with every result layer loaded and run its event loop."""
    import napari
    from napari.layers import Layer

    viewer = napari.Viewer(title=f"AtomLens: {out}")
    for data, kw, kind in results_layer_tuples(out):
        if kind == "tracks" and len(data) == 0:
            continue
        viewer.add_layer(Layer.create(data, dict(kw), kind))
    napari.run()
