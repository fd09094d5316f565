"""The "Subimages" dock: cut descriptor windows around atoms (or ring centres).

The windows (:func:`atomlens.descriptors.extract_windows`) are shown as an Image layer of
shape ``(N, 1, h, w)``: its first axis gets its own slider that walks through the
subimages, while its single time slice spans every frame of the movie (so the window
stays visible whatever the time slider shows). It sits, enlarged, to the right of the
movie. Clicking an atom in the viewer moves the subimage slider to that atom's window.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import napari
import numpy as np
from magicgui.widgets import ComboBox, PushButton, SpinBox

from atomlens._napari._base import ViewerWidget, status_label
from atomlens._napari._layers import (
    atomlens_kind,
    layer_atoms,
    layer_pixel_size,
    replace_or_add,
)
from atomlens._napari._workers import notify_error
from atomlens.viz.layers import META_KEY, atoms_layer_tuple

if TYPE_CHECKING:
    from napari.layers import Image, Points

#: Default window side in Å: a hexagon and its first neighbours (~2.5 C-C bonds each way).
DEFAULT_WINDOW_A = 4.0


def default_window(pixel_size: float | None) -> int:
    """An even window size in pixels covering about :data:`DEFAULT_WINDOW_A` Å (16-96)."""
    if not pixel_size:
        return 32
    return int(np.clip(2 * round(DEFAULT_WINDOW_A / pixel_size / 2), 16, 96))


def _not_subimages(layer: Any) -> bool:
    return atomlens_kind(layer) != "subimages" and layer.ndim in (2, 3) and not layer.rgb


class SubimageWidget(ViewerWidget):
    """Pick atoms and an image (or a probability map); cut windows; show them as a stack."""

    def __init__(self, viewer: napari.viewer.Viewer) -> None:
        super().__init__(viewer)
        self.atoms = self.layer_picker("atoms", "points")
        self.image = self.layer_picker("image / map", "image", _not_subimages)
        self.centres = ComboBox(label="centres", choices=["atoms", "ring centres"], value="atoms")
        self.window = SpinBox(label="window (px)", min=8, max=256, step=2, value=32)
        self.cut_button = PushButton(text="Cut subimages")
        self.status = status_label()
        self.extend([self.atoms, self.image, self.centres, self.window, self.cut_button, self.status])
        self.image.changed.connect(self._suggest_window)
        self.cut_button.changed.connect(self.cut)
        self.layer: Image | None = None
        self._suggest_window()

    def _suggest_window(self, *_: Any) -> None:
        if self.image.value is not None:
            self.window.value = default_window(layer_pixel_size(self.image.value))

    def cut(self) -> Image | None:
        """Cut windows and add/replace the subimages layer; returns it (None on error)."""
        from atomlens.descriptors import extract_windows

        points, image = self.atoms.value, self.image.value
        try:
            if points is None or image is None:
                raise ValueError("need an atoms (Points) layer and an image layer: detect atoms first")
            centres_layer = points
            if self.centres.value == "ring centres":
                centres_layer = self._ring_centres(points, image)
            centres = layer_atoms(centres_layer)
            data = np.asarray(image.data)
            data = data[None] if data.ndim == 2 else data
            subs = extract_windows(data, centres, int(self.window.value), border="drop")
            if len(subs) == 0:
                raise ValueError(
                    f"no {self.window.value}-pixel window fits inside the frames around these "
                    "centres; choose a smaller window"
                )
        except ValueError as exc:
            notify_error(exc, "Subimages")
            return None
        self.layer = self._show(subs, centres_layer, image)
        self.status.value = f"{len(subs)} windows of {subs.window[0]}x{subs.window[1]} px"
        return self.layer

    def _ring_centres(self, points: Points, image: Image) -> Points:
        """A Points layer of ring centres (headless :func:`atomlens.chem.analyze`)."""
        from atomlens.chem import analyze

        px = layer_pixel_size(image) or layer_pixel_size(points)
        if not px:
            raise ValueError("ring centres need the pixel size in Å: set the image layer's scale")
        rings = analyze(layer_atoms(points), px).rings
        table = rings.drop(columns=["atoms"], errors="ignore")
        tup = atoms_layer_tuple(table, px, f"ring centres {points.name}", colour_by="size")
        tup[1]["symbol"] = "diamond"
        return replace_or_add(self.viewer, tup)

    def _show(self, subs: Any, centres_layer: Points, image: Image) -> Image:
        images = np.asarray(subs.images)
        if images.ndim == 4:  # several channels: show the first; all are kept in metadata
            images = images[:, 0]
        n_frames = int(image.data.shape[0]) if image.ndim == 3 else 1
        px = float(image.scale[-1])
        h, w = images.shape[-2:]
        zoom = max(1.0, 0.5 * float(image.data.shape[-2]) / h)
        meta = {
            META_KEY: {
                "kind": "subimages",
                "index": np.asarray(subs.index),
                "window": tuple(int(v) for v in subs.window),
                "centres": centres_layer.name,
                "source": image.name,
                "images": np.asarray(subs.images),
            }
        }
        kwargs = {
            "name": f"subimages {centres_layer.name}",
            # one time slice stretched over all frames: visible at every time step
            "scale": (1.0, float(n_frames), px * zoom, px * zoom),
            "translate": (0.0, (n_frames - 1) / 2.0, 0.0, px * (image.data.shape[-1] + 8)),
            "units": ("dimensionless", "dimensionless", *tuple(str(u) for u in image.units[-2:])),
            "axis_labels": ("subimage", "t", "y", "x"),
            "colormap": "gray",
            "metadata": meta,
        }
        layer = replace_or_add(self.viewer, (images[:, None], kwargs, "image"))
        self._link_clicks(centres_layer, layer)
        return layer

    def _link_clicks(self, points: Points, subimages: Image) -> None:
        """Clicking a point of ``points`` moves the subimage slider to its window."""

        def _on_click(layer: Points, event: Any) -> None:
            row = layer.get_value(
                event.position, view_direction=event.view_direction,
                dims_displayed=event.dims_displayed, world=True,
            )
            if row is not None:
                show_window(self.viewer, subimages, int(row))

        points.mouse_drag_callbacks[:] = [
            cb for cb in points.mouse_drag_callbacks if getattr(cb, "__name__", "") != "_on_click"
        ]
        points.mouse_drag_callbacks.append(_on_click)


def show_window(viewer: napari.Viewer, subimages: Image, row: int) -> int | None:
    """Move the subimage slider to the window of centre ``row`` (a row of the centres
    layer); returns the subimage index, or None when that centre has no window."""
    index = subimages.metadata[META_KEY]["index"]
    hits = np.flatnonzero(np.asarray(index) == row)
    if len(hits) == 0:
        return None
    i = int(hits[0])
    viewer.dims.set_current_step(viewer.dims.ndim - subimages.ndim, i)
    return i
