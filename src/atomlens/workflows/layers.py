"""Headless rules about napari layers that the docks share (no napari import here).

:func:`pick_movie_layer` is THE image-picker rule: a raw image layer (the movie) before
any derived image (probability maps ``P(...)``, latent maps, reconstructions); a clear
message when only derived images are left.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from atomlens.errors import SettingsError

#: ``metadata["atomlens"]["kind"]`` values of images that are NOT a movie.
DERIVED_KINDS = frozenset(
    {
        "maps",
        "probability",
        "latent",
        "reconstruction",
        "manifold",
        "chemspace",
        "walls",
        "subimages",
    }
)


def _meta(layer: Any) -> dict:
    meta = getattr(layer, "metadata", None)
    inner = meta.get("atomlens", {}) if isinstance(meta, dict) else {}
    return inner if isinstance(inner, dict) else {}


def is_image_layer(layer: Any) -> bool:
    """An image layer (by napari's type name, so this module needs no napari)."""
    return type(layer).__name__ == "Image"


def is_derived_image(layer: Any) -> bool:
    """True for images computed by AtomLens (maps, latents...), false for a movie.

    A layer is derived when its AtomLens metadata says a derived ``kind`` or names
    ``classes``/``channel`` of a map, or when its name starts with ``P(`` (the
    probability maps of the Detect dock)."""
    meta = _meta(layer)
    if str(meta.get("kind", "")) in DERIVED_KINDS or "channel" in meta or "class" in meta:
        return True
    name = str(getattr(layer, "name", ""))
    return name.startswith("P(") or name.lower().startswith(("probability", "maps"))


def movie_layers(layers: Iterable[Any]) -> list[Any]:
    """The image layers that hold a movie, topmost first."""
    imgs = [lay for lay in layers if is_image_layer(lay)]
    return [lay for lay in reversed(imgs) if not is_derived_image(lay)]


def pick_movie_layer(layers: Iterable[Any], required: bool = True) -> Any:
    """The movie layer a dock should default to: the topmost raw image layer.

    ``layers`` is ``viewer.layers`` (bottom to top) or any list of layers. Raises
    :class:`SettingsError` (``required``) when only probability maps or other derived
    images are left, or there is no image at all; else returns None.
    """
    layers = list(layers)
    movies = movie_layers(layers)
    if movies:
        return movies[0]
    if not required:
        return None
    derived = [str(getattr(lay, "name", "?")) for lay in layers if is_image_layer(lay)]
    if derived:
        raise SettingsError(
            f"only derived images are open ({', '.join(derived)}): open the movie itself "
            "(File > Open) -- probability maps cannot be used as the movie"
        )
    raise SettingsError("no image layer: open the movie first (File > Open)")


__all__ = ["DERIVED_KINDS", "is_derived_image", "movie_layers", "pick_movie_layer"]
