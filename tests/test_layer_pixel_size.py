"""The docks' one pixel-size resolver, headless (layer-like objects, no viewer): a value
typed into Detect (recorded as the user's) beats a file's calibration on any layer, then
the first layer's Å scale, then the pixel size in its metadata, then the next layer's."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from atomlens._napari._layers import (
    layer_stack,
    pixel_size_of,
    record_pixel_size,
    resolve_layer_pixel_size,
)


def _layer(scale=None, meta=None, path=None):
    units = ("dimensionless", "angstrom", "angstrom") if scale else ("pixel",) * 3
    return SimpleNamespace(
        data=np.zeros((2, 16, 16), np.float32),
        scale=(1.0, scale or 1.0, scale or 1.0),
        units=units,
        metadata={"atomlens": dict(meta or {})},
        source=SimpleNamespace(path=path),
    )


def test_precedence_user_then_scale_then_metadata():
    image = _layer(scale=0.1, meta={"pixel_size": 0.1, "pixel_size_source": "metadata"})
    atoms = _layer(scale=0.1, meta={"pixel_size": 0.1})
    assert resolve_layer_pixel_size(image, atoms).value == 0.1
    assert resolve_layer_pixel_size(image).source == "metadata"
    record_pixel_size(atoms, 0.077, "user")  # typed into Detect, recorded on the atoms
    for layers in ((image, atoms), (atoms, image), (atoms,)):
        px = resolve_layer_pixel_size(*layers)
        assert (px.value, px.source) == (0.077, "user")
    bare = _layer()  # pixels only, no metadata
    assert resolve_layer_pixel_size(bare) is None and pixel_size_of(None, bare) is None
    assert pixel_size_of(bare, _layer(meta={"pixel_size": 0.2})) == 0.2  # the next layer's
    record_pixel_size(bare, 0, "user")  # an unknown value writes nothing
    record_pixel_size(bare, -0.1, "user")
    assert "pixel_size" not in bare.metadata["atomlens"]


def test_layer_stack_uses_the_resolver_and_the_movie_file():
    image = _layer(scale=0.1, path="/data/movie.tif")
    atoms = _layer(meta={"pixel_size": 0.077, "pixel_size_source": "user"})
    stack = layer_stack(image, atoms)
    assert (stack.pixel_size, stack.pixel_size_source) == (0.077, "user")
    assert stack.path == "/data/movie.tif"
    bad = _layer(meta={"pixel_size": -1, "pixel_size_source": "user"})
    with pytest.raises(ValueError, match="positive number"):
        resolve_layer_pixel_size(bad)
