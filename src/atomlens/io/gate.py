"""The input gate: checks run on every file before AtomLens allocates or parses anything.

Stacks, atom tables, configs, projects and model files pass through here first:

- :func:`check_input_path` refuses missing paths, folders where a file is expected, and
  special files (FIFOs, devices, sockets) without opening them for reading (a FIFO would
  block forever);
- :func:`check_image_dtype` refuses dtypes that are not real-valued intensities
  (complex, bool, datetime, structured, text, object);
- :func:`check_declared_size` compares the bytes a header declares with the bytes the
  file really holds (a 200-byte ``.npy`` cannot hold 1e9 frames) and with the memory
  budget (:func:`memory_budget`);
- :func:`to_float32` converts pixels to float32 and refuses a conversion that would
  destroy the grey levels (huge ``uint64`` or ``float64`` offsets) or overflow;
- :func:`safe_yaml_load` bounds YAML aliases (no billion-laughs);
- :func:`safe_reason` turns a library's exception into one line in our words, never
  relaying advice to load a file unsafely (``allow_pickle``, ``weights_only=False``).

Every problem is an :class:`~atomlens.errors.AtomLensError` subclass whose message
names the file, the field and the fix.
"""

from __future__ import annotations

import os
import re
import stat
from pathlib import Path
from typing import Any

import numpy as np

from atomlens.errors import InputFileError, SettingsError

#: Largest config / project / sidecar text file read (bytes).
MAX_TEXT_BYTES = 4 * 1024 * 1024
#: Largest number of YAML nodes after expanding aliases.
MAX_YAML_NODES = 100_000
#: A float32 conversion must keep at least this many distinct levels over the value range.
MIN_FLOAT32_LEVELS = 1024

_UNSAFE_ADVICE = re.compile(r"allow_pickle|weights_only|pickle|unsafe", re.IGNORECASE)


def memory_budget() -> int:
    """Bytes one array may take in memory before it is streamed or refused.

    ``ATOMLENS_MEMORY_BUDGET`` (bytes, or with a ``K``/``M``/``G`` suffix) overrides the
    default of a quarter of the available memory, capped at 1 GiB.
    """
    env = os.environ.get("ATOMLENS_MEMORY_BUDGET", "").strip()
    if env:
        try:
            mult = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(env[-1].upper(), 1)
            return max(1 << 20, int(float(env.rstrip("KMGkmg")) * mult))
        except ValueError:
            raise SettingsError(
                f"ATOMLENS_MEMORY_BUDGET={env!r} is not a size; use bytes or e.g. '2G'"
            ) from None
    avail = 4 << 30
    try:
        avail = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        pass
    return int(min(1 << 30, max(64 << 20, avail // 4)))


def human_bytes(n: float) -> str:
    """``n`` bytes as a short text (``"2.5 MB"``, ``"10.0 GB"``)."""
    for unit in ("B", "KB", "MB", "GB", "TB", "PB"):
        if abs(n) < 1000 or unit == "PB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} PB"  # pragma: no cover


def safe_reason(exc: BaseException, limit: int = 160) -> str:
    """A library exception as one short line, without advice to load unsafely."""
    text = " ".join(str(exc).split())
    if not text or _UNSAFE_ADVICE.search(text):
        return type(exc).__name__
    if len(text) > limit:
        text = text[: limit - 3] + "..."
    return f"{type(exc).__name__}: {text}"


def _kind(mode: int) -> str:
    if stat.S_ISFIFO(mode):
        return "a FIFO (named pipe)"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISSOCK(mode):
        return "a socket"
    return "not a regular file"


def check_input_path(
    path: str | os.PathLike,
    what: str = "input file",
    allow_dir: bool = False,
    allow_empty: bool = False,
    error: type[Exception] = InputFileError,
    missing: type[Exception] | None = None,
) -> Path:
    """Check that ``path`` is an existing regular file (or folder with ``allow_dir``).

    Uses ``stat`` only (nothing is opened), so a FIFO or device cannot block or stream
    forever. Raises ``error`` (default :class:`InputFileError`), or ``missing``
    (default :class:`MissingFileError`, also a ``FileNotFoundError``) for a missing path.
    """
    p = Path(path)
    missing = missing or MissingFileError
    try:
        st = p.stat()
    except FileNotFoundError:
        raise missing(f"no such {what}: {p}; check the path") from None
    except NotADirectoryError:
        raise missing(f"no such {what}: {p} (a parent is a file); check the path") from None
    except PermissionError:
        raise error(f"cannot read {what} {p}: permission denied; check its permissions") from None
    except OSError as exc:
        raise error(f"cannot read {what} {p} ({safe_reason(exc)})") from None
    if stat.S_ISDIR(st.st_mode):
        if allow_dir:
            return p
        raise error(f"{what} {p} is a folder, not a file; give the file inside it")
    if not stat.S_ISREG(st.st_mode):
        raise error(
            f"{what} {p} is {_kind(st.st_mode)}, not a file; AtomLens reads regular files "
            "only (copy the data to a file first)"
        )
    if st.st_size == 0 and not allow_empty:
        raise error(f"{what} {p} is empty (0 bytes); the copy or save failed: copy it again")
    if not os.access(p, os.R_OK):
        raise error(f"cannot read {what} {p}: permission denied; check its permissions")
    return p


class MissingFileError(InputFileError, FileNotFoundError):
    """An input path that does not exist (also a ``FileNotFoundError``)."""


def read_text_file(
    path: str | os.PathLike, what: str = "file", max_bytes: int = MAX_TEXT_BYTES
) -> str:
    """The UTF-8 text of a small file (config, project, sidecar), checked first."""
    p = check_input_path(path, what, allow_empty=True)
    size = p.stat().st_size
    if size > max_bytes:
        raise InputFileError(
            f"{what} {p} is {human_bytes(size)}; a {what} is at most "
            f"{human_bytes(max_bytes)}: is this the right file?"
        )
    try:
        return p.read_bytes().decode("utf-8")
    except UnicodeDecodeError:
        raise InputFileError(
            f"{what} {p} is not UTF-8 text (binary data?); give the text file"
        ) from None


def check_image_dtype(
    dtype: Any, path: Any = None, field: str = "pixels", error: type[Exception] = InputFileError
) -> np.dtype:
    """Refuse dtypes that are not real-valued intensities (raising ``error``); returns the
    numpy dtype."""
    try:
        dt = np.dtype(dtype)
    except TypeError:
        dt = None
    where = f"{Path(path).name}: " if path else ""
    if dt is None or dt.fields is not None or dt.kind in "OSUVMmbc" or dt.hasobject:
        kind = {
            "c": "complex",
            "b": "boolean",
            "M": "date/time",
            "m": "time-interval",
            "O": "Python-object",
            "S": "text",
            "U": "text",
            "V": "structured/raw",
        }
        name = (
            "structured"
            if dt is not None and dt.fields
            else kind.get(getattr(dt, "kind", "O"), str(dtype))
        )
        fix = {
            "complex": "save the magnitude (abs) or the real part",
            "boolean": "save the image intensities, not a mask",
        }.get(name, "save the image as integer or floating-point intensities")
        raise error(
            f"{where}{field} have {name} type ({dt if dt is not None else dtype}); "
            f"STEM images must be real-valued intensities: {fix}"
        )
    if dt.kind not in "iuf":
        raise error(f"{where}{field} have unsupported type {dt}; save as float32")
    return dt


def check_declared_size(
    declared: int,
    available: int | None,
    path: Any,
    what: str,
    streamable: bool = False,
    budget: int | None = None,
) -> None:
    """Refuse a header that declares more bytes than the file holds or memory allows.

    Parameters
    ----------
    declared : bytes the header says the data take.
    available : bytes the file really holds for them (``None`` when unknown,
        e.g. compressed data).
    streamable : the data can be read frame by frame (then only the frame must fit).
    budget : memory budget in bytes (default :func:`memory_budget`).
    """
    name = Path(path).name if path else "the file"
    if available is not None and declared > available:
        raise InputFileError(
            f"{name}: the header declares {what} of {human_bytes(declared)} but the file holds "
            f"only {human_bytes(available)}; the file is truncated or corrupt: copy it again"
        )
    budget = memory_budget() if budget is None else budget
    if not streamable and declared > budget:
        raise InputFileError(
            f"{name}: {what} of {human_bytes(declared)} exceed the memory budget of "
            f"{human_bytes(budget)} and this format cannot be streamed; save the movie as "
            ".npy, .tif or .zarr (read frame by frame), or raise ATOMLENS_MEMORY_BUDGET"
        )


def float32_problem(lo: float, hi: float) -> str | None:
    """Why values spanning ``[lo, hi]`` cannot be held as float32, or ``None``."""
    if not (np.isfinite(float(lo)) and np.isfinite(float(hi))):
        return None  # non-finite pixels are handled (masked) elsewhere
    top = float(max(abs(lo), abs(hi)))
    if top > float(np.finfo(np.float32).max):
        return f"values up to {top:.3g} overflow 32-bit floats"
    span = float(hi - lo)
    if span <= 0 or top == 0:
        return None
    step = top * 2.0**-23  # spacing of float32 numbers near the largest value
    if span / step < MIN_FLOAT32_LEVELS:
        rng = f"{lo}..{hi}" if isinstance(lo, int) else f"{lo:.9g}..{hi:.9g}"
        return (
            f"values {rng} sit on a huge offset: as 32-bit floats they "
            f"would keep only ~{max(1, int(span / step))} grey levels"
        )
    return None


def to_float32(
    data: Any, path: Any = None, field: str = "pixels", error: type[Exception] | None = None
) -> np.ndarray:
    """``data`` as a float32 array, refusing lossy conversions (see :func:`float32_problem`).

    The check costs a min/max and only runs for dtypes wider than float32's 24-bit
    mantissa (32/64-bit integers, float64).
    """
    if error is None:
        from atomlens.io.stack import StackError as error
    arr = np.asarray(data)
    check_image_dtype(arr.dtype, path, field, error)
    if arr.dtype == np.float32:
        return arr
    if arr.size and (
        arr.dtype.itemsize >= 4
        and arr.dtype.kind in "iu"
        or arr.dtype.itemsize >= 8
        and arr.dtype.kind == "f"
    ):
        finite = arr if arr.dtype.kind in "iu" else arr[np.isfinite(arr)]
        if finite.size:
            lo, hi = finite.min(), finite.max()
            # Python ints keep the span of 64-bit integers exact
            problem = (
                float32_problem(int(lo), int(hi))
                if arr.dtype.kind in "iu"
                else float32_problem(float(lo), float(hi))
            )
            if problem:
                where = f"{Path(path).name}: " if path else ""
                raise error(
                    f"{where}{field} ({arr.dtype}): {problem}; subtract the offset or rescale "
                    "the image before saving"
                )
    return arr.astype(np.float32)


def safe_yaml_load(text: str, path: Any = None, max_nodes: int = MAX_YAML_NODES) -> Any:
    """``yaml.safe_load`` with aliases bounded: at most ``max_nodes`` nodes once expanded."""
    import yaml

    name = Path(path).name if path else "YAML text"
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        raise SettingsError(
            f"{name} is not valid YAML ({safe_reason(exc)}); fix the syntax"
        ) from None
    if root is None:
        return None
    count = 0
    memo: dict[int, int] = {}

    def size(node: Any, depth: int) -> int:
        nonlocal count
        if depth > 100:
            raise SettingsError(f"{name} nests deeper than 100 levels; a config is flat")
        key = id(node)
        if key in memo:  # an alias: its expanded size counts again
            n = memo[key]
        else:
            n = 1
            if isinstance(node, yaml.MappingNode):
                for k, v in node.value:
                    n += size(k, depth + 1) + size(v, depth + 1)
            elif isinstance(node, yaml.SequenceNode):
                for v in node.value:
                    n += size(v, depth + 1)
            memo[key] = n
        count += 1
        if n > max_nodes or count > max_nodes:
            raise SettingsError(
                f"{name} expands to more than {max_nodes} values (YAML aliases/anchors "
                "repeated); write the settings out plainly"
            )
        return n

    size(root, 0)
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:  # pragma: no cover - compose already parsed it
        raise SettingsError(f"{name} is not valid YAML ({safe_reason(exc)})") from None


def check_number(
    value: Any,
    field: str,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    integer: bool = False,
    exclusive_min: bool = False,
    where: str = "",
) -> float | int:
    """A finite number in range, else a :class:`SettingsError` naming ``field``."""
    pre = f"{where}: " if where else ""
    ok_type = (int, np.integer) if integer else (int, float, np.integer, np.floating)
    if isinstance(value, bool) or not isinstance(value, ok_type):
        kind = "a whole number" if integer else "a number"
        raise SettingsError(f"{pre}{field} must be {kind}, got {value!r}")
    v = int(value) if integer else float(value)
    if not np.isfinite(v):
        raise SettingsError(f"{pre}{field} must be a finite number, got {value!r}")
    if minimum is not None and (v <= minimum if exclusive_min else v < minimum):
        rel = ">" if exclusive_min else ">="
        raise SettingsError(f"{pre}{field} must be {rel} {minimum:g}, got {value!r}")
    if maximum is not None and v > maximum:
        raise SettingsError(f"{pre}{field} must be <= {maximum:g}, got {value!r}")
    return v


#: Plausible pixel sizes of atom-resolved images, Å per pixel.
PIXEL_SIZE_RANGE_A = (0.005, 20.0)


def check_pixel_size(value: Any, field: str = "pixel size", where: str = "") -> float:
    """A pixel size in Å/px that is finite, positive and plausible for atom-resolved data."""
    lo, hi = PIXEL_SIZE_RANGE_A
    v = check_number(value, field, minimum=0, exclusive_min=True, where=where)
    if not lo <= v <= hi:
        pre = f"{where}: " if where else ""
        raise SettingsError(
            f"{pre}{field} {value!r} Å/px is outside {lo}..{hi} Å/px, the range of "
            "atom-resolved images; give it in Å per pixel (e.g. 0.1)"
        )
    return float(v)


#: Largest model file read (bytes) and largest network built from a file (parameters).
MAX_MODEL_FILE_BYTES = 1 << 30
MAX_MODEL_PARAMS = 50_000_000


def check_model_file(path: str | os.PathLike, error: type[Exception] = InputFileError) -> Path:
    """A model file that may be handed to ``torch.load``: a regular, non-empty file of at
    most :data:`MAX_MODEL_FILE_BYTES`."""
    p = check_input_path(path, "model file", error=error)
    size = p.stat().st_size
    if size > MAX_MODEL_FILE_BYTES:
        raise error(
            f"model file {p} is {human_bytes(size)}; AtomLens models are at most "
            f"{human_bytes(MAX_MODEL_FILE_BYTES)}: is this the right file?"
        )
    return p


def _int_in(
    cfg: dict,
    key: str,
    lo: int,
    hi: int,
    where: str,
    error: type[Exception],
    default: int | None = None,
) -> int:
    v = cfg.get(key, default)
    if isinstance(v, bool) or not isinstance(v, int | np.integer) or not lo <= int(v) <= hi:
        raise error(
            f"{where}: {key} must be a whole number in {lo}..{hi}, got {v!r}; the file "
            "is corrupt or was edited"
        )
    return int(v)


def check_detector_config(cfg: Any, where: str, error: type[Exception] = InputFileError) -> None:
    """Refuse a detector config (``config`` of a detector file) with wrong types or a network
    too large to build (more than :data:`MAX_MODEL_PARAMS` parameters), before building."""
    if not isinstance(cfg, dict) or not isinstance(cfg.get("net"), dict):
        raise error(
            f"{where}: the network config is missing or not a table; the file is "
            "corrupt or not an AtomLens detector"
        )
    net = cfg["net"]
    base = _int_in(net, "base_filters", 1, 1024, where, error, 16)
    levels = _int_in(net, "levels", 1, 6, where, error, 3)
    cin = _int_in(net, "in_channels", 1, 16, where, error, 1)
    classes = net.get("classes", ("background", "C", "Si"))
    if (
        not isinstance(classes, list | tuple)
        or not 2 <= len(classes) <= 64
        or not all(isinstance(c, str) and 0 < len(c) <= 64 for c in classes)
    ):
        raise error(f"{where}: classes must be 2..64 names, got {str(classes)[:80]}")
    dil = net.get("dilations", (1, 2, 3, 4))
    if (
        not isinstance(dil, list | tuple)
        or len(dil) > 16
        or not all(isinstance(d, int) and not isinstance(d, bool) and 1 <= d <= 64 for d in dil)
    ):
        raise error(
            f"{where}: dilations must be up to 16 whole numbers in 1..64, got {str(dil)[:80]}"
        )
    widths = [base * 2**k for k in range(levels)]
    params = 0
    prev = cin
    for w in widths:  # encoder + decoder convolutions, 3x3
        params += 9 * (prev * w + w * w) * 2
        prev = w
    params += 9 * widths[-1] ** 2 * len(dil)
    if params > MAX_MODEL_PARAMS:
        raise error(
            f"{where}: the network would have ~{params / 1e6:.0f} M parameters (limit "
            f"{MAX_MODEL_PARAMS / 1e6:.0f} M); the file is corrupt or forged"
        )
    for key, lo, hi in (("pixel_size", 1e-3, 100.0), ("radius_A", 1e-3, 100.0)):
        if key in cfg:
            check_number(cfg[key], key, minimum=lo, maximum=hi, where=where)
    if "tile" in cfg:
        _int_in(cfg, "tile", 16, 8192, where, error)


def check_latent_config(
    kind: Any, cfg: Any, where: str, error: type[Exception] = InputFileError
) -> None:
    """Refuse a latent-model config with wrong types or a network too large to build."""
    if (
        not isinstance(kind, str)
        or not isinstance(cfg, dict)
        or not all(isinstance(k, str) for k in cfg)
    ):
        raise error(
            f"{where}: kind/config are missing or of the wrong type; the file is "
            "corrupt or not an AtomLens latent model"
        )

    def walk(v: Any, key: str) -> None:
        if isinstance(v, bool) or v is None or isinstance(v, str) and len(v) <= 200:
            return
        if isinstance(v, int | np.integer):
            if abs(int(v)) > 10_000_000 and key != "seed":
                raise error(f"{where}: config {key} = {v} is absurd; the file is corrupt or forged")
            return
        if isinstance(v, float):
            if not np.isfinite(v):
                raise error(f"{where}: config {key} = {v} is not finite; the file is corrupt")
            return
        if isinstance(v, list | tuple) and len(v) <= 64:
            for x in v:
                walk(x, key)
            return
        if isinstance(v, dict) and len(v) <= 64:
            for k, x in v.items():
                walk(x, f"{key}.{k}")
            return
        raise error(f"{where}: config {key} has an unexpected value {str(v)[:60]!r}")

    for k, v in cfg.items():
        walk(v, k)
    win = cfg.get("window", (24, 24))
    win = [win, win] if isinstance(win, int) else list(win) if isinstance(win, list | tuple) else []
    if len(win) != 2 or not all(isinstance(w, int) and 2 <= w <= 1024 for w in win):
        raise error(
            f"{where}: window must be two sizes in 2..1024 pixels, got {cfg.get('window')!r}"
        )
    ch = cfg.get("channels", 1) or 1
    latent = cfg.get("latent_dim", cfg.get("n_components", 2)) or 2
    hidden = cfg.get("hidden", ()) or ()
    if isinstance(hidden, int):
        hidden = [hidden]
    sizes = [int(win[0]) * int(win[1]) * int(ch), *[int(h) for h in hidden], int(latent) + 3]
    params = sum(a * b for a, b in zip(sizes, sizes[1:])) * 2  # encoder + decoder, roughly
    if params > MAX_MODEL_PARAMS:
        raise error(
            f"{where}: the network would have ~{params / 1e6:.0f} M parameters (limit "
            f"{MAX_MODEL_PARAMS / 1e6:.0f} M); the file is corrupt or forged"
        )


__all__ = [
    "MissingFileError",
    "check_detector_config",
    "check_latent_config",
    "check_model_file",
    "check_declared_size",
    "check_image_dtype",
    "check_input_path",
    "check_number",
    "check_pixel_size",
    "float32_problem",
    "human_bytes",
    "memory_budget",
    "read_text_file",
    "safe_reason",
    "safe_yaml_load",
    "to_float32",
]
