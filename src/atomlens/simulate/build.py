"""The initial sample: lattice (or bicrystal), contamination, holes and point defects."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from atomlens.simulate.config import SimConfig
from atomlens.simulate.contamination import Contamination
from atomlens.simulate.defects import (
    Registry,
    is_plain_c,
    make_hole,
    make_si3,
    make_si4,
    make_vacancy,
    rotate_bond,
)
from atomlens.simulate.grain import stitch
from atomlens.simulate.lattice import bicrystal, honeycomb
from atomlens.simulate.sheet import Sheet

BORDER_A = 2.0
"""Initial defects keep this far (Å) inside the first frame's field of view."""


@dataclass
class Sample:
    """Everything that persists through the movie (sample frame, Å)."""

    sheet: Sheet
    registry: Registry
    contamination: Contamination
    fov_A: float
    angle_deg: float
    gb_point: np.ndarray | None = None
    gb_normal: np.ndarray | None = None

    def gb_distance(self, yx_A: np.ndarray) -> np.ndarray:
        """|distance| (Å) of positions (N, 2) from the grain-boundary line (inf if none)."""
        yx_A = np.asarray(yx_A).reshape(-1, 2)
        if self.gb_point is None:
            return np.full(len(yx_A), np.inf)
        return np.abs((yx_A - self.gb_point) @ self.gb_normal)


class _Placer:
    """Random sites that respect the field of view, contamination, the grain boundary
    and the distance to features already placed."""

    def __init__(self, sample: Sample, cfg: SimConfig, rng: np.random.Generator) -> None:
        self.s, self.cfg, self.rng = sample, cfg, rng
        self.centres: list[tuple[np.ndarray, float]] = []

    def ok(self, yx: np.ndarray, radius: float) -> bool:
        fov, sep = self.s.fov_A, self.cfg.min_defect_separation_A
        border = BORDER_A + radius
        if not (border <= yx[0] <= fov - border and border <= yx[1] <= fov - border):
            return False
        if self.s.contamination.clearance_at(yx)[0] < sep / 2 + radius:
            return False
        if self.s.gb_distance(yx)[0] < 4.0 + radius:
            return False
        return all(np.linalg.norm(yx - c) >= sep + radius + r for c, r in self.centres)

    def sites(self) -> list[int]:
        """Candidate sites (plain 3-fold C with plain neighbours) in random order."""
        sheet = self.s.sheet
        cand = np.flatnonzero(sheet.alive & ~sheet.protected)
        cand = self.rng.permutation(cand)
        return [int(i) for i in cand if is_plain_c(sheet, int(i))]

    def take(self, yx: np.ndarray, radius: float) -> None:
        self.centres.append((np.asarray(yx, float), radius))


def build_sample(
    cfg: SimConfig, rng: np.random.Generator, bounds: tuple[float, float, float, float]
) -> Sample:
    """Make the first-frame sample inside ``bounds = (y0, y1, x0, x1)`` Å; the field of
    view of frame 0 is ``[0, size * pixel_size]`` Å in both axes."""
    fov = cfg.size * cfg.pixel_size
    angle = cfg.lattice_angle_deg if cfg.lattice_angle_deg is not None else rng.uniform(0, 60)
    gb_point = gb_normal = None
    if cfg.grain_boundary:
        gb_point = np.array([fov, fov]) / 2 + rng.uniform(-0.15, 0.15, 2) * fov
        line_angle = rng.uniform(0, np.pi)
        gb_normal = np.array([np.cos(line_angle), -np.sin(line_angle)])
        pos, sub, grain, edges = bicrystal(
            bounds,
            np.deg2rad(angle),
            np.deg2rad(cfg.grain_misorientation_deg),
            gb_point,
            line_angle,
            rng,
        )
    else:
        off = tuple(rng.uniform(0, 2.46, 2))
        pos, sub, edges = honeycomb(bounds, np.deg2rad(angle), offset=off)  # type: ignore[arg-type]
        grain = np.zeros(len(pos), int)
    protected = (pos < 0).any(1) | (pos > fov).any(1)
    sheet = Sheet(pos, sub, grain, edges, protected)
    contamination = Contamination(
        bounds, cfg.pixel_size, cfg.contamination_fraction, cfg.contamination_level, fov, rng
    )
    sample = Sample(sheet, Registry(), contamination, fov, float(angle), gb_point, gb_normal)
    reg = sample.registry
    if cfg.grain_boundary:
        stitch(sheet, gb_point, gb_normal, relax=cfg.relax)
        reg.new("grain_boundary")
    placer = _Placer(sample, cfg, rng)
    missing: dict[str, int] = {}

    def place(name: str, n: int, radius: float, action: Callable[[int], Any]) -> None:
        done = 0
        if n == 0:
            return
        for i in placer.sites():
            if done == n:
                break
            if not (sheet.alive[i] and is_plain_c(sheet, i)) or not placer.ok(sheet.pos[i], radius):
                continue
            centre = action(i)
            if centre is not None:
                placer.take(centre, radius)
                done += 1
        if done < n:
            missing[name] = n - done

    def hole(i: int) -> np.ndarray:
        centre = sheet.pos[i].copy()
        make_hole(sheet, centre, cfg.hole_radius_A)
        reg.new("hole", sites_A=[tuple(centre)])
        return centre

    def si4(i: int) -> np.ndarray | None:
        j = int(rng.choice(sorted(sheet.nbrs[i])))
        if not is_plain_c(sheet, j):
            return None
        s = make_si4(sheet, i, j)
        if cfg.relax:
            sheet.relax([s], hops=3)
        reg.new("Si", atoms=[int(sheet.atom_id[s])])
        return sheet.pos[s].copy()

    def stone_wales(i: int) -> np.ndarray | None:
        j = int(rng.choice(sorted(sheet.nbrs[i])))
        if not is_plain_c(sheet, j) or not rotate_bond(sheet, i, j):
            return None
        if cfg.relax:
            sheet.relax([i, j], hops=3)
        reg.new("SW", atoms=[int(sheet.atom_id[i]), int(sheet.atom_id[j])])
        return (sheet.pos[i] + sheet.pos[j]) / 2

    def si3(i: int) -> np.ndarray:
        make_si3(sheet, i)
        if cfg.relax:
            sheet.relax([i], hops=3)
        reg.new("Si", atoms=[int(sheet.atom_id[i])])
        return sheet.pos[i].copy()

    def vacancy(i: int) -> np.ndarray:
        centre = sheet.pos[i].copy()
        nb = make_vacancy(sheet, i)
        reg.new("vacancy", atoms=[int(sheet.atom_id[k]) for k in nb], sites_A=[tuple(centre)])
        return centre

    place("holes", cfg.n_holes, cfg.hole_radius_A, hole)
    place("Si4", cfg.n_si4, 1.5, si4)
    place("Stone-Wales", cfg.n_stone_wales, 1.5, stone_wales)
    place("Si3", cfg.n_si3, 0.0, si3)
    place("vacancies", cfg.n_vacancies, 0.0, vacancy)
    if missing:
        what = ", ".join(f"{n} {k}" for k, n in missing.items())
        warnings.warn(
            f"the field of view ({fov:.1f} Å) had no room for {what}; "
            "use a larger size or smaller min_defect_separation_A",
            stacklevel=3,
        )
    return sample
