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

from atomlens.errors import AtomLensError, InputFileError, SettingsError
from atomlens.io.gate import (
    check_declared_size,
    check_image_dtype,
    check_input_path,
    check_pixel_size,
    human_bytes,
    memory_budget,
    read_text_file,
    safe_reason,
    to_float32,
)
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


class MissingStackError(StackError, FileNotFoundError):
    """An image file that does not exist (a :class:`StackError` and a ``FileNotFoundError``)."""


def read_stack(
    path: str | Path,
    pixel_size: float | None = None,
    lazy: bool = False,
    nonfinite: str = "mask",
    calibrate: None = None,
) -> Stack:
    """Read an image or movie with its pixel size.

    Every file first passes the input gate (:mod:`atomlens.io.gate`): special files are
    refused unopened, header-declared sizes are checked against the real file size and
    the memory budget, pixel dtypes and value ranges are checked.

    Parameters
    ----------
    path : a .npy/.npz, .tif/.tiff (ImageJ calibration), .dm3/.dm4, .emd, .ser, .hspy,
        .mrc or .zarr file.
    pixel_size : Å per pixel; overrides the file's metadata (source ``"user"``).
    lazy : keep the pixels on disk where the format allows (.npy, TIFF pages, Zarr,
        HDF5), converting to float32 frame by frame when read. Movies larger than the
        memory budget (:func:`atomlens.io.gate.memory_budget`) are read lazily anyway.
    nonfinite : ``"mask"`` (default): NaN/inf pixels are kept and masked by detection
        (no atoms there; counted in ``stack.metadata["nonfinite_pixels"]`` for in-memory
        stacks); ``"refuse"``: a frame with NaN/inf pixels raises :class:`StackError`.
    calibrate : not done here (a lattice calibration is chemistry, a layer above
        ``io``): anything but None raises :class:`~atomlens.errors.SettingsError` naming
        :func:`atomlens.workflows.load.read_stack`, which reads and then calibrates.

    Raises
    ------
    StackError (an :class:`~atomlens.errors.InputFileError`) : missing, special, unknown,
        corrupt, truncated or oversized file, or data that are not an image stack; a
        missing file is also a ``FileNotFoundError``.
    """
    if calibrate is not None:
        raise SettingsError(
            f"atomlens.io.read_stack does not calibrate (calibrate={calibrate!r}); use "
            "atomlens.workflows.load.read_stack(path, calibrate=...) to set the pixel size "
            "from the lattice"
        )
    if nonfinite not in ("mask", "refuse"):
        raise SettingsError(f"nonfinite must be 'mask' or 'refuse', got {nonfinite!r}")
    if pixel_size is not None:
        pixel_size = check_pixel_size(pixel_size, "pixel size")
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        if not path.exists():
            raise MissingStackError(f"no such file: {path}")
        raise StackError(
            f"cannot read '{path.name}': unknown format '{suffix or '(no suffix)'}'. "
            f"Supported: {', '.join(SUPPORTED_SUFFIXES)}"
        )
    check_input_path(
        path,
        "image file",
        allow_dir=suffix in ZARR_SUFFIXES,
        error=StackError,
        missing=MissingStackError,
    )
    if suffix in ZARR_SUFFIXES and not path.is_dir():
        raise StackError(
            f"'{path.name}' is a file, but a .zarr store is a folder; give the "
            "folder written by zarr"
        )
    tiff_log = logging.getLogger("tifffile")
    old_level = tiff_log.level
    tiff_log.setLevel(logging.CRITICAL)  # its warnings repeat what our error says
    try:
        if suffix in NUMPY_SUFFIXES:
            data, px, meta = _read_numpy(path, lazy)
        elif suffix in TIFF_SUFFIXES:
            data, px, meta = _read_tiff(path, lazy)
        elif suffix in ZARR_SUFFIXES:
            data, px, meta = _read_zarr(path)
        else:
            data, px, meta = _read_rsciio(path, RSCIIO_SUFFIXES[suffix], lazy)
        data = _as_float_stack(data, path, nonfinite)
    except AtomLensError:
        raise
    except MemoryError:
        raise StackError(
            f"'{path.name}' does not fit in memory; save it as .npy, .tif or .zarr so it can "
            "be read frame by frame"
        ) from None
    except Exception as exc:  # corrupt or truncated files raise all sorts of errors
        raise StackError(
            f"could not read '{path.name}' as {suffix} ({safe_reason(exc)}); "
            "the file may be corrupt or truncated, or not what its suffix says"
        ) from None
    finally:
        tiff_log.setLevel(old_level)
    if isinstance(data, np.ndarray):
        bad = int(data.size - np.count_nonzero(np.isfinite(data)))
        if bad:
            meta = dict(meta)
            meta["nonfinite_pixels"] = bad
    source = "metadata" if px else "unknown"
    if pixel_size is not None:
        px, source = float(pixel_size), "user"
    if px is not None and not (np.isfinite(px) and px > 0):
        px, source = None, "unknown"
    stack = Stack(data, px, source, meta, str(path))
    if stack.pixel_size is None:
        log.info("%s carries no pixel size; pass pixel_size= or calibrate from the lattice", path)
    return stack


def _as_float_stack(data: Any, path: Path, nonfinite: str) -> Any:
    """In-memory arrays become float32 now; lazy ones are wrapped to convert on access."""
    from atomlens.io.lazy import NpyFrames, TiffFrames

    _check_dtype(getattr(data, "dtype", None), path)
    if data.ndim == 2:
        data = data[None]
    if isinstance(data, NpyFrames | TiffFrames):
        data.nonfinite_policy = nonfinite
        return _probe_lazy(as_stack_array(data), path)
    if isinstance(data, np.memmap) or not isinstance(data, np.ndarray):
        data = LazyFloat32(data, path, nonfinite)
        return _probe_lazy(as_stack_array(data), path)
    arr = to_float32(data, path)
    if nonfinite == "refuse":
        _refuse_nonfinite(arr, path)
    return as_stack_array(arr)


#: Lazy stacks up to this size are read through once when opened, so bad pixel values
#: (lossy dtypes, NaN/inf) are found at once rather than mid-analysis.
SCAN_ON_OPEN_BYTES = 64 << 20


def _probe_lazy(data: Any, path: Path) -> Any:
    """Read a lazy stack's frames once when it is small (else only its first frame), so
    unreadable frames, lossy conversions and all-NaN movies are refused on opening."""
    n, h, w = (int(s) for s in data.shape)
    frames = range(n) if n * h * w * 4 <= SCAN_ON_OPEN_BYTES else range(1)
    finite = 0
    for t in frames:
        finite += int(np.count_nonzero(np.isfinite(data[t])))
    if len(frames) == n and finite == 0:
        raise StackError(
            f"'{path.name}' has no finite pixels (all are NaN/inf); nothing to analyse"
        )
    return data


def _refuse_nonfinite(arr: np.ndarray, path: Any, frame: int | None = None) -> None:
    bad = int(arr.size - np.count_nonzero(np.isfinite(arr)))
    if bad:
        where = f"frame {frame} of " if frame is not None else ""
        raise StackError(
            f"{where}'{Path(path).name}' has {bad} NaN/inf pixels and NaN/inf pixels are set to "
            "be refused; drop the refuse option to mask them (no atoms there) and analyse the rest"
        )


class LazyFloat32:
    """A read-only (T, Y, X) view that converts frames to float32 as they are indexed,
    refusing lossy conversions; NaN/inf pixels are counted (``nonfinite``: frame -> count)
    or refused, by ``nonfinite_policy``."""

    def __init__(self, source: Any, path: Any = None, nonfinite: str = "mask") -> None:
        self._source = source
        self.path = path
        self.nonfinite_policy = nonfinite
        self.nonfinite: dict[int, int] = {}
        self.shape = tuple(int(s) for s in source.shape)
        self.ndim = len(self.shape)
        self.dtype = np.dtype(np.float32)

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        try:
            raw = np.asarray(self._source[key])
        except (ValueError, OSError, KeyError, RuntimeError) as exc:
            raise StackError(
                f"{Path(self.path).name if self.path else 'the stack'}: frames "
                f"{key!r} cannot be read ({safe_reason(exc)}); the file is "
                "corrupt or truncated"
            ) from None
        out = to_float32(raw, self.path)
        if isinstance(key, int | np.integer) and out.ndim == 2:
            bad = int(out.size - np.count_nonzero(np.isfinite(out)))
            if bad:
                if self.nonfinite_policy == "refuse":
                    _refuse_nonfinite(out, self.path, int(key))
                self.nonfinite[int(key) % self.shape[0]] = bad
        elif self.nonfinite_policy == "refuse":
            _refuse_nonfinite(out, self.path)
        return out

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = to_float32(np.asarray(self._source), self.path)
        if self.nonfinite_policy == "refuse":
            _refuse_nonfinite(out, self.path)
        return out if dtype is None else out.astype(dtype)


def _npy_header(fh: Any, name: str) -> tuple[tuple[int, ...], bool, np.dtype]:
    """Shape, Fortran flag and dtype from an open .npy stream (our errors, not numpy's)."""
    try:
        version = np.lib.format.read_magic(fh)
    except ValueError:
        raise StackError(
            f"'{name}' is not a NumPy .npy array (no NPY header); check that the "
            "file is what its suffix says"
        ) from None
    try:
        if version == (1, 0):
            shape, fortran, dtype = np.lib.format.read_array_header_1_0(fh)
        else:
            shape, fortran, dtype = np.lib.format.read_array_header_2_0(fh)
    except (ValueError, SyntaxError, TypeError) as exc:
        raise StackError(
            f"'{name}' has a corrupt .npy header ({safe_reason(exc)}); save the "
            "array again with numpy.save"
        ) from None
    _check_dtype(dtype, name)
    if any(int(s) < 0 for s in shape):
        raise StackError(f"'{name}' declares a negative shape {shape}; the file is corrupt")
    return tuple(int(s) for s in shape), bool(fortran), np.dtype(dtype)


def _declared_bytes(shape: tuple[int, ...], dtype: np.dtype) -> int:
    n = 1
    for s in shape:
        n *= int(s)
    return n * dtype.itemsize


def _check_dtype(dtype: Any, path: Any = None, field: str = "pixels") -> np.dtype:
    return check_image_dtype(dtype, path, field, StackError)


def _read_numpy(path: Path, lazy: bool) -> tuple[Any, float | None, dict]:
    meta: dict = {}
    px: float | None = None
    budget = memory_budget()
    if path.suffix.lower() == ".npy":
        with open(path, "rb") as fh:
            shape, fortran, dtype = _npy_header(fh, path.name)
            offset = fh.tell()
        declared = _declared_bytes(shape, dtype)
        available = path.stat().st_size - offset
        streamable = not fortran and len(shape) in (2, 3)
        check_declared_size(
            declared,
            available,
            path,
            f"an array {shape} of {dtype}",
            streamable=streamable,
            budget=budget,
        )
        if len(shape) not in (2, 3):
            raise StackError(
                f"'{path.name}' holds an array of shape {shape}; expected a 2-D "
                "image or a (T, Y, X) movie"
            )
        if streamable and (lazy or declared > budget):
            from atomlens.io.lazy import NpyFrames

            data = NpyFrames(path)
        else:
            data = np.load(path, allow_pickle=False)
        px, meta = _sidecar_json(path, shape)
        return data, px, meta
    import zipfile

    try:
        zf = zipfile.ZipFile(path)
    except zipfile.BadZipFile:
        raise StackError(
            f"'{path.name}' is not a NumPy .npz archive (not a zip file); check "
            "that the file is what its suffix says"
        ) from None
    with zf:
        infos = {i.filename[:-4]: i for i in zf.infolist() if i.filename.endswith(".npy")}
        headers: dict[str, tuple] = {}
        for key, info in infos.items():
            with zf.open(info) as fh:
                try:
                    headers[key] = _npy_header(fh, f"{path.name}[{key}]")
                except InputFileError:
                    headers[key] = None  # not an image: only a problem if it is the one
        keys = list(infos)
        key = next((k for k in _NPZ_DATA_KEYS if k in keys), None)
        if key is None:
            arrays = [k for k in keys if headers.get(k) and len(headers[k][0]) in (2, 3)]
            if not arrays:
                raise StackError(
                    f"'{path.name}' holds no 2-D or 3-D array (keys: {keys}); "
                    f"store the movie under one of {_NPZ_DATA_KEYS}"
                )
            key = arrays[0]
        if headers.get(key) is None:
            with zf.open(infos[key]) as fh:
                _npy_header(fh, f"{path.name}[{key}]")  # raises the precise error
        shape, _, dtype = headers[key]
        info = infos[key]
        check_declared_size(
            _declared_bytes(shape, dtype),
            info.file_size,
            path,
            f"array '{key}' {shape} of {dtype}",
            budget=budget,
        )
        with np.load(path, allow_pickle=False) as npz:
            data = npz[key]
            for k in _NPZ_PIXEL_KEYS:
                if k in keys and headers.get(k) and _declared_bytes(*headers[k][::2]) <= 64:
                    vals = np.asarray(npz[k]).reshape(-1)
                    if vals.size and vals.dtype.kind in "iuf":
                        px = float(vals[0])
                    break
        meta = {"npz_key": key, "npz_keys": keys}
    return data, px, meta


def _sidecar_json(path: Path, shape: tuple[int, ...]) -> tuple[float | None, dict]:
    """Pixel size from a same-name .json with a field of view (as in SciLink data).

    An unreadable or odd sidecar is ignored with a warning: it is optional metadata.
    """
    side = path.with_suffix(".json")
    if not side.exists():
        return None, {}
    try:
        meta = json.loads(read_text_file(side, "metadata file", max_bytes=1 << 20))
        if not isinstance(meta, dict):
            raise ValueError("not a JSON object")
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
    except (ValueError, TypeError, AttributeError, InputFileError) as exc:
        warnings.warn(f"ignoring unreadable metadata {side.name}: {safe_reason(exc)}", stacklevel=3)
        return None, {}
    if px is not None and not (np.isfinite(px) and px > 0):
        px = None
    return px, meta


def _read_tiff(path: Path, lazy: bool) -> tuple[Any, float | None, dict]:
    import tifffile

    size = path.stat().st_size
    with tifffile.TiffFile(path) as tif:
        meta: dict = {}
        px = None
        ij = tif.imagej_metadata or {}
        pages = tif.pages
        n_pages = len(pages)
        if n_pages == 0:
            raise StackError(f"'{path.name}' holds no image; the file is empty or corrupt")
        declared = 0
        for k in range(n_pages):
            page = pages[k]
            if not hasattr(page, "dataoffsets"):  # a frame shared with page 0
                continue
            _check_dtype(page.dtype, path, f"pixels of page {k}")
            for off, cnt in zip(page.dataoffsets, page.databytecounts):
                if off + cnt > size:
                    raise StackError(
                        f"'{path.name}': page {k} points past the end of the file "
                        f"({off + cnt} > {size} bytes); the file is truncated: copy it again"
                    )
            page_bytes = int(np.prod(page.shape)) * np.dtype(page.dtype).itemsize
            if page.compression == 1 and sum(page.databytecounts) < page_bytes:
                raise StackError(
                    f"'{path.name}': page {k} declares {human_bytes(page_bytes)} of pixels "
                    f"{tuple(page.shape)} but stores {human_bytes(sum(page.databytecounts))}; "
                    "the file is truncated or forged: export it again"
                )
            declared += page_bytes
        n_images = ij.get("images")
        if isinstance(n_images, int) and n_images > n_pages and not tif.series[0].is_multifile:
            series_pages = int(np.prod(tif.series[0].shape[:-2])) if tif.series else 0
            if series_pages < n_images:
                raise StackError(
                    f"'{path.name}' declares {n_images} frames but holds {series_pages}; the "
                    "file is truncated: copy it again"
                )
        page = pages[0]
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
        series = tif.series[0]
        _check_dtype(series.dtype, path)
        total = int(np.prod(series.shape)) * np.dtype(series.dtype).itemsize
        stream = lazy or total > memory_budget()
        if not stream:
            check_declared_size(total, None, path, f"pixels {tuple(series.shape)}")
        data = None if stream else tif.asarray()
    if stream:
        from atomlens.io.lazy import TiffFrames

        data = TiffFrames(path)
    if data.ndim > 3:
        data = data.reshape(-1, *data.shape[-2:])
    return data, px, meta


def _read_zarr(path: Path) -> tuple[Any, float | None, dict]:
    import zarr

    root = zarr.open(str(path), mode="r")
    arr = root["frames"] if hasattr(root, "keys") and "frames" in root else root
    if not hasattr(arr, "shape") or not hasattr(arr, "nchunks"):
        raise StackError(
            f"'{path.name}' holds no array (groups only); store the movie as an "
            "array named 'frames'"
        )
    _check_dtype(arr.dtype, path)
    if len(arr.shape) not in (2, 3):
        raise StackError(
            f"'{path.name}' holds an array of shape {tuple(arr.shape)}; expected "
            "a 2-D image or a (T, Y, X) movie"
        )
    stored, expected = int(arr.nchunks_initialized), int(arr.nchunks)
    if stored < expected:
        raise StackError(
            f"'{path.name}' has only {stored} of its {expected} chunks on disk (the missing "
            "ones would read as zeros); the copy is incomplete: copy the store again"
        )
    attrs = dict(arr.attrs)
    px = attrs.get("pixel_size")
    try:
        px = float(px) if px else None
    except (TypeError, ValueError):
        px = None
    return arr, px, attrs


def _check_hdf5(path: Path) -> None:
    """Every dataset's declared size against what the HDF5 file stores, before rsciio."""
    import h5py

    size = path.stat().st_size
    budget = memory_budget()
    try:
        fh = h5py.File(path, "r")
    except OSError as exc:
        raise StackError(
            f"'{path.name}' is not a readable HDF5 file ({safe_reason(exc)}); it "
            "may be truncated or not what its suffix says"
        ) from None
    with fh:
        problems: list[str] = []

        def visit(name: str, obj: Any) -> None:
            if not isinstance(obj, h5py.Dataset) or obj.shape is None or obj.ndim < 2:
                return
            declared = int(np.prod(obj.shape, dtype=np.float64)) * obj.dtype.itemsize
            if obj.chunks is None:
                off, stored = obj.id.get_offset(), obj.id.get_storage_size()
                if declared and (off is None or off + declared > size):
                    problems.append(
                        f"dataset '{name}' declares {human_bytes(declared)} that "
                        f"the file ({human_bytes(size)}) does not hold"
                    )
                del stored
                return
            n_exp = int(np.prod([-(-s // c) for s, c in zip(obj.shape, obj.chunks)]))
            n_have = obj.id.get_num_chunks()
            if n_have < n_exp:
                problems.append(f"dataset '{name}' has {n_have} of {n_exp} chunks stored")
            elif declared > budget and obj.id.get_storage_size() * 1000 < declared:
                problems.append(
                    f"dataset '{name}' declares {human_bytes(declared)} in "
                    f"{human_bytes(obj.id.get_storage_size())}"
                )

        fh.visititems(visit)
    if problems:
        raise StackError(
            f"'{path.name}': {problems[0]}; the file is truncated or forged: export it again"
        )


def _read_rsciio(path: Path, plugin: str, lazy: bool) -> tuple[Any, float | None, dict]:
    import importlib

    if plugin in ("hspy", "emd"):
        _check_hdf5(path)
    reader = importlib.import_module(f"rsciio.{plugin}").file_reader
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        signals = reader(str(path), lazy=True)  # headers only; pixels after the checks
    images = [s for s in signals if sum(not a.get("navigate", False) for a in s["axes"]) == 2]
    if not images:
        raise StackError(
            f"'{path.name}' contains no 2-D image signal (found {len(signals)} signals of "
            "other dimensionality, e.g. spectra)"
        )
    sig = images[0]
    data = sig["data"]
    _check_dtype(data.dtype, path)
    declared = int(np.prod(data.shape, dtype=np.float64)) * np.dtype(data.dtype).itemsize
    if plugin not in ("hspy", "emd"):  # uncompressed formats: the pixels are in the file
        check_declared_size(
            declared,
            path.stat().st_size,
            path,
            f"pixels {tuple(data.shape)} of {data.dtype}",
            streamable=True,
        )
    axes = sig["axes"]
    nav = [a for a in axes if a.get("navigate", False)]
    spatial = [a for a in axes if not a.get("navigate", False)]
    px = to_angstrom(float(spatial[-1].get("scale", 1.0)), spatial[-1].get("units"))
    if (
        px is not None
        and abs(float(spatial[-1].get("scale", 1.0)) - 1.0) < 1e-12
        and not spatial[-1].get("units")
    ):
        px = None
    if nav:
        data = data.reshape(-1, *data.shape[-2:])
    meta = _plain(sig.get("metadata", {}))
    meta["original_axes"] = [
        {k: _plain(a.get(k)) for k in ("name", "scale", "units", "size", "navigate")} for a in axes
    ]
    if hasattr(data, "compute") and not lazy and declared <= memory_budget():
        data = np.asarray(data)
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
