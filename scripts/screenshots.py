"""Screenshots of every AtomLens dock on the real Si movie at 1280x800, for the README.

    xvfb-run -a -s "-screen 0 1280x800x24" .venv/bin/python scripts/screenshots.py

Opens ``../shared/data/real/graphene_si1c3_movie.npz`` (0.078 Å/px), opens every dock as
the Plugins menu does, runs each action (detect all frames, chemistry with layers, cut
subimages, train an rVAE, encode and colour by z1, trajectory of a tracked atom, correct,
PFM on the PFM sample) and saves the whole window (docks, colour key, plots) after each
into ``docs/screenshots/gui_*.png``. Prints the files as JSON.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "bench"))

from gui import REAL_MOVIE, REAL_PIXEL_SIZE_A, _process, open_docks, wait_for  # noqa: E402


def _wait(app, worker, timeout_s: float = 900.0) -> None:
    if worker is None:
        raise SystemExit("an action did not start (see the notification above)")
    done: list[bool] = []
    worker.finished.connect(lambda: done.append(True))
    t0 = time.perf_counter()
    while not done and time.perf_counter() - t0 < timeout_s:
        app.processEvents()
        time.sleep(0.005)
    _process(app, 0.8)


def _raise(widget) -> None:
    """Bring the dock holding ``widget`` to the front of its tab group."""
    from qtpy.QtWidgets import QDockWidget

    w = getattr(widget, "root_native_widget", None) or getattr(widget, "native", widget)
    while w is not None and not isinstance(w, QDockWidget):
        w = w.parentWidget()
    if w is not None:
        w.show()
        w.raise_()


def _shot(viewer, app, path: Path) -> str:
    import imageio.v2 as imageio

    _process(app, 0.8)
    image = viewer.screenshot(canvas_only=False, flash=False)
    imageio.imwrite(path, image[..., :3], optimize=True)
    return str(path.relative_to(REPO)) if path.is_relative_to(REPO) else str(path)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "screenshots"))
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()
    if not REAL_MOVIE.exists():
        raise SystemExit(f"the real movie {REAL_MOVIE} is not here (it lives in ../shared/data)")
    import napari
    from qtpy.QtWidgets import QApplication

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    viewer = napari.Viewer(show=True)
    app = QApplication.instance()
    viewer.window._qt_window.resize(1280, 800)  # the script's window; the plugin never does this
    docks = open_docks(viewer)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        [img] = viewer.open(str(REAL_MOVIE), plugin="atomlens")
    viewer.reset_view()
    files = {}

    det = docks["Detect atoms"]
    det.image.value, det.frames.value, det.pixel_size.value = img, "all", REAL_PIXEL_SIZE_A
    _wait(app, det.run())
    wait_for(app, lambda: f"atoms {img.name}" in viewer.layers)
    atoms = viewer.layers[f"atoms {img.name}"]
    viewer.dims.set_current_step(0, 10)
    _raise(det)
    files["detect"] = _shot(viewer, app, out / "gui_detect.png")

    defects = docks["Defects"]
    defects.atoms.value = atoms
    defects.add_layers.value = True
    _wait(app, defects.run_chemistry())
    _raise(defects)
    files["defects"] = _shot(viewer, app, out / "gui_defects.png")
    for name in ("bonds", "ring centres", "defects", "tracks"):
        if name in viewer.layers:
            viewer.layers[name].visible = False

    sub = docks["Subimages"]
    # the dock's default window (16 px of the binned movie, as atomlens run): a 40 px
    # window (12 Å) left most atoms without a latent (their windows cross the frame edge)
    sub.atoms.value, sub.image.value = atoms, img
    _wait(app, sub.cut())
    with_window = [int(r) for r in sub.current.index if atoms.data[int(r), 0] == 10]
    atoms.selected_data = set(with_window[len(with_window) // 2 :][:9])  # atoms mid-frame
    _raise(docks["Subimage gallery"])
    files["subimages"] = _shot(viewer, app, out / "gui_subimages.png")
    atoms.selected_data = set()

    train = docks["Train latent model"]
    train.epochs.value, train.batch.value, train.device.value = args.epochs, 128, "cpu"
    train.max_windows.value = 1500  # as docs/examples/si_movie.toml
    _wait(app, train.train())
    _raise(train)
    files["train"] = _shot(viewer, app, out / "gui_train.png")

    latent = docks["Latent colouring"]
    latent.atoms.value, latent.image.value = atoms, img
    _wait(app, latent.encode())
    latent.colour_by.value = "z1"
    plots = latent.show_plots()
    viewer.layers.selection.active = atoms
    wait_for(app, lambda: "distribution" in plots and "manifold" in plots, 60.0)
    _raise(latent)
    files["latent"] = _shot(viewer, app, out / "gui_latent_z1.png")
    _raise(plots["tabs"])  # the plots: a tab of the AtomLens dock group
    files["plots"] = _shot(viewer, app, out / "gui_plots.png")

    traj = docks["Latent trajectories"]
    feats = atoms.features
    if "track_id" in feats and (feats["track_id"] >= 0).any() and {"z1", "z2"} <= set(feats):
        traj.reset_choices()
        traj.points.value = atoms
        with_latent = (feats["track_id"] >= 0) & feats["z1"].notna()  # a track with latents
        counts = feats.loc[with_latent, "track_id"].value_counts()
        row = int(np.flatnonzero(feats["track_id"].to_numpy() == counts.index[0])[0])
        atoms.selected_data = {row}
        traj.show_selected()
        _raise(traj)
        files["trajectories"] = _shot(viewer, app, out / "gui_trajectories.png")
        atoms.selected_data = set()

    corr = docks["Correct atoms"]
    corr.points.value, corr.image.value = atoms, img
    corr.bind_layer(atoms)
    _raise(corr)
    files["correct"] = _shot(viewer, app, out / "gui_correct.png")

    viewer.layers.clear()  # the PFM sample is in pixels, the Si movie in Å: one at a time
    plots = latent.plots.get("tabs")
    if plots is not None:
        viewer.window.remove_dock_widget(plots)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        pfm_layers = viewer.open_sample("atomlens", "pfm_movie")
    pfm = docks["PFM domain walls"]
    pfm.image.value = pfm_layers[0]
    pfm.epochs.value, pfm.per_frame.value = max(3, args.epochs // 2), 40
    _wait(app, pfm.run())
    wait_for(app, lambda: "PFM windows" in viewer.layers)
    viewer.reset_view()
    _raise(pfm)
    files["pfm"] = _shot(viewer, app, out / "gui_pfm.png")
    viewer.close()
    print(json.dumps(files, indent=2))


if __name__ == "__main__":
    main()
