"""Pure display helpers (atomlens.viz): colour specs, layer tuples, GIF writing."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from atomlens.viz.animation import write_gif
from atomlens.viz.colours import SPECIES_COLOURS, angle_limits, colour_spec, robust_limits
from atomlens.viz.layers import atoms_layer_tuple, probability_layer_tuples


def test_species_get_fixed_colours_whatever_the_order() -> None:
    a = colour_spec("cls", pd.Series(["Si", "C", "C"]))
    b = colour_spec("cls", pd.Series(["C", "C", "N", "Si"]))
    assert a.kind == b.kind == "categorical"
    assert a.cycle["C"] == b.cycle["C"] == SPECIES_COLOURS["C"]
    assert a.cycle["Si"] == b.cycle["Si"] == SPECIES_COLOURS["Si"]
    assert b.cycle["N"] == SPECIES_COLOURS["N"]
    assert colour_spec("cls", pd.Series(["Xx"])).cycle["Xx"] not in (
        SPECIES_COLOURS["C"],
        SPECIES_COLOURS["Si"],
    )


def test_angles_are_cyclic_over_one_whole_period() -> None:
    rad = colour_spec("angle", np.array([-3.0, 0.1, 2.5]))
    assert rad.colormap == "twilight" and rad.contrast_limits == pytest.approx((-math.pi, math.pi))
    assert angle_limits(np.array([0.1, 6.0])) == pytest.approx((0, 2 * math.pi))
    assert angle_limits(np.array([-170.0, 90.0])) == (-180.0, 180.0)


def test_continuous_limits_are_fixed_over_all_frames() -> None:
    rng = np.random.default_rng(0)
    z = np.concatenate([rng.normal(0, 1, 500), rng.normal(5, 1, 500)])  # drifts over time
    spec = colour_spec("z1", z)
    assert spec.colormap == "viridis"
    lo, hi = spec.contrast_limits
    assert lo == pytest.approx(np.percentile(z, 1)) and hi == pytest.approx(np.percentile(z, 99))
    assert robust_limits(np.array([2.0, 2.0])) == (1.5, 2.5)
    assert robust_limits(np.array([np.nan])) == (0.0, 1.0)
    assert (
        colour_spec("selected", np.array([True, False])).cycle[True]
        != colour_spec("selected", np.array([True, False])).cycle[False]
    )


def test_small_integer_columns_are_categories() -> None:
    spec = colour_spec("size", pd.Series([6, 5, 7, 6], dtype="int64"))
    assert spec.kind == "categorical" and spec.cycle[5] != spec.cycle[6] != spec.cycle[7]
    assert colour_spec("coordination", pd.Series([3, 4, 3])).kind == "categorical"
    assert colour_spec("frame", pd.Series(np.arange(50))).kind == "continuous"


def test_atoms_tuple_and_probability_tuples() -> None:
    atoms = pd.DataFrame({"frame": [0, 1], "y": [1.0, 2.0], "x": [3.0, 4.0], "cls": ["C", "Si"]})
    data, kw, kind = atoms_layer_tuple(atoms, 0.1, "atoms")
    assert kind == "points" and data.tolist() == [[0, 1, 3], [1, 2, 4]]
    assert kw["scale"] == (1.0, 0.1, 0.1) and kw["size"] == pytest.approx(5.0)
    assert kw["face_color"] == "cls" and kw["face_color_cycle"]["Si"] == SPECIES_COLOURS["Si"]
    maps = np.random.default_rng(1).random((2, 3, 16, 16)).astype(np.float32)
    tuples = probability_layer_tuples(maps, ("background", "C", "Si"), 0.1, source="m")
    assert [t[1]["name"] for t in tuples] == ["P(background) m", "P(C) m", "P(Si) m"]
    np.testing.assert_array_equal(tuples[2][0], maps[:, 2])
    assert tuples[0][1]["visible"] is False and tuples[1][1]["contrast_limits"] == (0.0, 1.0)
    with pytest.raises(ValueError, match="class names"):
        probability_layer_tuples(maps, ("C", "Si"), 0.1)


def test_atoms_points_data_is_column_major_and_napari_keeps_it() -> None:
    """napari takes a min and a max over axis 0 of a Points layer's data twice on every
    move of the time slider: 45x faster on column-major data (docs/napari.md)."""
    from napari.layers import Layer

    rng = np.random.default_rng(0)
    atoms = pd.DataFrame(
        {"frame": np.repeat([0, 1], 50), "y": rng.random(100), "x": rng.random(100)}
    )
    data, kw, kind = atoms_layer_tuple(atoms, 0.1, "atoms")
    assert data.flags.f_contiguous and data.shape == (100, 3)
    np.testing.assert_array_equal(data, atoms[["frame", "y", "x"]].to_numpy(float))
    layer = Layer.create(data, kw, kind)
    assert layer.data.flags.f_contiguous
    layer.add([[1.0, 0.5, 0.5]])  # a point the user adds keeps it so
    assert layer.data.flags.f_contiguous and len(layer.data) == 101


def test_write_gif(tmp_path) -> None:
    import imageio.v2 as imageio

    frames = [np.full((40, 60, 4), v, np.uint8) for v in (0, 128, 255)]
    out = write_gif(frames, tmp_path / "a.gif", fps=10)
    back = imageio.mimread(out)
    assert len(back) == 3 and back[0].shape[:2] == (40, 60)
    with pytest.raises(ValueError, match="no frames"):
        write_gif([], tmp_path / "b.gif")
    with pytest.raises(ValueError, match="gif"):
        write_gif(frames, tmp_path / "b.png")
