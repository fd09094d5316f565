"""The "Subimages" dock: cut descriptor windows around atoms (or ring centres).

A thin shell over the latent workflow's window cutting
(:func:`atomlens.workflows.latent.prepare_movie` + :func:`~atomlens.workflows.latent.cut_windows`
with a :class:`~atomlens.workflows.latent.DescriptorRecipe`), run on a worker thread. The
windows are kept in the viewer's session (the Train dock picks them from there) and shown
in their own dock, the **subimage gallery**: the windows of the selected atoms (or the
atom just clicked), never as a second image in the movie's canvas, so the time slider
stays the movie's own.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import napari
import numpy as np
from magicgui.widgets import ComboBox, PushButton, SpinBox

from atomlens._napari._base import ViewerWidget, status_label
from atomlens._napari._layers import atomlens_kind, layer_atoms, layer_pixel_size, replace_or_add
from atomlens._napari._workers import notify_error, start_generator
from atomlens._napari.state import session_for
from atomlens.viz.layers import atoms_layer_tuple

if TYPE_CHECKING:
    from napari.layers import Image, Points


def image_pixel_size(image: Any, points: Any = None) -> float | None:
    """Å per pixel of the movie behind the windows, through the one resolver
    (:func:`atomlens.io.pixel_size.resolve_pixel_size`): the image layer's Å scale, else
    the atoms layer's (its scale or the pixel size in its AtomLens metadata); None when
    neither knows it (then windows are cut from the unbinned movie)."""
    from atomlens._napari.defects_dock import pixel_size_of
    from atomlens.io.pixel_size import resolve_pixel_size

    known = layer_pixel_size(image) if image is not None else None
    if not known and points is not None:
        known = pixel_size_of(points)
    px = resolve_pixel_size(metadata=known, required=False)
    return None if px is None else px.value


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


def window_job(data: Any, centres: Any, recipe: Any, pixel_size: float | None = None) -> Generator:
    """Worker: prepare the movie and cut the windows (headless workflow calls, as
    ``atomlens run`` makes them: ``bin = None`` bins to about 0.3 Å/px from
    ``pixel_size``)."""
    from atomlens.workflows.latent import cut_windows, prepare_movie

    yield "preparing the movie"
    prepared = prepare_movie(data, recipe, pixel_size=pixel_size)
    yield "cutting windows"
    return cut_windows(prepared, centres, recipe)


class SubimageWidget(ViewerWidget):
    """Pick atoms and an image; cut windows on a worker; show them in the gallery dock."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(viewer)
        self.session = session_for(viewer)
        self.atoms = self.layer_picker("atoms", "points")
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
        self.status = status_label()
        self.extend(
            [self.atoms, self.image, self.centres, self.window, self.cut_button, self.status]
        )
        self.cut_button.changed.connect(self.cut)
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
        self.cut_button.enabled = False
        self.status.value = "cutting..."
        self.worker = start_generator(
            window_job,
            data,
            centres,
            recipe,
            px,
            on_yield=lambda msg: setattr(self.status, "value", str(msg)),
            on_return=lambda w: self._show(w, centres_layer, image),
            on_error=lambda exc: setattr(self.status, "value", "failed"),
            on_finish=lambda: setattr(self.cut_button, "enabled", True),
            what="Subimages",
        )
        return self.worker

    def _ring_centres(self, points: Points, image: Image) -> Points:
        """A Points layer of ring centres (headless :func:`atomlens.chem.analyze`)."""
        from atomlens.chem import analyze

        px = layer_pixel_size(image) or layer_pixel_size(points)
        if not px:
            raise ValueError(
                "ring centres need the pixel size in Å: detect atoms with the "
                "Detect dock's 'pixel size (Å)' field set"
            )
        rings = analyze(layer_atoms(points), px).rings
        table = rings.drop(columns=["atoms"], errors="ignore")
        tup = atoms_layer_tuple(table, px, f"ring centres {points.name}", colour_by="size")
        tup[1]["symbol"] = "diamond"
        return replace_or_add(self.viewer, tup)

    def _show(self, windows: Any, centres_layer: Points, image: Image) -> SubimageSet:
        from atomlens._napari.gallery import ensure_gallery

        subs = SubimageSet(
            f"subimages {centres_layer.name}", windows, centres_layer.name, image.name
        )
        self.session.add_subimages(subs)
        self.current = subs
        h, w = subs.window
        b = getattr(getattr(windows, "recipe", None), "bin", None) or 1
        self.status.value = f"{len(subs.images)} windows of {h}x{w} px (bin {b})"
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
