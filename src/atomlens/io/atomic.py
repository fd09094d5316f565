"""Outputs that are whole or absent, and one run per output folder.

Every file AtomLens writes goes through :func:`atomic_write`: the bytes go to a
temporary file in the same folder (``.NAME.<random>.tmp``), are flushed and fsynced,
and the temporary is renamed over ``NAME`` only when the block finishes without an
exception. A crash (even ``kill -9``) leaves either the old file or the new one, never
a half-written one; the temporary left behind by a killed process is removed by
:func:`clean_stale_temporaries` (called by :func:`output_lock`).

:func:`output_lock` refuses a second run on a folder that is in use: the lock is an
``fcntl`` lock on ``FOLDER/.atomlens.lock``, released by the kernel when the process
dies, so a killed run never leaves the folder locked.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import IO, Any

import numpy as np

from atomlens.errors import OutputError

#: Name prefix and suffix of the temporaries written by :func:`atomic_write`.
TMP_PREFIX = "."
TMP_SUFFIX = ".atomlens-tmp"
LOCK_NAME = ".atomlens.lock"


def _fsync_dir(folder: Path) -> None:
    """Make a rename inside ``folder`` durable (best effort; not all systems allow it)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _check_parent(path: Path) -> None:
    parent = path.parent
    if parent.exists() and not parent.is_dir():
        raise OutputError(
            f"cannot write {path}: {parent} is a file, not a folder; choose another output path"
        )
    if path.exists() and path.is_dir():
        raise OutputError(
            f"cannot write {path}: a folder of that name exists; remove it or "
            "choose another output name"
        )


@contextlib.contextmanager
def atomic_write(
    path: str | os.PathLike,
    mode: str = "wb",
    encoding: str | None = "utf-8",
    newline: str | None = None,
) -> Iterator[IO[Any]]:
    """Open a temporary beside ``path`` for writing; rename it to ``path`` on success.

    Parameters
    ----------
    path : the final file; its folder is created when missing.
    mode : ``"wb"`` (bytes) or ``"w"`` (text).
    encoding, newline : for text mode, as in :func:`open`.

    On an exception inside the block the temporary is removed and ``path`` is left as it
    was. Permission and disk errors become :class:`~atomlens.errors.OutputError`.
    """
    if mode not in ("w", "wb", "wt"):
        raise ValueError(f"atomic_write mode must be 'w' or 'wb', got {mode!r}")
    path = Path(path)
    _check_parent(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(
            prefix=TMP_PREFIX + path.name + ".", suffix=TMP_SUFFIX, dir=path.parent
        )
    except (PermissionError, FileExistsError, NotADirectoryError, OSError) as exc:
        raise OutputError(
            f"cannot write {path} ({exc.strerror or exc}); check that the folder is writable "
            "or choose another output folder"
        ) from exc
    tmp = Path(tmp_name)
    binary = "b" in mode
    try:
        os.close(fd)  # reopened by name: writers (tifffile) want a file object with a path
        with open(
            tmp,
            "wb" if binary else "w",
            **({} if binary else {"encoding": encoding, "newline": newline}),
        ) as fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        # mkstemp creates 0600; give the file the usual permissions (umask applies)
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and not isinstance(exc, FileNotFoundError):
            raise OutputError(
                f"cannot write {path} ({exc.strerror or exc}); free disk space or choose "
                "another output folder"
            ) from exc
        raise
    _fsync_dir(path.parent)


def write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` whole or not at all."""
    with atomic_write(path, "wb") as fh:
        fh.write(data)
    return Path(path)


def write_text(path: str | os.PathLike, text: str) -> Path:
    """Write ``text`` (UTF-8) to ``path`` whole or not at all."""
    with atomic_write(path, "w") as fh:
        fh.write(text)
    return Path(path)


def write_json(path: str | os.PathLike, obj: Any, **kwargs: Any) -> Path:
    """Write ``obj`` as JSON (``indent=2`` unless given) whole or not at all.

    The JSON is produced before the file is touched, so an object that is not JSON-able
    leaves the old file in place.
    """
    kwargs.setdefault("indent", 2)
    return write_text(path, json.dumps(obj, **kwargs))


def write_csv(path: str | os.PathLike, table: Any, **kwargs: Any) -> Path:
    """Write a pandas DataFrame as CSV (``index=False`` unless given) whole or not at all."""
    kwargs.setdefault("index", False)
    with atomic_write(path, "w", newline="") as fh:
        table.to_csv(fh, **kwargs)
    return Path(path)


def write_npy(path: str | os.PathLike, array: Any) -> Path:
    """Write an array as ``.npy`` whole or not at all (never pickled)."""
    with atomic_write(path, "wb") as fh:
        np.save(fh, np.asarray(array), allow_pickle=False)
    return Path(path)


def write_npz(path: str | os.PathLike, **arrays: Any) -> Path:
    """Write arrays as a compressed ``.npz`` whole or not at all (never pickled)."""
    buf = io.BytesIO()
    np.savez_compressed(buf, **{k: np.asarray(v) for k, v in arrays.items()})
    return write_bytes(path, buf.getvalue())


def write_parquet(path: str | os.PathLike, table: Any, **kwargs: Any) -> Path:
    """Write a pandas DataFrame as Parquet whole or not at all."""
    with atomic_write(path, "wb") as fh:
        table.to_parquet(fh, **kwargs)
    return Path(path)


def copy_file(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Copy ``src`` to ``dst`` whole or not at all."""
    import shutil

    with open(src, "rb") as fin, atomic_write(dst, "wb") as fout:
        shutil.copyfileobj(fin, fout, 1 << 20)
    return Path(dst)


def replace_tree(src: str | os.PathLike, dst: str | os.PathLike) -> Path:
    """Copy the folder ``src`` to ``dst``, replacing ``dst`` only once the copy is whole.

    The copy goes to a temporary sibling first; the old ``dst`` is moved aside and
    removed after the rename, so ``dst`` is at every moment absent, old or new (a crash
    between the two renames leaves it absent, never half-copied).
    """
    import shutil

    src, dst = Path(src), Path(dst)
    tmp = dst.with_name(f"{TMP_PREFIX}{dst.name}.{os.getpid()}{TMP_SUFFIX}")
    old = dst.with_name(f"{TMP_PREFIX}{dst.name}.old.{os.getpid()}{TMP_SUFFIX}")
    for p in (tmp, old):
        if p.exists():
            shutil.rmtree(p)
    try:
        shutil.copytree(src, tmp)
    except OSError as exc:
        shutil.rmtree(tmp, ignore_errors=True)
        raise OutputError(
            f"cannot write {dst} ({exc.strerror or exc}); free disk space or "
            "choose another output folder"
        ) from exc
    if dst.exists():
        os.replace(dst, old)
    os.replace(tmp, dst)
    shutil.rmtree(old, ignore_errors=True)
    _fsync_dir(dst.parent)
    return dst


def check_output_path(path: str | os.PathLike, need_bytes: int = 0, what: str = "output") -> Path:
    """Check, before any work, that ``path`` can be written: its folder exists or can be
    created and is writable, ``path`` is not a folder, and the disk has ``need_bytes``
    free. Raises :class:`~atomlens.errors.OutputError` naming the fix."""
    import shutil

    from atomlens.io.gate import human_bytes

    path = Path(path)
    _check_parent(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(
            prefix=TMP_PREFIX + "probe.", suffix=TMP_SUFFIX, dir=path.parent
        )
        os.close(fd)
        os.unlink(probe)
    except OSError as exc:
        raise OutputError(
            f"cannot write {what} {path} ({exc.strerror or exc}); check that "
            "the folder is writable or choose another path"
        ) from exc
    if need_bytes:
        free = shutil.disk_usage(path.parent).free
        if need_bytes > free:
            raise OutputError(
                f"{what} {path} needs {human_bytes(need_bytes)} but the disk has "
                f"{human_bytes(free)} free; free space, choose another disk, or "
                "select fewer frames"
            )
    return path


@contextlib.contextmanager
def atomic_npy_memmap(
    path: str | os.PathLike, shape: tuple[int, ...], dtype: Any = np.float32
) -> Iterator[Path]:
    """Create a ``.npy`` of ``shape`` at a temporary name beside ``path`` and yield that
    temporary path (fill it with ``np.load(tmp, mmap_mode="r+")``); on success it is
    renamed to ``path``, on failure removed, so a failed run leaves no zero-filled file."""
    path = Path(path)
    check_output_path(path, 0)
    fd, tmp_name = tempfile.mkstemp(
        prefix=TMP_PREFIX + path.name + ".", suffix=TMP_SUFFIX, dir=path.parent
    )
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        created = np.lib.format.open_memmap(tmp, mode="w+", dtype=dtype, shape=tuple(shape))
        del created
        yield tmp
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    _fsync_dir(path.parent)


def is_temporary(path: str | os.PathLike) -> bool:
    """True for a temporary left by :func:`atomic_write`."""
    name = Path(path).name
    return name.startswith(TMP_PREFIX) and name.endswith(TMP_SUFFIX)


def clean_stale_temporaries(
    folder: str | os.PathLike, older_than_s: float = 0.0, recursive: bool = True
) -> list[Path]:
    """Remove temporaries of :func:`atomic_write` under ``folder``; returns those removed.

    Only call this while holding :func:`output_lock` on ``folder`` (or with
    ``older_than_s`` large enough that no live writer can own them).
    """
    folder = Path(folder)
    if not folder.is_dir():
        return []
    now = time.time()
    removed = []
    pattern = f"**/{TMP_PREFIX}*{TMP_SUFFIX}" if recursive else f"{TMP_PREFIX}*{TMP_SUFFIX}"
    import shutil

    for p in folder.glob(pattern):
        try:
            if p.is_symlink() or now - p.stat().st_mtime < older_than_s:
                continue
            if p.is_dir():
                shutil.rmtree(p)
            else:
                p.unlink()
            removed.append(p)
        except OSError:
            continue
    return removed


@contextlib.contextmanager
def output_lock(folder: str | os.PathLike, clean: bool = True) -> Iterator[Path]:
    """Hold the run lock of the output ``folder`` (created when missing).

    Raises :class:`~atomlens.errors.OutputError` at once when another process (or another
    run in this process) holds it, or when the folder cannot be created or written. With
    ``clean`` the temporaries a killed earlier run left behind are removed once the lock
    is held. The lock file stays (empty) after the run; it is not an output.
    """
    import fcntl

    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise OutputError(f"output {folder} is a file, not a folder; choose another --out")
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder / LOCK_NAME, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
    except OSError as exc:
        raise OutputError(
            f"cannot write to output folder {folder} ({exc.strerror or exc}); check its "
            "permissions or choose another --out"
        ) from exc
    try:
        # flock locks belong to the open file description, so a second open in this same
        # process is refused too (unlike POSIX record locks)
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError as exc:
        os.close(fd)
        raise OutputError(
            f"output folder {folder} is in use by another AtomLens run; wait for it to "
            "finish or choose another --out"
        ) from exc
    try:
        # the folder must be writable: fail now, not after the work is done
        probe = None
        try:
            pfd, probe = tempfile.mkstemp(
                prefix=TMP_PREFIX + "probe.", suffix=TMP_SUFFIX, dir=folder
            )
            os.close(pfd)
            os.unlink(probe)
        except OSError as exc:
            raise OutputError(
                f"cannot write to output folder {folder} ({exc.strerror or exc}); check its "
                "permissions or choose another --out"
            ) from exc
        if clean:
            clean_stale_temporaries(folder)
        with contextlib.suppress(OSError):
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        yield folder
    finally:
        with contextlib.suppress(OSError):
            fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)


__all__ = [
    "LOCK_NAME",
    "atomic_npy_memmap",
    "atomic_write",
    "check_output_path",
    "clean_stale_temporaries",
    "copy_file",
    "is_temporary",
    "output_lock",
    "replace_tree",
    "write_bytes",
    "write_csv",
    "write_json",
    "write_npy",
    "write_npz",
    "write_parquet",
    "write_text",
]
