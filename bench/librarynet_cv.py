"""Cross-validate the Si-neighbour search settings on the LibraryNet patches; prints JSON.

Each of the 79 patches (../shared/data/real/librarynet_dev) is detected once with the
neighbour search off, at the pixel size of AtomLens' own calibration; then the local
test-time-augmented pass around each Si (:mod:`atomlens.atoms.site_tta`, its default
settings but the threshold on the averaged map: off, or each of ``TTA_THRESHOLDS``;
the maps are computed once per patch) and the ring search
(:func:`atomlens.atoms.halo.add_si_neighbours`) are applied with each setting of a grid:
``tta`` x ``min_ratio`` x ``position`` (final C position: Gaussian refit or centroid) x
``radius_prior`` (weight of the Si's found bond length in the C's distance: 0, 0.5, 1) x
``min_sep_deg`` (smallest angle between two Si-C bonds: 60° or 75°) x ``search`` (ring
profile or 2-D maxima). ``local_pass_off`` in the output: the same folds choosing among
the ring settings alone (the figures before the local pass).

Optional outer dimensions (each listed value joins the grid; the first is the default):
``--calib lattice,bond`` (the pixel size rescaled so that the detected C-C bonds away
from the Si are 1.42 Å, :mod:`atomlens.chem.bond_scale`, then everything detected and
scored again at it), ``--bonds A,local`` (the Si coordination counted with the bond
cutoffs at the pixel size implied by the patch's own C-C bonds: cutoffs in bond units)
and ``--pairs off,0.8,0.9,1.0`` (after the ring search, of two C closer than that many
Å beside a Si the one the test-time-averaged map prefers stays,
:func:`atomlens.atoms.site_tta.resolve_close_pairs`; only with the local pass on).
``--motif off,rigid,flex,lattice`` (after the ring search and the close-pair check, the
motif hypothesis test at each isolated Si, :mod:`atomlens.atoms.si_motif`, mode
"count": "rigid" the ideal Si1C3 / Si1C4 directions, "flex" each C's direction free
under a 15° Gaussian prior, "lattice" as flex with the rotation tied to the patch's
C-C bond directions; the decisions are computed once per patch and Si). Measured
2026-12-05 (``--motif off,rigid,flex,lattice``, the default tta grid, ratios
1.0,0.8,0.6,0.5,0.35,0.25,0.15): no fold chose a motif test; held out 73/79, 41/44
(92.3 ± 7.4 %, 93.2 ± 9.7 %), as without it; held at one value: rigid 72/79, 37/44
(91.3 ± 8.5 %, 84.7 ± 9.0 %), flex 71/79, 38/44 (90.0 ± 8.6 %, 86.9 ± 8.3 %), lattice
72/79, 40/44 (91.1 ± 9.4 %, 91.0 ± 9.2 %); all 79 at detection's ring and local-pass
defaults: off 74/79, 41/44, rigid 74, 37, flex 72, 38, lattice 73, 40 (it turns
correct Si1C3 into Si1C4 and fixes none of the failures).
``--gap off,on`` (the Si coordination counted with chem.bonds.SIM_SI_RULES: minimum
Si-C distance 1.0 Å, 4th bond into a >= 160° gap up to 2.35 Å, 4-bond shape check at
115°, every threshold chosen on simulated sites by bench/si_bond_rules.py). Measured
2026-12-05 (ratios 1.0,0.8,0.6,0.5,0.35,0.25,0.15): every fold chose off, held out
73/79, 41/44 (92.3 ± 7.4 %, 93.2 ± 9.7 %); held on 71/79, 39/44 (89.8 ± 10.4 %,
88.9 ± 14.9 %); all 79 at detection's defaults 41/44 off, 40/44 on.
``fixed_<dimension>_<value>``: the same folds with that dimension held at one value.
Measured 2026-12-05 (``--calib lattice,bond --bonds A,local --pairs off,0.8,0.9,1.0``,
ratios 1.0,0.8,0.6,0.5,0.35,0.25,0.15), held-out pooled all found / coordination right:
lattice, Å bonds, no pair check 73/79, 41/44 (92.3 ± 7.4 %, 93.2 ± 9.7 %); the whole
grid 72/79, 41/44 (one fold took the bond calibration); bond calibration alone
71/79, 41/44; bonds in local bond units 70/79, 40/44; pair check 1.0 Å 73/79, 41/44,
0.8 or 0.9 Å 72/79, 41/44. None of them is used by detection.

Folds: 5 folds by *site*, stratified by motif. Some patches are crops of the same frame
around the same Si (identical labelled Si-C offsets, or one image a shifted copy of the
other: 229/230, 437/440, 456/458, 477/478, 195/196/382); such patches form one group
and go to one fold, so a site is never both trained and scored on. Groups of each motif
are shuffled with seed 0 and dealt round-robin. For each fold the setting that maximises
(patches with every labelled atom found + Si1C3/Si1C4 patches with the coordination
right) on the other 4 folds is chosen (ties: the first in grid order: the lattice
calibration, bonds in Å, no pair check, the local pass off, then the highest threshold,
``profile``, ``fit``, no prior, 60°, the largest ratio) and scored on the held-out fold.

Usage: .venv/bin/python bench/librarynet_cv.py [--threads 1] [--folds 5] [--tta off,0.5,0.4,0.3]
       [--ratios 1.0,0.8,0.6,0.5,0.35,0.25,0.15] [--calib lattice,bond] [--bonds A,local]
       [--pairs off,0.8,0.9,1.0] [--motif off,rigid,flex,lattice] [--gap off,on]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from detect import LIBRARYNET, calibrated_pixel_size, score_librarynet_patch  # noqa: E402

RATIOS = np.round(np.arange(1.0, 0.149, -0.05), 2)
#: Thresholds of the local test-time-augmented pass (None: off) on the averaged maps.
TTA_THRESHOLDS: tuple[float | None, ...] = (None, 0.5, 0.4, 0.3)


def ring_grid(ratios: np.ndarray = RATIOS) -> list[dict]:
    """The ring-search settings: search x position x prior x min angle x ratio."""
    return [
        {
            "min_ratio": float(r),
            "position": pos,
            "search": srch,
            "radius_prior": w,
            "min_sep_deg": m,
        }
        for srch in ("profile", "2d")
        for pos in ("fit", "centroid")
        for w in (0.0, 0.5, 1.0)
        for m in (60.0, 75.0)
        for r in ratios
    ]


#: Pixel size of a patch: "lattice" (AtomLens' calibration alone) or "bond" (then
#: rescaled so that the detected C-C bonds away from the Si are 1.42 Å, and detected
#: again: :mod:`atomlens.chem.bond_scale`).
CALIBS: tuple[str, ...] = ("lattice", "bond")
#: Pixel size of the bond rule (the Si coordination): "A" (the patch's pixel size) or
#: "local" (the one implied by the patch's own C-C bonds: a cutoff in bond units).
BOND_RULES: tuple[str, ...] = ("A", "local")
#: Close-pair check after the ring search (atoms.site_tta.resolve_close_pairs): two C
#: closer than this (Å) beside a Si, the one the averaged map prefers stays (None: off).
PAIR_SEPS: tuple[float | None, ...] = (None, 0.8, 0.9, 1.0)
#: Si bond rules of the coordination count (chem.bonds.SiRules): "off" (none) or "on"
#: (chem.bonds.SIM_SI_RULES, every threshold chosen on simulated sites, never here).
GAPS: tuple[str, ...] = ("off", "on")
#: Motif hypothesis test after the ring search (atoms.si_motif.apply_motifs, mode
#: "count"): "off", "rigid" (ideal directions), "flex" (15° prior on each direction) or
#: "lattice" (as flex, the rotation within 5° of the patch's C-C bond directions).
MOTIFS_CV: tuple[str, ...] = ("off", "rigid", "flex", "lattice")


def motif_settings(name: str):
    """The :class:`atomlens.atoms.si_motif.MotifSettings` of a ``--motif`` value (None:
    off)."""
    from atomlens.atoms.si_motif import MotifSettings

    return {
        "off": None,
        "rigid": MotifSettings(),
        "flex": MotifSettings(angle_sd_deg=15.0),
        "lattice": MotifSettings(angle_sd_deg=15.0, lattice_tol_deg=5.0),
    }[name]


def grid(
    tta: tuple[float | None, ...] = TTA_THRESHOLDS,
    ratios: np.ndarray = RATIOS,
    calibs: tuple[str, ...] = ("lattice",),
    bonds: tuple[str, ...] = ("A",),
    pairs: tuple[float | None, ...] = (None,),
    motifs: tuple[str, ...] = ("off",),
    gaps: tuple[str, ...] = ("off",),
) -> list[dict]:
    """Every (calibration, bond rule, Si bond rules, close-pair check, motif test, local
    pass threshold, ring setting), outermost first."""
    return [
        {"calib": c, "bonds": b, "gap": s, "pairs": q, "motif": m, "tta": t, **g}
        for c in calibs
        for b in bonds
        for s in gaps
        for q in pairs
        for m in motifs
        for t in tta
        for g in ring_grid(ratios)
    ]


def _label(t: dict) -> str:
    tta = "off" if t["tta"] is None else f"{t['tta']}"
    return (
        f"{t['calib']}/bonds{t['bonds']}/gap{t['gap']}/pairs{t['pairs']}/motif{t['motif']}/tta{tta}/{t['search']}/{t['position']}/prior{t['radius_prior']}/"
        f"sep{t['min_sep_deg']:.0f}/{t['min_ratio']}"
    )


def _site_vectors(path: Path) -> list[np.ndarray]:
    """Per labelled Si of a patch: the offsets (px, sorted) of the labelled atoms within
    1.3x its nearest labelled neighbour's distance (its bonded C, in pixels: no pixel
    size needed)."""
    d = np.load(path, allow_pickle=True)
    ref = np.c_[d["atom_row"], d["atom_col"]].astype(float)
    el = np.asarray(d["atom_element"]).astype(str)
    out = []
    for si in ref[el == "Si"]:
        v = ref - si
        r = np.hypot(*v.T)
        if not (r > 0).any():
            continue
        v = v[(r > 0) & (r <= 1.3 * r[r > 0].min())]
        out.append(v[np.lexsort(v.T[::-1])])
    return out


def site_groups(files: list[Path]) -> dict[str, str]:
    """File name -> group name (the group's first file): patches sharing a labelled Si
    site (the same Si-neighbour offsets within 0.3 px) or showing the same image
    (correlation > 0.95 after the best integer shift) are one group."""
    from skimage.registration import phase_cross_correlation

    names = [f.name for f in files]
    parent = {n: n for n in names}

    def root(n: str) -> str:
        while parent[n] != n:
            n = parent[n]
        return n

    vec = {f.name: _site_vectors(f) for f in files}
    img = {f.name: np.load(f)["image"].astype(float) for f in files}
    for i, a in enumerate(names):
        for b in names[i + 1 :]:
            same = any(
                va.shape == vb.shape and np.abs(va - vb).max() < 0.3
                for va in vec[a]
                for vb in vec[b]
            )
            if not same and img[a].shape == img[b].shape:
                sh, _, _ = phase_cross_correlation(img[a], img[b], normalization=None)
                sy, sx = (int(v) for v in sh)
                h, w = img[a].shape
                pa = img[a][max(sy, 0) : h + min(sy, 0), max(sx, 0) : w + min(sx, 0)]
                pb = img[b][max(-sy, 0) : h + min(-sy, 0), max(-sx, 0) : w + min(-sx, 0)]
                same = pa.size > 0.2 * h * w and np.corrcoef(pa.ravel(), pb.ravel())[0, 1] > 0.95
            if same:
                parent[root(b)] = root(a)
    return {n: root(n) for n in names}


def folds_by_site(files: list[Path], k: int, seed: int = 0) -> dict[str, int]:
    """File name -> fold: groups of :func:`site_groups` dealt round-robin, stratified by
    the motif in the group's first name (Si1C3_187 -> Si1C3)."""
    rng = np.random.default_rng(seed)
    group = site_groups(files)
    heads = sorted(set(group.values()))
    kinds = sorted({h.split("_")[0] for h in heads})
    fold_of, start = {}, 0
    for kind in kinds:
        mine = [h for h in heads if h.split("_")[0] == kind]
        rng.shuffle(mine)
        for j, h in enumerate(mine):
            fold_of[h] = (start + j) % k
        start += len(mine)  # small motifs do not all land in fold 0
    return {n: fold_of[g] for n, g in group.items()}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--folds", type=int, default=5)
    p.add_argument(
        "--tta",
        default=",".join("off" if t is None else str(t) for t in TTA_THRESHOLDS),
        help="thresholds of the local test-time-augmented pass to include ('off': none)",
    )
    p.add_argument(
        "--calib",
        default="lattice",
        help="pixel sizes to include: 'lattice' (calibration) and/or 'bond' (rescaled to "
        "1.42 Å C-C bonds, then detected again), comma-separated",
    )
    p.add_argument(
        "--bonds",
        default="A",
        help="bond rules to include: 'A' (cutoffs in Å at the patch's pixel size) and/or "
        "'local' (at the pixel size implied by the patch's C-C bonds)",
    )
    p.add_argument(
        "--pairs",
        default="off",
        help="close-pair check separations (Å) to include ('off': none), comma-separated",
    )
    p.add_argument(
        "--motif",
        default="off",
        help=f"motif tests to include ({', '.join(MOTIFS_CV)}), comma-separated",
    )
    p.add_argument(
        "--gap",
        default="off",
        help="Si bond rules of the coordination count to include: 'off' and/or 'on' "
        "(chem.bonds.SIM_SI_RULES: minimum Si-C distance, 4th bond into a divacancy gap, "
        "4-bond shape check; chosen on the simulator), comma-separated",
    )
    p.add_argument(
        "--ratios",
        default="",
        help="min_ratio values of the ring grid, comma-separated (default: 1.0 to 0.15 "
        "in steps of 0.05; fewer values run faster)",
    )
    args = p.parse_args()
    ttas = tuple(None if v == "off" else float(v) for v in args.tta.split(","))
    ratios = np.array([float(v) for v in args.ratios.split(",")]) if args.ratios else RATIOS
    calibs = tuple(args.calib.split(","))
    bond_rules = tuple(args.bonds.split(","))
    if set(calibs) - set(CALIBS) or set(bond_rules) - set(BOND_RULES):
        raise SystemExit(f"--calib takes {CALIBS}, --bonds {BOND_RULES}")
    pair_seps = tuple(None if v == "off" else float(v) for v in args.pairs.split(","))
    motifs = tuple(args.motif.split(","))
    gaps = tuple(args.gap.split(","))
    if set(gaps) - set(GAPS):
        raise SystemExit(f"--gap takes {GAPS}")
    if set(motifs) - set(MOTIFS_CV):
        raise SystemExit(f"--motif takes {MOTIFS_CV}")
    GRID = grid(ttas, ratios, calibs, bond_rules, pair_seps, motifs, gaps)
    import torch

    from atomlens.atoms import detect
    from atomlens.atoms.halo import RingSettings, add_si_neighbours
    from atomlens.atoms.si_motif import apply_motifs
    from atomlens.atoms.site_tta import (
        DEFAULT_TTA,
        refind_si_sites,
        resolve_close_pairs,
        site_maps,
    )
    from atomlens.chem.bond_scale import table_bond_scale
    from atomlens.chem.bonds import SIM_SI_RULES, SiRules

    si_rules = {"off": SiRules(), "on": SIM_SI_RULES}
    from atomlens.segment.model_file import load_detector

    torch.set_num_threads(args.threads)
    det = load_detector(None)
    base = RingSettings()
    files = sorted(LIBRARYNET.glob("*.npz"))
    if not files:
        raise SystemExit(f"no LibraryNet patches in {LIBRARYNET}")
    table: dict[str, list[tuple[bool, bool | None]]] = {}
    pixel_sizes: dict[str, dict[str, float]] = {}
    for f in files:
        img = np.load(f)["image"]
        ps0, _ = calibrated_pixel_size(img)
        per_calib = {}
        for calib in calibs:
            ps = ps0
            if calib == "bond":
                a0 = detect(img, det, pixel_size=ps0, si_neighbours="off").atoms
                bs = table_bond_scale(a0, ps0, img.shape)
                if np.isfinite(bs.pixel_size) and abs(bs.pixel_size / ps0 - 1) <= 0.15:
                    ps = bs.pixel_size
            a = detect(img, det, pixel_size=ps, si_neighbours="off").atoms
            si = a[a["cls"].astype(str) == "Si"][["y", "x"]].to_numpy(float)
            maps = site_maps(img, si, det, ps, DEFAULT_TTA) if any(ttas) else None
            local = {
                th: a
                if th is None
                else refind_si_sites(a, img, det, ps, replace(DEFAULT_TTA, threshold=th), maps=maps)
                for th in ttas
            }
            per_calib[calib] = (ps, a, local, maps)
        pixel_sizes[f.name] = {c: round(v[0], 5) for c, v in per_calib.items()}
        row, scores, rings = [], {}, {}
        motif_cache: dict[tuple, dict] = {}  # per (calibration, motif): Si decisions
        for t in [None, *GRID]:
            calib = calibs[0] if t is None else t["calib"]
            ps, a, local, maps = per_calib[calib]
            if t is None:
                b = a
            else:
                ring = {
                    k: v
                    for k, v in t.items()
                    if k not in ("tta", "calib", "bonds", "gap", "pairs", "motif")
                }
                rk = (calib, t["tta"], *ring.items())  # the bond rule does not change it
                if rk not in rings:
                    rings[rk] = add_si_neighbours(
                        local[t["tta"]], img, ps, settings=replace(base, **ring)
                    )
                b = rings[rk]
                if t["pairs"] is not None and t["tta"] is not None:  # needs the pass' maps
                    pk = (*rk, t["pairs"])
                    if pk not in rings:
                        rings[pk] = resolve_close_pairs(b, maps, ps, t["pairs"])
                    b = rings[pk]
                if t["motif"] != "off":
                    mk = (*rk, t["pairs"], t["motif"])
                    if mk not in rings:
                        rings[mk] = apply_motifs(
                            b,
                            img,
                            ps,
                            motif_settings(t["motif"]),
                            cache=motif_cache.setdefault((calib, t["motif"]), {}),
                        )[0]
                    b = rings[mk]
            yx, cls = b[["y", "x"]].to_numpy(float), b["cls"].astype(str).to_numpy()
            rule = "A" if t is None else t["bonds"]
            gap = "off" if t is None else t["gap"]
            key = (calib, rule, gap, yx.tobytes(), "/".join(cls))  # many settings: the same table
            if key not in scores:
                bps = None
                if rule == "local":
                    bps = table_bond_scale(b, ps, img.shape).pixel_size
                    bps = bps if np.isfinite(bps) else None
                sc = score_librarynet_patch(f, yx, cls, ps, bps, si_rules[gap])
                scores[key] = (sc["all_found"], sc.get("coordination_right"))
            row.append(scores[key])
        table[f.name] = row
    fold = folds_by_site(files, args.folds)
    groups = site_groups(files)

    def score(names: list[str], i: int) -> tuple[int, int, int]:
        af = sum(table[n][i][0] for n in names)
        coord = [table[n][i][1] for n in names if table[n][i][1] is not None]
        return af, sum(coord), len(coord)

    names = sorted(table)
    out: dict = {
        "patches": len(names),
        "tta_thresholds": list(ttas),
        "calibs": list(calibs),
        "bond_rules": list(bond_rules),
        "pair_seps": list(pair_seps),
        "motifs": list(motifs),
        "gaps": list(gaps),
        "ratios": [float(r) for r in ratios],
        "split": f"{args.folds} folds by site (crops of one Si site in one fold), "
        "stratified by motif (seed 0)",
        "site_groups": sorted(
            sorted(n for n in names if groups[n] == g)
            for g in set(groups.values())
            if sum(groups[n] == g for n in names) > 1
        ),
        "off": dict(zip(("all_found", "coord_right", "n_coord"), score(names, 0))),
        "grid_all_patches": {
            _label(t): dict(zip(("all_found", "coord_right", "n_coord"), score(names, i + 1)))
            for i, t in enumerate(GRID)
        },
    }

    def cross_validate(idx: list[int]) -> dict:
        """Held-out figures when each fold picks its setting among grid rows ``idx``."""
        res: dict = {"folds": []}
        for k in range(args.folds):
            train = [n for n in names if fold[n] != k]
            test = [n for n in names if fold[n] == k]
            tot = [sum(score(train, i + 1)[:2]) for i in idx]
            best = idx[tot.index(max(tot))]
            af, cr, nc = score(test, best + 1)
            af0, cr0, _ = score(test, 0)
            res["folds"].append(
                {
                    "fold": k,
                    "test_files": len(test),
                    "setting": GRID[best],
                    "all_found": f"{af}/{len(test)}",
                    "coord_right": f"{cr}/{nc}",
                    "off_all_found": f"{af0}/{len(test)}",
                    "off_coord_right": f"{cr0}/{nc}",
                    "_af": af / len(test),
                    "_cr": cr / max(nc, 1),
                }
            )
        af = np.array([f.pop("_af") for f in res["folds"]])
        cr = np.array([f.pop("_cr") for f in res["folds"]])
        res["cv_all_found_pct"] = {
            "mean": round(100 * af.mean(), 1),
            "sd": round(100 * af.std(), 1),
        }
        res["cv_coord_right_pct"] = {
            "mean": round(100 * cr.mean(), 1),
            "sd": round(100 * cr.std(), 1),
        }
        pooled = [int(f["all_found"].split("/")[0]) for f in res["folds"]]
        pooled_c = [tuple(map(int, f["coord_right"].split("/"))) for f in res["folds"]]
        res["cv_pooled"] = {
            "all_found": f"{sum(pooled)}/{len(names)}",
            "coord_right": f"{sum(c for c, _ in pooled_c)}/{sum(n for _, n in pooled_c)}",
        }
        return res

    out.update(cross_validate(list(range(len(GRID)))))
    if None in ttas and len(ttas) > 1:  # the same folds choosing among ring settings only
        out["local_pass_off"] = cross_validate(
            [i for i, t in enumerate(GRID) if t["tta"] is None and t["calib"] == calibs[0]]
        )
    if any(len(v) > 1 for v in (calibs, bond_rules, pair_seps, motifs, gaps)):
        # the same folds with each new dimension held at one value
        out["lattice_calibration_bonds_A_no_pair_check"] = cross_validate(
            [
                i
                for i, t in enumerate(GRID)
                if t["calib"] == "lattice"
                and t["bonds"] == "A"
                and t["gap"] == "off"
                and t["pairs"] is None
                and t["motif"] == "off"
            ]
        )
        for key, values in (
            ("calib", calibs),
            ("bonds", bond_rules),
            ("pairs", pair_seps),
            ("motif", motifs),
            ("gap", gaps),
        ):
            if len(values) > 1:
                for v in values:
                    out[f"fixed_{key}_{v}"] = cross_validate(
                        [i for i, t in enumerate(GRID) if t[key] == v]
                    )
    out["pixel_sizes"] = pixel_sizes
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
