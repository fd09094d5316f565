"""AtomLens projects: a folder ``NAME.atomlens/`` that keeps a session's work.

Layout::

    NAME.atomlens/
        project.json   stack path, pixel size and its source, model paths, settings,
                       corrected frames, format version
        atoms.csv      the working atom table with its correction flags
                       (see :mod:`atomlens.io.atoms_table`)

The stack itself is never copied: ``project.json`` records its absolute path and its
path relative to the project folder, and :func:`load_project` uses whichever exists (so a
project moved together with its data still opens). Both files are written to a
temporary name and renamed, so an autosave interrupted half-way never corrupts a project.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from atomlens import __version__
from atomlens.errors import InputFileError
from atomlens.io.atoms_table import AtomsTableError, read_atoms_csv, write_atoms_csv

PROJECT_SUFFIX = ".atomlens"
PROJECT_FILE = "project.json"
ATOMS_FILE = "atoms.csv"
#: Version of the project.json layout (bump when a field changes meaning).
FORMAT_VERSION = 1


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

    Creates the folder; replaces ``project.json`` and ``atoms.csv`` atomically; removes a
    stale ``atoms.csv`` when the project has no atom table. Sets ``project.path`` and
    ``project.saved_at``; returns the folder.
    """
    folder = project_folder(path)
    if folder.exists() and not folder.is_dir():
        raise ProjectError(f"{folder} exists and is not a folder; choose another project name")
    folder.mkdir(parents=True, exist_ok=True)
    project.saved_at = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    if project.atoms is not None:
        write_atoms_csv(folder / ATOMS_FILE, project.atoms)
    elif (folder / ATOMS_FILE).exists():
        (folder / ATOMS_FILE).unlink()
    meta = project.to_json(folder)
    tmp = folder / (PROJECT_FILE + ".tmp")
    tmp.write_text(json.dumps(meta, indent=2, default=_json_default))
    tmp.replace(folder / PROJECT_FILE)
    project.path = str(folder)
    return folder


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"setting of type {type(obj).__name__} is not JSON-able")


def load_project(path: str | Path) -> Project:
    """Read a project folder (or its ``project.json``).

    The stack path is the recorded absolute path when it exists, else the relative one
    resolved against the project folder when that exists, else the absolute path as
    recorded (the caller reports the missing file when it opens it).
    Raises FileNotFoundError or :class:`ProjectError`.
    """
    folder = project_folder(path)
    meta_path = folder / PROJECT_FILE
    if not meta_path.is_file():
        raise FileNotFoundError(f"no AtomLens project at {folder} (missing {PROJECT_FILE})")
    try:
        meta = json.loads(meta_path.read_text())
    except json.JSONDecodeError as exc:
        raise ProjectError(f"{meta_path} is not valid JSON ({exc}); restore it or re-save") from exc
    if meta.get("format") != "atomlens-project":
        raise ProjectError(f"{meta_path} is not an AtomLens project file")
    fv = int(meta.get("format_version", 0))
    if fv > FORMAT_VERSION:
        raise ProjectError(
            f"{folder.name} was written by a newer AtomLens (project format {fv}, this one "
            f"reads up to {FORMAT_VERSION}); upgrade AtomLens"
        )
    stack = meta.get("stack") or {}
    stack_path = stack.get("path")
    rel = stack.get("relative_path")
    if rel and not (stack_path and Path(stack_path).exists()):
        cand = (folder / rel).resolve()
        if cand.exists():
            stack_path = str(cand)
    atoms = None
    atoms_file = meta.get("atoms_file")
    if atoms_file:
        try:
            atoms = read_atoms_csv(folder / atoms_file)
        except AtomsTableError as exc:
            raise ProjectError(f"project {folder.name}: {exc}") from exc
    px = meta.get("pixel_size") or {}
    return Project(
        stack_path=stack_path,
        pixel_size=px.get("value_A"),
        pixel_size_source=px.get("source", "unknown"),
        models=dict(meta.get("models") or {}),
        settings=dict(meta.get("settings") or {}),
        corrected_frames=list(meta.get("corrected_frames") or []),
        atoms=atoms,
        version=str(meta.get("version", "")),
        format_version=fv,
        path=str(folder),
        saved_at=meta.get("saved_at"),
    )


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
        meta = {"atomlens": {"project": str(proj.path),
                             "corrected_frames": list(proj.corrected_frames),
                             "stack_path": proj.stack_path,
                             "models": dict(proj.models)}}
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
    "ProjectError",
    "is_project",
    "load_project",
    "napari_get_reader",
    "napari_write_project",
    "project_folder",
    "project_layer_data",
    "save_project",
]
