"""Read image stacks with their calibration from the files microscopists bring.

Every reader returns an :class:`atomlens.io.stack.Stack` with ``data`` as a ``(T, Y, X)``
float32 array (lazy where the format allows) and ``pixel_size`` in Å.
"""

from __future__ import annotations

import json
import logging
import warnings
from pathlib import Path
from typing import Any

import numpy as np

from atomlens.io.stack import Stack, StackError, as_stack_array
from atomlens.io.units import to_angstrom

log = logging.getLogger(__name__)

NUMPY_SUFFIXES = (".npy", ".npz")
TIFF_SUFFIXES = (".tif", ".tiff")
RSCIIO_SUFFIXES = {
    ".dm3": "digitalmicrograph",
    ".dm4": "digitalmicrograph",
    ".emd": "emd",
    ".ser": "tia",
    ".hspy": "hspy",
    ".mrc": "mrc",
}
ZARR_SUFFIXES = (".zarr",)
SUPPORTED_SUFFIXES = NUMPY_SUFFIXES + TIFF_SUFFIXES + tuple(RSCIIO_SUFFIXES) + ZARR_SUFFIXES

# keys looked for, in order, inside .npz files
_NPZ_DATA_KEYS = ("frames", "stack", "data", "images", "image")
_NPZ_PIXEL_KEYS = ("pixel_size", "pixel_size_angstrom", "nominal_pixel_size_angstrom")


def read_stack(
    path: str | Path, pixel_size: float | None = None, lazy: bool = False
) -> Stack:
    """Read an image or movie with its pixel size.

    Parameters
    ----------
    path : a .npy/.npz, .tif/.tiff (ImageJ calibration), .dm3/.dm4, .emd, .ser, .hspy,
        .mrc or .zarr file.
    pixel_size : Å per pixel; overrides the file's metadata (source ``"user"``).
    lazy : keep the pixels on disk where the format allows (memory-mapped .npy, TIFF
        pages, Zarr), converting to float32 frame by frame when read.

    Raises
    ------
    FileNotFoundError : the path does not exist.
    StackError : unknown format, corrupt file, or data that are not an image stack.
    """
    path = Path(path)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise StackError(
            f"cannot read '{path.name}': unknown format '{suffix or '(no suffix)'}'. "
            f"Supported: {', '.join(SUPPORTED_SUFFIXES)}"
        )
    try:
        if suffix in NUMPY_SUFFIXES:
            data, px, meta = _read_numpy(path, lazy)
        elif suffix in TIFF_SUFFIXES:
            data, px, meta = _read_tiff(path, lazy)
        elif suffix in ZARR_SUFFIXES:
            data, px, meta = _read_zarr(path)
        else:
            data, px, meta = _read_rsciio(path, RSCIIO_SUFFIXES[suffix], lazy)
    except (StackError, FileNotFoundError):
        raise
    except Exception as exc:  # corrupt or truncated files raise all sorts of errors
        raise StackError(
            f"could not read '{path.name}' as {suffix} ({type(exc).__name__}: {exc}); "
            "the file may be corrupt or truncated, or not what its suffix says"
        ) from exc
    data = _as_float_stack(data)
    source = "metadata" if px else "unknown"
    if pixel_size is not None:
        px, source = float(pixel_size), "user"
    if px is not None and not (np.isfinite(px) and px > 0):
        px, source = None, "unknown"
    stack = Stack(data, px, source, meta, str(path))
    if stack.pixel_size is None:
        log.info("%s carries no pixel size; pass pixel_size= or calibrate from the lattice", path)
    return stack


def _as_float_stack(data: Any) -> Any:
    """In-memory arrays become float32 now; lazy ones are wrapped to convert on access."""
    from atomlens.io.lazy import NpyFrames, TiffFrames

    if isinstance(data, NpyFrames | TiffFrames):
        return as_stack_array(data)
    if isinstance(data, np.memmap) or not isinstance(data, np.ndarray):
        if data.ndim == 2:
            data = data[None]
        if data.dtype != np.float32:
            data = LazyFloat32(data)
        return as_stack_array(data)
    return as_stack_array(np.asarray(data, dtype=np.float32))


class LazyFloat32:
    """A read-only (T, Y, X) view that converts frames to float32 as they are indexed."""

    def __init__(self, source: Any) -> None:
        self._source = source
        self.shape = tuple(source.shape)
        self.ndim = len(self.shape)
        self.dtype = np.dtype(np.float32)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        return np.asarray(self._source[key], dtype=np.float32)

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = np.asarray(self._source, dtype=np.float32)
        return out if dtype is None else out.astype(dtype)


def _read_numpy(path: Path, lazy: bool) -> tuple[Any, float | None, dict]:
    meta: dict = {}
    px: float | None = None
    if path.suffix.lower() == ".npy":
        if lazy:
            from atomlens.io.lazy import NpyFrames

            data = NpyFrames(path)
        else:
            data = np.load(path, allow_pickle=False)
        px, meta = _sidecar_json(path, data.shape)
        return data, px, meta
    with np.load(path, allow_pickle=False) as npz:
        keys = list(npz.files)
        key = next((k for k in _NPZ_DATA_KEYS if k in keys), None)
        if key is None:
            arrays = [k for k in keys if npz[k].ndim in (2, 3)]
            if not arrays:
                raise StackError(
                    f"'{path.name}' holds no 2-D or 3-D array (keys: {keys}); "
                    f"store the movie under one of {_NPZ_DATA_KEYS}"
                )
            key = arrays[0]
        data = npz[key]
        for k in _NPZ_PIXEL_KEYS:
            if k in keys:
                px = float(np.asarray(npz[k]).reshape(-1)[0])
                break
        meta = {"npz_key": key, "npz_keys": keys}
    return data, px, meta


def _sidecar_json(path: Path, shape: tuple[int, ...]) -> tuple[float | None, dict]:
    """Pixel size from a same-name .json with a field of view (as in SciLink data)."""
    side = path.with_suffix(".json")
    if not side.exists():
        return None, {}
    try:
        meta = json.loads(side.read_text())
    except json.JSONDecodeError as exc:
        warnings.warn(f"ignoring unreadable metadata {side.name}: {exc}", stacklevel=3)
        return None, {}
    spatial = meta.get("experimental_details", {}).get("spatial_info", {}) or meta.get(
        "spatial_info", {}
    )
    fov = spatial.get("field_of_view_x")
    unit = spatial.get("field_of_view_units", "nm")
    px = None
    if fov is not None:
        fov_a = to_angstrom(float(fov), unit)
        if fov_a:
            px = fov_a / shape[-1]
    if "pixel_size_angstrom" in meta:
        px = float(meta["pixel_size_angstrom"])
    return px, meta


def _read_tiff(path: Path, lazy: bool) -> tuple[Any, float | None, dict]:
    import tifffile

    with tifffile.TiffFile(path) as tif:
        meta: dict = {}
        px = None
        ij = tif.imagej_metadata or {}
        page = tif.pages[0]
        unit = ij.get("unit")
        tag = page.tags.get("XResolution")
        if tag is not None:
            num, den = tag.value
            if num:
                per_unit = den / num  # length units per pixel
                if unit:
                    px = to_angstrom(per_unit, unit)
                else:
                    res_unit = page.tags.get("ResolutionUnit")
                    if res_unit is not None and int(res_unit.value) == 3:  # centimetre
                        px = per_unit * 1e8
                    # no unit, or dots per inch: not a physical calibration
        meta = {k: v for k, v in ij.items() if isinstance(v, str | int | float)}
        data = None if lazy else tif.asarray()
    if lazy:
        from atomlens.io.lazy import TiffFrames

        data = TiffFrames(path)
    if data.ndim > 3:
        data = data.reshape(-1, *data.shape[-2:])
    return data, px, meta


def _read_zarr(path: Path) -> tuple[Any, float | None, dict]:
    import zarr

    root = zarr.open(str(path), mode="r")
    arr = root["frames"] if hasattr(root, "keys") and "frames" in root else root
    attrs = dict(arr.attrs)
    px = attrs.get("pixel_size")
    return arr, (float(px) if px else None), attrs


def _read_rsciio(path: Path, plugin: str, lazy: bool) -> tuple[Any, float | None, dict]:
    import importlib

    reader = importlib.import_module(f"rsciio.{plugin}").file_reader
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        signals = reader(str(path), lazy=lazy)
    images = [s for s in signals if sum(not a.get("navigate", False) for a in s["axes"]) == 2]
    if not images:
        raise StackError(
            f"'{path.name}' contains no 2-D image signal (found {len(signals)} signals of "
            "other dimensionality, e.g. spectra)"
        )
    sig = images[0]
    data = sig["data"]
    axes = sig["axes"]
    nav = [a for a in axes if a.get("navigate", False)]
    spatial = [a for a in axes if not a.get("navigate", False)]
    px = to_angstrom(float(spatial[-1].get("scale", 1.0)), spatial[-1].get("units"))
    if px is not None and abs(float(spatial[-1].get("scale", 1.0)) - 1.0) < 1e-12 and not spatial[
        -1
    ].get("units"):
        px = None
    if nav:
        data = data.reshape(-1, *data.shape[-2:])
    meta = _plain(sig.get("metadata", {}))
    meta["original_axes"] = [
        {k: _plain(a.get(k)) for k in ("name", "scale", "units", "size", "navigate")} for a in axes
    ]
    if hasattr(data, "compute"):  # dask array from lazy rsciio
        data = data if lazy else np.asarray(data)
    return data, px, meta


def _plain(obj: Any) -> Any:
    """Metadata as JSON-able builtins."""
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, str | int | float | bool) or obj is None:
        return obj
    return str(obj)
