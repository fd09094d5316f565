"""Subimage stacks (descriptors) cut around centres, vectorised across all frames.

Centres are rows of a table with ``frame``, ``y``, ``x`` (pixels; atoms, ring centres,
domain-wall pixels or a regular grid). Each centre is rounded to the nearest pixel and
the window of ``h x w`` pixels is cut so that the centre pixel sits at row ``h // 2``
and column ``w // 2`` of the window (for odd sizes that is the exact middle).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd
from numpy.lib.stride_tricks import sliding_window_view

from atomlens.errors import AtomLensError

BORDERS = ("drop", "pad")


class DescriptorError(AtomLensError):
    """Bad input for descriptor extraction; the message names the fix."""


@dataclass
class Subimages:
    """A stack of windows and where they came from.

    Attributes
    ----------
    images : (N, h, w) float32, or (N, C, h, w) when several channels (or time delays)
        are stacked.
    index : (N,) int64 row positions (``iloc``) into the centre table.
    window : (h, w) in pixels.
    border : ``"drop"`` (windows crossing the frame edge were left out) or ``"pad"``
        (the frame was padded with ``pad_value`` so every centre got a window).
    channels : names of the channel axis (e.g. ``("C", "Si")`` or ``("t+0", "t+1")``),
        empty for single-channel stacks.
    pad_value : the constant used for padding (only for ``border="pad"``).
    """

    images: np.ndarray
    index: np.ndarray
    window: tuple[int, int]
    border: str
    channels: tuple[str, ...] = ()
    pad_value: float = 0.0
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return int(self.images.shape[0])

    @property
    def n_channels(self) -> int:
        return 1 if self.images.ndim == 3 else int(self.images.shape[1])


def _window_hw(window: int | Sequence[int]) -> tuple[int, int]:
    if np.ndim(window) == 0:
        h = w = int(window)
    else:
        if len(window) != 2:
            raise DescriptorError(f"window must be an int or (h, w), got {window!r}")
        h, w = (int(v) for v in window)
    if h < 2 or w < 2:
        raise DescriptorError(f"window must be at least 2x2 pixels, got {h}x{w}")
    return h, w


def _as_array(data: Any) -> np.ndarray:
    arr = getattr(data, "data", data)  # accept atomlens.io.Stack
    arr = np.asarray(arr)
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim not in (3, 4):
        raise DescriptorError(
            f"expected a (T, Y, X) stack or (T, C, Y, X) maps, got shape {arr.shape}"
        )
    if arr.dtype != np.float32:
        arr = arr.astype(np.float32)
    return arr


def _centre_pixels(centres: Any, n_frames: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    if isinstance(centres, pd.DataFrame):
        missing = {"frame", "y", "x"} - set(centres.columns)
        if missing:
            raise DescriptorError(
                f"the centre table lacks column(s) {sorted(missing)}; it needs frame, y, x (pixels)"
            )
        f = centres["frame"].to_numpy()
        y = centres["y"].to_numpy(dtype=np.float64)
        x = centres["x"].to_numpy(dtype=np.float64)
    else:
        arr = np.asarray(centres, dtype=np.float64)
        if arr.ndim != 2 or arr.shape[1] != 3:
            raise DescriptorError("centres must be a DataFrame (frame, y, x) or an (N, 3) array")
        f, y, x = arr[:, 0], arr[:, 1], arr[:, 2]
    if len(f) and not (np.all(np.isfinite(y)) and np.all(np.isfinite(x))):
        raise DescriptorError("centre coordinates contain NaN/inf; drop those rows first")
    f = np.asarray(f).astype(np.int64)
    if len(f) and (f.min() < 0 or f.max() >= n_frames):
        raise DescriptorError(
            f"centre frames span {f.min()}..{f.max()} but the stack has {n_frames} frames"
        )
    return f, np.rint(y).astype(np.int64), np.rint(x).astype(np.int64)


def _select_channels(arr: np.ndarray, channels: Any) -> tuple[np.ndarray, tuple[str, ...]]:
    if arr.ndim == 3:
        if channels not in (None, 0, [0], (0,)):
            raise DescriptorError("channels= only applies to (T, C, Y, X) maps")
        return arr, ()
    n_c = arr.shape[1]
    if channels is None:
        idx = list(range(n_c))
    elif np.ndim(channels) == 0:
        idx = [int(channels)]
    else:
        idx = [int(c) for c in channels]
    for c in idx:
        if not -n_c <= c < n_c:
            raise DescriptorError(f"channel {c} out of range for maps with {n_c} channels")
    names = tuple(f"c{c % n_c}" for c in idx)
    if len(idx) == 1:
        return arr[:, idx[0]], ()
    if idx != list(range(n_c)):
        arr = arr[:, idx]
    return arr, names


def _gather(
    arr: np.ndarray, f: np.ndarray, r0: np.ndarray, c0: np.ndarray, h: int, w: int
) -> np.ndarray:
    """Vectorised gather of windows whose top-left corners are (r0, c0) in frames f."""
    view = sliding_window_view(arr, (h, w), axis=(-2, -1))
    if arr.ndim == 3:  # view (T, Y', X', h, w)
        return np.ascontiguousarray(view[f, r0, c0])
    return np.ascontiguousarray(view[f, :, r0, c0])  # (N, C, h, w)


def extract_windows(
    data: Any,
    centres: pd.DataFrame | np.ndarray,
    window: int | Sequence[int] = 32,
    border: str = "drop",
    channels: int | Sequence[int] | None = None,
    pad_value: float = 0.0,
) -> Subimages:
    """Cut ``window``-sized subimages around every centre, all frames at once.

    Parameters
    ----------
    data : (T, Y, X) stack or (T, C, Y, X) probability maps (or an ``atomlens.io.Stack``).
    centres : table with ``frame``, ``y``, ``x`` (pixels), or an (N, 3) array of the same.
        Positions are rounded to the nearest pixel.
    window : window size in pixels, ``int`` or ``(h, w)``.
    border : ``"drop"`` leaves out centres whose window would cross the frame edge;
        ``"pad"`` pads the frames with ``pad_value`` so every centre gets a window.
    channels : for maps, which channel(s) to keep (``None`` = all). One channel gives
        (N, h, w); several give (N, C, h, w).

    Returns
    -------
    Subimages with ``images`` float32 and ``index`` into the rows of ``centres``.
    """
    if border not in BORDERS:
        raise DescriptorError(f"border must be one of {BORDERS}, got {border!r}")
    h, w = _window_hw(window)
    arr = _as_array(data)
    arr, names = _select_channels(arr, channels)
    f, yc, xc = _centre_pixels(centres, arr.shape[0])
    r0, c0 = yc - h // 2, xc - w // 2
    Y, X = arr.shape[-2:]
    index = np.arange(len(f), dtype=np.int64)
    if border == "drop":
        ok = (r0 >= 0) & (c0 >= 0) & (r0 + h <= Y) & (c0 + w <= X)
        f, r0, c0, index = f[ok], r0[ok], c0[ok], index[ok]
        if h > Y or w > X:
            raise DescriptorError(f"window {h}x{w} is larger than the frames ({Y}x{X})")
    else:
        pad = [(0, 0)] * (arr.ndim - 2) + [(h, h), (w, w)]
        arr = np.pad(arr, pad, mode="constant", constant_values=pad_value)
        inside = (yc >= -h // 2) & (xc >= -w // 2) & (yc < Y + h // 2) & (xc < X + w // 2)
        if not np.all(inside):
            raise DescriptorError(
                f"{int((~inside).sum())} centre(s) lie more than half a window outside the "
                "frame; drop them before extraction"
            )
        r0, c0 = r0 + h, c0 + w
    if len(f) == 0:
        shape = (0, h, w) if arr.ndim == 3 else (0, arr.shape[1], h, w)
        images = np.zeros(shape, np.float32)
    else:
        images = _gather(arr, f, r0, c0, h, w)
    return Subimages(images, index, (h, w), border, names, float(pad_value))


def extract_time_delayed(
    data: Any,
    centres: pd.DataFrame | np.ndarray,
    window: int | Sequence[int] = 32,
    delays: Sequence[int] = (0, 1),
    border: str = "drop",
    channels: int | Sequence[int] | None = None,
    pad_value: float = 0.0,
) -> Subimages:
    """Windows at the same place in frames ``t + d`` for each delay ``d``, stacked as channels.

    A centre in frame ``t`` gets channels ``(t + delays[0], t + delays[1], ...)``; centres
    whose delayed frames fall outside the movie are left out. With several map channels
    the result is (N, len(delays) * C, h, w), delay-major.
    """
    delays = [int(d) for d in delays]
    if not delays:
        raise DescriptorError("delays must name at least one frame offset, e.g. (0, 1)")
    arr = _as_array(data)
    f, _, _ = _centre_pixels(centres, arr.shape[0])
    ok = np.ones(len(f), bool)
    for d in delays:
        ok &= (f + d >= 0) & (f + d < arr.shape[0])
    rows = np.flatnonzero(ok)
    if isinstance(centres, pd.DataFrame):
        base = centres.iloc[rows][["frame", "y", "x"]].reset_index(drop=True)
    else:
        base = pd.DataFrame(np.asarray(centres)[rows], columns=["frame", "y", "x"])
    parts, names, sub = [], [], None
    for d in delays:
        shifted = base.assign(frame=base["frame"].astype(np.int64) + d)
        sub = extract_windows(arr, shifted, window, border, channels, pad_value)
        imgs = sub.images if sub.images.ndim == 4 else sub.images[:, None]
        parts.append(imgs)
        chan = sub.channels or ("",)
        names += [f"t{d:+d}" + (f":{c}" if c else "") for c in chan]
    assert sub is not None
    images = np.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
    if images.shape[1] == 1:
        images = images[:, 0]
        names = []
    out = Subimages(images, rows[sub.index], sub.window, border, tuple(names), float(pad_value))
    out.meta["delays"] = tuple(delays)
    return out


def grid_centres(shape: Sequence[int], step: int, n_frames: int | None = None) -> pd.DataFrame:
    """A regular grid of centres every ``step`` pixels in every frame.

    ``shape`` is (Y, X) or (T, Y, X) (then ``n_frames`` defaults to T). The first point
    sits at ``step // 2``. Returns a table with ``frame``, ``y``, ``x`` (pixels).
    """
    if step < 1:
        raise DescriptorError(f"grid step must be >= 1 pixel, got {step}")
    if len(shape) == 3:
        n_frames = shape[0] if n_frames is None else n_frames
        shape = shape[1:]
    n_frames = 1 if n_frames is None else int(n_frames)
    ys = np.arange(step // 2, shape[0], step, dtype=np.float64)
    xs = np.arange(step // 2, shape[1], step, dtype=np.float64)
    ff, yy, xx = np.meshgrid(np.arange(n_frames), ys, xs, indexing="ij")
    return pd.DataFrame({"frame": ff.ravel(), "y": yy.ravel(), "x": xx.ravel()})


def normalize_stack(data: Any, mode: str = "minmax") -> np.ndarray:
    """Scale a whole stack to [0, 1] (``"minmax"``, robust 0.1/99.9 percentiles with
    ``"percentile"``) or to zero mean / unit SD (``"zscore"``); returns float32.

    One scale for the whole movie keeps intensities comparable between frames.
    """
    arr = _as_array(data)
    if mode == "minmax":
        lo, hi = float(arr.min()), float(arr.max())
    elif mode == "percentile":
        lo, hi = (float(v) for v in np.percentile(arr, [0.1, 99.9]))
    elif mode == "zscore":
        sd = float(arr.std())
        return ((arr - float(arr.mean())) / (sd if sd > 0 else 1.0)).astype(np.float32)
    else:
        raise DescriptorError(f"normalize mode must be minmax, percentile or zscore, got {mode!r}")
    out = (arr - lo) / (hi - lo if hi > lo else 1.0)
    return np.clip(out, 0.0, 1.0, out=out).astype(np.float32)
