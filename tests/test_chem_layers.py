"""napari layer-data tuples from chemistry results (pure; no viewer needed)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from atomlens._napari.chem_layers import (
    RING_COLOURS,
    bonds_layer_tuple,
    chem_layer_tuples,
    rings_layer_tuple,
    tracks_layer_tuple,
)
from atomlens.chem import analyze
from tests.test_chem_fixtures import honeycomb, stone_wales, table

PS = 0.1


@pytest.fixture(scope="module")
def result():
    yx = stone_wales(honeycomb(7, 7))
    cls = ["C"] * len(yx)
    cls[3] = "Si"
    atoms = pd.concat([table(yx + 0.05 * t, PS, cls, frame=t) for t in range(3)], ignore_index=True)
    return analyze(atoms, PS)


def test_bonds_vectors_start_and_end_on_atoms(result):
    data, kw, kind = bonds_layer_tuple(result.atoms, result.bonds, PS)
    assert kind == "vectors" and data.shape == (len(result.bonds), 2, 3)
    a, b = result.bonds["a"].to_numpy(), result.bonds["b"].to_numpy()
    yx = result.atoms[["y", "x"]].to_numpy()
    assert np.allclose(data[:, 0, 1:], yx[a]) and np.allclose(
        data[:, 0, 1:] + data[:, 1, 1:], yx[b]
    )
    assert np.array_equal(data[:, 0, 0], result.atoms["frame"].to_numpy()[a])
    assert np.all(data[:, 1, 0] == 0)  # a bond stays in its frame
    assert kw["scale"] == (1.0, PS, PS) and kw["axis_labels"] == ("t", "y", "x")
    assert len(kw["features"]) == len(data)


def test_ring_points_coloured_by_size(result):
    data, kw, kind = rings_layer_tuple(result.rings, PS)
    assert kind == "points" and data.shape == (len(result.rings), 3)
    sizes = kw["features"]["size"].to_numpy()
    assert (sizes == 7).sum() == 6  # two 7-rings in each of 3 frames
    assert np.allclose(kw["face_color"][sizes == 7], RING_COLOURS[7])
    assert np.allclose(kw["face_color"][sizes == 6], RING_COLOURS[6])


def test_tracks_data_and_species_filter(result):
    data, kw, kind = tracks_layer_tuple(result.atoms, PS)
    assert kind == "tracks" and data.shape == (len(result.atoms), 4)
    # sorted by track then time; the columns are track_id, t, y, x
    order = np.lexsort((data[:, 1], data[:, 0]))
    assert np.array_equal(order, np.arange(len(data)))
    si, _, _ = tracks_layer_tuple(result.atoms, PS, species="Si")
    assert len(si) == 3 and len(np.unique(si[:, 0])) == 1


def test_tuples_build_napari_layers(result):
    from napari.layers import Layer

    tuples = chem_layer_tuples(result)
    assert [k for _, _, k in tuples] == ["vectors", "points", "points", "tracks"]
    for data, kw, kind in tuples:
        layer = Layer.create(data, dict(kw), kind)
        assert layer.ndim == 3
        assert tuple(layer.scale) == pytest.approx((1.0, PS, PS))


@pytest.mark.gui
def test_add_chem_layers_replaces_by_name(make_napari_viewer_proxy, result):
    from atomlens._napari.chem_layers import add_chem_layers

    viewer = make_napari_viewer_proxy()
    add_chem_layers(viewer, result)
    add_chem_layers(viewer, result)  # a second run replaces, not duplicates
    names = [layer.name for layer in viewer.layers]
    assert sorted(names) == ["bonds", "defects", "ring centres", "tracks"]
