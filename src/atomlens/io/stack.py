"""The image stack that flows between every layer of AtomLens."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from atomlens.errors import InputFileError


class StackError(InputFileError):
    """Raised for input that cannot be used as an image stack; the message names the fix."""


@dataclass
class Stack:
    """A movie of STEM frames.

    Attributes
    ----------
    data : (T, Y, X) float32 array (may be a lazy array such as a memmap or dask array).
    pixel_size : Å per pixel, or ``None`` when unknown.
    pixel_size_source : where ``pixel_size`` came from: ``"metadata"``, ``"user"``,
        ``"calibration"``, ``"simulation"`` or ``"unknown"``.
    metadata : the source file's metadata (free form, JSON-able where possible).
    path : the file it was read from, if any.
    """

    data: Any
    pixel_size: float | None = None
    pixel_size_source: str = "unknown"
    metadata: dict = field(default_factory=dict)
    path: str | None = None

    def __post_init__(self) -> None:
        self.data = as_stack_array(self.data)

    @property
    def n_frames(self) -> int:
        return int(self.data.shape[0])

    @property
    def shape(self) -> tuple[int, int, int]:
        return tuple(int(s) for s in self.data.shape)  # type: ignore[return-value]

    def frame(self, t: int) -> np.ndarray:
        """One frame as an in-memory (Y, X) float32 array."""
        return np.asarray(self.data[t], dtype=np.float32)

    def with_pixel_size(self, pixel_size: float, source: str = "user") -> Stack:
        """A copy (sharing the data) with a new pixel size in Å."""
        if not (pixel_size and np.isfinite(pixel_size) and pixel_size > 0):
            raise StackError(f"pixel size must be a positive number of Å, got {pixel_size!r}")
        return Stack(self.data, float(pixel_size), source, dict(self.metadata), self.path)


def nonfinite_note(stack: Any, frames: Any = None) -> str | None:
    """One line saying how many NaN/inf pixels were masked (no atoms there), or ``None``.

    Counts the ``frames`` given (default all) of an in-memory stack, and the frames read
    so far of a lazy one (read them first, e.g. by detecting)."""
    data = getattr(stack, "data", stack)
    if isinstance(data, np.ndarray):
        bad = ~np.isfinite(data.reshape(-1, *data.shape[-2:]))
        counts = {int(t): int(n) for t, n in enumerate(bad.sum(axis=(1, 2))) if n}
    else:
        counts = dict(getattr(data, "nonfinite", {}) or {})
    if frames is not None:
        keep = {int(t) for t in frames}
        counts = {t: n for t, n in counts.items() if t in keep}
    total = sum(counts.values())
    if not total:
        return None
    frames = f" in {len(counts)} frame(s)" if counts else ""
    return (
        f"{total} NaN/inf pixels{frames} were masked: no atoms there, the rest analysed "
        "(read_stack(nonfinite='refuse') refuses such data instead)"
    )


def stack_frames(stack: Any) -> Any:
    """The pixels of a Stack (its ``data``) or of an array as (T, Y, X): a 2-D image
    becomes T = 1; lazy arrays stay lazy. Raises ValueError for other dimensions.
    (Numpy arrays have a ``.data`` memoryview too, hence the ``pixel_size`` test.)"""
    data = stack.data if hasattr(stack, "pixel_size") and hasattr(stack, "data") else stack
    if not hasattr(data, "ndim"):
        data = np.asarray(data)
    if data.ndim == 2:
        data = data[None]
    if data.ndim != 3:
        raise ValueError(f"expected a (Y, X) image or (T, Y, X) movie, got shape {data.shape}")
    return data


def as_stack_array(data: Any) -> Any:
    """Check and coerce an image or movie to a (T, Y, X) float32 array.

    A 2-D image becomes T = 1. Lazy arrays (dask, memmap) stay lazy apart from the
    dtype check. Raises :class:`StackError` for wrong dimensions, empty data or pixel
    types that are not real intensities; NaN/inf pixels are kept (detection masks them).
    """
    if data is None:
        raise StackError("no image data: pass a 2-D image or a (T, Y, X) movie")
    if not hasattr(data, "ndim"):
        data = np.asarray(data)
    if data.ndim == 2:
        data = data[None]
    if data.ndim == 4 and data.shape[-1] in (3, 4):
        raise StackError(
            f"got an RGB(A) image of shape {tuple(data.shape)}; STEM data are single-channel: "
            "convert to grey first (e.g. take one channel)"
        )
    if data.ndim != 3:
        raise StackError(
            f"expected a 2-D image or a (T, Y, X) movie, got shape {tuple(data.shape)}; "
            "squeeze extra axes or pick one channel"
        )
    if min(data.shape) == 0:
        raise StackError(f"the image stack is empty (shape {tuple(data.shape)})")
    if min(data.shape[1:]) < 16:
        raise StackError(
            f"frames of {data.shape[1]}x{data.shape[2]} pixels are too small to hold atoms; "
            "need at least 16x16"
        )
    from atomlens.io.gate import check_image_dtype, to_float32

    check_image_dtype(data.dtype, error=StackError)
    if isinstance(data, np.ndarray) and data.dtype != np.float32:
        data = to_float32(data)
    # NaN/inf pixels are kept: detection masks them (no atoms there) and analyses the rest
    if isinstance(data, np.ndarray) and not np.isfinite(data).any():
        raise StackError(
            f"the image has no finite pixels (all {data.size} are NaN/inf); nothing to analyse"
        )
    return data
