"""npe2 reader contribution: open STEM stacks as a calibrated Image layer."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from atomlens.io import SUPPORTED_SUFFIXES, read_stack
from atomlens.viz.layers import LayerTuple, image_layer_tuple

PathLike = str | Path


def get_reader(
    path: PathLike | list[PathLike],
) -> Callable[[PathLike | list[PathLike]], list[LayerTuple]] | None:
    """Return :func:`read_stacks` when every path has a suffix AtomLens reads, else ``None``
    (so napari can try another reader)."""
    paths = path if isinstance(path, list) else [path]
    if not paths or any(Path(p).suffix.lower() not in SUPPORTED_SUFFIXES for p in paths):
        return None
    return read_stacks


def read_stacks(path: PathLike | list[PathLike]) -> list[LayerTuple]:
    """One Image layer per file: ``(T, Y, X)`` float32 with ``scale`` = pixel size in Å.

    Raises :class:`atomlens.io.StackError` (a ``ValueError``) with the fix in its message;
    napari shows it as a notification.
    """
    from atomlens._napari.autosave import on_first_use

    on_first_use()  # the plugin's first use in this viewer: autosave, restore offer
    paths = path if isinstance(path, list) else [path]
    layers = []
    for p in paths:
        stack = read_stack(p)
        meta = {
            "atomlens": {
                "pixel_size_source": stack.pixel_size_source,
                "path": stack.path,
            },
            "source_metadata": stack.metadata,
        }
        layers.append(image_layer_tuple(stack.data, stack.pixel_size, Path(p).stem, metadata=meta))
    return layers
