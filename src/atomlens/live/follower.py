"""Follow a folder where a microscope writes frames, yielding only complete frames.

A *frame* is one ``(Y, X)`` image of one file: a file holding ``T`` frames yields
``T`` frames; a file that grows (a TIFF or ``.npy`` stack the acquisition appends to)
yields its new frames each time its size has settled again.

A file counts as complete when its size and modification time have not changed for
``settle_s`` seconds (or at once when it is older than that), and
:func:`atomlens.io.read_stack` reads it. Hidden files (``.name``), temporaries
(``*.tmp``, ``*.part``, ``*.partial``, ``*.crdownload``) and the output folder are
skipped, so a writer that writes ``.name.tmp`` and renames it is seen only when whole.
"""

from __future__ import annotations

import os
import re
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from atomlens.errors import InputFileError, SettingsError
from atomlens.io.readers import SUPPORTED_SUFFIXES

TEMP_SUFFIXES = (".tmp", ".part", ".partial", ".crdownload", ".atomlens-tmp")


@dataclass(frozen=True)
class Arrival:
    """One complete frame: ``path``, ``index`` inside the file, the ``image`` (Y, X)
    float32, the file's pixel size (Å/px or None), and ``arrived`` (the file's
    modification time, seconds since the epoch: when its bytes were last written)."""

    path: Path
    index: int
    image: np.ndarray
    pixel_size: float | None
    arrived: float

    @property
    def key(self) -> str:
        """``name#index``: the frame's identity in the watch state (resume)."""
        return f"{self.path.name}#{self.index}"


def natural_key(name: str) -> tuple:
    """Sort key that puts ``frame_2`` before ``frame_10``."""
    return tuple(int(p) if p.isdigit() else p.lower() for p in re.split(r"(\d+)", name))


def is_candidate(path: Path) -> bool:
    """A readable image file name (not hidden, not a temporary)."""
    name = path.name
    if name.startswith(".") or name.lower().endswith(TEMP_SUFFIXES):
        return False
    return path.suffix.lower() in SUPPORTED_SUFFIXES


class FolderFollower:
    """Poll ``folder`` for new complete frames.

    Parameters
    ----------
    folder : the folder the microscope writes to.
    settle_s : seconds a file's size and mtime must stay unchanged before it is read
        (0 when the writer renames finished files into place).
    seen : frame keys (``name#index``) already handled (a resumed watch); they are
        not yielded again.
    ignore : a folder inside ``folder`` not to look into (the output folder).
    """

    def __init__(
        self,
        folder: str | Path,
        settle_s: float = 0.2,
        seen: set[str] | None = None,
        ignore: str | Path | None = None,
    ) -> None:
        self.folder = Path(folder)
        if not self.folder.is_dir():
            raise InputFileError(
                f"watch folder {self.folder} does not exist or is not a folder; "
                "create it or give the folder the microscope writes to"
            )
        if settle_s < 0:
            raise SettingsError(f"settle_s={settle_s} is invalid: need seconds >= 0")
        self.settle_s = float(settle_s)
        self.seen: set[str] = set(seen or ())
        self.ignore = Path(ignore).resolve() if ignore else None
        self._stat: dict[str, tuple[int, int, float]] = {}  # name -> (size, mtime_ns, first seen)
        self._done_size: dict[str, int] = {}  # name -> size when last read completely
        self.errors: dict[str, str] = {}  # name -> why it could not be read (yet)

    def _files(self) -> list[Path]:
        try:
            entries = list(os.scandir(self.folder))
        except OSError as exc:
            raise InputFileError(
                f"cannot list watch folder {self.folder}: {exc.strerror}"
            ) from None
        out = []
        for e in entries:
            p = Path(e.path)
            if not is_candidate(p):
                continue
            if e.is_dir() and p.suffix.lower() != ".zarr":
                continue
            if self.ignore is not None and p.resolve() == self.ignore:
                continue
            out.append(p)
        return sorted(out, key=lambda p: natural_key(p.name))

    def poll(self) -> list[Arrival]:
        """New complete frames since the last call, in file-name order then frame order."""
        from atomlens.io.readers import read_stack

        now = time.time()
        out: list[Arrival] = []
        for path in self._files():
            name = path.name
            try:
                st = path.stat()
            except OSError:
                continue  # renamed or removed meanwhile
            sig = (st.st_size, st.st_mtime_ns)
            prev = self._stat.get(name)
            if prev is None or prev[:2] != sig:
                self._stat[name] = (*sig, now)
                if now - st.st_mtime_ns / 1e9 < self.settle_s:
                    continue  # just written: wait for it to settle
            elif now - max(prev[2], st.st_mtime_ns / 1e9) < self.settle_s:
                continue
            if self._done_size.get(name) == st.st_size:
                continue  # read completely at this size already
            try:
                stack = read_stack(path)
                n = stack.n_frames
                new = [i for i in range(n) if f"{name}#{i}" not in self.seen]
                frames = [(i, np.asarray(stack.data[i], dtype=np.float32)) for i in new]
            except (InputFileError, OSError, ValueError, IndexError, EOFError) as exc:
                self.errors[name] = str(exc)  # truncated or still growing: try again later
                continue
            self.errors.pop(name, None)
            self._done_size[name] = st.st_size
            ps = stack.pixel_size
            for i, img in frames:
                if img.ndim != 2:
                    continue
                self.seen.add(f"{name}#{i}")
                out.append(Arrival(path, i, img, ps, st.st_mtime_ns / 1e9))
        return out


__all__ = ["Arrival", "FolderFollower", "is_candidate", "natural_key"]
