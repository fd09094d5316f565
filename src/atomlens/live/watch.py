"""The live watch: follow a folder, analyse each new frame, append to the output.

:func:`run` is a workflow generator (like those of :mod:`atomlens.workflows`): it yields
a :class:`FrameDone` per analysed frame, a :class:`FrameSkipped` per dropped frame and
:class:`~atomlens.workflows.events.Log` lines, and returns a :class:`WatchSummary`.
``atomlens watch`` prints one line per frame; the napari Live dock runs it on a worker
thread. Set ``stop`` (a ``threading.Event``) to end it cleanly after the current frame.

Queue policy (:attr:`WatchRecipe.policy`):

``all``
    every frame is analysed, in arrival order; when frames come faster than they are
    analysed the queue grows (its length is in every line and in ``frames.csv``).
``newest``
    when more than one frame waits, only the newest is analysed; the OLDER waiting
    frames are dropped (``status = skipped`` in ``frames.csv``, never analysed, not
    redone on resume). Tracking bridges the gap (``max_gap`` frames).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from atomlens.errors import SettingsError
from atomlens.live.events import FrameTables
from atomlens.live.follower import Arrival, FolderFollower
from atomlens.live.output import LiveOutput, read_table
from atomlens.live.processor import FrameOutput, FrameProcessor
from atomlens.workflows.events import Log
from atomlens.workflows.recipe import Recipe, setting


@dataclass
class WatchRecipe(Recipe):
    """Settings of a live watch (``[watch]``)."""

    section = "watch"

    policy: str = setting(
        "all",
        choices=("all", "newest"),
        doc="queue policy: analyse all frames, or only the newest waiting one",
    )
    settle_s: float = setting(
        0.2, min=0.0, doc="seconds a file must stay unchanged before it is read"
    )
    poll_s: float = setting(0.05, above=0.0, doc="seconds between looks at the folder when idle")
    pixel_size: float | None = setting(None, above=0.0, doc="Å/px; None = from the first file")
    latent_model: str | None = setting(
        None, doc="latent model file to encode atoms with; None = no encoding"
    )
    max_frames: int | None = setting(None, min=1, doc="stop after this many frames have arrived")
    idle_stop_s: float | None = setting(
        None, above=0.0, doc="stop when no new frame came for this many seconds"
    )


@dataclass(frozen=True)
class FrameDone:
    """One analysed frame: ``frame`` number, ``source`` (``file#index``), the ``image``,
    its tables (``output.tables``), ``latency_s`` (from the file's arrival to its rows
    committed in OUT), ``queue`` (frames still waiting) and the stage timings."""

    frame: int
    source: str
    image: np.ndarray
    output: FrameOutput
    latency_s: float
    queue: int

    def line(self) -> str:
        """The one line ``atomlens watch`` prints."""
        o = self.output
        dy, dx = o.drift
        stages = " ".join(f"{k} {v * 1000:.0f}" for k, v in o.timings.items())
        return (
            f"frame {self.frame} ({self.source}): {len(o.atoms)} atoms, {len(o.events)} events, "
            f"drift ({dy:+.2f}, {dx:+.2f}) px, latency {self.latency_s:.2f} s, "
            f"queue {self.queue} [ms: {stages}]"
        )


@dataclass(frozen=True)
class FrameSkipped:
    """A frame the ``newest`` policy dropped."""

    frame: int
    source: str
    queue: int

    def line(self) -> str:
        return f"frame {self.frame} ({self.source}): skipped (newer frames waiting)"


@dataclass
class WatchSummary:
    out: Path
    processed: int
    skipped: int
    resumed_from: int
    stopped_by: str
    latency_s: list[float]


def _load_encoder(path: str | None) -> Any:
    if not path:
        return None
    from atomlens.models import load_model

    return load_model(path)


def _read_frame(folder: Path, key: str) -> np.ndarray:
    from atomlens.io.readers import read_stack

    name, _, idx = key.rpartition("#")
    return np.asarray(read_stack(folder / name, lazy=True).data[int(idx)], dtype=np.float32)


def _frame_tables(
    out: Path, state: dict, frame: int, drift: tuple[float, float]
) -> FrameTables | None:
    """The committed tables of one earlier frame, with member rows made local again."""
    atoms = read_table(out, "atoms", state)
    if not len(atoms):
        return None
    a = atoms[atoms["frame"] == frame].reset_index(drop=True)
    if not len(a):
        return None
    first = int(a["atom_id"].min())

    def local(tab: pd.DataFrame) -> pd.DataFrame:
        if not len(tab):
            return pd.DataFrame()
        t = tab[tab["frame"] == frame].copy().reset_index(drop=True)
        if "atoms" in t:
            t["atoms"] = [
                tuple(int(v) - first for v in str(m).split()) if isinstance(m, str) else ()
                for m in t["atoms"]
            ]
        return t

    return FrameTables(
        frame,
        a,
        local(read_table(out, "defects", state)),
        local(read_table(out, "rings", state)),
        drift,
    )


def _resume(proc: FrameProcessor, out: LiveOutput, folder: Path) -> None:
    st = out.state
    if not st["processed"]:
        return
    atoms = read_table(out.out, "atoms", st)
    drift_state = st.get("drift_state")
    last = int(atoms["frame"].max()) if len(atoms) else -1
    recent = atoms[atoms["frame"] >= last - proc.linker.max_gap - 1] if len(atoms) else atoms
    d = tuple(drift_state["drift"][-1]) if drift_state else (0.0, 0.0)
    key_img = prev_img = None
    if drift_state:
        key_img = _read_frame(folder, st["processed"][int(drift_state["key_index"])])
        prev_img = _read_frame(folder, st["processed"][-1])
    proc.restore(
        next_ids=st["next_ids"],
        recent=_frame_tables(out.out, st, last, d),
        recent_atoms=recent,
        drift_state=drift_state,
        key_image=key_img,
        prev_image=prev_img,
    )


def run(
    folder: str | Path,
    out: str | Path,
    recipe: WatchRecipe | None = None,
    *,
    detect: Any = None,
    chem: Any = None,
    stop: threading.Event | None = None,
) -> Generator[FrameDone | FrameSkipped | Log, None, WatchSummary]:
    """Watch ``folder``, writing to ``out`` (resumes when ``out`` holds a watch state).

    ``detect``/``chem`` are the workflow recipes (:class:`~atomlens.workflows.detect.
    DetectRecipe`, :class:`~atomlens.workflows.chemistry.ChemRecipe`); defaults when None.
    """
    from atomlens.io import atomic
    from atomlens.workflows.chemistry import ChemRecipe
    from atomlens.workflows.detect import DetectRecipe

    recipe = (recipe or WatchRecipe()).validate()
    # no model given: chosen from the first frame, as atomlens detect/run and the docks
    detect = (detect or DetectRecipe(model="auto", save_maps=False)).validate()
    chem = (chem or ChemRecipe()).validate()
    folder, out_dir = Path(folder), Path(out)
    stop = stop or threading.Event()
    with atomic.output_lock(out_dir):
        output = LiveOutput(out_dir)
        settings = {
            "watch": recipe.to_dict(),
            "detect": detect.to_dict(),
            "chem": chem.to_dict(),
            "folder": str(folder.resolve()),
        }
        state = output.open(settings)
        resumed_from = len(state["processed"]) + len(state["skipped"])
        follower = FolderFollower(folder, recipe.settle_s, seen=output.seen(), ignore=out_dir)
        pixel_size = state["settings"].get("pixel_size")
        if recipe.pixel_size and pixel_size and abs(recipe.pixel_size - pixel_size) > 1e-9:
            raise SettingsError(
                f"{out_dir} was started at {pixel_size} Å/px, not "
                f"{recipe.pixel_size}; resume with the same --pixel-size or "
                "choose a new --out"
            )
        encoder = _load_encoder(recipe.latent_model)
        proc: FrameProcessor | None = None
        if pixel_size:
            proc = FrameProcessor(pixel_size, detect, chem, encoder)
            _resume(proc, output, folder)
        if resumed_from:
            yield Log("watch", f"resuming {out_dir}: {resumed_from} frames already done")
        queue: deque[Arrival] = deque()
        processed = skipped = 0
        latencies: list[float] = []
        last_new = time.time()
        stopped_by = "stop"
        while True:
            if stop.is_set():
                stopped_by = "stop"
                break
            if recipe.max_frames and output.state["n_frames"] >= recipe.max_frames:
                stopped_by = "max_frames"
                break
            arrivals = follower.poll()
            if arrivals:
                queue.extend(arrivals)
                last_new = time.time()
            if not queue:
                if recipe.idle_stop_s and time.time() - last_new > recipe.idle_stop_s:
                    stopped_by = "idle"
                    break
                stop.wait(recipe.poll_s)
                continue
            if recipe.policy == "newest":
                while len(queue) > 1:
                    old = queue.popleft()
                    frame = output.state["n_frames"]
                    output.skip(old.key, frame, old.arrived, len(queue))
                    skipped += 1
                    yield FrameSkipped(frame, old.key, len(queue))
            arr = queue.popleft()
            if proc is None:
                ps = recipe.pixel_size or arr.pixel_size
                if not ps:
                    raise SettingsError(
                        f"'{arr.path.name}' has no pixel size in its metadata; "
                        "pass --pixel-size (Å/px)"
                    )
                output.state["settings"]["pixel_size"] = float(ps)
                proc = FrameProcessor(float(ps), detect, chem, encoder)
            frame = output.state["n_frames"]
            res = proc.process(arr.image, frame)
            for note in proc.take_notes():
                yield Log("watch", note)
            done = time.time()
            latency = done - arr.arrived
            tm = res.timings
            row = {
                "frame": frame,
                "source": arr.key,
                "status": "processed",
                "arrived": arr.arrived,
                "done": done,
                "latency_s": latency,
                "queue": len(queue),
                "n_atoms": len(res.atoms),
                "n_events": len(res.events),
                **{
                    f"t_{k}": tm.get(k, np.nan)
                    for k in ("register", "detect", "chem", "track", "encode", "events")
                },
                "cpu_s": proc.last_cpu_s,
            }
            tables = dict(res.tables)
            tables["drift"] = pd.DataFrame(
                {"frame": [frame], "dy_px": [res.drift[0]], "dx_px": [res.drift[1]]}
            )
            output.commit(
                arr.key, tables, row, proc.next_ids(), proc.drift.state() if chem.register else None
            )
            # latency: from the file's arrival to its rows committed (after the state write)
            latency = time.time() - arr.arrived
            latencies.append(latency)
            processed += 1
            yield FrameDone(frame, arr.key, arr.image, res, latency, len(queue))
        output.finish()
    return WatchSummary(out_dir, processed, skipped, resumed_from, stopped_by, latencies)


__all__ = ["FrameDone", "FrameSkipped", "WatchRecipe", "WatchSummary", "run"]
