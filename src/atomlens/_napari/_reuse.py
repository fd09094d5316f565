"""Re-runs write their results into the layers of the previous run instead of removing
them and adding new ones.

A new layer costs napari ~85 ms of main-thread work to add (layer list row, layer
controls, vispy visual) and ~80-110 ms more on its first draw (vispy builds the markers
and text shader programs in Python, Mesa compiles and links them), one turn each, under
software OpenGL (docs/napari.md, "Round 4"). Writing the new data into the existing
layer costs tens of ms, in a few turns, and every dock bound to the layer stays bound.

Only AtomLens replaces a layer's contents this way; while it does, :func:`is_replacing`
is true for that layer, and when it is done :data:`REPLACED` emits the layer. The Correct
atoms dock ignores the layer's data events meanwhile (a whole-array ``Points.data``
assignment reads like a drag of every point) and then restarts its correction session
from the new table (:meth:`~atomlens._napari.correction.CorrectionWidget.bind_layer`:
a new baseline, its undo history cleared).
"""

from __future__ import annotations

import warnings
import weakref
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from psygnal import Signal

#: The keyword arguments each layer was made with (:func:`~atomlens._napari._workers.make_layers`):
#: how a reused layer is coloured (the colour column, cycle or colormap and limits).
MADE_WITH: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()

_REPLACING: weakref.WeakSet = weakref.WeakSet()


class _ReplacedBus:
    """``replaced(layer)``: AtomLens has written a new result into ``layer``."""

    replaced = Signal(object)


#: One bus for every viewer.
REPLACED = _ReplacedBus()


def unwrapped(layer: Any) -> Any:
    """The layer itself: a layer reached through a dock opened in the Plugins menu may be
    napari's public-only proxy of it (a new proxy per look-up; ``__wrapped__`` is the
    proxy's public attribute for the layer)."""
    return getattr(layer, "__wrapped__", layer)


def is_replacing(layer: Any) -> bool:
    """Whether AtomLens is writing a new result into ``layer`` right now."""
    return layer is not None and unwrapped(layer) in _REPLACING


@contextmanager
def replacing(layer: Any) -> Iterator[None]:
    """Mark ``layer`` as being replaced (its data events are not user edits)."""
    real = unwrapped(layer)
    _REPLACING.add(real)
    try:
        yield
    finally:
        _REPLACING.discard(real)


def can_reuse(old: Any, new: Any) -> bool:
    """``old`` can take ``new``'s contents: both Points or both (non-RGB) Images of the
    same dimensionality."""
    kind = type(new).__name__
    if type(old) is not type(new) or kind not in ("Points", "Image"):
        return False
    if old.ndim != new.ndim:
        return False
    return not (kind == "Image" and (old.rgb or new.rgb))


def reuse_steps(old: Any, new: Any) -> list[Callable[[], None]]:
    """The turns that write ``new``'s contents into ``old`` (each a few tens of ms at
    7,000 atoms); the last emits :data:`REPLACED`."""
    if type(new).__name__ == "Points":
        steps = [lambda: _points_table(old, new), lambda: _points_colour(old, new)]
    else:
        steps = [lambda: _image(old, new)]

    def _done() -> None:
        old.visible = bool(new.visible) or old.visible
        REPLACED.replaced.emit(old)

    return [*steps, _done]


def _place(old: Any, new: Any) -> None:
    """Scale, translate, units and metadata of ``new`` onto ``old`` (where they differ)."""
    import numpy as np

    for attr in ("scale", "translate"):
        if not np.array_equal(getattr(old, attr), getattr(new, attr)):
            setattr(old, attr, getattr(new, attr))
    if tuple(old.units) != tuple(new.units):
        old.units = new.units
    old.metadata = dict(new.metadata)


def _points_table(old: Any, new: Any) -> None:
    """Positions, features and sizes: one turn, the layer marked as being replaced."""
    with replacing(old):
        old.selected_data = set()
        # direct colours while the table changes: the old colour column (e.g. a latent)
        # may not be in the new table
        old.face_color = "white"
        old.data = new.data
        with warnings.catch_warnings():  # the colour column goes with the old table: wanted
            warnings.filterwarnings("ignore", message="property used for", category=RuntimeWarning)
            old.features = new.features.reset_index(drop=True)
        old.size = new.size
        _place(old, new)


def _points_colour(old: Any, new: Any) -> None:
    """The colouring ``new`` was made with (species cycle or a colormap and limits)."""
    from atomlens._napari._layers import _intended_categories

    kw = MADE_WITH.get(new, {})
    column = kw.get("face_color")
    with replacing(old):
        if isinstance(column, str) and column in old.features.columns:
            if "face_color_cycle" in kw:
                old.face_color_cycle = dict(kw["face_color_cycle"])
                with _intended_categories():
                    old.face_color = column
                if old.face_color_mode != "cycle":
                    old.face_color_mode = "cycle"
            else:
                if "face_colormap" in kw:
                    old.face_colormap = kw["face_colormap"]
                old.face_color = column
                if old.face_color_mode != "colormap":
                    old.face_color_mode = "colormap"
                if "face_contrast_limits" in kw:
                    old.face_contrast_limits = kw["face_contrast_limits"]
        elif isinstance(column, str):  # one colour for all (e.g. an empty result's grey)
            old.face_color = column
        elif len(new.data):
            old.face_color = new.face_color
    from atomlens._napari.state import COLOUR_KEYS

    COLOUR_KEYS.changed.emit(old)  # the key in the copied metadata


def _image(old: Any, new: Any) -> None:
    """Data, contrast limits, colormap and place of an Image."""
    with replacing(old):
        old.data = new.data
        old.contrast_limits_range = new.contrast_limits_range
        old.contrast_limits = new.contrast_limits
        old.colormap = new.colormap
        old.blending, old.opacity = new.blending, new.opacity
        _place(old, new)
