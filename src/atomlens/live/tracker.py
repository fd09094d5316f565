"""Frame-by-frame atom linking with the same rule as :func:`atomlens.chem.link_atoms`.

:func:`~atomlens.chem.tracking.link_atoms` links a whole movie; a live watch sees one
frame at a time. :class:`OnlineLinker` keeps the state of every track (last position,
last frame, species) and links each new frame with the same global assignment, the
same per-species radii, gap rule and gap penalty, so the tracks of a watched movie are
the tracks :func:`link_atoms` gives on the finished movie (a test checks it). Track ids
are numbered in order of creation and never change once written.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np
import pandas as pd
from scipy.spatial import cKDTree

from atomlens.chem.tracking import _assign


class _SpeciesState:
    """Tracks of one species (or of all, without per-species radii)."""

    def __init__(self, radius_A: float) -> None:
        self.radius = float(radius_A)
        self.ids = np.zeros(0, dtype=np.int64)  # global track id of each local track
        self.yx = np.zeros((0, 2))  # last position, Å
        self.frame = np.zeros(0, dtype=np.int64)  # last frame seen


class OnlineLinker:
    """Link atoms frame by frame.

    Parameters
    ----------
    pixel_size : Å per pixel.
    max_disp_A : Å, one number or per species (``"*"`` = any other), as in
        :func:`atomlens.chem.link_atoms`.
    max_gap : frames a track may miss and still continue.
    gap_penalty_A : Å added to the cost per missed frame.
    """

    def __init__(
        self,
        pixel_size: float,
        max_disp_A: float | Mapping[str, float] = 1.0,
        max_gap: int = 2,
        gap_penalty_A: float = 0.05,
    ) -> None:
        self.pixel_size = float(pixel_size)
        self.max_disp_A = dict(max_disp_A) if isinstance(max_disp_A, Mapping) else float(max_disp_A)
        self.max_gap = int(max_gap)
        self.gap_penalty_A = float(gap_penalty_A)
        self.next_id = 0
        self._states: dict[str, _SpeciesState] = {}

    def _radius(self, species: str) -> float:
        d = self.max_disp_A
        if isinstance(d, dict):
            return float(d.get(species, d.get("*", 1.0)))
        return d

    def _state(self, species: str) -> _SpeciesState:
        if species not in self._states:
            self._states[species] = _SpeciesState(self._radius(species))
        return self._states[species]

    def add(self, atoms: pd.DataFrame, frame: int) -> np.ndarray:
        """Track ids for the rows of one frame's atoms (``y_reg, x_reg`` when present,
        else ``y, x`` in pixels; ``cls``); frames must come in increasing order."""
        cols = ["y_reg", "x_reg"] if {"y_reg", "x_reg"} <= set(atoms.columns) else ["y", "x"]
        yx = atoms[cols].to_numpy(dtype=float) * self.pixel_size
        species = atoms["cls"].astype(str).to_numpy()
        out = np.full(len(atoms), -1, dtype=np.int64)
        new_rows: list[np.ndarray] = []
        for sp in np.unique(species):
            rows = np.flatnonzero(species == sp)
            st = self._state(sp)
            alive = np.flatnonzero(st.frame >= frame - 1 - self.max_gap)
            local = np.full(len(rows), -1, dtype=np.int64)
            if len(alive) and len(rows):
                sdm = cKDTree(st.yx[alive]).sparse_distance_matrix(
                    cKDTree(yx[rows]), st.radius, output_type="ndarray"
                )
                ti, di = sdm["i"].astype(int), sdm["j"].astype(int)
                cost = sdm["v"].astype(float) + self.gap_penalty_A * (
                    frame - 1 - st.frame[alive[ti]]
                )
                assigned = _assign(ti, di, cost, len(alive), len(rows))
                local = np.where(assigned >= 0, alive[np.maximum(assigned, 0)], -1)
            linked = local >= 0
            out[rows[linked]] = st.ids[local[linked]]
            st.yx[local[linked]] = yx[rows[linked]]
            st.frame[local[linked]] = frame
            new = rows[~linked]
            if len(new):
                new_rows.append(new)
        # new tracks numbered in row order (as link_atoms numbers by first appearance)
        if new_rows:
            fresh = np.sort(np.concatenate(new_rows))
            ids = np.arange(self.next_id, self.next_id + len(fresh))
            self.next_id += len(fresh)
            out[fresh] = ids
            for sp in np.unique(species[fresh]):
                sel = species[fresh] == sp
                st = self._state(sp)
                st.ids = np.concatenate([st.ids, ids[sel]])
                st.yx = np.vstack([st.yx, yx[fresh[sel]]])
                st.frame = np.concatenate([st.frame, np.full(int(sel.sum()), frame)])
        self._prune(frame)
        return out

    def _prune(self, frame: int) -> None:
        """Forget tracks that can no longer continue (memory stays bounded)."""
        for st in self._states.values():
            keep = st.frame >= frame - 1 - self.max_gap
            if not keep.all():
                st.ids, st.yx, st.frame = st.ids[keep], st.yx[keep], st.frame[keep]

    def restore(self, recent: pd.DataFrame, next_id: int) -> None:
        """Rebuild the state from the written rows of the last ``max_gap + 1`` frames
        (``frame, track_id, cls`` and the coordinates): a resumed watch continues the
        same tracks."""
        self._states.clear()
        self.next_id = int(next_id)
        if recent.empty:
            return
        cols = ["y_reg", "x_reg"] if {"y_reg", "x_reg"} <= set(recent.columns) else ["y", "x"]
        last = recent.sort_values("frame").groupby("track_id").tail(1)
        species = last["cls"].astype(str).to_numpy()
        for sp in np.unique(species):
            sel = species == sp
            st = self._state(sp)
            st.ids = last["track_id"].to_numpy(dtype=np.int64)[sel]
            st.yx = last[cols].to_numpy(dtype=float)[sel] * self.pixel_size
            st.frame = last["frame"].to_numpy(dtype=np.int64)[sel]


__all__ = ["OnlineLinker"]
