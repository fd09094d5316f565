"""What the electron beam does between two frames.

- Holes grow: each hole loses ``Poisson(hole_growth_rate)`` edge atoms, chosen with
  weights favouring low coordination (1-fold ≫ 2-fold ≫ 3-fold) and sparing Si.
- Vacancies appear (``vacancy_rate`` per 1000 Å² per frame); with
  ``vacancy_cluster_prob`` next to an existing vacancy (clusters grow, and large ones
  become holes). A vacancy occasionally (``reconstruct_prob``) rotates a nearby bond,
  leaving a 5-7 pair.
- 3-fold Si exchanges with a neighbouring C (``si_hop_prob``), preferring neighbours
  closer to a hole edge (``si_edge_bias_A``); Si that reaches an edge stays there.
"""

from __future__ import annotations

import numpy as np
from scipy.spatial import cKDTree

from atomlens.simulate.build import Sample
from atomlens.simulate.config import SimConfig
from atomlens.simulate.defects import is_plain_c, prune_dangling, rotate_bond
from atomlens.simulate.sheet import Z_C, Z_SI
from atomlens.simulate.truth import Topology

_REMOVE_WEIGHT = {0: 100.0, 1: 20.0, 2: 1.0}
_SI_SPARE = 0.02


def step(sample: Sample, topo: Topology, cfg: SimConfig, rng: np.random.Generator) -> None:
    """Advance the sample by one frame (in place)."""
    _grow_holes(sample, topo, cfg, rng)
    _new_vacancies(sample, cfg, rng)
    frozen = {s for _, face in topo.holes for s in face}
    _reconstruct(sample, cfg, rng, frozen)
    _hop_si(sample, topo, cfg, rng, frozen)


def _grow_holes(sample: Sample, topo: Topology, cfg: SimConfig, rng: np.random.Generator) -> None:
    sheet = sample.sheet
    for _, face in topo.holes:
        cand = np.array(sorted({s for s in face if sheet.alive[s] and not sheet.protected[s]}))
        n = int(rng.poisson(cfg.hole_growth_rate))
        if n == 0 or len(cand) == 0:
            continue
        w = np.array([_REMOVE_WEIGHT.get(len(sheet.nbrs[s]), 0.05) for s in cand])
        w *= np.where(sheet.z[cand] == Z_SI, _SI_SPARE, 1.0)
        pick = rng.choice(cand, size=min(n, len(cand)), replace=False, p=w / w.sum())
        for s in pick:
            if sheet.alive[s]:
                sheet.remove(int(s))
    prune_dangling(sheet, min_degree=1)


def _inside_fov(sample: Sample, sites: np.ndarray, margin: float = 1.0) -> np.ndarray:
    p = sample.sheet.pos[sites]
    return ((p >= margin) & (p <= sample.fov_A - margin)).all(1)


def _new_vacancies(sample: Sample, cfg: SimConfig, rng: np.random.Generator) -> None:
    sheet, reg = sample.sheet, sample.registry
    n = int(rng.poisson(cfg.vacancy_rate * sample.fov_A**2 / 1000.0))
    for _ in range(n):
        vacancies = reg.of_kind("vacancy")
        site = None
        if vacancies and rng.random() < cfg.vacancy_cluster_prob:
            d = vacancies[int(rng.integers(len(vacancies)))]
            border = [s for s in (sheet.site_of(a) for a in d.atoms) if s is not None]
            border = [s for s in border if sheet.z[s] == Z_C and not sheet.protected[s]]
            if border:
                site = int(rng.choice(sorted(border)))
        if site is None:
            cand = np.flatnonzero(sheet.alive & ~sheet.protected & (sheet.z == Z_C))
            cand = cand[_inside_fov(sample, cand, 2.0)]
            cand = cand[sample.contamination.coverage_at(sheet.pos[cand]) < 0.5]
            if len(cand) == 0:
                return
            for s in rng.permutation(cand)[:50]:
                if is_plain_c(sheet, int(s)):
                    site = int(s)
                    break
            if site is None:
                continue
        _remove_as_vacancy(sample, site)


def _remove_as_vacancy(sample: Sample, site: int) -> None:
    """Remove ``site``; merge with vacancies it bordered, or start a new one."""
    sheet, reg = sample.sheet, sample.registry
    aid = int(sheet.atom_id[site])
    centre = tuple(sheet.pos[site])
    nb_ids = [int(sheet.atom_id[k]) for k in sorted(sheet.nbrs[site])]
    touching = [d for d in reg.of_kind("vacancy") if aid in d.atoms]
    sheet.remove(site)
    if not touching:
        reg.new("vacancy", atoms=nb_ids, sites_A=[centre])
        return
    keep = min(touching, key=lambda d: d.defect_id)
    for d in touching:
        if d is not keep:
            keep.atoms += d.atoms
            keep.sites_A += d.sites_A
            reg.retire(d)
    keep.atoms = sorted(set(a for a in keep.atoms + nb_ids if a != aid))
    keep.sites_A.append(centre)
    prune_dangling(sheet, min_degree=1)  # atoms left dangling inside a cluster leave too


def _reconstruct(
    sample: Sample, cfg: SimConfig, rng: np.random.Generator, frozen: set[int]
) -> None:
    sheet, reg = sample.sheet, sample.registry
    busy = reg.core_ids("SW", "5-7")
    for d in reg.of_kind("vacancy"):
        if rng.random() >= cfg.reconstruct_prob:
            continue
        border = {s for s in (sheet.site_of(a) for a in d.atoms) if s is not None}
        bonds = sorted(
            {
                (min(p, q), max(p, q))
                for b in border
                for p in sheet.nbrs[b]
                for q in sheet.nbrs[p]
                if p not in border
                and q not in border
                and sheet.z[p] == Z_C
                and sheet.z[q] == Z_C
                and len(sheet.nbrs[p]) == 3
                and len(sheet.nbrs[q]) == 3
                and not sheet.protected[p]
                and not sheet.protected[q]
                and int(sheet.atom_id[p]) not in busy
                and int(sheet.atom_id[q]) not in busy
            }
        )
        for k in rng.permutation(len(bonds)):
            p, q = bonds[k]
            if rotate_bond(sheet, p, q):
                if cfg.relax:
                    sheet.relax([p, q], hops=2, n_iter=60, frozen=frozen)
                reg.new("5-7", atoms=[int(sheet.atom_id[p]), int(sheet.atom_id[q])])
                break


def _hop_si(
    sample: Sample, topo: Topology, cfg: SimConfig, rng: np.random.Generator, frozen: set[int]
) -> None:
    sheet, reg = sample.sheet, sample.registry
    busy = reg.core_ids("SW", "5-7", "vacancy", "Si")
    edge_sites = np.flatnonzero(topo.edge & sheet.alive)
    tree = cKDTree(sheet.pos[edge_sites]) if len(edge_sites) and cfg.si_edge_bias_A > 0 else None
    for d in reg.of_kind("Si"):
        s = sheet.site_of(d.atoms[0]) if d.atoms else None
        if s is None or len(sheet.nbrs[s]) != 3 or topo.edge[s]:
            continue
        if rng.random() >= cfg.si_hop_prob:
            continue
        nb = np.array(
            [
                k
                for k in sorted(sheet.nbrs[s])
                if sheet.z[k] == Z_C
                and len(sheet.nbrs[k]) >= 2
                and not sheet.protected[k]
                and int(sheet.atom_id[k]) not in busy
            ]
        )
        if len(nb) == 0:
            continue
        if tree is not None:
            dist, _ = tree.query(sheet.pos[np.append(nb, s)], k=1)
            w = np.exp(-(dist[:-1] - dist[-1]) / cfg.si_edge_bias_A)
        else:
            w = np.ones(len(nb))
        k = int(rng.choice(nb, p=w / w.sum()))
        sheet.swap(s, k)
        if cfg.relax:
            sheet.relax([s, k], hops=2, n_iter=60, frozen=frozen)
