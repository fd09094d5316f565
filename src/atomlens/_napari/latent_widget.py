"""The "Latent colouring" dock: encode every window, colour atoms by any feature, animate.

Encoding runs the encode workflow (:func:`atomlens.workflows.encode.run`) on a worker thread and writes the
latents (``angle, dx, dy, z1, z2...``) into the atoms layer's features. "Colour by" maps
any feature with :func:`atomlens.viz.colours.colour_spec` (species: fixed colours; angle:
'twilight' over a whole period; others: limits fixed over all frames, so colours compare
over time). "Export movie" renders MP4 or GIF on a worker thread with :mod:`atomlens.viz.movie`
(scale bar, frame counter, colour bar; progress, time left and Stop). "Show plots" shows
the decoded manifold, the latent scatter (with lasso) and the per-frame distribution as
tabs of one plots dock, itself a tab of the AtomLens dock group (the canvas keeps its
size: showing it relays out nothing but the group).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import napari
import numpy as np
from magicgui.widgets import (
    ComboBox,
    Container,
    FileEdit,
    FloatSpinBox,
    Label,
    ProgressBar,
    PushButton,
)

from atomlens._napari._base import ViewerWidget, status_label
from atomlens._napari._layers import (
    apply_colour,
    atomlens_kind,
    layer_atoms,
    merge_features,
    pixel_size_of,
)
from atomlens._napari._workers import TURN_GAP_MS, notify_error, start_generator
from atomlens._napari.key_dock import ensure_key_dock
from atomlens._napari.state import SessionModel, session_for
from atomlens.viz.colours import colour_spec

if TYPE_CHECKING:
    from napari.layers import Points

#: The hidden plots dock is made this long after the Latent colouring dock opens (ms).
PREPARE_PLOTS_MS = 300


def encoding_job(
    model: Any, data: Any, atoms: Any, stop: threading.Event | None = None
) -> Generator:
    """The headless encode workflow (:func:`atomlens.workflows.encode.run`: windows
    prepared as the model was trained) on a worker; returns only the latent columns (NaN
    for atoms whose window crosses the frame edge)."""
    from atomlens.workflows import encode
    from atomlens.workflows.events import Cancelled

    try:
        result = yield from encode.run(model, data, atoms, stop=stop)
    except Cancelled:
        return None  # stopped: the layer keeps its features
    return result.atoms[list(result.columns)]


def _image_layers(layer: Any) -> bool:
    return atomlens_kind(layer) != "subimages" and layer.ndim in (2, 3) and not layer.rgb


class LatentWidget(ViewerWidget):
    """Encode atoms with the session's model; colour by a feature; export an animation."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(viewer)
        self.session = session_for(viewer)
        self.atoms = self.layer_picker("atoms", "points")
        self.image = self.layer_picker("image / map", "image", _image_layers)
        self.model_label = Label(value="model: none (train or load one)")
        self.encode_button = PushButton(text="Encode atoms", enabled=False)
        # nullable: a refreshed feature list never picks (and colours by) a column itself
        self.colour_by = ComboBox(label="colour by", choices=self._feature_choices, nullable=True)
        self.movie_path = FileEdit(
            label="movie file",
            mode="w",
            filter="*.mp4 *.gif",
            value=str(Path.home() / "atomlens_movie.mp4"),
        )
        self.movie_path.tooltip = (
            ".mp4 (H.264) or .gif; a relative name is saved in your home folder"
        )
        self.fps = FloatSpinBox(label="frames / s", min=0.5, max=60.0, step=0.5, value=5.0)
        self.movie_button = PushButton(text="Export movie")
        self.movie_stop = PushButton(text="Stop", enabled=False)
        self.plots_button = PushButton(text="Show plots")
        self.progress = ProgressBar(label="progress", min=0, max=1, value=0)
        self.status = status_label()
        row = Container(
            widgets=[self.movie_button, self.movie_stop, self.plots_button],
            layout="horizontal",
            labels=False,
        )
        self.extend(
            [
                self.atoms,
                self.image,
                self.model_label,
                self.encode_button,
                self.colour_by,
                self.movie_path,
                self.fps,
                row,
                self.progress,
                self.status,
            ]
        )
        self.encode_button.changed.connect(self.encode)
        self.colour_by.changed.connect(self._on_colour_by)
        self.movie_button.changed.connect(lambda: self.export_movie(self.movie_path.value))
        self.movie_stop.changed.connect(self.stop_movie)
        self._movie_stop = threading.Event()
        self.movie_worker: Any = None
        self._t0 = 0.0
        self.plots_button.changed.connect(self.show_plots)
        self.atoms.changed.connect(self._watch_layer)
        self.session.model_changed.connect(self._on_model)
        self._on_model(self.session.model)
        self._watched: Points | None = None
        self._watch_layer()
        self.worker: Any = None
        self.plots: dict[str, Any] = {}
        self._plots_gen = 0
        from qtpy.QtCore import QTimer

        # the plots dock is made (hidden) on a later, idle turn: "Show plots" then only
        # shows it and fills it (napari's add_dock_widget costs ~100 ms on the main thread)
        QTimer.singleShot(PREPARE_PLOTS_MS, self._prepare_plots_dock)

    # -- model ---------------------------------------------------------------------------
    def _on_model(self, current: SessionModel | None) -> None:
        self.encode_button.enabled = current is not None
        if current is not None:
            self.model_label.value = f"model: {current.name or type(current.model).__name__}" + (
                f", {current.window} px windows" if current.window else ""
            )

    # -- encode --------------------------------------------------------------------------
    def encode(self) -> Any:
        """Encode every atom of the chosen layer on a worker thread; returns the worker."""
        points, image, current = self.atoms.value, self.image.value, self.session.model
        if points is None or image is None or current is None:
            notify_error(
                ValueError(
                    "need an atoms layer and an image layer (this dock's 'atoms' "
                    "and 'image / map' fields) and a model (Train latent model "
                    "dock: Train or Load model...)"
                ),
                "Encode",
            )
            return None
        data = image.data
        self.status.value = "encoding..."
        self.encode_button.enabled = False
        self._movie_stop = threading.Event()  # the Stop button ends whichever job runs
        self.movie_stop.enabled = True
        self._t0 = time.perf_counter()
        self.worker = start_generator(
            encoding_job,
            current.model,
            data,
            layer_atoms(points),
            self._movie_stop,
            on_yield=self._encode_progress,
            on_return=lambda latents: self._write_latents(points, latents),
            on_error=lambda exc: setattr(self.status, "value", "encoding failed (or stopped)"),
            on_finish=self._encode_done,
            what="Encode",
        )
        return self.worker

    def _encode_progress(self, ev: Any) -> None:
        done, total = int(getattr(ev, "done", 0)), int(getattr(ev, "total", 0) or 1)
        self.progress.max, self.progress.value = total, done
        elapsed = time.perf_counter() - self._t0
        left = f", ~{elapsed / done * (total - done):.0f} s left" if done else ""
        self.status.value = f"{getattr(ev, 'message', '') or 'encoding'}{left}"

    def _encode_done(self) -> None:
        self.encode_button.enabled = self.session.model is not None
        self.movie_stop.enabled = False

    def _write_latents(self, points: Points, latents: Any) -> None:
        if latents is None:
            self.status.value = "encoding stopped: no latents written"
            return
        table = latents.reset_index(drop=True)
        keep = list(table.columns)
        merge_features(points, table)
        self.reset_choices()
        # the first content latent: it tells structures apart (Si from C on graphene);
        # the angle is a nuisance variable, ~constant on one crystal (on MoS2 it sat in
        # the cyclic map's dark middle, every atom nearly black)
        first = next((c for c in ("z1", "angle") if c in keep), keep[0] if keep else None)
        n_ok = int(table.notna().all(axis=1).sum())
        self.status.value = f"latents {', '.join(keep)} on {n_ok}/{len(table)} atoms"
        if first is not None:  # colour on the next turn: two short main-thread tasks
            from qtpy.QtCore import QTimer

            before = self.colour_by.value
            QTimer.singleShot(0, lambda: self._colour_after_encoding(points, first, before))

    def _colour_after_encoding(self, points: Points, column: str, before: Any) -> None:
        """Colour by the first latent, unless the user picked a colouring meanwhile."""
        try:
            if self.atoms.value is points and self.colour_by.value == before:
                self.colour_by.value = column
        except RuntimeError:  # the dock was closed
            pass

    # -- colour --------------------------------------------------------------------------
    def _feature_choices(self, _widget: Any = None) -> list[str]:
        points = self.atoms.value if hasattr(self, "atoms") else None
        return [] if points is None else [str(c) for c in points.features.columns]

    def _watch_layer(self, *_: Any) -> None:
        if self._watched is not None:
            self._watched.events.features.disconnect(self._refresh_features)
        self._watched = self.atoms.value
        if self._watched is not None:
            self._watched.events.features.connect(self._refresh_features)
        self._refresh_features()

    def _refresh_features(self, *_: Any) -> None:
        self.colour_by.reset_choices()

    def _on_colour_by(self, column: str | None) -> None:
        if column:
            self.colour(column)

    def colour(self, column: str) -> None:
        """Colour the atoms layer by ``column`` (limits fixed over all frames)."""
        points = self.atoms.value
        if points is None or column not in points.features:
            return
        apply_colour(points, colour_spec(column, points.features[column]))
        ensure_key_dock(self.viewer)

    # -- movie -------------------------------------------------------------------------
    def export_movie(self, path: str | Path, fps: float | None = None) -> Any:
        """Render every frame (image as shown, atoms in their colours, scale bar, frame
        counter, colour bar) and write ``path`` (.mp4 or .gif) on a worker thread
        (:func:`atomlens.viz.movie.movie_events`); returns the worker (None on bad input)."""
        from atomlens.viz.movie import MOVIE_SUFFIXES, MovieStyle, movie_events

        points, image = self.atoms.value, self.image.value
        out = Path(str(path)).expanduser()
        if not out.is_absolute():
            out = Path.home() / out
        try:
            if image is None:
                raise ValueError(
                    "no image layer: pick the movie in this dock's 'image / map' field"
                )
            if out.suffix.lower() not in MOVIE_SUFFIXES:
                raise ValueError(
                    f"'{out.name}' is not a movie file: end the 'movie file' field "
                    "with .mp4 or .gif"
                )
            if self.movie_worker is not None and self.movie_stop.enabled:
                raise ValueError("a movie export is running: Stop it first")
        except ValueError as exc:
            notify_error(exc, "Export movie")
            return None
        frames = image.data if image.ndim == 3 else np.asarray(image.data)[None]
        atoms = layer_atoms(points) if points is not None else None
        column = self.colour_by.value if points is not None else None
        spec = colour_spec(column, points.features[column]) if column else None
        px = pixel_size_of(image, points)  # the docks' one resolver (Detect's typed value)
        limits = tuple(float(v) for v in image.contrast_limits)
        style = MovieStyle(contrast_limits=limits)
        self._movie_stop = threading.Event()
        self._t0 = time.perf_counter()
        self.progress.max, self.progress.value = len(frames), 0
        self.movie_button.enabled, self.movie_stop.enabled = False, True
        self.status.value = f"rendering {out.name}..."
        self.movie_worker = start_generator(
            movie_events,
            frames,
            atoms,
            px,
            out,
            column,
            float(fps or self.fps.value),
            style,
            spec,
            stop=self._movie_stop,
            on_yield=self._movie_progress,
            on_return=lambda p: setattr(self.status, "value", f"wrote {p}"),
            on_error=lambda exc: setattr(self.status, "value", "movie export failed"),
            on_finish=self._movie_done,
            what="Export movie",
        )
        return self.movie_worker

    def stop_movie(self) -> None:
        """Stop the running job: a movie export ends after the current frame (the frames
        done are written); encoding ends at its next step (no latents are written)."""
        self._movie_stop.set()

    def _movie_progress(self, ev: Any) -> None:
        self.progress.max, self.progress.value = ev.total, ev.done
        self.status.value = f"frame {ev.done}/{ev.total}, ~{ev.eta_s:.0f} s left"

    def _movie_done(self) -> None:
        self.movie_button.enabled, self.movie_stop.enabled = True, False

    # -- plots ---------------------------------------------------------------------------
    def show_plots(self) -> dict[str, Any]:
        """One plots dock in the AtomLens tab group (made hidden when this dock opened), a
        tab per plot: the dock shows now, the latent scatter on the next turn of the event loop,
        the per-frame distribution on the turn after, and (rVAE/VAE) the
        decoded manifold when a worker thread has decoded it, so no step is a long
        main-thread task (figures render off the main thread: ``BackgroundCanvas``).
        Returns the plots dict (it fills in as the pieces arrive)."""
        from qtpy.QtCore import QTimer
        from qtpy.QtWidgets import QTabWidget

        from atomlens._napari.plots import FrameDistribution, LatentScatter

        points = self.atoms.value
        if points is None:
            notify_error(
                ValueError("need an atoms layer: pick it in this dock's 'atoms' field"), "Plots"
            )
            return {}
        feats = points.features.columns
        x, y = ("z1", "z2") if {"z1", "z2"} <= set(feats) else ("angle", "z1")
        column = "angle" if "angle" in feats else ("z1" if "z1" in feats else "")
        for key in ("scatter", "distribution", "manifold", "manifold_worker"):  # earlier ones
            self.plots.pop(key, None)
        self._plots_gen += 1
        gen = self._plots_gen  # pieces of an earlier Show plots are dropped
        tabs = self._plots_tabs()
        if tabs is None:  # no window (headless viewer)
            tabs = QTabWidget()
        for i in reversed(range(tabs.count())):  # Show plots again: fresh plots, same dock
            old = tabs.widget(i)
            tabs.removeTab(i)
            old.deleteLater()
        self.plots["tabs"] = tabs
        dock = self.plots.get("dock")
        if dock is not None:  # this turn: the dock shows as the group's front tab
            dock.show()
            dock.raise_()

        def _scatter() -> None:  # the next turn: the scatter
            if self._plots_gen != gen:
                return  # replaced meanwhile
            try:
                self.plots["scatter"] = LatentScatter(points, x, y)
                tabs.insertTab(0, self.plots["scatter"], "latent scatter")
                tabs.setCurrentIndex(0)
            except RuntimeError:  # the dock was closed
                return
            QTimer.singleShot(TURN_GAP_MS, _distribution)

        def _distribution() -> None:  # the turn after: the per-frame distribution
            if self._plots_gen != gen:
                return
            try:
                self.plots["distribution"] = FrameDistribution(
                    self.viewer, points, column or feats[-1]
                )
                tabs.insertTab(1, self.plots["distribution"], "per-frame distribution")
            except RuntimeError:  # the dock was closed
                pass

        QTimer.singleShot(TURN_GAP_MS, _scatter)
        current = self.session.model
        if current is not None:
            names = [c for c in current.model.latent_names() if c in feats]
            latents = points.features[names].copy() if names else None
            self.plots["manifold_worker"] = start_generator(
                _manifold_job,
                current.model,
                latents,
                on_return=lambda image: self._show_manifold(tabs, image, gen),
                what="Plots",
            )
        return self.plots

    def _prepare_plots_dock(self) -> None:
        """Dock the (empty) plots tabs in the AtomLens tab group, hidden, once per dock."""
        try:
            self._plots_tabs(hidden=True)
        except (RuntimeError, AttributeError):  # the dock or viewer closed meanwhile
            pass

    def _plots_tabs(self, hidden: bool = False) -> Any:
        """The plots dock's tab widget, docked once (None without a window); a plots
        dock the user or a script removed is docked again.

        The dock is a tab of the AtomLens dock group on the right (about 330 x 480 px at
        1280x800), not a dock area of its own under the canvas: showing a bottom dock
        shrank the canvas and napari redrew it (Show plots, measured at load 4-5: 75-196 ms
        wall / 29-41 ms main-thread CPU under the canvas, 25-61 / 5-11 ms as a tab); its
        tab can be dragged out to float or to dock anywhere."""
        from qtpy.QtWidgets import QTabWidget

        from atomlens._napari._base import tabify_with_atomlens

        tabs = self.plots.get("tabs")
        if tabs is not None:
            try:
                if tabs.parent() is not None:
                    return tabs
            except RuntimeError:  # deleted with a removed dock
                pass
        window = getattr(self.viewer, "window", None)
        if window is None or not hasattr(window, "add_dock_widget"):
            return None
        tabs = QTabWidget()
        tabs.setMinimumHeight(170)
        dock = window.add_dock_widget(tabs, name="AtomLens plots", area="right")
        # joins this dock's tab group (no canvas resize); marked first, so the tabs stay
        # the dock's own widget (not put in a scroll area): remove_dock_widget(tabs) works
        dock.setProperty("atomlens_dock", True)
        tabify_with_atomlens(tabs)
        if hidden:
            dock.hide()
        self.plots["tabs"], self.plots["dock"] = tabs, dock
        return tabs

    def _show_manifold(self, tabs: Any, image: Any, gen: int) -> None:
        from atomlens._napari.plots import ManifoldPlot

        if isinstance(image, str):  # e.g. PCA/GMM: no decoder grid
            self.status.value = f"no manifold: {image}"
            return
        if self._plots_gen != gen:
            return
        try:
            self.plots["manifold"] = ManifoldPlot()
            self.plots["manifold"].show_image(np.asarray(image))
            tabs.addTab(self.plots["manifold"], "latent manifold")
        except RuntimeError:  # the dock was closed
            pass


def _manifold_job(model: Any, latents: Any) -> Generator:
    """Worker: the decoded latent manifold image (:func:`atomlens.latent.decode_manifold`,
    8 x 8), or the reason there is none (a string)."""
    from atomlens.latent import decode_manifold

    yield "decoding the manifold"
    try:
        return decode_manifold(model, 8, latents=latents)
    except (ValueError, NotImplementedError) as exc:
        return str(exc)
