"""Frame-by-frame readers that keep memory bounded on movies larger than RAM.

A memory map would do the same job, but every page it touches stays resident (and
counts against the process) until the kernel needs it back; these readers copy one
frame at a time out of the file instead, so memory does not grow with the movie.
"""

from __future__ import annotations

import os
import threading
from pathlib import Path
from typing import Any

import numpy as np

from atomlens.io.gate import to_float32


def _checked(reader: Any, t: int, frame: np.ndarray) -> np.ndarray:
    """``frame`` as float32 (lossless, see :func:`atomlens.io.gate.to_float32`), its
    NaN/inf pixels counted in ``reader.nonfinite`` or refused by ``reader.nonfinite_policy``."""
    out = to_float32(frame, reader.path)
    bad = int(out.size - np.count_nonzero(np.isfinite(out)))
    if bad:
        if reader.nonfinite_policy == "refuse":
            from atomlens.io.readers import _refuse_nonfinite

            _refuse_nonfinite(out, reader.path, t)
        reader.nonfinite[t] = bad
    return out


class NpyFrames:
    """A read-only ``(T, Y, X)`` view of a C-ordered ``.npy`` file, converted to float32
    frame by frame as it is indexed (``frames[t]``, ``frames[a:b]``, ``frames[[i, j]]``)."""

    nonfinite_policy = "mask"  # or "refuse": a frame with NaN/inf pixels raises

    def __init__(self, path: str | Path) -> None:
        from atomlens.io.readers import _npy_header
        from atomlens.io.stack import StackError

        self.path = str(path)
        with open(self.path, "rb") as fh:
            shape, fortran, dtype = _npy_header(fh, Path(path).name)
            self._offset = fh.tell()
        if fortran:
            raise StackError(
                f"{Path(path).name} is Fortran-ordered; save it C-ordered for lazy reading"
            )
        self.nonfinite: dict[int, int] = {}
        if len(shape) == 2:
            shape = (1, *shape)
        self._src_dtype = np.dtype(dtype)
        self.shape = tuple(int(s) for s in shape)
        self.ndim = len(self.shape)
        self.dtype = np.dtype(np.float32)
        self._frame_bytes = int(np.prod(self.shape[1:])) * self._src_dtype.itemsize

    def __len__(self) -> int:
        return self.shape[0]

    def _read(self, t: int) -> np.ndarray:
        if not -self.shape[0] <= t < self.shape[0]:
            raise IndexError(f"frame {t} out of range for {self.shape[0]} frames")
        t %= self.shape[0]
        fd = os.open(self.path, os.O_RDONLY)
        try:
            buf = os.pread(fd, self._frame_bytes, self._offset + t * self._frame_bytes)
        finally:
            os.close(fd)
        if len(buf) != self._frame_bytes:
            from atomlens.io.stack import StackError

            raise StackError(
                f"{Path(self.path).name}: frame {t} is cut short (the file is "
                "truncated or was changed while reading); copy it again"
            )
        frame = np.frombuffer(buf, dtype=self._src_dtype).reshape(self.shape[1:])
        return _checked(self, t, frame)

    def __getitem__(self, key: Any) -> np.ndarray:
        rest: tuple = ()
        if isinstance(key, tuple):
            key, rest = key[0], key[1:]
        if isinstance(key, int | np.integer):
            out = self._read(int(key))
        else:
            idx = range(self.shape[0])[key] if isinstance(key, slice) else list(key)
            out = (
                np.stack([self._read(int(t)) for t in idx])
                if len(idx)
                else np.zeros((0, *self.shape[1:]), np.float32)
            )
        if rest:
            out = out[(slice(None), *rest)] if out.ndim == 3 else out[rest]
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)


class TiffFrames:
    """A read-only ``(T, Y, X)`` view of a TIFF movie, one page (frame) read per index."""

    def __init__(self, path: str | Path) -> None:
        import tifffile

        self.path = str(path)
        self._lock = threading.Lock()
        self._tif = tifffile.TiffFile(self.path)
        series = self._tif.series[0]
        shape = tuple(int(s) for s in series.shape)
        if len(shape) == 2:
            shape = (1, *shape)
        self.shape = (int(np.prod(shape[:-2])), *shape[-2:])
        self.ndim = 3
        self.dtype = np.dtype(np.float32)
        self.nonfinite: dict[int, int] = {}

    nonfinite_policy = "mask"

    def __len__(self) -> int:
        return self.shape[0]

    def _read(self, t: int) -> np.ndarray:
        if not -self.shape[0] <= t < self.shape[0]:
            raise IndexError(f"frame {t} out of range for {self.shape[0]} frames")
        t %= self.shape[0]
        try:
            with self._lock:  # one file handle: worker threads take turns
                page = self._tif.asarray(key=t)
        except (ValueError, OSError, IndexError, KeyError, RuntimeError) as exc:
            from atomlens.io.gate import safe_reason
            from atomlens.io.stack import StackError

            raise StackError(
                f"{Path(self.path).name}: frame {t} cannot be read "
                f"({safe_reason(exc)}); the file is corrupt or truncated"
            ) from None
        return _checked(self, t, np.asarray(page).reshape(self.shape[1:]))

    __getitem__ = NpyFrames.__getitem__
    __array__ = NpyFrames.__array__

    def __getstate__(self) -> dict:
        return {"path": self.path}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["path"])
