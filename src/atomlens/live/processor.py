"""Per-frame chain of a live watch: register, detect, chemistry, track, encode, events.

The one adapter between the live watch and the workflows (:mod:`atomlens.workflows`
detect, chemistry, encode): the same recipes as ``atomlens run``, applied to one frame
at a time, with the state that links a frame to the earlier ones (drift estimator,
track linker, the previous frame's tables for events).

Ids are global across the watch: ``atom_id`` numbers every atom row in order, so it is
also the row of the atom in ``atoms.csv``; bonds ``a, b`` and the ``atoms`` members of
rings and defects are those global rows; ``ring_id`` and ``defect_id`` are unique over
the movie.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from atomlens.chem.registration import DriftEstimator
from atomlens.errors import SettingsError
from atomlens.live.events import EventParams, FrameTables, empty_events, frame_events
from atomlens.live.tracker import OnlineLinker


@dataclass
class FrameOutput:
    """Everything one frame adds to the watch output.

    tables : ``atoms, bonds, rings, defects, dopants, events`` (rows of this frame,
        global ids); drift : (dy, dx) px of this frame relative to the first one;
    timings : seconds per stage (``register, detect, chem, track, encode, events``);
    pixel_size : Å per pixel.
    """

    frame: int
    tables: dict[str, pd.DataFrame]
    drift: tuple[float, float]
    timings: dict[str, float] = field(default_factory=dict)
    pixel_size: float = 0.0  # Å per pixel of the watch

    @property
    def atoms(self) -> pd.DataFrame:
        return self.tables["atoms"]

    @property
    def events(self) -> pd.DataFrame:
        return self.tables["events"]


def _members(values: Any, offset: int) -> str:
    """A tuple of local rows -> space-separated global rows."""
    return " ".join(str(int(v) + offset) for v in values if int(v) >= 0)


class FrameProcessor:
    """Run the per-frame chain; keep what links frames.

    Parameters
    ----------
    pixel_size : Å per pixel (calibrated; the watch takes it from the first file or
        the user).
    detect, chem : the workflow recipes (defaults when None).
    encoder : a fitted latent model (:func:`atomlens.models.load_model`) or None.
    events : thresholds of :mod:`atomlens.live.events`.
    """

    def __init__(
        self,
        pixel_size: float,
        detect: Any = None,
        chem: Any = None,
        encoder: Any = None,
        events: EventParams | None = None,
    ) -> None:
        from atomlens.workflows.chemistry import ChemRecipe
        from atomlens.workflows.detect import DetectRecipe

        if not (pixel_size and np.isfinite(pixel_size) and pixel_size > 0):
            raise SettingsError(
                f"pixel size must be a positive number of Å, got {pixel_size!r}; pass --pixel-size"
            )
        self.pixel_size = float(pixel_size)
        self.detect = (detect or DetectRecipe(model="auto", save_maps=False)).validate()
        self.chem = (chem or ChemRecipe()).validate()
        self.encoder = encoder
        self.event_params = events or EventParams()
        params = self.chem.params()
        self.drift = DriftEstimator()
        self.linker = OnlineLinker(self.pixel_size, params.max_disp_A, params.max_gap)
        self.prev: FrameTables | None = None
        self.next_atom_id = 0
        self.next_ring_id = 0
        self.next_defect_id = 0
        # what the user should read once (detector chosen and its fit warnings on the
        # first frame, the chemistry's not-graphene note): :meth:`take_notes` hands them out
        self._notes: list[str] = []
        self._host_noted = False
        self.last_cpu_s = 0.0  # CPU seconds (all threads) the last frame took
        self._detect_fixed = False

    def take_notes(self) -> list[str]:
        """The messages for the user gathered since the last call (each said once: the
        detector and its fit warnings after the first frame, the chemistry's
        not-graphene note the first time a frame has no C)."""
        notes, self._notes = self._notes, []
        return notes

    # ------------------------------------------------------------------ stages
    def _detect(self, image: np.ndarray, frame: int) -> pd.DataFrame:
        from atomlens.io.stack import Stack
        from atomlens.workflows import detect
        from atomlens.workflows.events import drain

        stack = Stack(image[None], self.pixel_size, "user")
        first = not self._detect_fixed
        res = drain(detect.run(stack, self.detect, [0], maps=False, check_fit=first))
        if first:
            # the model, the contrast and the fit warnings are decided on the first frame
            # only (as for a movie on disk): later frames skip the fit check
            if res.model_choice:
                self._notes.append(f"detector: {res.model_choice}")
            self._notes += [f"warning: {w}" for w in res.warnings]
            changes = {}
            if self.detect.model == "auto" and res.model_name:
                changes["model"] = res.model_name
            if getattr(self.detect, "contrast", None) == "auto":
                changes["contrast"] = "dark" if res.inverted else "bright"
            if changes:
                self.detect = self.detect.replace(**changes)
            self._detect_fixed = True
        atoms = res.atoms.drop(columns=["atom_id"], errors="ignore")
        atoms["frame"] = np.int64(frame)
        return atoms

    def _encode(self, image: np.ndarray, atoms: pd.DataFrame) -> pd.DataFrame:
        from atomlens.workflows import encode
        from atomlens.workflows.events import drain

        local = atoms.assign(frame=0)
        out = drain(encode.run(self.encoder, image[None], local)).atoms
        out["frame"] = atoms["frame"].to_numpy()
        return out

    def process(self, image: np.ndarray, frame: int) -> FrameOutput:
        """Analyse one (Y, X) frame numbered ``frame`` (increasing over the watch)."""
        from atomlens.chem.host import lattice_note
        from atomlens.workflows import chemistry

        image = np.asarray(image, dtype=np.float32)
        if image.ndim != 2:
            raise SettingsError(f"a live frame must be one (Y, X) image, got shape {image.shape}")
        t: dict[str, float] = {}
        cpu0 = time.process_time()
        t0 = time.perf_counter()
        if self.chem.register:
            dy, dx = (float(v) for v in self.drift.add(image))
        else:
            dy, dx = 0.0, 0.0
        t["register"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        atoms = self._detect(image, frame)
        t["detect"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        offset = self.next_atom_id
        atoms["atom_id"] = np.arange(offset, offset + len(atoms), dtype=np.int64)
        atoms["y_reg"] = atoms["y"].to_numpy(float) - dy
        atoms["x_reg"] = atoms["x"].to_numpy(float) - dx
        per = chemistry.per_frame(atoms, self.pixel_size, self.chem)
        note = lattice_note(per["atoms"])  # the workflow's not-graphene rule, per frame
        per = chemistry.apply_host_note(per, note)
        if note and not self._host_noted:
            self._notes.append(f"warning: {note}")
            self._host_noted = True
        atoms = per["atoms"]
        t["chem"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        atoms["track_id"] = self.linker.add(atoms, frame) if self.chem.track else -1
        t["track"] = time.perf_counter() - t0

        if self.encoder is not None:
            t0 = time.perf_counter()
            atoms = self._encode(image, atoms)
            t["encode"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        cur = FrameTables(frame, atoms, per["defects"], per["rings"], (dy, dx))
        events = (
            frame_events(self.prev, cur, self.pixel_size, self.event_params)
            if self.prev is not None
            else empty_events()
        )
        t["events"] = time.perf_counter() - t0
        self.prev = cur
        self.last_cpu_s = time.process_time() - cpu0  # all threads of this process
        tables = self._globalise(atoms, per, events, offset)
        self.next_atom_id = offset + len(atoms)
        return FrameOutput(frame, tables, (dy, dx), t, self.pixel_size)

    def _globalise(
        self, atoms: pd.DataFrame, per: dict, events: pd.DataFrame, offset: int
    ) -> dict[str, pd.DataFrame]:
        """Per-frame rows -> global rows and ids, tuple columns -> text."""
        bonds = per["bonds"].copy()
        if len(bonds):
            bonds["a"] = bonds["a"].to_numpy(dtype=np.int64) + offset
            bonds["b"] = bonds["b"].to_numpy(dtype=np.int64) + offset
        rings = per["rings"].copy()
        if len(rings):
            rings["ring_id"] = np.arange(self.next_ring_id, self.next_ring_id + len(rings))
            self.next_ring_id += len(rings)
            rings["atoms"] = [_members(m, offset) for m in rings["atoms"]]
        defects = per["defects"].copy()
        out_atoms = atoms.copy()
        if len(defects):
            new_ids = np.arange(self.next_defect_id, self.next_defect_id + len(defects))
            mapping = dict(zip(defects["defect_id"].to_numpy(dtype=int), new_ids))
            defects["defect_id"] = new_ids
            self.next_defect_id += len(defects)
            defects["atoms"] = [_members(m, offset) for m in defects["atoms"]]
            old = out_atoms["defect_id"].to_numpy(dtype=int)
            out_atoms["defect_id"] = np.array(
                [mapping.get(int(v), -1) for v in old], dtype=np.int64
            )
        dopants = per["dopants"].copy()
        if len(dopants):
            dopants["atom"] = dopants["atom"].to_numpy(dtype=np.int64) + offset
            if "neighbours" in dopants:
                dopants["neighbours"] = [_members(m, offset) for m in dopants["neighbours"]]
            for col in ("bond_lengths_pm", "angles_deg"):
                if col in dopants:
                    dopants[col] = [" ".join(f"{float(v):.2f}" for v in m) for m in dopants[col]]
            dopants["track_id"] = out_atoms["track_id"].to_numpy()[
                dopants["atom"].to_numpy(dtype=int) - offset
            ]
            if "defect_id" in dopants and len(defects):
                dopants["defect_id"] = out_atoms["defect_id"].to_numpy()[
                    dopants["atom"].to_numpy(dtype=int) - offset
                ]
        return {
            "atoms": out_atoms,
            "bonds": bonds,
            "rings": rings,
            "defects": defects,
            "dopants": dopants,
            "events": events,
        }

    # ------------------------------------------------------------------ resume
    def restore(
        self,
        *,
        next_ids: dict[str, int],
        recent: FrameTables | None,
        recent_atoms: pd.DataFrame,
        drift_state: dict | None,
        key_image: np.ndarray | None,
        prev_image: np.ndarray | None,
    ) -> None:
        """Continue a watch from its written state (see :mod:`atomlens.live.state`)."""
        self.next_atom_id = int(next_ids.get("atom", 0))
        self.next_ring_id = int(next_ids.get("ring", 0))
        self.next_defect_id = int(next_ids.get("defect", 0))
        self.linker.restore(recent_atoms, int(next_ids.get("track", 0)))
        self.prev = recent
        if drift_state and key_image is not None and prev_image is not None:
            self.drift.restore(drift_state, key_image, prev_image)

    def next_ids(self) -> dict[str, int]:
        return {
            "atom": self.next_atom_id,
            "ring": self.next_ring_id,
            "defect": self.next_defect_id,
            "track": self.linker.next_id,
        }


__all__ = ["FrameOutput", "FrameProcessor"]
