"""Stop on the long dock actions that had none: Defects (chemistry in frame pieces), Cut
subimages (windows in pieces of centres) and PFM (inside training). Each test starts the
action, presses Stop after the first piece, and checks that what was done is usable and
that the layers are kept; plus the headless pieces behind them."""

from __future__ import annotations

import threading
import warnings

import numpy as np
import pytest

from atomlens._napari._layers import add_tuple
from atomlens.simulate import sample_movie
from atomlens.viz.layers import atoms_layer_tuple, image_layer_tuple
from atomlens.workflows.events import Cancelled, drain

pytestmark = pytest.mark.gui

COLS = ["frame", "y", "x", "cls", "atom_id"]


@pytest.fixture(scope="module")
def movie():
    return sample_movie()


def _stop_when(module, name: str, monkeypatch, when) -> None:
    """Wrap the workflow generator ``module.name`` so that its ``stop`` event is set on
    the worker thread as soon as it yields an event ``when`` accepts: Stop pressed right
    after that piece, with no race between the worker and the test's event loop."""
    real = getattr(module, name)

    def tapped(*args, stop=None, **kwargs):
        gen = real(*args, stop=stop, **kwargs)
        try:
            while True:
                ev = next(gen)
                if when(ev):
                    stop.set()
                yield ev
        except StopIteration as done:
            return done.value

    monkeypatch.setattr(module, name, tapped)


def test_cut_windows_in_pieces_equal_one_cut_and_stop_keeps_the_first(movie) -> None:
    from atomlens.workflows.latent import (
        DescriptorRecipe,
        cut_windows,
        cut_windows_events,
        prepare_movie,
    )

    recipe = DescriptorRecipe(window=16)
    prepared = prepare_movie(movie.frames, recipe, pixel_size=movie.pixel_size)
    whole = cut_windows(prepared, movie.atoms, recipe)
    events: list = []
    pieces = drain(cut_windows_events(prepared, movie.atoms, recipe, chunk=500), events.append)
    np.testing.assert_array_equal(pieces.index, whole.index)
    np.testing.assert_array_equal(pieces.images, whole.images)
    assert [e.done for e in events][-1] == len(movie.atoms) and not pieces.stopped

    stop = threading.Event()
    part = drain(
        cut_windows_events(prepared, movie.atoms, recipe, chunk=500, stop=stop),
        lambda ev: stop.set(),
    )
    assert part.stopped and 0 < len(part.index) < len(whole.index)
    assert part.index.max() < 500  # the first piece only
    k = len(part.index)
    np.testing.assert_array_equal(part.images, whole.images[:k])


def test_defects_stop_keeps_the_frames_done(make_napari_viewer, qtbot, movie, monkeypatch) -> None:
    from atomlens._napari.defects_dock import DefectsDock
    from atomlens.chem import analyze
    from atomlens.workflows import chemistry

    _stop_when(chemistry, "analyze_events", monkeypatch, lambda ev: True)

    px = movie.pixel_size
    viewer = make_napari_viewer()
    add_tuple(viewer, image_layer_tuple(movie.frames, px, "movie"))
    pts = add_tuple(viewer, atoms_layer_tuple(movie.atoms[COLS], px, name="atoms"))
    dock = DefectsDock(viewer)
    viewer.window.add_dock_widget(dock, name="Defects")
    worker = dock.run_chemistry()
    assert dock.stop_button.enabled and not dock.run_button.enabled
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        pass
    qtbot.waitUntil(lambda: "stopped" in dock.status.value, timeout=10_000)
    n_done = chemistry.CHUNK_FRAMES
    assert f"{n_done} frame(s) done" in dock.status.value
    assert dock.run_button.enabled and not dock.stop_button.enabled
    dock.stop()  # the button itself: sets the flag, says so
    assert dock._stop.is_set() and "stopping" in dock.status.value
    assert dock.progress.value == n_done < dock.progress.max == movie.frames.shape[0]
    assert [lay.name for lay in viewer.layers] == ["movie", "atoms"]  # layers kept
    # the frames done carry the same chemistry as analysing them alone
    done = movie.atoms["frame"].to_numpy() < n_done
    alone = analyze(movie.atoms[COLS][done], px)
    feats = pts.features
    np.testing.assert_array_equal(
        feats["coordination"].to_numpy()[done], alone.atoms["coordination"].to_numpy()
    )
    assert set(feats["defect_type"][~done]) == {"not analysed"}
    assert set(dock.rows["frame"]) <= set(range(n_done)) and len(dock.rows) == len(alone.defects)
    # a row still jumps to its atoms (rows of the layer)
    target = dock.jump_to(0)
    assert target is not None and pts.selected_data == set(target.atoms)
    assert np.all(pts.data[list(pts.selected_data), 0] == target.frame)
    sel = feats["defect_id"].to_numpy()[list(pts.selected_data)]
    assert len(set(sel)) == 1 and sel[0] >= 0


def test_subimages_stop_keeps_the_windows_cut(
    make_napari_viewer, qtbot, movie, monkeypatch
) -> None:
    from atomlens._napari.subimage_widget import SubimageWidget
    from atomlens.workflows import latent

    _stop_when(latent, "cut_windows_events", monkeypatch, lambda ev: True)

    px = movie.pixel_size
    viewer = make_napari_viewer()
    img = add_tuple(viewer, image_layer_tuple(movie.frames, px, "movie"))
    pts = add_tuple(viewer, atoms_layer_tuple(movie.atoms[COLS], px, name="atoms"))
    widget = SubimageWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.atoms.value, widget.image.value = pts, img
    widget.window.value, widget.chunk = 16, 300
    worker = widget.cut()
    assert widget.stop_button.enabled and not widget.cut_button.enabled
    with qtbot.waitSignal(worker.finished, timeout=60_000):
        pass
    qtbot.waitUntil(lambda: widget.current is not None, timeout=10_000)
    subs = widget.current
    assert subs.windows.stopped and 0 < len(subs.images) and subs.index.max() < 300
    assert "stopped" in widget.status.value and widget.cut_button.enabled
    assert widget.progress.value == 300 < widget.progress.max == len(movie.atoms)
    assert [lay.name for lay in viewer.layers] == ["movie", "atoms"]  # none added
    # the windows kept are usable: the gallery shows them, centred on their atoms
    assert widget.gallery is not None and widget.gallery.rows
    row = int(subs.index[0])
    win = subs.images[0]
    assert win.shape == (16, 16) and np.isfinite(win).all()
    assert row in set(widget.gallery.rows)


def test_pfm_stop_inside_training_keeps_a_result(make_napari_viewer, qtbot, monkeypatch) -> None:
    from atomlens._napari._sample import pfm_movie
    from atomlens._napari.pfm_widget import PFMWidget
    from atomlens.workflows import pfm
    from atomlens.workflows.events import Progress

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        phase, _walls = pfm_movie()
    small = phase[0][:4, :64, :64]
    # headless: Stop before training -> Cancelled, nothing to keep
    stop = threading.Event()
    stop.set()
    recipe = pfm.PFMRecipe(window=16, n_per_frame=15, epochs=2)
    with pytest.raises(Cancelled):
        drain(pfm.run(small, recipe, stop=stop))

    viewer = make_napari_viewer()
    add_tuple(viewer, (small, phase[1], phase[2]))
    widget = PFMWidget(viewer)
    viewer.window.add_dock_widget(widget)
    widget.window.value, widget.per_frame.value, widget.epochs.value = 16, 15, 200
    seen: list = []
    _stop_when(  # Stop inside training, after two epochs
        pfm, "run", monkeypatch, lambda ev: isinstance(ev, Progress) and ev.done >= 2
    )
    worker = widget.run()
    worker.yielded.connect(seen.append)
    with qtbot.waitSignal(worker.finished, timeout=300_000):
        pass
    res = widget.result
    assert res is not None and res.stopped and 2 <= res.epochs_done < 200
    assert widget.progress.max == 200 and 2 <= widget.progress.value < 200
    assert np.isfinite(res.table["D"]).all() and len(res.table) > 0
    assert "stopped: model of" in widget.status.value
    qtbot.waitUntil(lambda: "PFM windows" in viewer.layers, timeout=10_000)
    assert len(viewer.layers["PFM windows"].data) == len(res.table)
    walls = viewer.layers["PFM walls (Canny)"]
    assert type(walls).__name__ == "Image" and walls.data.shape == small.shape
    assert any("left" in getattr(ev, "message", "") for ev in seen)  # time left per epoch
    from atomlens._napari.state import session_for

    qtbot.waitUntil(lambda: session_for(viewer).key_dock is not None, timeout=10_000)
