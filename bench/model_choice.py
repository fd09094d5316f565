"""Which shipped model ``--model auto`` picks, and the FFT coherence behind it; prints one JSON.

  sim    the simulator sets the graphene-crystal test was set on and checked with
         (atomlens.atoms.lattice_check.COHERENCE_MIN): "choice" (seed 20261205; the
         threshold was chosen here: graphene from the movie simulator at 0.05-0.4 Å/px with
         Si, holes, contamination 0.05-0.2, grain boundaries, 1e4-1e6 e/Å²; graphene from
         the general model's renderer, bare or with defects and an amorphous cover;
         heavy single atoms on amorphous carbon, Pt-like thick supports among them; bare
         amorphous films; TMD, perovskite and fcc crystals) and "held_out" (seed 7, never
         used for a choice: movie-simulator graphene with wider settings, heavy atoms on
         amorphous carbon, bare films). "choice_si_sites" (seed 20261205) and
         "held_out_si_sites" (seed 7): 40 small fields like the LibraryNet patches (20 Å
         centred on a Si motif, 0.078-0.09 or 0.15-0.17 Å/px, random contaminated and
         aberrated imaging at a C-peak SNR of 1.5-6) and 30 fields of the same size of
         heavy single atoms on amorphous carbon or bare films. Per set: the coherence
         range and the choices per kind of sample, and one row per sample.
  real   every real file: the 11 pt_single_atoms TIFFs, the graphene files (all 48 frames
         of the Si movie), the 79 LibraryNet patches (at AtomLens' own calibrated pixel
         size: they come with none), MoS2 (.npy, .dm3) and SrTiO3 (.ser, .emd, .hspy):
         the choice, its reason, polarity, coherence, period and sublattice contrast. No
         threshold was chosen on these.

  field  coherence against field width (MIN_FIELD_A in atomlens.atoms.suitability was
         checked here and kept at 20 Å): paired samples (field_samples: Si-site
         fields, movie-simulator graphene, heavy single atoms on amorphous carbon and bare
         films at 0.078-0.09 or 0.15-0.17 Å/px) rendered 16, 20, 24, 28, 32 and 40 Å wide, on the "choice" seeds
         (20261205; to choose a limit on) and the "held_out" seeds (7; reported);
         per width the negatives' max coherence and the graphene fields passing
         COHERENCE_MIN, with the lattice judged at every width, and one row per field.

Usage: .venv/bin/python bench/model_choice.py [--what sim,real,field] [--sets choice,...]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
REAL = SHARED / "real"
FORMATS = SHARED / "formats"


def _traits_row(img: np.ndarray, ps: float) -> dict:
    from atomlens.atoms.suitability import choose_model, image_traits

    t = time.perf_counter()
    name, why = choose_model(img, ps)
    dt = time.perf_counter() - t
    tr = image_traits(img, ps)

    def r(v, n=2):
        return None if v is None else round(float(v), n)

    return {
        "auto": name,
        "why": why,
        "seconds": round(dt, 2),
        "polarity": tr.polarity,
        "coherence": r(tr.hex_coherence, 1),
        "period_A": r(tr.hex_period_A),
        "sublattice_contrast": r(tr.sublattice_contrast),
        "lattice_checked": tr.lattice_checked,
    }


def _native(maker, ps: float, seed: int, snr: float | None = None):
    """One sample of the general model's renderer, 512² at ``ps`` Å/px (native grid)."""
    from atomlens.segment.general import general_config, render_native

    cfg = general_config(crop=int(round(512 * ps / 0.2)))
    img, _, info = render_native(cfg, np.random.default_rng(seed), maker, pixel_size_A=ps, snr=snr)
    return np.asarray(img, np.float32), float(info["pixel_size_A"])


def choice_set() -> list[dict]:
    """The set COHERENCE_MIN was chosen on (seed 20261205), as (img, ps, label, kind)."""
    from atomlens.simulate import simulate_frame
    from atomlens.simulate.materials import (
        amorphous_support,
        fcc,
        honeycomb_2d,
        perovskite,
        single_atoms,
        tmd_2h,
        with_defects_and_support,
    )

    out: list[dict] = []
    rng = np.random.default_rng(20261205)
    ps_list = [0.05, 0.07, 0.1, 0.14, 0.2, 0.28, 0.4]
    for ps in ps_list:
        for j in range(3):
            gb = j == 1
            kw = {
                "grain_boundary": gb,
                "dose": float(np.exp(rng.uniform(np.log(1e4), np.log(1e6)))),
                "probe_fwhm_A": float(rng.uniform(0.8, 1.4)),
            }
            size = 512 if ps >= 0.07 else 384
            if gb:
                kw["grain_misorientation_deg"] = float(rng.uniform(5, 30))
            if j == 2:
                kw["contamination_fraction"] = 0.2
            m = simulate_frame(size, ps, seed=int(rng.integers(1e6)), **kw)
            kind = "movie" + ("_gb" if gb else "_cont" if j == 2 else "")
            out.append({"img": m.frames[0], "ps": ps, "label": "graphene", "kind": kind})
    for k in range(28):
        ps = ps_list[k % 7]

        def maker(s, r, dressed=bool(k % 2)):
            g = honeycomb_2d(s, r, "graphene")
            return with_defects_and_support(g, r, s) if dressed else g

        snr = float(np.exp(rng.uniform(np.log(3), np.log(30))))
        img, p = _native(maker, ps, int(rng.integers(1e6)), snr=snr)
        kind = "renderer" + ("_dressed" if k % 2 else "")
        out.append({"img": img, "ps": p, "label": "graphene", "kind": kind})
    ps_neg = [0.1, 0.15, 0.2, 0.25, 0.293, 0.35, 0.4]
    for k in range(42):
        if k < 14:

            def maker(s, r):
                return single_atoms(
                    s,
                    r,
                    "Pt",
                    support_ratio=float(r.uniform(2, 6)),
                    lumps=float(r.uniform(0.15, 0.4)),
                )

        else:
            maker = single_atoms
        img, p = _native(maker, ps_neg[k % 7], int(rng.integers(1e6)))
        kind = "single_atoms" + ("_pt" if k < 14 else "")
        out.append({"img": img, "ps": p, "label": "general", "kind": kind})
    for k in range(10):

        def maker(s, r):
            return amorphous_support(s, r, density=float(r.uniform(0.5, 3)))

        img, p = _native(maker, ps_neg[k % 7], int(rng.integers(1e6)))
        out.append({"img": img, "ps": p, "label": "general", "kind": "amorphous"})
    for k in range(21):
        base = (tmd_2h, perovskite, fcc)[k % 3]

        def maker(s, r, base=base):
            return with_defects_and_support(base(s, r), r, s)

        img, p = _native(maker, ps_neg[k % 7], int(rng.integers(1e6)))
        out.append({"img": img, "ps": p, "label": "general", "kind": base.__name__})
    return out


def held_out_movie_settings(rng: np.random.Generator) -> dict:
    """simulate_frame keywords of one held-out movie-simulator frame, drawn from ``rng``:
    dose 5e3-1e6 e/Å², probe 0.8-1.5 Å, contamination up to 30 %, a grain boundary
    (5-30°) in 40 %, up to 4 Si and 2 holes."""
    kw = {
        "dose": float(np.exp(rng.uniform(np.log(5e3), np.log(1e6)))),
        "probe_fwhm_A": float(rng.uniform(0.8, 1.5)),
        "contamination_fraction": float(rng.uniform(0, 0.3)),
        "grain_boundary": bool(rng.random() < 0.4),
        "n_si3": int(rng.integers(0, 5)),
        "n_holes": int(rng.integers(0, 3)),
    }
    if kw["grain_boundary"]:
        kw["grain_misorientation_deg"] = float(rng.uniform(5, 30))
    return kw


def held_out_set() -> list[dict]:
    """The check set (seed 7), never used to choose anything."""
    from atomlens.simulate import simulate_frame
    from atomlens.simulate.materials import amorphous_support, single_atoms

    out: list[dict] = []
    rng = np.random.default_rng(7)
    for _ in range(40):
        ps = float(np.exp(rng.uniform(np.log(0.05), np.log(0.4))))
        size = int(rng.choice([256, 384, 512]))
        kw = held_out_movie_settings(rng)
        m = simulate_frame(size, ps, seed=int(rng.integers(1e6)), **kw)
        out.append({"img": m.frames[0], "ps": ps, "label": "graphene", "kind": "movie"})
    for k in range(50):
        ps = float(np.exp(rng.uniform(np.log(0.08), np.log(0.4))))
        if k < 25:

            def maker(s, r):
                el = str(r.choice(["Pt", "Au", "Ir", "W", "Pd", "Mo"]))
                sr, lu = float(r.uniform(1, 6)), float(r.uniform(0.1, 0.5))
                return single_atoms(s, r, el, support_ratio=sr, lumps=lu)

        elif k < 42:
            maker = single_atoms
        else:

            def maker(s, r):
                return amorphous_support(s, r, density=float(r.uniform(0.3, 3)))

        img, p = _native(maker, ps, int(rng.integers(1e6)))
        kind = "amorphous" if k >= 42 else "single_atoms"
        out.append({"img": img, "ps": p, "label": "general", "kind": kind})
    return out


def _negative_maker(k: int):
    """The ``k``-th negative control of the small-field sets: ``(maker, kind)``, a bare
    amorphous film (density 0.3-3) every third, else heavy single atoms (Pt, Au, Ir, W, Pd
    or Mo) on amorphous carbon (support 1-6, lumps 0.1-0.5), drawn from the renderer's rng."""
    from atomlens.simulate.materials import amorphous_support, single_atoms

    if k % 3 == 0:

        def film(size, r):
            return amorphous_support(size, r, density=float(r.uniform(0.3, 3)))

        return film, "amorphous"

    def atoms(size, r):
        el = str(r.choice(["Pt", "Au", "Ir", "W", "Pd", "Mo"]))
        sr, lu = float(r.uniform(1, 6)), float(r.uniform(0.1, 0.5))
        return single_atoms(size, r, el, support_ratio=sr, lumps=lu)

    return atoms, "single_atoms"


def si_site_set(seed: int, n: int = 40, n_neg: int = 30) -> list[dict]:
    """Small fields like the LibraryNet patches (graphene with Si clusters, 20 Å): ``n``
    20.2-21 Å fields centred on a Si motif (all of atomlens.simulate.patches.SI_MOTIFS in
    turn; atomlens.simulate.si_site.render_si_site) at 0.078-0.09 Å/px (~256²) or
    0.15-0.17 Å/px (~128²), random imaging (Imaging.random: residual aberrations,
    contamination, amorphous cover) at a low C-peak SNR of 1.5-6; and ``n_neg`` fields of
    the same size and pixel sizes with heavy single atoms on amorphous carbon or a bare
    film (the general model's renderer), as the negative control."""
    from dataclasses import replace

    from atomlens.simulate.patches import SI_MOTIFS
    from atomlens.simulate.si_site import render_si_site
    from atomlens.simulate.training import Imaging

    rng = np.random.default_rng(seed)
    out: list[dict] = []
    while len(out) < n:
        k = len(out)
        fine = k % 2 == 0
        ps = float(rng.uniform(0.078, 0.09) if fine else rng.uniform(0.15, 0.17))
        im = Imaging.random(rng, ps)
        im = replace(im, snr=float(np.exp(rng.uniform(np.log(1.5), np.log(6)))))
        size_A = float(rng.uniform(20.2, 21.0))
        try:
            img, _, _ = render_si_site(
                SI_MOTIFS[k % len(SI_MOTIFS)], int(rng.integers(1e6)), ps, size_A, im
            )
        except ValueError:  # the motif does not fit at this seed's patch centre
            continue
        kind = "si_site_" + ("fine" if fine else "coarse")
        out.append({"img": img, "ps": ps, "label": "graphene", "kind": kind})
    for k in range(n_neg):
        fine = k % 2 == 0
        ps = float(rng.uniform(0.078, 0.09) if fine else rng.uniform(0.15, 0.17))
        size_A = float(rng.uniform(20.2, 21.0))
        maker, kind = _negative_maker(k)
        from atomlens.segment.general import general_config, render_native

        cfg = general_config(crop=int(round(size_A / 0.2)))
        img, _, info = render_native(
            cfg, np.random.default_rng(int(rng.integers(1e6))), maker, pixel_size_A=ps
        )
        kind += "_20A"
        out.append(
            {"img": img, "ps": float(info["pixel_size_A"]), "label": "general", "kind": kind}
        )
    return out


FIELD_WIDTHS_A = (16.0, 20.0, 24.0, 28.0, 32.0, 40.0)
FIELD_SEEDS = {"choice": 20261205, "held_out": 7}


def _si_site_field(kind: str, seed: int, ps: float, size_A: float, im) -> np.ndarray:
    """atomlens.simulate.si_site.render_si_site on a 44 Å patch instead of its 24 Å one,
    so that fields up to 40 Å are graphene to the edge."""
    from atomlens.simulate.si_site import render_si_site

    return np.asarray(render_si_site(kind, seed, ps, size_A, im, patch_A=44.0)[0], np.float32)


def field_samples(seed: int, n_si: int = 20, n_movie: int = 12, n_neg: int = 60) -> list[dict]:
    """Paired samples for the field-width sweep: each sample's structure, imaging and pixel
    size (0.078-0.09 or 0.15-0.17 Å/px, alternately) are drawn once from ``seed`` and it is
    rendered at every width of :data:`FIELD_WIDTHS_A`. ``n_si`` Si-site fields (the
    Si-site sets' motifs and random low-dose imaging, C-peak SNR 1.5-6), ``n_movie``
    movie-simulator graphene frames (the held-out set's settings: Si clusters, holes,
    contamination, grain boundaries, 5e3-1e6 e/Å²), ``n_neg`` negative controls (every
    third a bare amorphous film, the others heavy single atoms on amorphous carbon).
    Each entry: label, kind, ps and ``render(width_A) -> image``."""
    from dataclasses import replace

    from atomlens.segment.general import general_config, render_native
    from atomlens.simulate import simulate_frame
    from atomlens.simulate.patches import SI_MOTIFS
    from atomlens.simulate.training import Imaging

    rng = np.random.default_rng(seed)

    def pixel(k: int) -> tuple[float, str]:
        fine = k % 2 == 0
        ps = float(rng.uniform(0.078, 0.09) if fine else rng.uniform(0.15, 0.17))
        return ps, "fine" if fine else "coarse"

    out: list[dict] = []
    k = 0
    while len(out) < n_si:
        ps, tag = pixel(len(out))
        im = Imaging.random(rng, ps)
        im = replace(im, snr=float(np.exp(rng.uniform(np.log(1.5), np.log(6)))))
        motif, s = SI_MOTIFS[k % len(SI_MOTIFS)], int(rng.integers(1e6))
        k += 1
        try:
            _si_site_field(motif, s, ps, 16.0, im)
        except ValueError:  # the motif does not fit at this seed's patch centre
            continue
        out.append(
            {
                "label": "graphene",
                "kind": f"si_site_{tag}",
                "ps": ps,
                "render": lambda w, m=motif, s=s, ps=ps, im=im: _si_site_field(m, s, ps, w, im),
            }
        )
    for j in range(n_movie):
        ps, tag = pixel(j)
        kw = held_out_movie_settings(rng)
        s = int(rng.integers(1e6))

        def movie(w, ps=ps, s=s, kw=kw):
            return simulate_frame(int(round(w / ps)), ps, seed=s, **kw).frames[0]

        out.append({"label": "graphene", "kind": f"movie_{tag}", "ps": ps, "render": movie})
    for j in range(n_neg):
        ps, tag = pixel(j)
        maker, kind = _negative_maker(j)
        s = int(rng.integers(1e6))

        def neg(w, ps=ps, s=s, maker=maker):
            cfg = general_config(crop=int(round(w / 0.2)))
            img, _, _ = render_native(cfg, np.random.default_rng(s), maker, pixel_size_A=ps)
            return img

        out.append({"label": "general", "kind": kind, "ps": ps, "render": neg})
    return out


def bench_field(families: list[str] | None = None) -> dict:
    """Coherence and choice against field width (see --what field): per seed family and
    width, the max coherence of the negative controls, the fraction of graphene fields at
    or above COHERENCE_MIN, and the choices with the lattice judged at every width (the
    MIN_FIELD_A limit lifted) and as shipped."""
    from dataclasses import replace

    import atomlens.atoms.suitability as su
    from atomlens.atoms.lattice_check import COHERENCE_MIN
    from atomlens.segment.registry import choose_model_from_traits

    out: dict = {"coherence_min": COHERENCE_MIN, "min_field_A": su.MIN_FIELD_A}
    for fam in families or list(FIELD_SEEDS):
        samples = field_samples(FIELD_SEEDS[fam])
        table, rows = [], []
        for w in FIELD_WIDTHS_A:
            per = []
            for i, s in enumerate(samples):
                img = np.asarray(s["render"](w), np.float32)
                saved, su.MIN_FIELD_A = su.MIN_FIELD_A, 0.0
                try:
                    tr = su.image_traits(img, s["ps"])
                finally:
                    su.MIN_FIELD_A = saved
                judged = choose_model_from_traits(tr, s["ps"])[0]
                small = min(img.shape) * s["ps"] < saved
                shipped = (
                    choose_model_from_traits(replace(tr, lattice_checked=False), s["ps"])[0]
                    if small
                    else judged
                )
                coh = tr.hex_coherence
                row = {
                    "width_A": w,
                    "i": i,
                    "label": s["label"],
                    "kind": s["kind"],
                    "ps": round(s["ps"], 3),
                    "coherence": None if coh is None else round(float(coh), 2),
                    "noise_only": tr.noise_only,
                    "judged": judged,
                    "shipped": shipped,
                }
                per.append(row)
            rows += per
            gra = [r for r in per if r["label"] == "graphene"]
            neg = [r for r in per if r["label"] == "general"]
            neg_coh = [r["coherence"] for r in neg if r["coherence"] is not None]
            table.append(
                {
                    "width_A": w,
                    "neg_max_coherence": max(neg_coh) if neg_coh else None,
                    "neg_at_or_above_min": sum(c >= COHERENCE_MIN for c in neg_coh),
                    "neg_judged_graphene": sum(r["judged"] == "graphene" for r in neg),
                    "n_neg": len(neg),
                    "graphene_coherence_pass": sum(
                        r["coherence"] is not None and r["coherence"] >= COHERENCE_MIN for r in gra
                    ),
                    "graphene_judged_graphene": sum(r["judged"] == "graphene" for r in gra),
                    "n_graphene": len(gra),
                    "graphene_by_kind_judged": dict(
                        Counter(r["kind"] for r in gra if r["judged"] == "graphene")
                    ),
                }
            )
            print(f"field {fam} {w:g} Å: {table[-1]}", file=sys.stderr, flush=True)
        out[fam] = {"table": table, "rows": rows}
    return out


def _summary(rows: list[dict]) -> dict:
    out: dict = {}
    for label in ("graphene", "general"):
        sel = [r for r in rows if r["label"] == label]
        coh = [r["coherence"] for r in sel if r["coherence"] is not None]
        kinds: dict = {}
        for r in sel:
            kinds.setdefault(r["kind"], Counter())[r["auto"]] += 1
        out[label] = {
            "n": len(sel),
            "coherence_min_max": [min(coh), max(coh)] if coh else None,
            "auto_by_kind": {k: dict(v) for k, v in kinds.items()},
        }
    return out


SIM_SETS = {
    "choice": choice_set,
    "held_out": held_out_set,
    "choice_si_sites": lambda: si_site_set(20261205),
    "held_out_si_sites": lambda: si_site_set(7),
}


def bench_sim(sets: list[str] | None = None) -> dict:
    from atomlens.atoms.lattice_check import COHERENCE_MIN

    out: dict = {"coherence_min": COHERENCE_MIN}
    for name in sets or list(SIM_SETS):
        make = SIM_SETS[name]
        rows = []
        for i, s in enumerate(make()):
            img = np.asarray(s["img"], np.float32)
            row = {"i": i, "label": s["label"], "kind": s["kind"], "ps": round(s["ps"], 3)}
            row.update(_traits_row(img, s["ps"]))
            rows.append(row)
        out[name] = {"summary": _summary(rows), "rows": rows}
    return out


def bench_real() -> dict:
    from atomlens.io import read_stack

    sys.path.insert(0, str(REPO / "bench"))
    from detect import calibrated_pixel_size

    rows = []

    def add(name: str, img: np.ndarray, ps: float, expect: str) -> None:
        rows.append({"file": name, "ps": round(ps, 4), "expect": expect, **_traits_row(img, ps)})

    for tif in sorted((REAL / "pt_single_atoms").glob("*.tif")):
        st = read_stack(tif)
        add(tif.name, np.asarray(st.data[0], np.float32), float(st.pixel_size), "general")
    for name in ("graphene_si-2nm.npz", "graphene_grainboundary-4nm.npz"):
        st = read_stack(REAL / name)
        add(name, np.asarray(st.data[0], np.float32), float(st.pixel_size), "graphene")
    st = read_stack(REAL / "graphene_si1c3_movie.npz")
    for t in range(st.data.shape[0]):
        frame = np.asarray(st.data[t], np.float32)
        add(f"graphene_si1c3_movie.npz[{t}]", frame, float(st.pixel_size), "graphene")
    others = sorted(REAL.glob("MoS2_*.npy")) + [
        FORMATS / n
        for n in (
            "mos2_se_implanted.dm3",
            "16_STOimage_1.ser",
            "Acquisition_18.emd",
            "srtio3_abf_movie.hspy",
        )
    ]
    for f in others:
        st = read_stack(f)
        add(f.name, np.asarray(st.data[0], np.float32), float(st.pixel_size), "general")
    for f in sorted((REAL / "librarynet_dev").glob("*.npz")):
        img = np.load(f)["image"].astype(np.float32)
        ps, _ = calibrated_pixel_size(img)
        add(f"librarynet_dev/{f.name} ({img.shape[0]}²)", img, ps, "graphene")
    wrong = [r["file"] for r in rows if r["auto"] != r["expect"]]
    return {"n": len(rows), "wrong": wrong, "rows": rows}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--what", default="sim,real")
    ap.add_argument(
        "--sets", default=",".join(SIM_SETS), help=f"simulator sets ({', '.join(SIM_SETS)})"
    )
    args = ap.parse_args(argv)
    sets = args.sets.split(",")
    bad = [s for s in sets if s not in SIM_SETS]
    if bad:
        ap.error(f"unknown --sets {bad}: choose from {', '.join(SIM_SETS)}")
    warnings.filterwarnings("ignore", category=UserWarning)
    out: dict = {}
    for what in args.what.split(","):
        t = time.perf_counter()
        if what == "real" and not SHARED.exists():
            out[what] = {"skipped": f"{SHARED} not found"}
        else:
            run = {"sim": lambda: bench_sim(sets), "real": bench_real, "field": bench_field}
            if what not in run:
                ap.error(f"unknown --what {what!r}: choose from sim, real, field")
            out[what] = run[what]()
        print(f"{what}: {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
    print(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
