"""Small glue between napari layers and AtomLens data (no science here).

Finding AtomLens layers, the current frame of a layer, the pixel size a layer's scale
encodes, turning layer-data tuples into layers, and applying a colour spec to Points.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from atomlens.io import Stack
from atomlens.io.pixel_size import PixelSize, resolve_pixel_size
from atomlens.viz.colours import ColourSpec
from atomlens.viz.keys import ColourKey
from atomlens.viz.layers import META_KEY, LayerTuple

if TYPE_CHECKING:
    import napari
    from napari.layers import Layer, Points

_TO_ANGSTROM = {"angstrom": 1.0, "Å": 1.0, "nanometer": 10.0, "picometer": 0.01}


def layer_pixel_size(layer: Layer) -> float | None:
    """Å per pixel encoded by a layer's last-axis ``scale`` and ``units`` (None if pixels)."""
    unit = str(layer.units[-1]) if getattr(layer, "units", None) else "pixel"
    factor = _TO_ANGSTROM.get(unit)
    if factor is None:
        return None
    return float(layer.scale[-1]) * factor


def atomlens_meta(layer: Layer | None) -> dict:
    """The ``metadata["atomlens"]`` dict of a layer ({} when it has none)."""
    meta = getattr(layer, "metadata", None)
    inner = meta.get(META_KEY) if isinstance(meta, dict) else None
    return inner if isinstance(inner, dict) else {}


def resolve_layer_pixel_size(*layers: Layer | None) -> PixelSize | None:
    """The one pixel-size resolver of the docks: Å per pixel for ``layers`` (an image and
    its atoms, in that order), with its source, or None when none of them knows it.

    Precedence (:func:`atomlens.io.pixel_size.resolve_pixel_size`): a value the user typed
    (the Detect dock records it with :func:`record_pixel_size`) on any of the layers, then
    the first layer's Å ``scale``, then the pixel size in its AtomLens metadata (the
    file's calibration, or the value detection used), then the next layer's."""
    present = [lay for lay in layers if lay is not None]
    for lay in present:
        meta = atomlens_meta(lay)
        if meta.get("pixel_size_source") == "user" and meta.get("pixel_size"):
            return resolve_pixel_size(user=meta["pixel_size"])
    for lay in present:
        meta = atomlens_meta(lay)
        known = layer_pixel_size(lay) or meta.get("pixel_size")
        px = resolve_pixel_size(metadata=known, required=False)
        if px is not None:
            src = meta.get("pixel_size_source")
            return PixelSize(px.value, src if src in ("calibration", "project") else "metadata")
    return None


def pixel_size_of(*layers: Layer | None) -> float | None:
    """Å per pixel of ``layers`` (see :func:`resolve_layer_pixel_size`), or None."""
    px = resolve_layer_pixel_size(*layers)
    return px.value if px is not None else None


def record_pixel_size(layer: Layer | None, pixel_size: float | None, source: str) -> None:
    """Write the pixel size used for ``layer`` (Å/px) and its source (``"user"`` for a
    typed value) into its AtomLens metadata, where :func:`resolve_layer_pixel_size` of
    every dock reads it. Nothing is written for an unknown (None, 0, negative) value."""
    ok = resolve_pixel_size(metadata=pixel_size, required=False)
    if layer is None or ok is None or not isinstance(layer.metadata, dict):
        return
    meta = layer.metadata.setdefault(META_KEY, {})
    meta["pixel_size"] = float(pixel_size)
    meta["pixel_size_source"] = str(source)


def layer_stack(layer: Layer, *others: Layer | None) -> Stack:
    """An :class:`atomlens.io.Stack` view of an Image layer's ``(T, Y, X)`` (or 2-D) data,
    with the pixel size of :func:`resolve_layer_pixel_size` (``layer`` first, then
    ``others``) and the movie's file when the layer records one."""
    px = resolve_layer_pixel_size(layer, *others)
    meta = atomlens_meta(layer)
    path = meta.get("path") or getattr(getattr(layer, "source", None), "path", None)
    return Stack(
        layer.data,
        px.value if px is not None else None,
        px.source if px is not None else "unknown",
        dict(layer.metadata),
        str(path) if path else None,
    )


def current_frame(viewer: napari.Viewer, layer: Layer) -> int:
    """The frame (index along the layer's first axis) the time slider shows for ``layer``."""
    if layer.ndim < 3:
        return 0
    axis = viewer.dims.ndim - layer.ndim
    world = float(viewer.dims.point[axis])
    frame = (world - float(layer.translate[0])) / float(layer.scale[0])
    return int(
        np.clip(np.rint(frame), 0, layer.data.shape[0] - 1 if hasattr(layer.data, "shape") else 0)
    )


def time_axis(viewer: napari.Viewer, layer: Layer) -> int:
    """The viewer axis that is ``layer``'s time axis (its first)."""
    return viewer.dims.ndim - layer.ndim


def set_frame(viewer: napari.Viewer, layer: Layer, frame: int) -> None:
    """Move the time slider so ``layer`` shows ``frame``."""
    axis = time_axis(viewer, layer)
    world = frame * float(layer.scale[0]) + float(layer.translate[0])
    point = list(viewer.dims.point)
    point[axis] = world
    viewer.dims.point = point


def add_tuple(viewer: napari.Viewer, layer_tuple: LayerTuple) -> Layer:
    """Add a ``(data, kwargs, type)`` tuple as a layer; returns the new layer."""
    from napari.layers import Layer

    data, kwargs, kind = layer_tuple
    with _intended_categories():
        layer = Layer.create(data, dict(kwargs), kind)
    return viewer.add_layer(layer)


@contextmanager
def _intended_categories() -> Iterator[None]:
    """Silence napari's guess warning for integer features we colour as categories on
    purpose (coordination, ring size: :func:`atomlens.viz.colours.colour_spec`)."""
    with warnings.catch_warnings():
        warnings.filterwarnings(
            "ignore", message=".*looks like categorical data", category=RuntimeWarning
        )
        yield


def layer_named(viewer: napari.Viewer, name: str | None) -> Layer | None:
    """The viewer's layer called ``name`` (None if none), as the layer itself: a dock
    opened from the Plugins menu gets napari's public-only proxy of the viewer, whose
    ``viewer.layers[name]`` is a proxy (its ``type`` is the proxy's, and a new proxy per
    look-up), while iterating the layer list gives the layers."""
    return next((lay for lay in viewer.layers if lay.name == name), None)


def replace_or_add(viewer: napari.Viewer, layer_tuple: LayerTuple) -> Layer:
    """Replace the data of the layer with the same name and kind, else add a new one."""
    data, kwargs, kind = layer_tuple
    old = layer_named(viewer, kwargs.get("name"))
    if old is not None and type(old).__name__.lower() == kind:
        viewer.layers.remove(old)
    return add_tuple(viewer, layer_tuple)


def add_in_turns(viewer: napari.Viewer, tuples: list[LayerTuple], then=None) -> None:
    """Add (or replace, by name) layers one per turn of the Qt event loop: each layer's
    set-up (napari's layer controls, slicing, a repaint) is its own short main-thread task
    instead of one long stall. ``then(layers)`` runs after the last one is in."""
    from qtpy.QtCore import QTimer

    pending, added = list(tuples), []

    def _step() -> None:
        if pending:
            added.append(replace_or_add(viewer, pending.pop(0)))
            QTimer.singleShot(0, _step)
        elif then is not None:
            then(added)

    QTimer.singleShot(0, _step)


def atomlens_kind(layer: Layer) -> str | None:
    """``'stack'``, ``'probability'``, ``'atoms'``, ``'subimages'``... for layers AtomLens made."""
    meta = layer.metadata.get(META_KEY) if isinstance(layer.metadata, dict) else None
    return meta.get("kind") if isinstance(meta, dict) else None


#: Points layers AtomLens makes that hold no atoms (ring centres, defect centres,
#: subimage centres): not offered where a dock asks for atoms.
NOT_ATOMS_KINDS = ("rings", "defects", "subimages")


def is_atoms_points(layer: Layer) -> bool:
    """A Points layer of atoms (detected, opened from a table, or drawn by hand), not
    one of AtomLens' ring, defect or subimage centre layers; the 'atoms' pickers' rule."""
    return atomlens_kind(layer) not in NOT_ATOMS_KINDS and layer.ndim in (2, 3)


def colormap_with_grey(name: str):
    """napari's colormap ``name`` with NaN drawn in neutral grey, not transparent: atoms
    without a value (no latent: their window crosses the frame edge) stay visible."""
    from napari.utils.colormaps import Colormap, ensure_colormap

    from atomlens.viz.keys import NEUTRAL_GREY

    base = ensure_colormap(name)
    return Colormap(
        colors=base.colors,
        controls=base.controls,
        name=base.name,
        interpolation=base.interpolation,
        nan_color=NEUTRAL_GREY,
    )


def set_colour_key(layer: Layer, key: ColourKey | None) -> None:
    """Record ``layer``'s colour key in its metadata and tell the Colour key dock."""
    from atomlens._napari.state import COLOUR_KEYS

    meta = layer.metadata.setdefault(META_KEY, {})
    meta["colour_key"] = key.to_dict() if key is not None else None
    COLOUR_KEYS.changed.emit(layer)


def colour_key_of(layer: Layer) -> ColourKey | None:
    """The colour key AtomLens recorded for ``layer`` (None if it has none)."""
    meta = layer.metadata.get(META_KEY) if isinstance(layer.metadata, dict) else None
    d = meta.get("colour_key") if isinstance(meta, dict) else None
    return ColourKey.from_dict(d) if d else None


def apply_colour(layer: Points, spec: ColourSpec) -> None:
    """Colour a Points layer's faces by ``spec.column`` (fixed map and limits; atoms
    without a value in neutral grey) and record the colour key."""
    from atomlens.viz.keys import key_for_spec

    # pass through direct mode: napari validates a new column against the *current*
    # mode, and a string column cannot be validated as a colormap (nor floats as a cycle)
    layer.face_color = "white"
    if spec.kind == "categorical":
        layer.face_color_cycle = dict(spec.cycle)
        with _intended_categories():
            layer.face_color = spec.column
        if layer.face_color_mode != "cycle":
            layer.face_color_mode = "cycle"
    else:
        layer.face_colormap = colormap_with_grey(spec.colormap)
        layer.face_color = spec.column
        if layer.face_color_mode != "colormap":
            layer.face_color_mode = "colormap"
        layer.face_contrast_limits = spec.contrast_limits
    # (no refresh_colors: setting the column and the limits already mapped the colours;
    # each extra mapping of 80,000 atoms costs ~50 ms on the main thread)
    set_colour_key(layer, key_for_spec(spec, layer.features[spec.column]))


def merge_features(layer: Points, new: pd.DataFrame) -> None:
    """Write columns of ``new`` (one row per point, same order) into the layer's features,
    replacing columns of the same name."""
    if len(new) != len(layer.data):
        raise ValueError(f"{len(new)} rows for a layer of {len(layer.data)} points")
    feats = layer.features.reset_index(drop=True)
    new = new.reset_index(drop=True)
    feats = pd.concat([feats.drop(columns=[c for c in new.columns if c in feats]), new], axis=1)
    layer.features = feats


def numeric_feature_columns(layer: Points) -> list[str]:
    """Feature columns that can be plotted on an axis."""
    return [
        c
        for c in layer.features.columns
        if pd.api.types.is_numeric_dtype(layer.features[c])
        and not pd.api.types.is_bool_dtype(layer.features[c])
    ]


def layer_atoms(layer: Points) -> pd.DataFrame:
    """The atom table behind a Points layer (positions from its data, in pixels)."""
    from atomlens.viz.layers import points_to_atoms

    return points_to_atoms(layer.data, layer.features)
