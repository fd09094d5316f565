"""Choose the Si bond rules (chem.bonds.SiRules) on simulated sites; prints JSON.

Sites: one Si motif per 20 Å frame (Si1C3, Si1C4 twice as often as Si2C4, Si2C6, Si3C6;
kind = seed mod 7), built and probe-rendered by :mod:`atomlens.simulate.si_site` (the
simulator's motif builder) at a pixel size drawn from 0.05-0.2 Å/px with one of three
imagings (seed mod 3): the dopant tests' corrected probe (``si_site.SITE_IMAGING``), the
ring-search test's strong halo (Si 8x a C, C3 = 3 µm, C-peak SNR 3), or
:meth:`Imaging.random` (scan distortion, afterglow, line gain / dropout, quantisation)
with the SNR drawn 3-30 and no contamination or amorphous film. Each frame is detected as LibraryNet is: the shipped
graphene model with ``si_neighbours="auto"`` (the local test-time-augmented pass and
the ring search). The truth coordination of each Si is the plain cutoffs' on the exact
positions; a site is right when every Si is matched (a detected Si within 0.5 Å) with
that coordination.

``--choose`` seeds (default 10000-10839) give the grid (each rule alone, thresholds
swept); ``--score`` seeds (default 20000-20839, never used for a choice) give the
held-out figures of :data:`atomlens.chem.bonds.SIM_SI_RULES` and of each rule alone.
Measured 2026-12-05 (1 thread, ~8 min per 840 sites): see docs/detection.md and the
SIM_SI_RULES comment. ``--low-dose --pixel-sizes 0.15,0.16,0.17 --choose 30000:30420
--score 40000:40420`` (a LibraryNet-like domain, never used for the choice): held out
Si1C3+Si1C4 189 -> 221/240 (Si1C4 73 -> 106/120: halo duplicates 0.8-1.0 Å from the Si),
clusters 165/180 either way, one Si1C3 broken (without the rules 73/120 simulated
Si1C4 right there; real LibraryNet: 3/4 Si1C4, 38/40 Si1C3, with the rules 3/4, 37/40).

Usage: .venv/bin/python bench/si_bond_rules.py [--choose 10000:10840] [--score 20000:20840]
       [--threads 1] [--cache DIR] [--pixel-sizes 0.05,...] [--low-dose]
"""

from __future__ import annotations

import argparse
import json
import pickle
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd

KINDS = ("Si1C3", "Si1C3", "Si1C4", "Si1C4", "Si2C4", "Si2C6", "Si3C6")
PIXEL_SIZES = (0.05, 0.07, 0.09, 0.11, 0.13, 0.16, 0.2)


def _imaging(
    mode: int, rng: np.random.Generator, pixel_size: float, snr: tuple[float, float] = (3, 30)
):
    from atomlens.simulate import Probe
    from atomlens.simulate.si_site import SITE_IMAGING
    from atomlens.simulate.training import Imaging

    if mode == 0:  # the dopant tests' corrected probe
        return SITE_IMAGING
    if mode == 1:  # tests/test_halo.py: a strong halo
        return Imaging(
            probe=Probe(alpha_mrad=31, defocus_A=5, Cs_A=3e4, source_fwhm_A=0.7),
            si_ratio=8.0,
            snr=3.0,
        )
    im = Imaging.random(rng, pixel_size)
    c_snr = float(np.exp(rng.uniform(np.log(snr[0]), np.log(snr[1]))))
    return replace(im, snr=c_snr, contamination=0.0, amorphous=0.0)


def detect_sites(
    seeds: range,
    det,
    pixel_sizes: tuple[float, ...] = PIXEL_SIZES,
    random_only: bool = False,
    snr: tuple[float, float] = (3, 30),
) -> list[dict]:
    """Render and detect one site per seed: truth and detected tables (pixels).
    ``random_only``: every site with the random imaging (SNR log-uniform in ``snr``)."""
    from atomlens.atoms import detect
    from atomlens.simulate.si_site import render_si_site

    rows = []
    for s in seeds:
        rng = np.random.default_rng(s)
        kind = KINDS[s % len(KINDS)]
        ps = float(rng.choice(pixel_sizes))
        imaging = _imaging(2 if random_only else s % 3, rng, ps, snr)
        try:
            img, yx, sp = render_si_site(kind, s, ps, 20.0, imaging)
        except ValueError:  # the motif does not fit at this seed's patch centre
            continue
        a = detect(img, det, pixel_size=ps).atoms.reset_index(drop=True)
        rows.append(
            {
                "seed": s,
                "kind": kind,
                "ps": ps,
                "yx": yx,
                "sp": sp,
                "det": a[["y", "x"]].to_numpy(float),
                "cls": a["cls"].astype(str).to_numpy(),
            }
        )
    return rows


def prepare(rows: list[dict]) -> list[dict]:
    """Per site: the truth coordination of each Si, the detected atoms within 9 Å of
    the Si and the detected Si matched to each true one (-1: none within 0.5 Å)."""
    from atomlens.chem.bonds import SiRules, coordination, find_bonds

    out = []
    for s in rows:
        ps, yx, sp = s["ps"], s["yx"], s["sp"]
        truth = pd.DataFrame({"frame": 0, "y": yx[:, 0], "x": yx[:, 1], "cls": sp})
        want = coordination(len(truth), find_bonds(truth, ps, si_rules=SiRules()))
        sis = np.flatnonzero(sp == "Si")
        near = np.hypot(*(s["det"] - yx[sis].mean(0)).T) <= 9.0 / ps
        dyx, dcls = s["det"][near], s["cls"][near]
        match = []
        for i in sis:
            d = np.hypot(*(dyx - yx[i]).T) if len(dyx) else np.array([np.inf])
            j = int(d.argmin())
            match.append(j if d[j] * ps <= 0.5 and dcls[j] == "Si" else -1)
        tab = pd.DataFrame({"frame": 0, "y": dyx[:, 0], "x": dyx[:, 1], "cls": dcls})
        # Si1C4: the detected Si to the detection nearest each true bonded C (Å) and the
        # true bond, for the long limit of the gap rule
        pairs = []
        if s["kind"] == "Si1C4" and match[0] >= 0:
            d0 = np.hypot(*(yx - yx[sis[0]]).T)
            for k in np.argsort(d0)[1:5]:
                e = np.hypot(*(dyx - yx[k]).T)
                if e.min() * ps <= 0.5:
                    det_len = np.hypot(*(dyx[e.argmin()] - dyx[match[0]])) * ps
                    pairs.append((float(det_len), float(d0[k] * ps)))
        out.append(
            {
                "kind": s["kind"],
                "ps": ps,
                "want": want[sis],
                "tab": tab,
                "match": match,
                "si1c4_bonds": pairs,
            }
        )
    return out


def score(sites: list[dict], rules) -> np.ndarray:
    """(n_sites,) bool: every Si of the site found with its true coordination."""
    from atomlens.chem.bonds import coordination, find_bonds

    ok = []
    for s in sites:
        tab = s["tab"]
        co = coordination(len(tab), find_bonds(tab, s["ps"], si_rules=rules))
        got = np.array([co[j] if j >= 0 else -1 for j in s["match"]])
        ok.append(bool((got == s["want"]).all()))
    return np.array(ok, bool)


def summary(sites: list[dict], ok: np.ndarray, base: np.ndarray | None = None) -> dict:
    kinds = np.array([s["kind"] for s in sites])
    out = {k: f"{int(ok[kinds == k].sum())}/{int((kinds == k).sum())}" for k in sorted(set(kinds))}
    single = np.isin(kinds, ["Si1C3", "Si1C4"])
    out["Si1C3+Si1C4"] = f"{int(ok[single].sum())}/{int(single.sum())}"
    out["clusters"] = f"{int(ok[~single].sum())}/{int((~single).sum())}"
    if base is not None:
        out["fixed"] = int((ok & ~base).sum())
        out["broken"] = int((~ok & base).sum())
    return out


def choice_grid() -> list:
    """Each rule alone, its thresholds swept (the others off)."""
    from atomlens.chem.bonds import SiRules

    grid = [SiRules(min_si_c_A=m) for m in (0.8, 0.9, 1.0, 1.05, 1.1, 1.2, 1.3)]
    grid += [
        SiRules(gap_deg=g, gap_max_A=L)
        for g in (120.0, 140.0, 150.0, 160.0, 170.0)
        for L in (2.2, 2.35, 2.5, 2.8)
    ]
    grid += [SiRules(shape_gap_deg=g) for g in (110.0, 115.0, 120.0, 130.0)]
    return grid


def geometry(sites: list[dict]) -> dict:
    """The simulated geometry the thresholds come from (plain cutoffs): the largest
    angular gap of each 3-bonded all-C Si that should be 3-fold, of each Si1C4 with its
    four bonds, and of each Si1C4 left 3-fold; the true Si1C4 bond lengths and the
    detected Si to the detection of each of its C (Å, whatever the bond rules)."""
    from atomlens.chem.bonds import SiRules, find_bonds

    g3, g4, g4miss = [], [], []
    pairs = np.array([p for s in sites for p in s["si1c4_bonds"]]).reshape(-1, 2)
    for s in sites:
        tab = s["tab"]
        b = find_bonds(tab, s["ps"], si_rules=SiRules())
        yx = tab[["y", "x"]].to_numpy()
        cls = tab["cls"].to_numpy()
        for j, want in zip(s["match"], s["want"]):
            if j < 0:
                continue
            mine = b[(b["a"] == j) | (b["b"] == j)]
            nb = np.where(mine["a"] == j, mine["b"], mine["a"])
            if not len(nb) or (cls[nb] != "C").any():
                continue
            d = yx[nb] - yx[j]
            ang = np.sort(np.degrees(np.arctan2(d[:, 0], d[:, 1])))
            gap = float(np.diff(np.r_[ang, ang[0] + 360]).max())
            if len(nb) == 3 and want == 3:
                g3.append(gap)
            if s["kind"] == "Si1C4" and len(nb) == 4:
                g4.append(gap)
            if s["kind"] == "Si1C4" and len(nb) == 3:
                g4miss.append(gap)

    def pct(v) -> list:
        return np.percentile(v, [50, 99, 100]).round(2).tolist() if len(v) else []

    return {
        "max_gap_3fold_deg_p50_p99_max": pct(g3),
        "max_gap_Si1C4_4_bonds_deg_p50_p99_max": pct(g4),
        "max_gap_Si1C4_left_3fold_deg_sorted": sorted(round(v, 1) for v in g4miss),
        "Si1C4_true_bond_A_p50_p99_max": pct(pairs[:, 1]),
        "Si1C4_detected_bond_A_p50_p99_max": pct(pairs[:, 0]),
        "Si1C4_detected_minus_true_A_p50_p99_max": pct(pairs[:, 0] - pairs[:, 1]),
    }


def _seeds(text: str) -> range:
    a, b = (int(v) for v in text.split(":"))
    return range(a, b)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--choose", default="10000:10840", help="seeds start:stop for the choice")
    p.add_argument("--score", default="20000:20840", help="held-out seeds start:stop")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--cache", default="", help="folder for the detected sites (reused)")
    p.add_argument(
        "--pixel-sizes",
        default=",".join(map(str, PIXEL_SIZES)),
        help="pixel sizes (Å/px) the sites are drawn from, comma-separated",
    )
    p.add_argument(
        "--low-dose",
        action="store_true",
        help="every site with the random imaging at C-peak SNR 1.5-6 (a LibraryNet-like "
        "domain with --pixel-sizes 0.15,0.16,0.17)",
    )
    args = p.parse_args()
    import torch

    from atomlens.chem.bonds import SIM_SI_RULES, SiRules
    from atomlens.segment.model_file import load_detector

    torch.set_num_threads(args.threads)
    det = load_detector(None)

    def load(seeds: range) -> list[dict]:
        tag = f"_{args.pixel_sizes}_lowdose" if args.low_dose else ""
        name = f"si_sites_{seeds.start}_{seeds.stop}{tag}.pkl"
        path = Path(args.cache) / name if args.cache else None
        if path is not None and path.is_file():
            return pickle.loads(path.read_bytes())
        rows = detect_sites(
            seeds,
            det,
            tuple(float(v) for v in args.pixel_sizes.split(",")),
            random_only=args.low_dose,
            snr=(1.5, 6.0) if args.low_dose else (3.0, 30.0),
        )
        if path is not None:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(pickle.dumps(rows))
        return rows

    out: dict = {}
    choose = prepare(load(_seeds(args.choose)))
    base = score(choose, SiRules())
    out["choose_seeds"] = args.choose
    out["choose_off"] = summary(choose, base)
    out["choose_geometry"] = geometry(choose)
    out["choose_grid"] = {repr(r): summary(choose, score(choose, r), base) for r in choice_grid()}
    out["choose_SIM_SI_RULES"] = summary(choose, score(choose, SIM_SI_RULES), base)
    held = prepare(load(_seeds(args.score)))
    base = score(held, SiRules())
    out["score_seeds"] = args.score
    out["score_off"] = summary(held, base)
    out["score_geometry"] = geometry(held)
    r = SIM_SI_RULES
    for name, rules in (
        ("SIM_SI_RULES", r),
        ("min_distance_only", SiRules(min_si_c_A=r.min_si_c_A)),
        ("gap_only", SiRules(gap_deg=r.gap_deg, gap_max_A=r.gap_max_A)),
        ("shape_only", SiRules(shape_gap_deg=r.shape_gap_deg)),
    ):
        out[f"score_{name}"] = summary(held, score(held, rules), base)
    out["SIM_SI_RULES"] = repr(r)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
