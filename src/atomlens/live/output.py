"""The append-only output of a live watch, with the state that makes it resumable.

``OUT`` holds the tables of ``atomlens run`` -- ``atoms.csv``, ``bonds.csv``,
``rings.csv``, ``defects.csv``, ``dopants.csv`` -- plus ``events.csv``, ``drift.csv``
(``frame, dy_px, dx_px``) and ``frames.csv`` (one row per frame that arrived: source,
arrival and finish times, latency, stage timings, ``status`` processed/skipped), and
``watch_state.json``.

Commit protocol, per frame: each table gets the frame's rows in ONE ``write`` of whole
lines followed by ``fsync``; then ``watch_state.json`` is replaced atomically
(:func:`atomlens.io.atomic.write_json`) with the new committed byte length of every
table. The state is the commit point: on start, every table is cut back to its
committed length, so a watch killed at any instant (even ``kill -9`` in the middle of
a write) restarts with no half-written row and no row twice, and redoes only the
frame it was working on. :func:`read_table` reads committed rows only, so a reader
running beside the watch never sees a half-written row either.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from atomlens.errors import OutputError
from atomlens.io import atomic

STATE_NAME = "watch_state.json"
STATE_VERSION = 1
TABLES = ("atoms", "bonds", "rings", "defects", "dopants", "events", "drift", "frames")
FRAME_COLUMNS = [
    "frame",
    "source",
    "status",
    "arrived",
    "done",
    "latency_s",
    "queue",
    "n_atoms",
    "n_events",
    "t_register",
    "t_detect",
    "t_chem",
    "t_track",
    "t_encode",
    "t_events",
    "cpu_s",
]


def _csv_bytes(
    df: pd.DataFrame, columns: list[str] | None, header: bool
) -> tuple[bytes, list[str]]:
    """Whole CSV lines of ``df`` (restricted/reordered to ``columns`` when given)."""
    if columns is not None:
        df = df.reindex(columns=columns)
    cols = [str(c) for c in df.columns]
    text = df.to_csv(index=False, header=header, lineterminator="\n")
    return text.encode("utf-8"), cols


def read_state(out: str | Path) -> dict | None:
    """The committed watch state of ``out`` (None when there is none)."""
    path = Path(out) / STATE_NAME
    if not path.exists():
        return None
    try:
        state = json.loads(path.read_text("utf-8"))
    except (OSError, ValueError) as exc:
        raise OutputError(
            f"{path} is unreadable ({exc}); remove the output folder's watch "
            "files or choose a new --out"
        ) from None
    if state.get("version") != STATE_VERSION:
        raise OutputError(f"{path} was written by another AtomLens version; choose a new --out")
    return state


def read_table(out: str | Path, name: str, state: dict | None = None) -> pd.DataFrame:
    """The committed rows of table ``name`` (``atoms``, ``events``, ...) of a watch
    output, safe to call while the watch is writing."""
    out = Path(out)
    state = read_state(out) if state is None else state
    path = out / f"{name}.csv"
    n = int((state or {}).get("bytes", {}).get(name, 0))
    if not n or not path.exists():
        cols = (state or {}).get("columns", {}).get(name, [])
        return pd.DataFrame(columns=cols)
    with open(path, "rb") as fh:
        data = fh.read(n)
    import io

    return pd.read_csv(io.BytesIO(data), low_memory=False)


class LiveOutput:
    """Append-only tables + state of one watch output folder (see the module doc).

    Call :meth:`open` once (cuts tables back to the committed state), then
    :meth:`commit` per processed frame or :meth:`skip` per dropped frame.
    """

    def __init__(self, out: str | Path) -> None:
        self.out = Path(out)
        self.state: dict[str, Any] = {}

    def open(self, settings: dict[str, Any]) -> dict[str, Any]:
        """Load (or start) the state; returns it. ``settings`` (pixel size, recipes) are
        stored on a fresh start and checked against the stored ones on resume."""
        self.out.mkdir(parents=True, exist_ok=True)
        state = read_state(self.out)
        if state is None:
            leftovers = [n for n in TABLES if (self.out / f"{n}.csv").exists()]
            if leftovers:
                raise OutputError(
                    f"{self.out} holds {leftovers[0]}.csv but no {STATE_NAME}: it is not a watch "
                    "output this command can resume; choose an empty --out folder"
                )
            state = {
                "version": STATE_VERSION,
                "settings": settings,
                "bytes": {},
                "columns": {},
                "n_frames": 0,
                "processed": [],
                "skipped": [],
                "next_ids": {},
                "drift_state": None,
                "started": time.time(),
            }
        self.state = state
        for name in TABLES:
            self._truncate(name, int(state["bytes"].get(name, 0)))
        return state

    def _truncate(self, name: str, n: int) -> None:
        path = self.out / f"{name}.csv"
        if path.exists() and path.stat().st_size != n:
            with open(path, "r+b") as fh:
                fh.truncate(n)
                fh.flush()
                os.fsync(fh.fileno())

    def _append(self, name: str, df: pd.DataFrame) -> None:
        if df is None or not len(df):
            return
        cols = self.state["columns"].get(name)
        n = int(self.state["bytes"].get(name, 0))
        data, used = _csv_bytes(df, cols, header=n == 0)
        path = self.out / f"{name}.csv"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.lseek(fd, n, os.SEEK_SET)
            view = memoryview(data)
            while view:
                k = os.write(fd, view)
                view = view[k:]
            os.fsync(fd)
        except OSError as exc:
            raise OutputError(
                f"cannot append to {path} ({exc.strerror}); free disk space or choose another --out"
            ) from None
        finally:
            os.close(fd)
        self.state["bytes"][name] = n + len(data)
        self.state["columns"].setdefault(name, used)

    def _save_state(self) -> None:
        atomic.write_json(self.out / STATE_NAME, self.state)

    def commit(
        self,
        key: str,
        tables: dict[str, pd.DataFrame],
        frame_row: dict[str, Any],
        next_ids: dict[str, int],
        drift_state: dict | None,
    ) -> None:
        """Append one processed frame's rows, then commit the state."""
        for name, df in tables.items():
            self._append(name, df)
        self._append("frames", pd.DataFrame([frame_row], columns=FRAME_COLUMNS))
        st = self.state
        st["processed"].append(key)
        st["n_frames"] = int(frame_row["frame"]) + 1
        st["next_ids"] = dict(next_ids)
        st["drift_state"] = drift_state
        self._save_state()

    def skip(self, key: str, frame: int, arrived: float, queue: int) -> None:
        """Record a frame the ``newest`` queue policy dropped (never processed)."""
        row = {c: np.nan for c in FRAME_COLUMNS}
        row.update(
            frame=frame,
            source=key,
            status="skipped",
            arrived=arrived,
            done=time.time(),
            queue=queue,
        )
        self._append("frames", pd.DataFrame([row], columns=FRAME_COLUMNS))
        self.state["skipped"].append(key)
        self.state["n_frames"] = frame + 1
        self._save_state()

    def seen(self) -> set[str]:
        return set(self.state.get("processed", [])) | set(self.state.get("skipped", []))

    def finish(self) -> Path | None:
        """At a clean stop: ``atoms.parquet`` (as ``atomlens run`` writes) from the
        committed ``atoms.csv``; returns its path (None when no atoms yet)."""
        atoms = read_table(self.out, "atoms", self.state)
        if not len(atoms):
            return None
        return atomic.write_parquet(self.out / "atoms.parquet", atoms)


__all__ = ["FRAME_COLUMNS", "LiveOutput", "STATE_NAME", "TABLES", "read_state", "read_table"]
