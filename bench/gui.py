"""GUI benchmark of the napari plugin at 1280x800 on the real movie; prints one JSON object.

Run under a 1280x800 X display:

    xvfb-run -a -s "-screen 0 1280x800x24" .venv/bin/python bench/gui.py

1. ``layout``: the main window with every AtomLens dock open (from the manifest, as the
   Plugins menu opens them) must fit the screen: window height <= screen height.
2. ``actions``: each dock action on the real 48-frame Si movie
   (``../shared/data/real/graphene_si1c3_movie.npz``): detect (all frames), re-detect
   (the same run again: its result goes into the first run's atoms layer), chemistry,
   subimages, train (rVAE), encode, colour by z1, movie export (MP4), trajectory of one
   atom, PFM (on the PFM sample, in a viewer cleared of the Si movie) and PFM again
   (``layer_reused``: whether a re-run wrote into the previous layers). A 10 ms QTimer
   on the main thread records every gap between its ticks from the click until the
   action's result is in the viewer; the
   longest gap is the action's main-thread stall (target < 100 ms). An idle control
   (same timer, nothing running) comes first: on a shared machine the OS alone delays
   the main thread by that much. Each gap is also measured in the main thread's own CPU
   time (``time.thread_time``: work the main thread did, not time it waited for a core or
   for the GIL): ``max_stall_cpu_ms`` is the load-independent figure on a busy machine.
   ``gc_runs`` / ``gc_max_ms``: Python's garbage collections on the main thread meanwhile
   and the longest (a pause no stack sample names).
3. ``frame_switch``: 80,000 atoms over 50 frames of 512², coloured by ``z1``; the time
   slider jumps to random frames; each switch is timed from ``dims.set_current_step`` to
   the end of the repaint (target: median < 50 ms), also in main-thread CPU time.

Detect runs as the dock's defaults do: atoms only (``show probability maps`` off).

Options: ``--quick`` (fewer epochs and switches), ``--movie PATH``, ``--trace`` (name the
code behind each worst stall), ``--only detect,redetect,pfm,repfm`` (just those actions),
``--first-draw N`` (only: the add and first-draw turns of N new atoms layers, part by
part; with ``MESA_SHADER_CACHE_DIR`` set to an empty folder, Mesa's cold start).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import threading
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
REAL_MOVIE = REPO.parent / "shared" / "data" / "real" / "graphene_si1c3_movie.npz"
REAL_PIXEL_SIZE_A = 0.078  # nominal, from the data README (the lattice agrees within 2 %)
#: Every AtomLens dock, by its manifest display name (as in Plugins > AtomLens).
DOCKS = (
    "Detect atoms",
    "Correct atoms",
    "Defects",
    "Subimages",
    "Train latent model",
    "Latent colouring",
    "Latent trajectories",
    "PFM domain walls",
    "Colour key",
    "Subimage gallery",
)


def _process(app, seconds: float = 0.0) -> None:
    end = time.perf_counter() + seconds
    app.processEvents()
    while time.perf_counter() < end:
        app.processEvents()
        time.sleep(0.002)


class StallTracer:
    """Samples the main thread's Python stack every ``interval_s`` from a helper thread,
    so the longest stall of an action can be traced to the code that ran during it."""

    def __init__(self, interval_s: float = 0.01) -> None:
        import threading

        self.main_id = threading.main_thread().ident
        self.samples: list[tuple[float, str]] = []
        self.interval_s = interval_s
        self._on = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import sys
        import traceback

        while True:
            if self._on.wait(1.0):
                frame = sys._current_frames().get(self.main_id)
                if frame is not None:
                    stack = traceback.extract_stack(frame)[-40:]
                    mine = [
                        f"{Path(f.filename).name}:{f.lineno} {f.name}"
                        for f in stack
                        if "atomlens" in f.filename or "bench" in f.filename
                    ]
                    inner = [f"{Path(f.filename).name}:{f.lineno} {f.name}" for f in stack[-8:]]
                    self.samples.append(
                        (time.perf_counter(), " > ".join(mine[-3:] + ["|"] + inner))
                    )
                time.sleep(self.interval_s)

    def start(self) -> None:
        self.samples = []
        self._on.set()

    def stop(self) -> None:
        self._on.clear()

    def during(self, t0: float, t1: float, top: int = 4) -> list[list]:
        from collections import Counter

        hits = Counter(s for t, s in self.samples if t0 <= t <= t1)
        return [[n, s] for s, n in hits.most_common(top)]


TRACER: StallTracer | None = None


class GCMeter:
    """Durations (ms) of Python's cyclic garbage collections on the main thread (a full
    collection over napari's, torch's and pandas's objects is a main-thread stall that no
    stack names)."""

    def __init__(self) -> None:
        import gc

        self.main_id = threading.main_thread().ident
        self.pauses: list[tuple[int, float]] = []
        self._t0 = 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase: str, info: dict) -> None:
        if threading.get_ident() != self.main_id:
            return
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.pauses.append((int(info["generation"]), (time.perf_counter() - self._t0) * 1e3))

    def take(self) -> dict:
        out = {
            "gc_runs": len(self.pauses),
            "gc_max_ms": round(max((ms for _, ms in self.pauses), default=0.0), 1),
        }
        self.pauses = []
        return out

    def close(self) -> None:
        import gc

        if self._callback in gc.callbacks:
            gc.callbacks.remove(self._callback)


GC: GCMeter | None = None  # installed by main(): importing this module changes nothing


class GapMeter:
    """A QTimer ticking every ``interval_ms`` on the main thread; records tick gaps (ms)."""

    def __init__(self, interval_ms: int = 10) -> None:
        from qtpy.QtCore import QTimer

        self.gaps: list[float] = []
        self.cpu_gaps: list[float] = []
        self.ends: list[float] = []
        self._last: float | None = None
        self._last_cpu = 0.0
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)

    def _tick(self) -> None:
        now, cpu = time.perf_counter(), time.thread_time()
        if self._last is not None:
            self.gaps.append((now - self._last) * 1000.0)
            self.cpu_gaps.append((cpu - self._last_cpu) * 1000.0)
            self.ends.append(now)
        self._last, self._last_cpu = now, cpu

    def start(self) -> None:
        self._last = None
        self.gaps, self.cpu_gaps, self.ends = [], [], []
        self.timer.start()

    def stop(self) -> dict:
        self.timer.stop()
        g = np.asarray(self.gaps) if self.gaps else np.zeros(1)
        c = np.asarray(self.cpu_gaps) if self.cpu_gaps else np.zeros(1)
        return {
            "max_stall_ms": round(float(g.max()), 1),
            "max_stall_cpu_ms": round(float(c.max()), 1),
            "p99_gap_ms": round(float(np.percentile(g, 99)), 1),
            "ticks": int(len(self.gaps)),
        }


def measure(
    app, name: str, click, settle_s: float = 0.3, timeout_s: float = 600.0, until=None
) -> dict:
    """Run ``click`` (returns a worker or None) with the gap meter on; wait for the
    worker to finish and the result to reach the viewer (``until()`` true: results that
    reach it in several turns); return the stall figures."""
    meter = GapMeter(10)
    meter.start()
    if TRACER is not None:
        TRACER.start()
    _process(app, 0.2)
    if GC is not None:
        GC.take()
    t0 = time.perf_counter()
    worker = click()
    click_ms = (time.perf_counter() - t0) * 1000.0
    if worker is not None:
        done: list[float] = []
        worker.finished.connect(lambda: done.append(time.perf_counter()))
        while not done and time.perf_counter() - t0 < timeout_s:
            app.processEvents()
            time.sleep(0.001)
    if until is not None:
        wait_for(app, until, timeout_s)
    _process(app, settle_s)
    gaps, cpu_gaps, ends = list(meter.gaps), list(meter.cpu_gaps), list(meter.ends)
    out = meter.stop()
    if TRACER is not None:
        TRACER.stop()
        if gaps:
            i = int(np.argmax(gaps))
            out["worst_gap_at_s"] = round(ends[i] - t0, 2)
            out["worst_gap_stacks"] = TRACER.during(ends[i] - gaps[i] / 1000.0, ends[i])
            j = int(np.argmax(cpu_gaps))  # the gap with the most main-thread CPU
            if j != i:
                out["worst_cpu_gap_at_s"] = round(ends[j] - t0, 2)
                out["worst_cpu_gap_stacks"] = TRACER.during(ends[j] - gaps[j] / 1000.0, ends[j])
    if GC is not None:
        out.update(GC.take())
    out.update(
        {
            "action": name,
            "click_ms": round(click_ms, 1),
            "seconds": round(time.perf_counter() - t0 - settle_s, 2),
            "target_ms": 100,
        }
    )
    notes = _new_notifications()
    if notes:
        out["notifications"] = notes
    return out


_SEEN = [0]


def _new_notifications() -> list[str]:
    from napari.utils.notifications import notification_manager

    records = notification_manager.records
    new = [str(r.message) for r in records[_SEEN[0] :]]
    _SEEN[0] = len(records)
    return new


def wait_for(app, condition, timeout_s: float = 60.0) -> None:
    """Process events until ``condition()`` holds (results reach the viewer in turns)."""
    t0 = time.perf_counter()
    while not condition() and time.perf_counter() - t0 < timeout_s:
        app.processEvents()
        time.sleep(0.002)


def open_docks(viewer) -> dict:
    """Every AtomLens dock from the manifest; returns name -> widget."""
    out = {}
    for name in DOCKS:
        _dock, widget = viewer.window.add_plugin_dock_widget("atomlens", name)
        out[name] = widget
    return out


def layout_figures(viewer, app) -> dict:
    from qtpy.QtWidgets import QApplication

    qt = viewer.window._qt_window  # the bench measures the window; the plugin never uses this
    screen = QApplication.primaryScreen().availableGeometry()
    frame = qt.frameGeometry()
    canvas = viewer.window._qt_viewer.canvas.native
    return {
        "screen": [screen.width(), screen.height()],
        "window": [frame.width(), frame.height()],
        "fits": frame.height() <= screen.height() and frame.width() <= screen.width(),
        "canvas": [canvas.width(), canvas.height()],
    }


def bench_actions(
    viewer, app, docks: dict, movie_path: Path, epochs: int, only: set[str] | None = None
) -> list[dict]:
    """Each dock action on the real movie; the stall of each. ``only``: run just these
    actions ('detect', 'redetect', 'pfm', 'repfm'; the Si actions after detect are
    skipped)."""
    results = []
    if only is not None and "detect" not in only:
        return results + bench_pfm(viewer, app, docks, epochs, only) if "pfm" in only else results
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        [img] = viewer.open(str(movie_path), plugin="atomlens")
    viewer.reset_view()
    _process(app, 1.0)
    det = docks["Detect atoms"]
    det.image.value = img
    det.frames.value = "all"
    det.pixel_size.value = REAL_PIXEL_SIZE_A
    name = f"atoms {img.name}"
    results.append(
        measure(
            app,
            "detect (48 frames)",
            det.run,
            until=lambda: name in viewer.layers and viewer.layers[name].visible,
        )
    )
    atoms = viewer.layers[f"atoms {img.name}"]
    if only is None or "redetect" in only:
        # the same run again (as after changing a setting): its result goes into the
        # atoms layer of the first run (no layer to add, no first draw)
        results.append(measure_rerun(app, viewer, det, "re-detect (48 frames)", name))
        atoms = viewer.layers[name]
    if only is not None:
        return results + (bench_pfm(viewer, app, docks, epochs, only) if "pfm" in only else [])

    defects = docks["Defects"]
    defects.atoms.value = atoms
    results.append(measure(app, "chemistry", defects.run_chemistry))

    sub = docks["Subimages"]
    sub.atoms.value, sub.image.value = atoms, img
    sub.window.value = 40
    results.append(measure(app, "subimages", sub.cut))

    train = docks["Train latent model"]
    train.epochs.value, train.batch.value, train.device.value = epochs, 128, "cpu"
    train.max_windows.value = 1500  # as docs/examples/si_movie.toml
    results.append(measure(app, f"train (rVAE, {epochs} epochs)", train.train))

    latent = docks["Latent colouring"]
    latent.atoms.value, latent.image.value = atoms, img
    results.append(measure(app, "encode", latent.encode))

    def _colour():
        if "z1" not in latent.colour_by.choices:
            raise SystemExit(
                f"no z1 after encoding: {json.dumps(results, indent=1)}; "
                f"train: {train.state.status} {train.time_label.value}; "
                f"latent: {latent.status.value}"
            )
        latent.colour_by.value = "z1"

    results.append(measure(app, "colour by z1", _colour))
    results.append(measure(app, "show plots", lambda: (latent.show_plots(), None)[1]))
    out = Path(tempfile.mkdtemp()) / "bench_movie.mp4"
    results.append(measure(app, "export movie (MP4)", lambda: latent.export_movie(out)))
    results[-1]["file_mb"] = round(out.stat().st_size / 1e6, 2) if out.exists() else None

    traj = docks["Latent trajectories"]
    tracked = np.flatnonzero(atoms.features.get("track_id", pd.Series([-1])).to_numpy() >= 0)
    if len(tracked) and "track_id" in traj.track_col.choices:
        traj.points.value = atoms
        traj.track_col.value = "track_id"

        def _traj():
            atoms.selected_data = {int(tracked[0])}
            traj.show_selected()

        results.append(measure(app, "trajectory of one atom", _traj))
    return results + bench_pfm(viewer, app, docks, epochs, only)


def bench_pfm(viewer, app, docks: dict, epochs: int, only: set[str] | None = None) -> list[dict]:
    """PFM on its sample, in a viewer cleared of the Si movie."""
    results = []
    # the PFM sample is another data set (phase in pixels): as a user would, it is opened
    # without the Si movie's layers (Å), or napari warns "Inconsistent units across
    # layers" with a notification on every layer added (measured: 4 of them in one stall)
    _clear(viewer)
    _process(app, 0.5)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        layers = viewer.open_sample("atomlens", "pfm_movie")
    pfm = docks["PFM domain walls"]
    pfm.image.value = layers[0]
    pfm.epochs.value, pfm.per_frame.value = max(2, epochs // 2), 20
    results.append(
        measure(
            app,
            "PFM (sample, 20 frames)",
            pfm.run,
            until=lambda: "PFM windows" in viewer.layers and viewer.layers["PFM windows"].visible,
        )
    )
    if only is None or "repfm" in only:  # a second run: its layers are reused
        results.append(
            measure_rerun(app, viewer, pfm, "re-run PFM (sample, 20 frames)", "PFM windows")
        )
    return results


def measure_rerun(app, viewer, dock, action: str, name: str) -> dict:
    """A dock's action run a second time: measured until its result is in the viewer
    (the dock's ``results_shown``; code without it: a new layer whose name starts with
    ``name`` is visible). Records whether the previous run's layer was reused."""
    before = [lay for lay in viewer.layers if lay.name.startswith(name)]

    def _done() -> bool:
        flag = getattr(dock, "results_shown", None)
        if flag is not None:
            return bool(flag)
        return any(
            lay.visible and lay.name.startswith(name) and all(lay is not b for b in before)
            for lay in viewer.layers
        )

    out = measure(app, action, dock.run, until=_done)
    after = [lay for lay in viewer.layers if lay.name.startswith(name)]
    out["layer_reused"] = len(after) == len(before) and all(a is b for a, b in zip(after, before))
    return out


def idle_control(app, seconds: float) -> dict:
    meter = GapMeter(10)
    meter.start()
    _process(app, seconds)
    out = meter.stop()
    out["seconds"] = seconds
    return out


def bench_frame_switch(viewer, app, n_atoms: int, n_frames: int, switches: int) -> dict:
    """Time to move the time slider with many atoms coloured by a continuous feature."""
    from atomlens._napari._layers import add_tuple, apply_colour
    from atomlens.viz.colours import colour_spec
    from atomlens.viz.layers import atoms_layer_tuple, image_layer_tuple

    rng = np.random.default_rng(0)
    size = 512
    frames = rng.random((n_frames, size, size), dtype=np.float32)
    atoms = pd.DataFrame({
        "frame": np.repeat(np.arange(n_frames), n_atoms // n_frames),
        "y": rng.uniform(0, size, n_atoms),
        "x": rng.uniform(0, size, n_atoms),
        "cls": np.where(rng.random(n_atoms) < 0.02, "Si", "C"),
        "z1": rng.normal(size=n_atoms),
    })  # fmt: skip
    atoms.loc[::7, "z1"] = np.nan  # atoms without a latent: drawn grey
    _clear(viewer)
    add_tuple(viewer, image_layer_tuple(frames, 0.1, "movie"))
    pts = add_tuple(viewer, atoms_layer_tuple(atoms, 0.1, "atoms"))
    t0 = time.perf_counter()
    apply_colour(pts, colour_spec("z1", pts.features["z1"]))
    colour_s = time.perf_counter() - t0
    viewer.reset_view()
    _process(app, 0.5)
    times, slice_ms, cpu_ms = [], [], []
    for t in rng.integers(0, n_frames, switches):
        t0, c0 = time.perf_counter(), time.thread_time()
        viewer.dims.set_current_step(0, int(t))
        t1 = time.perf_counter()
        app.processEvents()
        times.append((time.perf_counter() - t0) * 1000.0)
        cpu_ms.append((time.thread_time() - c0) * 1000.0)
        slice_ms.append((t1 - t0) * 1000.0)
    _clear(viewer)
    return {
        "atoms": n_atoms, "frames": n_frames, "switches": switches,
        "colour_by_z1_ms": round(colour_s * 1000.0, 1),
        "median_ms": round(statistics.median(times), 1),
        "median_slice_ms": round(statistics.median(slice_ms), 1),
        "median_cpu_ms": round(statistics.median(cpu_ms), 1),
        "points_data_column_major": bool(pts.data.flags.f_contiguous),
        "p90_ms": round(float(np.percentile(times, 90)), 1),
        "max_ms": round(max(times), 1),
        "target_median_ms": 50,
    }  # fmt: skip


class PartTimer:
    """Main-thread CPU (ms) spent in named functions of napari, vispy and Qt while it is
    installed: wraps them for the measurement only (``--first-draw``) and puts them back
    on ``close``. Nested parts are counted in each (the regex is inside the build)."""

    def __init__(self) -> None:
        self.ms: dict[str, float] = {}
        self._undo: list = []

    def wrap(self, owner, name: str, key: str) -> None:
        original = getattr(owner, name)
        ms = self.ms

        def timed(*args, **kwargs):
            c0 = time.thread_time()
            try:
                return original(*args, **kwargs)
            finally:
                ms[key] = ms.get(key, 0.0) + (time.thread_time() - c0) * 1e3

        setattr(owner, name, timed)
        self._undo.append((owner, name, original))

    def take(self) -> dict:
        out = {k: round(v, 1) for k, v in self.ms.items()}
        self.ms.clear()
        return out

    def close(self) -> None:
        for owner, name, original in reversed(self._undo):
            setattr(owner, name, original)
        self._undo.clear()


def first_draw_parts(n_layers: int, n_atoms: int = 7000) -> dict:
    """The two turns of a new atoms Points layer, part by part, in main-thread CPU: add it
    hidden (``viewer.add_layer`` and the events Qt runs right after), then show it (the
    ``visible`` setter and the paint: vispy's Python program build, its comment regex,
    Mesa's compile and link, the draws). Every AtomLens dock open, 1280x800, a 48-frame
    512² image (0.078 Å/px) under ``n_atoms`` atoms, the scale bar on."""
    import types

    import napari
    import vispy.gloo.glir as glir
    import vispy.gloo.program as gloo_program
    import vispy.visuals.shaders.program as shader_program
    from napari._qt.layer_controls import qt_layer_controls_container as controls
    from napari._qt.qt_viewer import QtViewer
    from qtpy.QtWidgets import QApplication
    from vispy.app.backends import _qt as vispy_qt

    from atomlens._napari._workers import make_layers
    from atomlens.viz.layers import atoms_layer_tuple, image_layer_tuple

    parts = PartTimer()
    parts.wrap(QtViewer, "_add_layer", "napari_vispy_visual_and_node")
    parts.wrap(controls.QtLayerControlsContainer, "_add", "napari_layer_controls")
    parts.wrap(shader_program.ModularProgram, "_build", "vispy_program_build_py")
    regex = types.SimpleNamespace(**{k: getattr(gloo_program.re, k) for k in ("sub", "M", "compile", "findall", "finditer", "search", "match", "split", "escape", "S", "X", "MULTILINE", "DOTALL")})  # fmt: skip
    parts.wrap(regex, "sub", "vispy_comment_regex")
    original_re, gloo_program.re = gloo_program.re, regex
    parts.wrap(glir.GlirShader, "set_data", "gl_compile")
    parts.wrap(glir.GlirProgram, "link_program", "gl_link")
    parts.wrap(glir.GlirProgram, "draw", "gl_draw")
    parts.wrap(vispy_qt.CanvasBackendDesktop, "paintGL", "canvas_paint")
    try:
        viewer = napari.Viewer(show=True)
        app = QApplication.instance()
        viewer.window._qt_window.resize(1280, 800)
        open_docks(viewer)
        rng = np.random.default_rng(0)
        frames = rng.random((48, 512, 512), dtype=np.float32)
        from atomlens._napari._layers import add_tuple

        add_tuple(viewer, image_layer_tuple(frames, REAL_PIXEL_SIZE_A, "movie"))
        from atomlens._napari._base import scale_bar_of

        scale_bar_of(viewer).visible = True
        _process(app, 1.5)
        atoms = pd.DataFrame({
            "frame": rng.integers(0, 48, n_atoms), "y": rng.uniform(0, 511, n_atoms),
            "x": rng.uniform(0, 511, n_atoms), "cls": rng.choice(["C", "Si"], n_atoms),
        })  # fmt: skip
        layers = []
        for i in range(n_layers):
            [pts] = make_layers([atoms_layer_tuple(atoms, REAL_PIXEL_SIZE_A, f"atoms {i}")])
            pts.visible = False
            rec = {}
            for turn in ("add", "show"):
                parts.take()
                c0 = time.thread_time()
                if turn == "add":
                    viewer.add_layer(pts)
                else:
                    pts.visible = True
                c1 = time.thread_time()
                app.processEvents()
                c2 = time.thread_time()
                rec[turn] = {
                    "call_ms": round((c1 - c0) * 1e3, 1),
                    "events_after_ms": round((c2 - c1) * 1e3, 1),
                    "total_ms": round((c2 - c0) * 1e3, 1),
                    **parts.take(),
                }
                _process(app, 0.5)
            layers.append(rec)
        _clear(viewer)
        viewer.close()
    finally:
        gloo_program.re = original_re
        parts.close()
    return {
        "atoms": n_atoms,
        "mesa_shader_cache_dir": os.environ.get(
            "MESA_SHADER_CACHE_DIR", "~/.cache/mesa_shader_cache"
        ),
        "layers": layers,
    }


def _clear(viewer) -> None:
    """Remove every layer, Points first: napari/vispy under software OpenGL can crash when
    a Points layer is left as the only layer (docs/napari.md, the known crash)."""
    for layer in [lay for lay in viewer.layers if type(lay).__name__ == "Points"]:
        viewer.layers.remove(layer)
    viewer.layers.clear()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="short smoke run")
    parser.add_argument("--epochs", type=int, default=None)
    parser.add_argument("--movie", default=str(REAL_MOVIE))
    parser.add_argument(
        "--trace",
        action="store_true",
        help="sample the main thread's stack: name the code behind each worst stall",
    )
    parser.add_argument(
        "--only",
        default="",
        help="comma-separated actions to run alone: detect, redetect (detect twice), pfm, "
        "repfm (PFM twice); "
        "no layout, idle control or frame switch",
    )
    parser.add_argument(
        "--first-draw",
        type=int,
        default=0,
        metavar="N",
        help="only: add and show N new atoms Points layers, each turn's main-thread CPU "
        "split into napari's, vispy's and Mesa's parts",
    )
    args = parser.parse_args()
    if args.first_draw:
        print(json.dumps(first_draw_parts(args.first_draw), indent=1))
        return
    only = {a.strip() for a in args.only.split(",") if a.strip()} or None
    if only and "redetect" in only:
        only.add("detect")
    if only and "repfm" in only:
        only.add("pfm")
    global TRACER, GC
    GC = GCMeter()
    if args.trace:
        TRACER = StallTracer(0.004)
    movie = Path(args.movie)
    if not movie.exists():
        raise SystemExit(f"the real movie {movie} is not here (it lives in ../shared/data)")
    import napari
    from qtpy.QtWidgets import QApplication

    viewer = napari.Viewer(show=True)
    app = QApplication.instance()
    viewer.window._qt_window.resize(1280, 800)  # no window manager under Xvfb to maximise
    _process(app, 0.5)
    out = {
        "python": platform.python_version(), "napari": napari.__version__,
        "cpus": os.cpu_count(), "load_average_1min": round(os.getloadavg()[0], 2),
    }  # fmt: skip
    docks = open_docks(viewer)
    _process(app, 1.0)
    out["layout_docks_open"] = layout_figures(viewer, app)
    out["idle_control"] = idle_control(app, 2.0 if only else 5.0 if args.quick else 10.0)
    out["actions"] = bench_actions(
        viewer, app, docks, movie, args.epochs or (2 if args.quick else 5), only
    )
    if only is None:
        out["layout_after_actions"] = layout_figures(viewer, app)
        out["frame_switch"] = bench_frame_switch(viewer, app, 80_000, 50, 10 if args.quick else 50)
    out["load_average_1min_end"] = round(os.getloadavg()[0], 2)
    out["all_stalls_below_100ms"] = all(a["max_stall_ms"] < 100 for a in out["actions"])
    out["all_stalls_below_100ms_cpu"] = all(a["max_stall_cpu_ms"] < 100 for a in out["actions"])
    viewer.close()
    GC.close()
    GC = None
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
