"""Write rendered frames (RGB(A) arrays, e.g. napari screenshots) as an animated GIF."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def downsample_rgb(frame: np.ndarray, max_side: int) -> np.ndarray:
    """Shrink an ``(H, W, 3|4)`` uint8 frame by an integer stride so its long side is
    at most ``max_side`` (no resampling library needed; GIFs stay small)."""
    step = max(1, int(np.ceil(max(frame.shape[:2]) / max_side)))
    return frame[::step, ::step]


def write_gif(
    frames: Sequence[np.ndarray], path: str | Path, fps: float = 5.0, max_side: int = 640
) -> Path:
    """Write ``frames`` (``(H, W, 3)`` or ``(H, W, 4)`` uint8, all the same shape) as a
    looping GIF at ``fps`` frames per second. Returns the path written."""
    import imageio.v2 as imageio

    if len(frames) == 0:
        raise ValueError("no frames to write: the movie has no time steps")
    path = Path(path)
    if path.suffix.lower() != ".gif":
        raise ValueError(f"'{path.name}' is not a .gif file name")
    shapes = {np.asarray(f).shape for f in frames}
    if len(shapes) != 1:
        raise ValueError(f"frames differ in shape: {sorted(shapes)}")
    rgb = [downsample_rgb(np.asarray(f)[..., :3].astype(np.uint8), max_side) for f in frames]
    path.parent.mkdir(parents=True, exist_ok=True)
    imageio.mimsave(path, rgb, duration=1.0 / fps, loop=0)
    return path
