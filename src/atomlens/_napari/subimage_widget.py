"""The "Subimages" dock: cut descriptor windows around atoms (or ring centres).

A thin shell over the latent workflow's window cutting
(:func:`atomlens.workflows.latent.prepare_movie` + :func:`~atomlens.workflows.latent.cut_windows`
with a :class:`~atomlens.workflows.latent.DescriptorRecipe`), run on a worker thread. The
windows are kept in the viewer's session (the Train dock picks them from there) and shown
in their own dock, the **subimage gallery**. Cutting goes a few thousand centres at a
time (:func:`~atomlens.workflows.latent.cut_windows_events`: progress, time left, Stop;
a stopped cut keeps the windows of the atoms done): the windows of the selected atoms (or the
atom just clicked), never as a second image in the movie's canvas, so the time slider
stays the movie's own.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import napari
import numpy as np
from magicgui.widgets import ComboBox, Container, ProgressBar, PushButton, SpinBox

from atomlens._napari._base import ViewerWidget, status_label
from atomlens._napari._layers import (
    atomlens_kind,
    is_atoms_points,
    layer_atoms,
    layer_pixel_size,
    pixel_size_of,
    replace_or_add,
)
from atomlens._napari._workers import notify_error, start_generator
from atomlens._napari.state import session_for
from atomlens.viz.layers import atoms_layer_tuple

if TYPE_CHECKING:
    from napari.layers import Image, Points


def image_pixel_size(image: Any, points: Any = None) -> float | None:
    """Å per pixel of the movie behind the windows, through the docks' one resolver
    (:func:`atomlens._napari._layers.resolve_layer_pixel_size`): a value typed into the
    Detect dock, else the image layer's, else the atoms layer's; None when none knows it
    (then windows are cut from the unbinned movie)."""
    return pixel_size_of(image, points)


def _not_subimages(layer: Any) -> bool:
    return atomlens_kind(layer) != "subimages" and layer.ndim in (2, 3) and not layer.rgb


@dataclass
class SubimageSet:
    """Windows cut by the Subimages dock: ``windows`` (a workflow ``Windows``: images
    ``(N, h, w)``, ``index`` rows of the centres layer, the recipe), the centres layer's
    name and the image's name."""

    name: str
    windows: Any
    centres: str
    source: str

    @property
    def images(self) -> np.ndarray:
        return np.asarray(self.windows.images, np.float32)

    @property
    def index(self) -> np.ndarray:
        return np.asarray(self.windows.index)

    @property
    def window(self) -> tuple[int, int]:
        return tuple(int(v) for v in self.images.shape[-2:])


def window_job(
    data: Any,
    centres: Any,
    recipe: Any,
    pixel_size: float | None = None,
    stop: threading.Event | None = None,
    chunk: int | None = None,
) -> Generator:
    """Worker: prepare the movie and cut the windows in pieces (headless workflow calls,
    as ``atomlens run`` makes them: ``bin = None`` bins to about 0.3 Å/px from
    ``pixel_size``); yields the cut's :class:`~atomlens.workflows.Progress`; returns the
    ``Windows`` (``stopped``: those of the centres done), or None when stopped before
    the first piece."""
    from atomlens.workflows.latent import CUT_CHUNK, cut_windows_events, prepare_movie

    yield "preparing the movie"
    prepared = prepare_movie(data, recipe, pixel_size=pixel_size)
    if stop is not None and stop.is_set():
        return None
    windows = yield from cut_windows_events(
        prepared, centres, recipe, chunk=chunk or CUT_CHUNK, stop=stop
    )
    return windows if len(windows.images) or not windows.stopped else None


class SubimageWidget(ViewerWidget):
    """Pick atoms and an image; cut windows on a worker; show them in the gallery dock."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(viewer)
        self.session = session_for(viewer)
        self.atoms = self.layer_picker("atoms", "points", is_atoms_points)
        self.image = self.layer_picker("image / map", "image", _not_subimages)
        self.centres = ComboBox(label="centres", choices=["atoms", "ring centres"], value="atoms")
        from atomlens.workflows.latent import DescriptorRecipe

        # the defaults of ``atomlens run`` / ``atomlens rvae``: one DescriptorRecipe
        self.window = SpinBox(
            label="window (px)", min=4, max=512, step=2, value=DescriptorRecipe().window
        )
        self.window.tooltip = (
            "window side in pixels of the binned movie (binned to about 0.3 Å/px when the "
            "pixel size is known, as in atomlens run)"
        )
        self.cut_button = PushButton(text="Cut subimages")
        self.stop_button = PushButton(text="Stop", enabled=False)
        self.stop_button.tooltip = "end after the current piece; the windows cut are kept"
        self.progress = ProgressBar(label="progress", min=0, max=1, value=0)
        self.status = status_label()
        buttons = Container(
            widgets=[self.cut_button, self.stop_button], layout="horizontal", labels=False
        )
        self.extend(
            [self.atoms, self.image, self.centres, self.window, buttons, self.progress,
             self.status]
        )  # fmt: skip
        self.cut_button.changed.connect(self.cut)
        self.stop_button.changed.connect(self.stop)
        self._stop = threading.Event()
        self._t0 = 0.0
        self._done = 0
        self.chunk: int | None = None  # centres per piece (None: the workflow's default)
        self.current: SubimageSet | None = None
        self.gallery: Any = None
        self.worker: Any = None

    def cut(self) -> Any:
        """Cut windows on a worker thread; returns the worker (None on a bad input)."""
        from atomlens.workflows.latent import DescriptorRecipe

        points, image = self.atoms.value, self.image.value
        try:
            if points is None or image is None:
                raise ValueError(
                    "need an atoms (Points) layer and an image layer: pick them in "
                    "this dock's 'atoms' and 'image / map' fields (Detect atoms first)"
                )
            centres_layer = points
            if self.centres.value == "ring centres":
                centres_layer = self._ring_centres(points, image)
            centres = layer_atoms(centres_layer)
            recipe = DescriptorRecipe().replace(window=int(self.window.value)).validate()
            px = image_pixel_size(image, points)
        except ValueError as exc:
            notify_error(exc, "Subimages")
            return None
        data = image.data
        self.cut_button.enabled, self.stop_button.enabled = False, True
        self.progress.max, self.progress.value = max(len(centres), 1), 0
        self.status.value = "cutting..."
        self._stop = threading.Event()
        self._t0 = time.perf_counter()
        self._done = 0
        self.worker = start_generator(
            window_job,
            data,
            centres,
            recipe,
            px,
            self._stop,
            self.chunk,
            on_yield=self._on_progress,
            on_return=lambda w: self._show(w, centres_layer, image),
            on_error=lambda exc: setattr(self.status, "value", "failed"),
            on_finish=self._after,
            what="Subimages",
        )
        return self.worker

    def stop(self) -> None:
        """End the cut after the current piece; the windows cut so far are kept."""
        self._stop.set()
        self.status.value = "stopping after this piece..."

    def _after(self) -> None:
        self.cut_button.enabled, self.stop_button.enabled = True, False

    def _on_progress(self, event: Any) -> None:
        if isinstance(event, str):
            self.status.value = event
            return
        done, total = int(event.done), int(event.total or max(event.done, 1))
        self._done = done
        self.progress.max, self.progress.value = max(total, 1), done
        left = (time.perf_counter() - self._t0) / max(done, 1) * (total - done)
        self.status.value = f"cutting windows: {done}/{total} atoms, ~{left:.0f} s left"

    def _ring_centres(self, points: Points, image: Image) -> Points:
        """A Points layer of ring centres (headless :func:`atomlens.chem.analyze`)."""
        from atomlens.chem import analyze

        px = pixel_size_of(image, points)
        if not px:
            raise ValueError(
                "ring centres need the pixel size in Å: detect atoms with the "
                "Detect dock's 'pixel size (Å)' field set"
            )
        rings = analyze(layer_atoms(points), px).rings
        table = rings.drop(columns=["atoms"], errors="ignore")
        # drawn in the atoms layer's own units (its scale), so the centres lie on its atoms
        draw_px = layer_pixel_size(points)
        tup = atoms_layer_tuple(table, draw_px, f"ring centres {points.name}", colour_by="size")
        tup[1]["symbol"] = "diamond"
        return replace_or_add(self.viewer, tup)

    def _show(self, windows: Any, centres_layer: Points, image: Image) -> SubimageSet | None:
        from atomlens._napari.gallery import ensure_gallery

        if windows is None:
            self.status.value = "stopped before any window was cut"
            return None
        subs = SubimageSet(
            f"subimages {centres_layer.name}", windows, centres_layer.name, image.name
        )
        self.session.add_subimages(subs)
        self.current = subs
        h, w = subs.window
        b = getattr(getattr(windows, "recipe", None), "bin", None) or 1
        self.status.value = f"{len(subs.images)} windows of {h}x{w} px (bin {b})" + (
            f" (stopped: the windows of the first {self._done} of {len(windows.centres)}"
            " atoms are kept)"
            if getattr(windows, "stopped", False)
            else ""
        )
        self.gallery = ensure_gallery(self.viewer)
        if self.gallery is not None:
            self.gallery.show_set(subs, centres_layer)
        return subs


def show_window(viewer: napari.Viewer, subs: SubimageSet, row: int) -> int | None:
    """Show the window of centre ``row`` (a row of the centres layer) in the gallery;
    returns the subimage index, or None when that centre has no window."""
    from atomlens._napari.gallery import ensure_gallery

    hits = np.flatnonzero(subs.index == row)
    if len(hits) == 0:
        return None
    gallery = ensure_gallery(viewer)
    if gallery is not None:
        gallery.show_rows([row])
    return int(hits[0])
