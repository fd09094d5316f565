"""Reader, writer and sample data, headless and in a real napari viewer (Xvfb)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from atomlens._napari._reader import get_reader, read_stacks
from atomlens._napari._writer import write_atoms_csv
from atomlens.io import write_tiff
from atomlens.io.atoms_table import ensure_edit_columns, read_atoms_csv
from atomlens.viz.layers import atoms_layer_tuple, points_to_atoms


def _atoms() -> pd.DataFrame:
    return pd.DataFrame(
        {
            "frame": [0, 0, 1, 2],
            "y": [5.5, 10.25, 20.0, 30.0],
            "x": [7.0, 12.5, 21.0, 3.0],
            "cls": ["C", "Si", "C", "C"],
            "prob": [0.9, 0.8, 0.95, 0.7],
        }
    )


def test_get_reader_declines_unknown_suffixes(tmp_path) -> None:
    assert get_reader(str(tmp_path / "x.png")) is None
    assert get_reader([str(tmp_path / "a.npy"), str(tmp_path / "b.txt")]) is None
    assert get_reader(str(tmp_path / "a.dm4")) is read_stacks


def test_reader_scales_layer_in_angstrom(tmp_path) -> None:
    data = np.random.default_rng(0).random((3, 32, 40)).astype(np.float32)
    path = write_tiff(tmp_path / "movie.tif", data, pixel_size=0.125)
    ((arr, kw, kind),) = read_stacks(str(path))
    assert kind == "image" and arr.shape == (3, 32, 40)
    assert kw["scale"] == pytest.approx((1.0, 0.125, 0.125))
    assert kw["units"][1:] == ("angstrom", "angstrom")
    assert kw["axis_labels"] == ("t", "y", "x")


def test_reader_error_names_the_problem(tmp_path) -> None:
    bad = tmp_path / "bad.npy"
    np.save(bad, np.zeros((4, 4)))
    with pytest.raises(ValueError, match="too small"):
        read_stacks(str(bad))


def test_writer_round_trips_moved_points(tmp_path) -> None:
    atoms = _atoms()
    data, kw, _ = atoms_layer_tuple(atoms, 0.1, "atoms")
    data = data.copy()
    data[1, 1:] += (1.5, -2.0)  # the user dragged the Si atom
    (out,) = write_atoms_csv(str(tmp_path / "atoms"), data, {"features": kw["features"]})
    back = read_atoms_csv(out)
    assert out.endswith(".csv")
    assert list(back.columns[:3]) == ["frame", "y", "x"]
    assert back["frame"].tolist() == [0, 0, 1, 2]
    assert back.loc[1, "y"] == pytest.approx(11.75) and back.loc[1, "x"] == pytest.approx(10.5)
    assert back["cls"].tolist() == ["C", "Si", "C", "C"]
    assert not back["edited"].any()
    expected = ensure_edit_columns(points_to_atoms(data, kw["features"]))
    pd.testing.assert_frame_equal(expected, back[expected.columns], check_dtype=False)


@pytest.mark.gui
def test_reader_writer_and_sample_in_viewer(make_napari_viewer, tmp_path) -> None:
    viewer = make_napari_viewer()
    data = np.random.default_rng(1).random((2, 24, 24)).astype(np.float32)
    path = write_tiff(tmp_path / "frames.tif", data, pixel_size=0.08)
    (img,) = viewer.open(str(path), plugin="atomlens")
    assert img.data.shape == (2, 24, 24)
    assert tuple(img.scale) == pytest.approx((1.0, 0.08, 0.08))
    assert str(img.units[1]) == "angstrom" and tuple(img.axis_labels) == ("t", "y", "x")

    layers = viewer.open_sample("atomlens", "simulated_movie")
    movie, atoms = layers[-2], layers[-1]
    assert movie.data.ndim == 3 and atoms.data.shape[1] == 3
    assert tuple(atoms.scale) == pytest.approx(tuple(movie.scale))
    assert {"frame", "cls", "coordination"} <= set(atoms.features.columns)
    # fixed species colours: every Si is the same orange-red, every C the same grey
    si = atoms.features["cls"].to_numpy() == "Si"
    assert si.any() and (~si).any()
    fc = atoms.face_color
    np.testing.assert_allclose(fc[si], np.tile(fc[si][0], (si.sum(), 1)))
    assert fc[si][0][0] > 0.9 and fc[si][0][2] < 0.3  # orange/red
    assert np.allclose(fc[~si][:, 0], fc[~si][:, 1])  # grey
    out = atoms.save(str(tmp_path / "truth.csv"), plugin="atomlens")
    table = pd.read_csv(out[0] if isinstance(out, list) else out)
    assert len(table) == len(atoms.data)
    np.testing.assert_allclose(table[["y", "x"]].to_numpy(), atoms.data[:, 1:])
