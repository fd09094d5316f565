"""AtomLens projects: a folder ``NAME.atomlens/`` that keeps a session's work.

Layout::

    NAME.atomlens/
        project.json   stack path, pixel size and its source, model paths, settings,
                       corrected frames, format version
        atoms.csv      the working atom table with its correction flags
                       (see :mod:`atomlens.io.atoms_table`)

The stack itself is never copied: ``project.json`` records its absolute path and its
path relative to the project folder, and :func:`load_project` uses whichever exists (so a
project moved together with its data still opens).

A project is saved as one unit. ``project.json`` is the manifest and is written last:
its ``files`` entry names every file the project covers (``atoms.csv``) with its size
and SHA-256. A save keeps the previous table as ``.atoms.csv.prev`` until the new
``project.json`` is in place, so a save killed at any moment leaves a project that
:func:`load_project` opens whole (the last completed save); a table that matches no
manifest (edited by hand, or a foreign copy) is refused with the way out. Every file is
written to a temporary name and renamed; saves of one folder are serialised by a lock
and clean the temporaries a killed save left.

:func:`load_project` checks every field's type and range, and the paths: the atom table
must lie inside the project folder; the stack must be an image file (a supported
suffix, a regular file or a .zarr folder) and, when ``allowed_roots`` is given, inside
one of those folders.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from atomlens import __version__
from atomlens.errors import InputFileError, OutputError
from atomlens.io.atoms_table import AtomsTableError, read_atoms_csv, write_atoms_csv

PROJECT_SUFFIX = ".atomlens"
PROJECT_FILE = "project.json"
ATOMS_FILE = "atoms.csv"
#: Version of the project.json layout (bump when a field changes meaning).
FORMAT_VERSION = 1

log = logging.getLogger(__name__)


class ProjectError(InputFileError):
    """A project folder that cannot be read or written; the message names the fix."""


@dataclass
class Project:
    """Everything needed to resume correcting a movie.

    Attributes
    ----------
    stack_path : the image stack file (str path), or None when the data came from memory.
    pixel_size : Å per pixel, or None.
    pixel_size_source : ``"metadata"``, ``"user"``, ``"calibration"``, ``"simulation"``
        or ``"unknown"``.
    models : role -> model file path, e.g. ``{"detector": ".../graphene.pt",
        "finetuned": ".../ft.pt"}``.
    settings : free-form JSON-able settings (threshold, autosave interval...).
    corrected_frames : sorted frame indices corrected by hand.
    atoms : the atom table (with ``edited``/``source`` flags), or None.
    version : AtomLens version that wrote the project.
    format_version : project layout version.
    path : the ``.atomlens`` folder it was loaded from or saved to.
    """

    stack_path: str | None = None
    pixel_size: float | None = None
    pixel_size_source: str = "unknown"
    models: dict[str, str] = field(default_factory=dict)
    settings: dict[str, Any] = field(default_factory=dict)
    corrected_frames: list[int] = field(default_factory=list)
    atoms: pd.DataFrame | None = None
    version: str = __version__
    format_version: int = FORMAT_VERSION
    path: str | None = None
    saved_at: str | None = None

    def __post_init__(self) -> None:
        self.corrected_frames = sorted({int(f) for f in self.corrected_frames})
        if self.pixel_size is not None:
            self.pixel_size = float(self.pixel_size)

    def to_json(self, folder: Path | None = None) -> dict:
        """The ``project.json`` content (paths relative to ``folder`` added when given)."""
        stack_rel = None
        if self.stack_path and folder is not None:
            try:
                stack_rel = os.path.relpath(Path(self.stack_path).resolve(), folder.resolve())
            except ValueError:  # another drive on Windows
                stack_rel = None
        return {
            "format": "atomlens-project",
            "format_version": self.format_version,
            "version": self.version,
            "saved_at": self.saved_at,
            "stack": {
                "path": str(Path(self.stack_path).resolve()) if self.stack_path else None,
                "relative_path": stack_rel,
            },
            "pixel_size": {"value_A": self.pixel_size, "source": self.pixel_size_source},
            "models": {str(k): str(v) for k, v in self.models.items()},
            "settings": self.settings,
            "corrected_frames": list(self.corrected_frames),
            "atoms_file": ATOMS_FILE if self.atoms is not None else None,
            "n_atoms": int(len(self.atoms)) if self.atoms is not None else 0,
        }


def project_folder(path: str | Path) -> Path:
    """``path`` as a project folder name: ``.atomlens`` appended when missing; a path to
    ``project.json`` inside a project gives its folder."""
    path = Path(path)
    if path.name == PROJECT_FILE:
        return path.parent
    if path.suffix != PROJECT_SUFFIX:
        path = path.with_name(path.name + PROJECT_SUFFIX)
    return path


def is_project(path: str | Path) -> bool:
    """True when ``path`` is (or is the ``project.json`` of) an AtomLens project folder."""
    p = Path(path)
    if p.name == PROJECT_FILE:
        p = p.parent
    return p.suffix == PROJECT_SUFFIX and (p / PROJECT_FILE).is_file()


def save_project(path: str | Path, project: Project) -> Path:
    """Write ``project`` to the folder ``path`` (``.atomlens`` appended if missing).

    Creates the folder and writes the project as one unit (see the module docstring):
    ``atoms.csv`` first (the previous one kept as ``.atoms.csv.prev``), then
    ``project.json`` naming it with its size and hash, then the previous table is
    dropped; removes ``atoms.csv`` when the project has no atom table. Sets
    ``project.path`` and ``project.saved_at``; returns the folder.
    """
    from atomlens.io import atomic

    folder = project_folder(path)
    if folder.exists() and not folder.is_dir():
        raise ProjectError(f"{folder} exists and is not a folder; choose another project name")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutputError(
            f"cannot create project folder {folder} ({exc.strerror or exc}); "
            "choose a writable place"
        ) from exc
    saved_at = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    with _project_lock(folder):
        atomic.clean_stale_temporaries(folder, recursive=False)
        atoms_path, prev = folder / ATOMS_FILE, folder / PREV_ATOMS_FILE
        files: dict[str, dict] = {}
        if project.atoms is not None:
            if atoms_path.exists():
                prev.unlink(missing_ok=True)
                try:  # the last whole save stays until the new manifest is in place
                    os.link(atoms_path, prev)
                except OSError:  # no hard links on this file system
                    atomic.copy_file(atoms_path, prev)
            write_atoms_csv(atoms_path, project.atoms)
            files[ATOMS_FILE] = _file_entry(atoms_path)
        meta = project.to_json(folder)
        meta["saved_at"] = saved_at
        meta["files"] = files
        text = json.dumps(meta, indent=2, default=_json_default)  # before touching the file
        atomic.write_text(folder / PROJECT_FILE, text)
        prev.unlink(missing_ok=True)
        if project.atoms is None:
            atoms_path.unlink(missing_ok=True)
    project.saved_at = saved_at
    project.path = str(folder)
    return folder


PREV_ATOMS_FILE = ".atoms.csv.prev"


@contextlib.contextmanager
def _project_lock(folder: Path, timeout_s: float = 30.0) -> Iterator[None]:
    """Serialise saves of one project folder (threads and processes); waits up to
    ``timeout_s`` for another save to finish, then raises :class:`OutputError`."""
    import fcntl
    import time

    lock = _THREAD_LOCKS.setdefault(str(folder.resolve()), threading.Lock())
    if not lock.acquire(timeout=timeout_s):
        raise OutputError(f"project {folder} is being saved by another task; try again")
    try:
        try:
            fd = os.open(folder / ".atomlens.lock", os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise OutputError(
                f"cannot write project folder {folder} ({exc.strerror or exc}); "
                "check its permissions or save elsewhere"
            ) from exc
        try:
            t0 = time.monotonic()
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError:
                    if time.monotonic() - t0 > timeout_s:
                        raise OutputError(
                            f"project {folder} is being saved by another AtomLens process; "
                            "close it or save under another name"
                        ) from None
                    time.sleep(0.05)
            yield
        finally:
            os.close(fd)  # releases the flock
    finally:
        lock.release()


_THREAD_LOCKS: dict[str, threading.Lock] = {}


def _file_entry(path: Path) -> dict:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return {"size": path.stat().st_size, "sha256": h.hexdigest()}


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"setting of type {type(obj).__name__} is not JSON-able")


def load_project(path: str | Path, allowed_roots: list[str | Path] | None = None) -> Project:
    """Read a project folder (or its ``project.json``), checking it first.

    The stack path is the recorded absolute path when it exists, else the relative one
    resolved against the project folder when that exists, else the absolute path as
    recorded (the caller reports the missing file when it opens it). It must name an
    image file (supported suffix; not a device or FIFO) and, with ``allowed_roots``, lie
    inside one of those folders. The atom table must lie inside the project folder and
    match the manifest (``files`` in ``project.json``); after a save that was killed
    half-way, the previous whole table is used.

    Raises :class:`ProjectError` (an :class:`~atomlens.errors.InputFileError`) for every
    problem, naming the field and the fix; a missing project is also a
    ``FileNotFoundError``.
    """
    from atomlens.io.gate import check_input_path, read_text_file

    folder = project_folder(path)
    meta_path = folder / PROJECT_FILE
    if not meta_path.exists():
        raise MissingProjectError(f"no AtomLens project at {folder} (missing {PROJECT_FILE})")
    check_input_path(meta_path, "project file", error=ProjectError)
    text = read_text_file(meta_path, "project file")
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ProjectError(f"{meta_path} is not valid JSON ({exc}); restore it or re-save") from exc
    if not isinstance(meta, dict):
        raise ProjectError(
            f"{meta_path} must hold a JSON object, not a {type(meta).__name__}; "
            "restore it or re-save the project"
        )
    if meta.get("format") != "atomlens-project":
        raise ProjectError(f"{meta_path} is not an AtomLens project file")
    fv = _field(meta, "format_version", int, meta_path, default=0)
    if fv > FORMAT_VERSION:
        raise ProjectError(
            f"{folder.name} was written by a newer AtomLens (project format {fv}, this one "
            f"reads up to {FORMAT_VERSION}); upgrade AtomLens"
        )
    stack = _field(meta, "stack", dict, meta_path, default={})
    stack_path = _field(stack, "path", str, meta_path, "stack.path")
    rel = _field(stack, "relative_path", str, meta_path, "stack.relative_path")
    if rel and not (stack_path and Path(stack_path).exists()):
        cand = (folder / rel).resolve()
        if cand.exists():
            stack_path = str(cand)
    if stack_path:
        _check_stack_path(stack_path, meta_path, allowed_roots)
    atoms = _load_atoms(meta, folder, meta_path)
    px = _field(meta, "pixel_size", dict, meta_path, default={})
    value = _field(px, "value_A", float, meta_path, "pixel_size.value_A")
    if value is not None and not (np.isfinite(value) and value > 0):
        raise ProjectError(
            f"{meta_path}: pixel_size.value_A must be a positive number of Å, "
            f"got {value!r}; fix or remove it"
        )
    models = _field(meta, "models", dict, meta_path, default={})
    for role, model in models.items():
        if not isinstance(model, str):
            raise ProjectError(
                f"{meta_path}: models.{role} must be a file path (text), got {model!r}"
            )
    frames = _field(meta, "corrected_frames", list, meta_path, default=[])
    if not all(isinstance(f, int) and not isinstance(f, bool) and f >= 0 for f in frames):
        raise ProjectError(
            f"{meta_path}: corrected_frames must be frame numbers >= 0, got {frames[:5]!r}..."
        )
    return Project(
        stack_path=stack_path,
        pixel_size=value,
        pixel_size_source=str(
            _field(px, "source", str, meta_path, "pixel_size.source") or "unknown"
        ),
        models=dict(models),
        settings=dict(_field(meta, "settings", dict, meta_path, default={})),
        corrected_frames=list(frames),
        atoms=atoms,
        version=str(meta.get("version", "")),
        format_version=fv,
        path=str(folder),
        saved_at=_field(meta, "saved_at", str, meta_path),
    )


class MissingProjectError(ProjectError, FileNotFoundError):
    """No project at the given path (a :class:`ProjectError` and a ``FileNotFoundError``)."""


def _field(
    meta: dict, key: str, kind: type, meta_path: Path, name: str | None = None, default: Any = None
) -> Any:
    """``meta[key]`` checked to be ``kind`` (or null); ``default`` when absent or null."""
    value = meta.get(key)
    if value is None:
        return default
    ok = isinstance(value, kind) and not isinstance(value, bool)
    if kind is float:
        ok = isinstance(value, int | float) and not isinstance(value, bool)
    if not ok:
        want = {
            str: "text",
            int: "a whole number",
            float: "a number",
            dict: "an object",
            list: "a list",
        }[kind]
        raise ProjectError(
            f"{meta_path}: {name or key} must be {want}, got {value!r}; "
            "fix it or re-save the project"
        )
    return float(value) if kind is float else value


def _check_stack_path(
    stack_path: str, meta_path: Path, allowed_roots: list[str | Path] | None
) -> None:
    from atomlens.io.gate import check_input_path
    from atomlens.io.readers import SUPPORTED_SUFFIXES, ZARR_SUFFIXES

    p = Path(stack_path)
    suffix = p.suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise ProjectError(
            f"{meta_path}: stack.path {stack_path!r} is not an image file (suffix "
            f"{suffix or 'none'}); point it at the movie (.npy, .tif, .dm4, ...)"
        )
    if allowed_roots is not None:
        real = p.resolve()
        if not any(real.is_relative_to(Path(r).resolve()) for r in allowed_roots):
            raise ProjectError(
                f"{meta_path}: stack.path {stack_path!r} lies outside the allowed folders "
                f"{[str(r) for r in allowed_roots]}; move the data there or allow its folder"
            )
    if p.exists():
        check_input_path(
            p, "stack of the project", allow_dir=suffix in ZARR_SUFFIXES, error=ProjectError
        )


def _load_atoms(meta: dict, folder: Path, meta_path: Path) -> pd.DataFrame | None:
    atoms_file = _field(meta, "atoms_file", str, meta_path)
    if not atoms_file:
        return None
    target = folder / atoms_file
    if Path(atoms_file).is_absolute() or target.resolve().parent != folder.resolve():
        raise ProjectError(
            f"{meta_path}: atoms_file {atoms_file!r} must be a file inside the project folder; "
            f"set it to {ATOMS_FILE!r}"
        )
    files = _field(meta, "files", dict, meta_path)
    entry = None if files is None else files.get(atoms_file)
    if files is not None and not isinstance(entry, dict):
        raise ProjectError(
            f"{meta_path}: the manifest (files) does not list {atoms_file}; "
            "the project is incomplete: re-save it"
        )
    if entry is not None and target.exists() and not _matches(target, entry):
        prev = folder / PREV_ATOMS_FILE
        if prev.exists() and _matches(prev, entry):
            log.warning("%s: a save was interrupted; opening the last complete save", folder)
            target = prev
        else:
            raise ProjectError(
                f"project {folder.name}: {atoms_file} does not match project.json (changed "
                "outside AtomLens, or copied from another project); restore it, or delete "
                'the "files" entry in project.json to accept the table as it is'
            )
    if not target.exists():
        prev = folder / PREV_ATOMS_FILE
        if entry is not None and prev.exists() and _matches(prev, entry):
            target = prev
        else:
            raise ProjectError(
                f"project {folder.name}: its atom table {atoms_file} is "
                "missing; restore it from a backup or re-run detection"
            )
    try:
        return read_atoms_csv(target)
    except AtomsTableError as exc:
        raise ProjectError(f"project {folder.name}: {exc}") from exc


def _matches(path: Path, entry: dict) -> bool:
    try:
        if path.stat().st_size != entry.get("size"):
            return False
        return _file_entry(path)["sha256"] == entry.get("sha256")
    except OSError:
        return False


# --- napari reader/writer contributions (plain functions; napari is not imported) --------


def project_layer_data(path: str | Path) -> list[tuple]:
    """napari layer-data tuples for a project: the stack (when its file exists) and the
    atoms Points layer, whose metadata carries the project (corrected frames, path)."""
    from atomlens.viz.layers import atoms_layer_tuple, image_layer_tuple

    proj = load_project(path)
    out: list[tuple] = []
    if proj.stack_path and Path(proj.stack_path).exists():
        from atomlens.io.readers import read_stack

        stack = read_stack(proj.stack_path, pixel_size=proj.pixel_size)
        out.append(image_layer_tuple(stack.data, stack.pixel_size, Path(proj.stack_path).stem))
    if proj.atoms is not None:
        meta = {
            "atomlens": {
                "project": str(proj.path),
                "corrected_frames": list(proj.corrected_frames),
                "stack_path": proj.stack_path,
                "models": dict(proj.models),
            }
        }
        out.append(atoms_layer_tuple(proj.atoms, proj.pixel_size, name="atoms", metadata=meta))
    return out


def napari_get_reader(path: str | list[str]) -> Any:
    """npe2 reader contribution: a reader for ``*.atomlens`` folders, else None."""
    if isinstance(path, list):
        if len(path) != 1:
            return None
        path = path[0]
    if not is_project(path):
        return None
    return project_layer_data


def napari_write_project(path: str, layer_data: list[tuple]) -> list[str]:
    """npe2 writer contribution: save an atoms Points layer (and the image stack's path
    when an Image layer read from a file is among the layers) as a project folder.

    ``layer_data`` is napari's list of ``(data, attributes, layer_type)``. Returns the
    written folder path in a list.
    """
    from atomlens.viz.layers import points_to_atoms

    project = Project()
    for data, attrs, kind in layer_data:
        meta = (attrs.get("metadata") or {}).get("atomlens", {})
        if kind == "points":
            project.atoms = points_to_atoms(data, attrs.get("features"))
            project.corrected_frames = list(meta.get("corrected_frames", []))
            project.models.update(meta.get("models", {}) or {})
            project.stack_path = project.stack_path or meta.get("stack_path")
            scale = attrs.get("scale")
            if scale is not None and len(scale) >= 2 and meta.get("pixel_size"):
                project.pixel_size = float(meta["pixel_size"])
        elif kind == "image":
            src = meta.get("path") or meta.get("stack_path")
            if src:
                project.stack_path = src
            if meta.get("pixel_size"):
                project.pixel_size = float(meta["pixel_size"])
    if project.atoms is None:
        raise ProjectError("no atoms Points layer to save: select the atoms layer")
    project.__post_init__()
    return [str(save_project(path, project))]


__all__ = [
    "ATOMS_FILE",
    "FORMAT_VERSION",
    "PROJECT_FILE",
    "PROJECT_SUFFIX",
    "Project",
    "MissingProjectError",
    "ProjectError",
    "is_project",
    "load_project",
    "napari_get_reader",
    "napari_write_project",
    "project_folder",
    "project_layer_data",
    "save_project",
]
