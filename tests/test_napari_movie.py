"""Colour keys and movie export (atomlens.viz.keys, atomlens.viz.movie, `atomlens movie`).

Headless: no Qt. Pixels of rendered frames are checked against the colours the atoms
must have (colormap over fixed limits, neutral grey for atoms without a value)."""

from __future__ import annotations

import json
import math
import threading

import numpy as np
import pandas as pd
import pytest
from matplotlib import colormaps
from matplotlib.colors import to_rgb

from atomlens.viz.colours import colour_spec
from atomlens.viz.keys import NEUTRAL_GREY, ColourKey, key_for_spec, render_key, rgba_colours
from atomlens.viz.movie import (
    MovieRenderer,
    MovieStyle,
    bar_label,
    export_movie,
    movie_events,
    nice_bar_length,
)


def _atoms() -> pd.DataFrame:
    # one atom per frame in the middle (z1 = frame), one NaN atom in a corner of frame 0
    return pd.DataFrame({
        "frame": [0, 1, 2, 0],
        "y": [20.0, 20.0, 20.0, 6.0],
        "x": [30.0, 30.0, 30.0, 6.0],
        "z1": [0.0, 1.0, 2.0, np.nan],
        "cls": ["C", "Si", "C", "C"],
    })  # fmt: skip


def _frames() -> np.ndarray:
    return np.full((3, 40, 60), 0.5, np.float32)


def test_rgba_colours_follow_the_fixed_limits_and_grey_for_missing() -> None:
    atoms = _atoms()
    spec = colour_spec("z1", atoms["z1"])
    rgba = rgba_colours(spec, atoms["z1"])
    lo, hi = spec.contrast_limits
    cmap = colormaps["viridis"]
    for v, c in zip(atoms["z1"][:3], rgba[:3]):
        np.testing.assert_allclose(c, cmap((v - lo) / (hi - lo)), atol=1e-6)
    np.testing.assert_allclose(rgba[3, :3], to_rgb(NEUTRAL_GREY))
    species = rgba_colours(colour_spec("cls", atoms["cls"]), atoms["cls"])
    np.testing.assert_allclose(species[1, :3], to_rgb("#ff5a1f"))


def test_keys_name_units_limits_and_missing() -> None:
    atoms = _atoms()
    key = key_for_spec(colour_spec("z1", atoms["z1"]), atoms["z1"])
    assert key.kind == "continuous" and key.label == "z1 (latent units)"
    assert key.limits == pytest.approx(colour_spec("z1", atoms["z1"]).contrast_limits)
    assert key.n_missing == 1
    angle = key_for_spec(colour_spec("angle", np.array([-1.0, 2.0])))
    assert angle.units == "rad" and angle.limits == pytest.approx((-math.pi, math.pi))
    species = key_for_spec(colour_spec("cls", atoms["cls"]), atoms["cls"])
    assert species.title == "species" and dict(species.entries) == {"C": "#a6a6a6", "Si": "#ff5a1f"}
    rings = key_for_spec(colour_spec("size", pd.Series([5, 6, 7])), pd.Series([5, 6, 7]))
    assert rings.title == "ring size" and [e[0] for e in rings.entries] == ["5", "6", "7"]
    assert ColourKey.from_dict(key.to_dict()) == key
    img = render_key(key, 200, 120)
    assert img.shape == (200, 120, 3) and img.std() > 10


def test_scale_bar_lengths() -> None:
    assert nice_bar_length(20.0) == 2.0 and nice_bar_length(256 * 0.078) == 2.0
    assert nice_bar_length(400.0) == 50.0
    assert bar_label(5.0) == "5 Å" and bar_label(20.0) == "2 nm"


def test_rendered_frame_has_atoms_in_their_colours_scale_bar_and_key() -> None:
    atoms = _atoms()
    style = MovieStyle(zoom=4, key_width=150, marker_A=0.8)
    r = MovieRenderer(_frames(), atoms, 0.1, "z1", style)
    assert (r.height, r.width) == (160, 240 + 150) and r.zoom == 4
    spec = colour_spec("z1", atoms["z1"])
    lo, hi = spec.contrast_limits
    for t in range(3):
        img = r.render(t).astype(float) / 255
        assert img.shape == (160, 390, 3)
        centre = img[20 * 4 + 2, 30 * 4 + 2]  # the atom's pixel (data pixel centres at +zoom/2)
        want = colormaps["viridis"]((atoms["z1"][t] - lo) / (hi - lo))[:3]
        np.testing.assert_allclose(centre, want, atol=0.02)
    img = r.render(0).astype(float) / 255
    np.testing.assert_allclose(
        img[6 * 4 + 2, 6 * 4 + 2], to_rgb(NEUTRAL_GREY), atol=0.02
    )  # no latent: grey
    # scale bar: 60 px * 0.1 Å = 6 Å field -> a 1 Å bar = 10 data px = 40 movie px of white
    white = (img[:, :240] > 0.97).all(-1)
    rows = white.sum(1)
    assert r.bar_length_A == 1.0 and 36 <= rows.max() <= 42  # less its black outline
    assert img[:, 240:].std() > 0.05  # the colour key is drawn in its panel


def test_mp4_and_gif_written_and_read_back(tmp_path) -> None:
    import imageio.v3 as iio

    atoms = _atoms()
    mp4 = export_movie(
        _frames(), atoms, 0.1, tmp_path / "m.mp4", "z1", fps=4, style=MovieStyle(zoom=2)
    )
    movie = iio.imread(mp4)
    assert movie.shape[0] == 3 and movie.shape[1:3] == (80, 120 + 170)
    gif = export_movie(
        _frames(), atoms, 0.1, tmp_path / "m.gif", "cls", fps=4, style=MovieStyle(zoom=2)
    )
    assert iio.imread(gif).shape[0] == 3 and iio.immeta(gif)["duration"] == 250
    with pytest.raises(ValueError, match="mp4 or .gif"):
        export_movie(_frames(), atoms, 0.1, tmp_path / "m.avi", "z1")
    with pytest.raises(ValueError, match="no column 'z9'.*z1"):
        export_movie(_frames(), atoms, 0.1, tmp_path / "x.mp4", "z9")


def test_stop_keeps_the_frames_done(tmp_path) -> None:
    import imageio.v3 as iio

    stop = threading.Event()
    gen = movie_events(_frames(), _atoms(), 0.1, tmp_path / "s.gif", "z1", stop=stop)
    first = next(gen)
    assert (first.done, first.total) == (1, 3)
    stop.set()
    with pytest.raises(StopIteration) as done:
        next(gen)
    assert iio.imread(done.value.value).shape[0] == 1


def test_cli_movie_from_a_run_folder(tmp_path, capsys) -> None:
    import imageio.v3 as iio

    from atomlens.cli import main

    frames = _frames()
    np.save(tmp_path / "movie.npy", frames)
    run = tmp_path / "run"
    run.mkdir()
    _atoms().to_parquet(run / "atoms.parquet")
    (run / "run.json").write_text(json.dumps({
        "stack": str(tmp_path / "movie.npy"), "pixel_size_A": 0.1,
        "config": {"input": {"frames": "0:2"}},
    }))  # fmt: skip
    out = tmp_path / "z1.mp4"
    assert main(["movie", str(run), "--colour", "z1", "--out", str(out), "--zoom", "2"]) == 0
    assert iio.imread(out).shape[0] == 2  # only the frames the run analysed
    assert main(["movie", str(run), "--colour", "nope", "--out", str(out)]) == 2
    assert "no column 'nope'" in capsys.readouterr().err
    assert (
        main(["movie", str(tmp_path), "--colour", "z1", "--out", str(out)]) == 0
    )  # demo layout: run/ inside
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["movie", str(empty), "--out", str(out)]) == 2
    assert "no run.json" in capsys.readouterr().err
