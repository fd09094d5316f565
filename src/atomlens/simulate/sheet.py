"""The mutable atomic sheet: sites, the atoms on them, and the bond graph.

A *site* is a row of the arrays (its position in Å, sample frame). An *atom* is the
identity on a site (``atom_id``, species ``z``); a Si hop exchanges the identities of two
bonded sites, so ids persist while positions stay with the lattice. Bonds are the
construction topology with every defect operation applied (never re-derived from noisy
positions).
"""

from __future__ import annotations

from collections import deque

import numpy as np

from atomlens.simulate.lattice import CC_BOND_A

Z_C, Z_SI = 6, 14
SI3_C_BOND_A = 1.77
"""In-plane Si-C bond target for 3-fold (and edge) Si, Å."""
SI4_C_BOND_A = 1.88
"""Si-C bond of 4-fold Si in a divacancy, Å (the unrelaxed geometry gives 1.88)."""


class Sheet:
    """Sites with positions ``pos`` (N, 2) Å, species ``z``, ``atom_id``, ``sublattice``
    (0/1, -1 undefined), ``grain``, ``alive`` and ``protected`` (never removed), plus
    neighbour sets ``nbrs``."""

    def __init__(
        self,
        pos: np.ndarray,
        sublattice: np.ndarray,
        grain: np.ndarray,
        edges: np.ndarray,
        protected: np.ndarray,
    ) -> None:
        n = len(pos)
        self.pos = np.asarray(pos, float).copy()
        self.z = np.full(n, Z_C, dtype=np.int64)
        self.atom_id = np.arange(n, dtype=np.int64)
        self.sublattice = np.asarray(sublattice, np.int64).copy()
        self.grain = np.asarray(grain, np.int64).copy()
        self.alive = np.ones(n, bool)
        self.protected = np.asarray(protected, bool).copy()
        self.nbrs: list[set[int]] = [set() for _ in range(n)]
        for a, b in np.asarray(edges, np.int64).reshape(-1, 2):
            self.bond(int(a), int(b))
        self._site_of = {int(i): int(i) for i in range(n)}
        self.next_id = n

    # ---- graph edits
    def bond(self, i: int, j: int) -> None:
        self.nbrs[i].add(j)
        self.nbrs[j].add(i)

    def unbond(self, i: int, j: int) -> None:
        self.nbrs[i].discard(j)
        self.nbrs[j].discard(i)

    def remove(self, i: int) -> None:
        """Remove the atom on site ``i`` (and its bonds)."""
        for j in list(self.nbrs[i]):
            self.unbond(i, j)
        self.alive[i] = False
        self._site_of.pop(int(self.atom_id[i]), None)

    def add_site(self, yx: np.ndarray, z: int, sublattice: int = -1, grain: int = 0) -> int:
        """Append a site holding a new atom; returns the site index."""
        self.pos = np.vstack([self.pos, np.asarray(yx, float)[None]])
        self.z = np.append(self.z, z)
        self.atom_id = np.append(self.atom_id, self.next_id)
        self.sublattice = np.append(self.sublattice, sublattice)
        self.grain = np.append(self.grain, grain)
        self.alive = np.append(self.alive, True)
        self.protected = np.append(self.protected, False)
        self.nbrs.append(set())
        i = len(self.pos) - 1
        self._site_of[int(self.next_id)] = i
        self.next_id += 1
        return i

    def swap(self, i: int, j: int) -> None:
        """Exchange the atoms (id and species) on sites ``i`` and ``j``."""
        for arr in (self.z, self.atom_id):
            arr[i], arr[j] = arr[j], arr[i]
        self._site_of[int(self.atom_id[i])] = i
        self._site_of[int(self.atom_id[j])] = j

    # ---- queries
    def site_of(self, atom_id: int) -> int | None:
        """Site index of a living atom, or ``None`` once it is gone."""
        return self._site_of.get(int(atom_id))

    def degree(self) -> np.ndarray:
        """(N,) number of bonds of each site (0 for dead sites)."""
        return np.fromiter((len(s) for s in self.nbrs), dtype=np.int64, count=len(self.nbrs))

    def edges(self) -> np.ndarray:
        """(E, 2) bonded site pairs, ``i < j``, sorted."""
        pairs = [(i, j) for i in np.flatnonzero(self.alive) for j in self.nbrs[i] if i < j]
        if not pairs:
            return np.zeros((0, 2), np.int64)
        e = np.array(pairs, dtype=np.int64)
        return e[np.lexsort((e[:, 1], e[:, 0]))]

    def neighbourhood(self, sites: list[int] | np.ndarray, hops: int) -> np.ndarray:
        """Sites within ``hops`` bonds of any of ``sites`` (the sites included)."""
        seen = {int(s) for s in sites}
        queue = deque((int(s), 0) for s in sites)
        while queue:
            i, h = queue.popleft()
            if h == hops:
                continue
            for j in self.nbrs[i]:
                if j not in seen:
                    seen.add(j)
                    queue.append((j, h + 1))
        return np.array(sorted(seen), dtype=np.int64)

    # ---- geometry
    def bond_target(self, i: int, j: int) -> float:
        """Target length (Å) of bond i-j from the species and Si coordination."""
        si = [k for k in (i, j) if self.z[k] == Z_SI]
        if not si:
            return CC_BOND_A
        if len(si) == 2:
            return 2.3
        return SI4_C_BOND_A if len(self.nbrs[si[0]]) >= 4 else SI3_C_BOND_A

    def relax(
        self,
        changed: list[int] | np.ndarray,
        hops: int = 3,
        n_iter: int = 80,
        frozen: set[int] | None = None,
    ) -> None:
        """Move sites within ``hops`` bonds of ``changed`` toward their bond targets
        (springs on bonds, weaker springs on second neighbours for 120° angles).
        Under-coordinated sites, their neighbours and ``frozen`` sites do not move."""
        mobile = self.neighbourhood([int(c) for c in changed if self.alive[c]], hops)
        # under-coordinated atoms (hole edges, vacancy neighbours), their neighbours and
        # ``frozen`` sites stay put, so relaxing a defect never shrinks a hole
        deg = self.degree()
        still = set(frozen or ()) | {
            int(j) for i in mobile if deg[i] < 3 for j in (*self.nbrs[i], i)
        }
        mobile = np.array([m for m in mobile if int(m) not in still], dtype=np.int64)
        if len(mobile) == 0:
            return
        involved = self.neighbourhood(mobile, 1)
        local = {int(s): k for k, s in enumerate(involved)}
        is_mobile = np.isin(involved, mobile)
        ii, jj, ll, kk = [], [], [], []
        for s in involved:
            nb = sorted(self.nbrs[s])
            for t in nb:
                if t in local and s < t and (is_mobile[local[s]] or is_mobile[local[t]]):
                    ii.append(local[s])
                    jj.append(local[t])
                    ll.append(self.bond_target(s, t))
                    kk.append(1.0)
            if self.z[s] == Z_SI and len(nb) >= 4:
                continue  # no 120° angle rule around 4-fold Si
            for a in range(len(nb)):
                for b in range(a + 1, len(nb)):
                    p, q = nb[a], nb[b]
                    if p in local and q in local and (is_mobile[local[p]] or is_mobile[local[q]]):
                        l1, l2 = self.bond_target(s, p), self.bond_target(s, q)
                        ii.append(local[p])
                        jj.append(local[q])
                        ll.append(float(np.sqrt(l1 * l1 + l2 * l2 + l1 * l2)))
                        kk.append(0.25)
        if not ii:
            return
        i_arr, j_arr = np.array(ii), np.array(jj)
        target, stiff = np.array(ll), np.array(kk)
        p = self.pos[involved].copy()
        m = is_mobile.astype(float)[:, None]
        n = len(involved)
        for _ in range(n_iter):
            d = p[j_arr] - p[i_arr]
            length = np.maximum(np.linalg.norm(d, axis=1), 1e-6)
            f = (stiff * (length - target) / length)[:, None] * d  # pulls i toward j if stretched
            force = np.zeros((n, 2))
            np.add.at(force, i_arr, f)
            np.add.at(force, j_arr, -f)
            p += 0.12 * force * m
        self.pos[involved] = p
