"""The "Live" dock: frames dropped into a folder grow the layers and fill the events
table; the viewer follows the newest frame until the user moves the slider; a click on
an event jumps to its frame and place."""

from __future__ import annotations

import os

import numpy as np
import pytest

from atomlens.io.writers import write_tiff
from atomlens.simulate import simulate_movie

N_FRAMES = 4


@pytest.fixture(scope="module")
def movie():
    # 160² frames at 0.1 Å/px: a growing hole and hopping Si give events from frame 1 on
    return simulate_movie(
        N_FRAMES,
        size=160,
        seed=6,
        n_si3=2,
        n_si4=0,
        si_hop_prob=0.9,
        n_holes=1,
        hole_radius_A=3.0,
        hole_growth_rate=4.0,
        n_vacancies=0,
        n_stone_wales=0,
        min_defect_separation_A=3.0,
        drift_px_per_frame=0.5,
    )


def drop(folder, t, image) -> None:
    tmp = folder / f".frame_{t}.tif.tmp"
    write_tiff(tmp, image, 0.1)
    os.replace(tmp, folder / f"frame_{t}.tif")


def test_frame_buffer_grows_without_losing_frames():
    from atomlens._napari.live_dock import FrameBuffer

    buf = FrameBuffer()
    frames = np.random.default_rng(0).random((9, 8, 8)).astype(np.float32)
    for f in frames:
        view = buf.append(f)
    assert view.shape == (9, 8, 8) and np.array_equal(view, frames)
    with pytest.raises(ValueError, match="one frame size"):
        buf.append(np.zeros((4, 4)))


@pytest.mark.gui
def test_live_dock_layers_grow_and_events_jump(make_napari_viewer, qtbot, movie, tmp_path):
    from atomlens._napari.live_dock import LiveDock
    from atomlens.live.output import read_table

    folder, out = tmp_path / "incoming", tmp_path / "out"
    folder.mkdir()
    viewer = make_napari_viewer()
    dock = LiveDock(viewer)
    viewer.window.add_dock_widget(dock, name="Live")
    worker = dock.start(folder, out)
    assert worker is not None and not dock.start_button.enabled and dock.stop_button.enabled

    sizes = []
    for t in range(N_FRAMES):
        drop(folder, t, movie.frames[t])
        qtbot.waitUntil(lambda t=t: dock.movie.n == t + 1, timeout=120_000)
        movie_layer, atoms_layer = dock.layers["movie"], dock.layers["atoms"]
        sizes.append((movie_layer.data.shape[0], len(atoms_layer.data)))
        if t == 1:
            viewer.dims.set_current_step(0, 0)  # the user looks back at frame 0
            assert not dock.follow
        elif t == 0:
            assert dock.follow and viewer.dims.current_step[0] == 0
    # the layers grew frame by frame: T = 1, 2, 3, 4 and more atoms each time
    assert [s[0] for s in sizes] == list(range(1, N_FRAMES + 1))
    assert all(b > a for (_, a), (_, b) in zip(sizes[:-1], sizes[1:]))
    # the slider stayed where the user put it
    assert viewer.dims.current_step[0] == 0
    atoms = read_table(out, "atoms") if (out / "watch_state.json").exists() else None
    assert atoms is not None and len(dock.layers["atoms"].data) == len(atoms)
    assert dock.layers["atoms"].features["cls"].astype(str).isin(["C", "Si"]).all()
    assert "live tracks" in [lay.name for lay in viewer.layers]
    assert dock.layers["movie"].scale[-1] == pytest.approx(0.1)  # Å

    # events table filled, one row per event written to OUT/events.csv
    events = read_table(out, "events")
    qt = dock.events_table.native
    assert len(events) > 0 and qt.rowCount() == len(events) == len(dock.events)
    assert "latency" in dock.status.value

    # a click on the last event: slider to its frame, camera on its place
    from qtpy.QtCore import Qt

    row = qt.rowCount() - 1
    ev = dock.events.iloc[row]
    rect = qt.visualItemRect(qt.item(row, 0))
    qtbot.mouseClick(qt.viewport(), Qt.MouseButton.LeftButton, pos=rect.center())
    assert viewer.dims.current_step[0] == int(ev["t"])
    np.testing.assert_allclose(viewer.camera.center[-2:], [ev["y"] * 0.1, ev["x"] * 0.1], atol=1e-6)

    with qtbot.waitSignal(worker.finished, timeout=60_000):
        dock.stop()
    assert dock.start_button.enabled and "stopped" in dock.status.value
