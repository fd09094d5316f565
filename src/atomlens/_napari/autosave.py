"""Crash safety: every AtomLens atoms layer (detections, corrections, latents: all its
features) is snapshotted to a recovery folder a few seconds after it changes, and a viewer
opened after a killed one offers to restore it.

Recovery folders live under ``~/.atomlens/recovery`` (``ATOMLENS_RECOVERY`` overrides),
one per viewer process: ``manifest.json`` (process id, time, layers with their scale,
offset and pixel size) and one Parquet atom table per layer (``frame, y, x`` pixels, then
every feature). A clean exit removes its folder; a folder whose process is gone is a
crash to offer back. Snapshots are copied on the main thread (milliseconds) and written
on a background thread, so autosave never stalls the viewer.
"""

from __future__ import annotations

import json
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pandas as pd

from atomlens.viz.layers import META_KEY, LayerTuple, atoms_layer_tuple

#: Seconds after the last change before a snapshot is written.
DELAY_S = 3.0


def recovery_root() -> Path:
    """Where recovery folders live (``ATOMLENS_RECOVERY`` or ``~/.atomlens/recovery``)."""
    return Path(os.environ.get("ATOMLENS_RECOVERY", Path.home() / ".atomlens" / "recovery"))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def write_snapshot(folder: Path, layers: list[dict[str, Any]]) -> Path:
    """Write ``layers`` (dicts with ``name``, ``table`` (atom table, pixels), ``scale``,
    ``translate``, ``pixel_size``) into ``folder`` atomically (a manifest written last)."""
    folder.mkdir(parents=True, exist_ok=True)
    entries = []
    for i, lay in enumerate(layers):
        file = f"layer{i}.parquet"
        table = lay["table"].copy()
        for col in table.columns:  # parquet needs plain column types
            if table[col].dtype == object:
                table[col] = table[col].astype(str)
        table.to_parquet(folder / (file + ".tmp"))
        os.replace(folder / (file + ".tmp"), folder / file)
        entries.append(
            {k: v for k, v in lay.items() if k != "table"} | {"file": file, "n": int(len(table))}
        )
    manifest = {"pid": os.getpid(), "time": time.time(), "layers": entries}
    (folder / "manifest.json.tmp").write_text(json.dumps(manifest, indent=1, default=str))
    os.replace(folder / "manifest.json.tmp", folder / "manifest.json")
    return folder


def find_recoveries(root: Path | None = None) -> list[Path]:
    """Recovery folders left by viewers that did not exit cleanly (newest first)."""
    root = root or recovery_root()
    if not root.is_dir():
        return []
    found = []
    for folder in root.iterdir():
        manifest = folder / "manifest.json"
        if not manifest.exists():
            continue
        try:
            info = json.loads(manifest.read_text())
        except (OSError, ValueError):
            continue
        if info.get("layers") and not _alive(int(info.get("pid", -1))):
            found.append((float(info.get("time", 0)), folder))
    return [f for _, f in sorted(found, reverse=True)]


def describe(folder: Path) -> str:
    """``2 layers (atoms movie: 7,267 atoms), saved 12:03``."""
    info = json.loads((folder / "manifest.json").read_text())
    parts = [f"{e['name']}: {e['n']:,} atoms" for e in info["layers"]]
    when = time.strftime("%H:%M", time.localtime(float(info.get("time", 0))))
    return f"{len(parts)} layer(s) ({'; '.join(parts)}), saved {when}"


def load_snapshot(folder: Path) -> list[LayerTuple]:
    """The layers of a recovery folder as Points layer tuples (features restored)."""
    info = json.loads((folder / "manifest.json").read_text())
    out = []
    for e in info["layers"]:
        table = pd.read_parquet(folder / e["file"])
        tup = atoms_layer_tuple(
            table,
            e.get("pixel_size"),
            f"{e['name']} (recovered)",
            metadata={META_KEY: {"recovered_from": str(folder)}},
        )
        if e.get("pixel_size_source"):  # a value typed into Detect stays the user's
            tup[1]["metadata"][META_KEY]["pixel_size_source"] = e["pixel_size_source"]
        tup[1]["scale"] = tuple(e.get("scale", tup[1]["scale"]))
        tup[1]["translate"] = tuple(e.get("translate", (0.0, 0.0, 0.0)))
        out.append(tup)
    return out


def discard(folder: Path) -> None:
    """Delete a recovery folder."""
    shutil.rmtree(folder, ignore_errors=True)


def _is_atoms_layer(layer: Any) -> bool:
    meta = layer.metadata.get(META_KEY) if isinstance(layer.metadata, dict) else None
    kind = meta.get("kind") if isinstance(meta, dict) else None
    return type(layer).__name__ == "Points" and kind == "atoms"


class Autosaver:
    """Snapshots a viewer's atoms layers a few seconds after each change (one per viewer)."""

    def __init__(self, viewer: Any, root: Path | None = None, delay_s: float = DELAY_S) -> None:
        from qtpy.QtCore import QTimer

        self.viewer = viewer
        self.folder = (root or recovery_root()) / f"{os.getpid()}-{id(viewer):x}"
        self.timer = QTimer()
        self.timer.setSingleShot(True)
        self.timer.setInterval(int(delay_s * 1000))
        self.timer.timeout.connect(self.save_now)
        self.n_saves = 0
        self.offer: Any = None  # the restore question shown when this autosaver started
        self._thread: threading.Thread | None = None
        viewer.layers.events.inserted.connect(self._on_inserted)
        viewer.layers.events.removed.connect(self._changed)
        for layer in viewer.layers:
            self._watch(layer)
        import atexit

        atexit.register(discard, self.folder)  # a clean exit leaves nothing to recover

    def _on_inserted(self, event: Any = None) -> None:
        layer = getattr(event, "value", None)
        if layer is not None:
            self._watch(layer)
            self._changed()

    def _watch(self, layer: Any) -> None:
        if type(layer).__name__ != "Points":
            return
        layer.events.data.connect(self._changed)
        layer.events.features.connect(self._changed)

    def _changed(self, *_: Any) -> None:
        try:
            self.timer.start()
        except RuntimeError:  # the application is shutting down
            pass

    def snapshot(self) -> list[dict[str, Any]]:
        """Copies of the atoms layers (main thread: a few ms even for 80,000 atoms)."""
        from atomlens._napari._layers import layer_atoms

        out = []
        for layer in self.viewer.layers:
            if not _is_atoms_layer(layer) or len(layer.data) == 0:
                continue
            meta = layer.metadata.get(META_KEY, {})
            out.append(
                {
                    "name": layer.name,
                    "table": layer_atoms(layer),
                    "scale": [float(v) for v in layer.scale],
                    "translate": [float(v) for v in layer.translate],
                    "pixel_size": meta.get("pixel_size"),
                    "pixel_size_source": meta.get("pixel_size_source"),
                }
            )
        return out

    def save_now(self, wait: bool = False) -> Path | None:
        """Write a snapshot on a background thread (``wait``: join it)."""
        layers = self.snapshot()
        if not layers:
            discard(self.folder)
            return None
        if self._thread is not None and self._thread.is_alive():
            self._thread.join()
        self._thread = threading.Thread(
            target=write_snapshot, args=(self.folder, layers), name="atomlens-autosave", daemon=True
        )
        self._thread.start()
        self.n_saves += 1
        if wait:
            self._thread.join()
        return self.folder


def start_autosave(viewer: Any) -> Autosaver:
    """The viewer's autosaver (made on first use); on first use, offers to restore the
    work of a viewer that was killed (the question is kept as ``saver.offer``)."""
    from atomlens._napari.state import session_for

    session = session_for(viewer)
    saver = getattr(session, "autosaver", None)
    if saver is None:
        saver = Autosaver(viewer)
        session.autosaver = saver
        saver.offer = offer_restore(viewer)
    return saver


def on_first_use() -> Autosaver | None:
    """Start autosave (and the restore offer) in the current napari viewer: called by
    every AtomLens entry point that is not a dock (the reader, the sample data), so the
    offer appears the first time the plugin is used in a new viewer, whichever way (napari
    loads a plugin only when it is used: there is no earlier moment). None without a
    viewer (e.g. the reader called from a script)."""
    try:
        import napari

        viewer = napari.current_viewer()
    except Exception:  # noqa: BLE001 - no Qt application or napari: nothing to offer
        return None
    if viewer is None or getattr(viewer, "window", None) is None:
        return None
    return start_autosave(viewer)


def restore(viewer: Any, folder: Path) -> list[Any]:
    """Add the layers of a recovery folder to ``viewer``; the folder is then removed."""
    from atomlens._napari._layers import add_tuple

    layers = [add_tuple(viewer, tup) for tup in load_snapshot(folder)]
    discard(folder)
    return layers


def offer_restore(viewer: Any) -> Any:
    """A non-blocking question (Restore / Discard) for the newest crashed session's work;
    returns the dialog (None when there is nothing to restore)."""
    found = find_recoveries()
    if not found:
        return None
    from qtpy.QtWidgets import QMessageBox

    folder = found[0]
    box = QMessageBox()
    box.setWindowTitle("AtomLens: restore unsaved work?")
    box.setText(
        f"A previous napari session ended without closing. AtomLens kept "
        f"{describe(folder)}.\n\nRestore it into this viewer?"
    )
    box.setStandardButtons(
        QMessageBox.StandardButton.Yes
        | QMessageBox.StandardButton.Discard
        | QMessageBox.StandardButton.Ignore
    )

    def _answer(button: Any) -> None:
        role = box.standardButton(button)
        if role == QMessageBox.StandardButton.Yes:
            restore(viewer, folder)
        elif role == QMessageBox.StandardButton.Discard:
            discard(folder)

    box.buttonClicked.connect(_answer)
    box.open()  # non-modal: never blocks the viewer (or a test)
    return box
