"""Writing stacks as calibrated files that ImageJ, napari and ``read_stack`` understand."""

from __future__ import annotations

from pathlib import Path

import numpy as np


def write_tiff(path: str | Path, data: np.ndarray, pixel_size: float | None) -> Path:
    """Write a ``(T, Y, X)`` or ``(Y, X)`` stack as an ImageJ TIFF calibrated in Å/pixel."""
    import tifffile

    path = Path(path)
    arr = np.asarray(data, dtype=np.float32)
    kwargs: dict = {"imagej": True, "metadata": {"axes": "TYX" if arr.ndim == 3 else "YX"}}
    if pixel_size:
        kwargs["resolution"] = (1.0 / pixel_size, 1.0 / pixel_size)
        kwargs["metadata"]["unit"] = "angstrom"
    from atomlens.io.atomic import atomic_write

    with atomic_write(path, "wb") as fh:  # whole or absent
        tifffile.imwrite(fh, arr, **kwargs)
    return path
