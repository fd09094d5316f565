"""Benchmark the shipped ``general`` atom-column model and model choice; prints one JSON.

  pt        pt_single_atoms (11 HAADF images, 481 hand-labelled Pt atoms, 0.293 Å/px):
            general model, no fine-tuning, one-to-one matching within 6 px; per image and
            pooled. None of these images was used in training or tuning (the model never
            saw real data): all 11 are the test set.
  mos2      the three MoS2 HAADF images: F1 against the lattice-fit reference
            (atomlens.atoms.lattice_reference, matches within 0.5 Å, 1 Å border), at the
            nominal pixel size from the metadata (10-28 % off) and at the lattice-fit one.
  mos2dm3   the MoS2 .dm3 of formats/ (Se-implanted, 1024², never used for any choice):
            F1 against its lattice-fit reference, default detection and the card's tta
            setting, at the lattice-fit pixel size. Measured 2026-12-05 (default / tta):
            v2 0.981 / 0.986, v3 0.981 / 0.986, v4 0.982 / 0.986.
  srtio3    SrTiO3 .ser and .emd HAADF and the .hspy ABF movie (5 frames), contrast
            "auto" (no setting): share of detections on a site of the fitted square/
            rectangular column lattice (atomlens.atoms.column_lattice) and share of sites found.
  choice    choose_model and the fit warnings on every real file and on pure noise.
  ptstats   why a model may miss the Pt atoms: per labelled atom a Gaussian + constant fit
            (peak A, FWHM Å, local level B) and the pixel noise N (neighbour differences),
            the support's 1-10 Å texture in units of A; the same for the simulator's Pt
            single-atom samples at 0.293 Å/px (atomlens.segment.general.render_general, on
            the model grid); medians with 10-90 % ranges.
  ptscale   Pt F1 with the pixel size stated 1, 1/2, 1/3 x the metadata's (spots 2-3 x
            narrower on the model grid): the share of the failure due to the spots' width.
            (``pt`` itself runs with spot_scale auto: atomlens.atoms.spot_scale measures the
            spots and shrinks them; per image ``spot_fwhm_A`` and ``spot_factor``.)
  ptsim     spot-width resampling on held-out simulations (broad faint single atoms,
            sharp ones, the training mix): F1 with spot_scale off and auto.

Usage: .venv/bin/python bench/general.py [--what pt,mos2,mos2dm3,srtio3,choice,ptstats] [--model general]
       [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared" / "data"
REAL = SHARED / "real"
FORMATS = SHARED / "formats"
PT_DIR = REAL / "pt_single_atoms"
MOS2_IMAGES = ("MoS2_stem_Exp-000-2", "MoS2_stem_Exp-001-5", "MoS2_stem_Exp-002-5")
STO_FILES = {
    "ser_haadf": "16_STOimage_1.ser",
    "emd_haadf": "Acquisition_18.emd",
    "hspy_abf": "srtio3_abf_movie.hspy",
}


def _f1(tp: int, n_pred: int, n_true: int) -> dict:
    p = tp / n_pred if n_pred else 0.0
    r = tp / n_true if n_true else 0.0
    return {
        "precision": round(p, 4),
        "recall": round(r, 4),
        "f1": round(2 * tp / max(n_pred + n_true, 1), 4),
        "matched": tp,
        "detected": n_pred,
        "labelled": n_true,
    }


def pt_images() -> list[tuple[str, Path, Path]]:
    """(image id, tif, csv) of the pt_single_atoms set, sorted."""
    out = []
    for tif in sorted(PT_DIR.glob("*.tif")):
        key = tif.name.split("_")[0]
        out.append((key, tif, PT_DIR / f"{key}_Results.csv"))
    return out


def pt_labels(csv: Path) -> np.ndarray:
    """(N, 2) labelled Pt positions (y, x) in pixels from an ImageJ Results CSV."""
    df = pd.read_csv(csv)
    return df[["Y", "X"]].to_numpy(float)


def bench_pt(
    model: str, match_px: float = 6.0, threshold: float = 0.5, pixel_scale: float = 1.0
) -> dict:
    """General model on every pt_single_atoms image, scored against the hand labels;
    ``pixel_scale`` < 1 states a smaller pixel size than the metadata (the spots then
    look narrower to the network; see ``ptscale``)."""
    from atomlens.atoms import detect
    from atomlens.atoms.match import match_atoms
    from atomlens.io import read_stack
    from atomlens.segment.registry import load_model

    det = load_model(model)
    rows, tp, npred, ntrue = {}, 0, 0, 0
    t0 = time.perf_counter()
    for key, tif, csv in pt_images():
        st = read_stack(tif)
        res = detect(st, det, threshold=threshold, pixel_size=float(st.pixel_size) * pixel_scale)
        pred = res.atoms[["y", "x"]].to_numpy(float)
        true = pt_labels(csv)
        ip, _ = match_atoms(pred, true, match_px)
        rows[key] = _f1(len(ip), len(pred), len(true))
        rows[key]["spot_fwhm_A"] = res.spot_scale.get("fwhm_A")
        rows[key]["spot_factor"] = res.spot_scale.get("factor", 1.0)
        tp, npred, ntrue = tp + len(ip), npred + len(pred), ntrue + len(true)
    return {
        "split": "all 11 images are test images (no fine-tuning, nothing tuned on them)",
        "match_px": match_px,
        "pixel_size_A": 0.293,
        "pooled": _f1(tp, npred, ntrue),
        "mean_image_f1": round(float(np.mean([r["f1"] for r in rows.values()])), 4),
        "image_f1_min_median_max": [
            round(float(f(np.array([r["f1"] for r in rows.values()]))), 4)
            for f in (np.min, np.median, np.max)
        ],
        "per_image": rows,
        "seconds": round(time.perf_counter() - t0, 1),
    }


def bench_mos2(model: str) -> dict:
    """General model on the MoS2 images against the lattice-fit reference: the measured
    one (S2 sites where the unit-cell average shows them) and the geometric one (S2 at
    the ideal (1/3, 2/3) offset: ``measure_offsets=False``, the reference before).
    ``nominal`` / ``lattice_fit``: the default detection at either pixel size;
    ``tta_setting``: the card's cross-validated test-time augmentation setting (tta 8,
    refine none, threshold 0.4; bench/general_options.py) at the lattice-fit one."""
    from atomlens.atoms import detect
    from atomlens.atoms.lattice_reference import lattice_reference, score_tiles
    from atomlens.io import Stack, read_stack
    from atomlens.segment.registry import cross_validated_tta, load_model

    det = load_model(model)
    tta_kw = cross_validated_tta("general")
    out: dict = {}
    refs_of: dict = {}
    for name in MOS2_IMAGES:
        st = read_stack(REAL / f"{name}.npy")
        frame = np.asarray(st.data[0], np.float32)
        refs = {}
        for kind, meas in (("measured", True), ("geometric", False)):
            refs[kind], fit = lattice_reference(frame, float(st.pixel_size), measure_offsets=meas)
            if meas:
                offsets = fit.details["site_offsets"]
        refs_of[name] = (st, frame, refs, fit, offsets)
    runs = [("nominal", {}), ("lattice_fit", {})] + ([("tta_setting", tta_kw)] if tta_kw else [])
    for run, kw in runs:
        parts = {}
        tot = {"measured": np.zeros(3, int), "geometric": np.zeros(3, int)}
        for name in MOS2_IMAGES:
            st, frame, refs, fit, offsets = refs_of[name]
            px = float(st.pixel_size) if run == "nominal" else fit.pixel_size
            pred = detect(Stack(frame[None], px, run), det, **kw).atoms
            row: dict = {"pixel_size_A": round(px, 4)}
            for kind, ref in refs.items():
                sc = score_tiles(pred, ref, fit.pixel_size, [(0, 0, *frame.shape)])
                n = np.array([int(sc.ref.sum()), int(sc.det.sum()), int(sc.matched.sum())])
                tot[kind] += n
                f = _f1(n[2], n[1], n[0])
                if kind == "measured":
                    row.update(f)
                else:
                    row["geometric_reference"] = f
            if run != "nominal":
                row["species_from_contrast"] = _mos2_species(frame, pred, refs["measured"], px)
                row["reference_site_offsets"] = offsets
            parts[name] = row
        t, g = tot["measured"], tot["geometric"]
        out[run] = {
            "setting": kw or "default (tta 1, refine gaussian, threshold 0.5)",
            "pooled": _f1(t[2], t[1], t[0]),
            "pooled_geometric_reference": _f1(g[2], g[1], g[0]),
            "per_image": parts,
        }
    out["reference"] = (
        "lattice fit (atomlens.atoms.lattice_reference), match 0.5 Å, border 1 Å; "
        "'pooled' and the per-image figures: S2 sites at the offset measured in the "
        "unit-cell average (measure_offsets=True, the default); "
        "'*geometric_reference': S2 at the ideal (1/3, 2/3) site (measure_offsets=False)"
    )
    out["species_from_contrast"] = (
        "detections' integrated intensities clustered (atomlens.atoms.contrast, k auto "
        "by ICL, names S2,Mo dimmest first); agreement with the reference's sublattice "
        "label over the detections matched within 0.5 Å"
    )
    return out


def bench_mos2_dm3(model: str) -> dict:
    """General model on ``formats/mos2_se_implanted.dm3`` (a MoS2 file no setting was
    chosen on) against its lattice-fit reference (S2 at the measured offsets): the
    default detection and the card's tta setting, at the lattice-fit pixel size."""
    from atomlens.atoms import detect
    from atomlens.atoms.lattice_reference import lattice_reference, score_tiles
    from atomlens.io import Stack, read_stack
    from atomlens.segment.registry import cross_validated_tta, load_model

    det = load_model(model)
    tta_kw = cross_validated_tta("general")
    st = read_stack(FORMATS / "mos2_se_implanted.dm3")
    frame = np.asarray(st.data[0], np.float32)
    ref, fit = lattice_reference(frame, float(st.pixel_size), measure_offsets=True)
    out: dict = {"stated_pixel_size_A": float(st.pixel_size), "fit_pixel_size_A": fit.pixel_size}
    for run, kw in (("default", {}), ("tta_setting", tta_kw)):
        pred = detect(Stack(frame[None], fit.pixel_size), det, **kw).atoms
        sc = score_tiles(pred, ref, fit.pixel_size, [(0, 0, *frame.shape)])
        out[run] = _f1(int(sc.matched.sum()), int(sc.det.sum()), int(sc.ref.sum()))
    return out


def _mos2_species(frame: np.ndarray, pred: pd.DataFrame, ref: pd.DataFrame, px: float) -> dict:
    """Contrast classes of the detections against the reference's Mo/S sublattices."""
    from atomlens.atoms.contrast import species_from_contrast
    from atomlens.atoms.match import match_atoms

    out, model = species_from_contrast(frame, pred, k="auto", names=["S2", "Mo"])
    ip, it = match_atoms(out[["y", "x"]].to_numpy(float), ref[["y", "x"]].to_numpy(float), 0.5 / px)
    truth = ref["cls"].astype(str).replace({"S": "S2"}).to_numpy()[it]
    got = out["cls"].astype(str).to_numpy()[ip]
    return {
        "k": model.k,
        "matched": len(ip),
        "agreement": round(float((got == truth).mean()), 4) if len(ip) else None,
        "agreement_Mo": round(float((got[truth == "Mo"] == "Mo").mean()), 4),
        "agreement_S2": round(float((got[truth == "S2"] == "S2").mean()), 4),
    }


def bench_srtio3(model: str) -> dict:
    """General model (contrast auto) on the SrTiO3 files; scores against a fitted lattice."""
    from atomlens.atoms.column_lattice import fit_square_lattice, lattice_scores
    from atomlens.io import read_stack
    from atomlens.workflows import detect as wf
    from atomlens.workflows.events import drain

    out = {}
    for key, name in STO_FILES.items():
        st = read_stack(FORMATS / name)
        res = drain(wf.run(st, wf.DetectRecipe(model=model, save_maps=False), None))
        per = []
        for t in range(st.n_frames):
            frame = np.asarray(st.data[t], np.float64)
            fit = fit_square_lattice(frame, float(st.pixel_size), bright="abf" not in key)
            a = res.atoms[res.atoms["frame"] == t]
            per.append(lattice_scores(a[["y", "x"]].to_numpy(float), fit, frame.shape))
            if t == 0:
                species = _sublattice_contrast(frame, a, fit, bright="abf" not in key)
        out[key] = {
            "frames": st.n_frames,
            "model": res.model_choice,
            "warnings": res.warnings,
            "on_lattice": round(float(np.mean([p["on_lattice"] for p in per])), 4),
            "sites_found": round(float(np.mean([p["sites_found"] for p in per])), 4),
            "detections": int(sum(p["n_detections"] for p in per)),
            "sites": int(sum(p["n_sites"] for p in per)),
            "lattice": {k: per[0][k] for k in ("period_A", "basis_sites", "radius_px")},
            "sites_found_by_kind": {
                k: round(float(np.mean([p["sites_found_by_kind"].get(k, np.nan) for p in per])), 4)
                for k in per[0]["sites_found_by_kind"]
            },
            "contrast_classes_vs_sublattice_frame0": species,
        }
    out["hspy_abf_note"] = (
        "the ABF movie is SrTiO3 along [110], not [001]: a rectangular a/sqrt2 x a cell "
        "(about 28.8 x 41 px, ratio 1.42) with SrO columns at (0, 0), O at (1/2, 1/2) and "
        "Ti at (1/2, 0) in the fit's basis, all three dark. Its first-order spot along a "
        "is weak, so the lattice is the primitive cell that indexes the strong FFT spots "
        "(column_lattice._indexing_cell; before, the SrO+O centred cell was fitted and the "
        "Ti columns, 1/3 of the detections, counted as off-lattice: 66.4 %)"
    )
    out["criterion"] = (
        ">= 95 % of detections on a site (one-to-one within 0.35 x the site "
        "spacing), >= 90 % of sites found; lattice from the image's FFT, "
        "bright=False only for the ABF file (the detector decides alone)"
    )
    return out


def _sublattice_contrast(frame: np.ndarray, atoms: pd.DataFrame, fit, bright: bool) -> dict:
    """Contrast classes (k auto, atomlens.atoms.contrast) of one frame's detections against
    the sublattice of the site each sits on: counts per (sublattice, class) and the share
    of on-site detections whose class is its sublattice's most common one (one class may
    hold several sublattices: read the counts)."""
    from atomlens.atoms.contrast import species_from_contrast
    from atomlens.atoms.match import match_atoms

    img = frame if bright else -frame
    out, model = species_from_contrast(img, atoms, k="auto")
    ip, si = match_atoms(out[["y", "x"]].to_numpy(float), fit.sites, 0.35 * fit.spacing_px)
    kind, cls = fit.site_kind[si], out["contrast_class"].to_numpy()[ip]
    table = pd.crosstab(kind, cls)
    names = [f"{d[0]:g},{d[1]:g}" for d in fit.decorations]
    return {
        "k": model.k,
        "counts": {
            names[i]: {int(c): int(v) for c, v in row.items()} for i, row in table.iterrows()
        },
        "majority_share": round(float(table.max(axis=1).sum() / max(len(ip), 1)), 4),
    }


def bench_ptscale(model: str) -> dict:
    """Pt F1 (all 11 images) with the pixel size stated 1, 1/2 and 1/3 x the metadata's:
    how much of the failure is the spots' width on the model grid."""
    out = {}
    for f in (1.0, 0.5, 1 / 3):
        r = bench_pt(model, pixel_scale=f)
        out[f"{0.293 * f:.3f}_A_per_px"] = {
            **r["pooled"],
            "per_image_f1": r["image_f1_min_median_max"],
        }
    return out


def _spot_fits(img: np.ndarray, yx: np.ndarray, px: float, win_A: float = 2.5) -> np.ndarray:
    """(N, 4) per position: Gaussian peak A, FWHM (Å), constant B, local pixel noise N
    (std of neighbour differences / sqrt 2), from a fit in a ``win_A`` Å square."""
    from scipy.optimize import least_squares

    img = np.asarray(img, float)
    d = (img[:, 1:] - img[:, :-1]) / np.sqrt(2)
    r = max(3, int(round(win_A / px)))
    yy, xx = np.mgrid[-r : r + 1, -r : r + 1]
    out = []
    for y, x in yx:
        yi, xi = int(round(y)), int(round(x))
        if min(yi, xi) < r or yi + r + 1 > img.shape[0] or xi + r + 1 > img.shape[1]:
            continue
        w = img[yi - r : yi + r + 1, xi - r : xi + r + 1]

        def f(p, w=w):
            a, s, b, dy, dx = p
            return (a * np.exp(-((yy - dy) ** 2 + (xx - dx) ** 2) / (2 * s * s)) + b - w).ravel()

        b0 = float(np.median(w))
        a0 = max(float(w[r - 1 : r + 2, r - 1 : r + 2].mean()) - b0, 1e-6 * (abs(b0) + 1))
        p = least_squares(
            f,
            [a0, 0.5 / px, b0, 0, 0],
            bounds=([0, 0.3, -np.inf, -2, -2], [np.inf, r, np.inf, 2, 2]),
        ).x
        noise = np.std(d[max(0, yi - 3 * r) : yi + 3 * r, max(0, xi - 3 * r) : xi + 3 * r])
        out.append((p[0], p[1] * px * 2.3548, p[2], noise))
    return np.array(out).reshape(-1, 4)


def _texture(img: np.ndarray, px: float, peak: float) -> float:
    """Std of the 1-10 Å band (Gaussian 1 Å minus 10 Å) over the brighter half, / ``peak``."""
    from scipy import ndimage as ndi

    img = np.asarray(img, float)
    band = ndi.gaussian_filter(img, 1.0 / px) - ndi.gaussian_filter(img, 10.0 / px)
    level = ndi.gaussian_filter(img, 10.0 / px)
    return float(np.std(band[level > np.median(level)]) / peak)


def _q(v: np.ndarray) -> list[float]:
    return [round(float(x), 3) for x in np.percentile(v, [50, 10, 90])]


def bench_ptstats(model: str, n_sim: int = 40) -> dict:
    """Image statistics of the real Pt atoms (native and model grid) and of simulated Pt
    single atoms at the same pixel size, with the model's recall on the simulations."""
    import torch

    from atomlens.atoms.find import find_atoms
    from atomlens.atoms.match import match_atoms
    from atomlens.io import read_stack
    from atomlens.segment.general import general_config, render_general
    from atomlens.segment.predict import model_grid_shape, normalise, predict_model_grid, resample
    from atomlens.segment.registry import load_model
    from atomlens.simulate.materials import single_atoms

    det = load_model(model)
    px = 0.2929687
    native, grid, tex = [], [], []
    for _, tif, csv in pt_images():
        img = np.asarray(read_stack(tif).data[0], np.float32)
        yx = pt_labels(csv)
        a = _spot_fits(img, yx, px)
        native.append(a)
        tex.append(_texture(img, px, float(np.median(a[:, 0]))))
        sh = model_grid_shape(img.shape, px, det.pixel_size)
        x = normalise(resample(torch.from_numpy(img)[None], sh)[0].numpy())
        grid.append(_spot_fits(x, (yx + 0.5) * (sh[0] / img.shape[0]) - 0.5, det.pixel_size))
    a, g = np.concatenate(native), np.concatenate(grid)
    out: dict = {
        "real_native": {
            "atoms": len(a),
            "fwhm_A": _q(a[:, 1]),
            "peak_over_level": _q(a[:, 0] / a[:, 2]),
            "peak_over_pixel_noise": _q(a[:, 0] / a[:, 3]),
            "texture_over_peak": _q(np.array(tex)),
        },
        "real_model_grid": {
            "peak_normalised": _q(g[:, 0]),
            "peak_over_pixel_noise": _q(g[:, 0] / g[:, 3]),
        },
    }
    cfg = general_config(crop=256)
    rng = np.random.default_rng(1)
    sims, rec = [], []
    for _ in range(n_sim):
        cols = single_atoms(256 * det.pixel_size, rng, element="Pt")
        x, _, yx, info = render_general(cfg, rng, cols, pixel_size_A=px)
        if len(yx) < 2:
            continue
        s = _spot_fits(x, yx, det.pixel_size)
        if not len(s):
            continue
        with torch.inference_mode():
            maps = predict_model_grid(det, torch.from_numpy(x)[None])[0].numpy()
        f = find_atoms(maps, det.classes, 0.5)
        pred = np.column_stack([f["y"], f["x"]])
        m = len(match_atoms(pred, yx, 6 * px / det.pixel_size)[0]) if len(pred) else 0
        sims.append(s)
        rec.append((float(np.median(s[:, 0])), info["probe_fwhm_A"], m / len(yx)))
    s, r = np.concatenate(sims), np.array(rec)
    out["sim_model_grid"] = {
        "samples": len(r),
        "peak_normalised": _q(s[:, 0]),
        "peak_over_pixel_noise": _q(s[:, 0] / s[:, 3]),
        "fwhm_A": _q(s[:, 1]),
        "recall_all": round(float(r[:, 2].mean()), 3),
        "recall_peak_norm_below_0.25": round(float(r[r[:, 0] < 0.25, 2].mean()), 3)
        if (r[:, 0] < 0.25).any()
        else None,
        "recall_probe_fwhm_above_1.8A": round(float(r[r[:, 1] > 1.8, 2].mean()), 3)
        if (r[:, 1] > 1.8).any()
        else None,
    }
    return out


def _sim_f1(det, sims, threshold: float, spot_scale: str) -> dict:
    """Pooled F1 of ``detect`` on native-grid simulations ``[(image, truth yx px, pixel
    size Å, match radius Å)]``; atoms within 2 Å of the border are left out on both sides."""
    from atomlens.atoms import detect
    from atomlens.atoms.match import match_atoms

    tp = n_p = n_t = 0
    factors = []
    for img, yx, px, match_A in sims:
        res = detect(img, det, threshold=threshold, pixel_size=px, spot_scale=spot_scale)
        factors.append(res.spot_scale.get("factor", 1.0))
        pred = res.atoms[["y", "x"]].to_numpy(float)
        m = 2.0 / px
        hi = img.shape[0] - 1 - m

        def inner(a: np.ndarray, m: float = m, hi: float = hi) -> np.ndarray:
            return np.all((a > m) & (a < hi), axis=1) if len(a) else np.zeros(0, bool)

        pred, yx = pred[inner(pred)], yx[inner(yx)]
        tp += len(match_atoms(pred, yx, match_A / px)[0]) if len(pred) and len(yx) else 0
        n_p, n_t = n_p + len(pred), n_t + len(yx)
    out = _f1(tp, n_p, n_t)
    out["resampled_frames"] = int(np.sum(np.array(factors) > 1.0))
    out["factor_median"] = round(float(np.median(factors)), 3)
    return out


def sim_sets(n: int = 24, seed: int = 2024) -> dict[str, list]:
    """Held-out simulations on the native grid (:func:`atomlens.segment.general.render_native`,
    a seed the training never uses): ``broad_faint``, heavy single atoms imaged with
    1.6-4.5 Å spots at 0.2-0.35 Å/px and low dose (peak / pixel noise ~1-5, as measured on
    pt_single_atoms); ``sharp_single``, the same atoms with 0.7-1.5 Å spots; ``training``,
    structures drawn as in training (crystals 0.6 Å match, single atoms 0.6 x FWHM)."""
    from atomlens.segment.general import general_config, render_native
    from atomlens.simulate.materials import single_atoms
    from atomlens.simulate.probe import Probe

    cfg = general_config(crop=384)
    rng = np.random.default_rng(seed)
    out: dict[str, list] = {"broad_faint": [], "sharp_single": [], "training": []}
    for kind, lo, hi in (("broad_faint", 1.6, 4.5), ("sharp_single", 0.7, 1.5)):
        for _ in range(n):
            px = float(rng.uniform(0.2, 0.35))
            fw = float(np.exp(rng.uniform(np.log(lo), np.log(hi))))
            el = str(rng.choice(["Pt", "Au", "Ir"]))
            cols = single_atoms(cfg.crop * cfg.pixel_size, rng, element=el)
            snr = float(np.exp(rng.uniform(np.log(0.5), np.log(3.0))))
            img, yx, info = render_native(
                cfg,
                rng,
                cols,
                pixel_size_A=px,
                snr=snr,
                probe_override=Probe.with_fwhm(fw, 200.0, 25.0),
            )
            out[kind].append((img, yx, px, max(0.6, 0.6 * info["probe_fwhm_A"])))
    for _ in range(n):
        img, yx, info = render_native(cfg, rng)
        single = "single atoms" in info["structure"]
        match = max(0.6, 0.6 * info["probe_fwhm_A"]) if single else 0.6
        out["training"].append((img, yx, info["pixel_size_A"], match))
    return out


def bench_ptsim(model: str, thresholds: tuple[float, ...] = (0.5, 0.3)) -> dict:
    """Spot-width resampling on held-out simulations (:func:`sim_sets`): F1 with
    ``spot_scale`` off and auto at each threshold; ``training`` must not change."""
    from atomlens.segment.registry import load_model

    det = load_model(model)
    sets = sim_sets()
    out: dict = {}
    for name, sims in sets.items():
        out[name] = {
            f"{mode}@{t}": _sim_f1(det, sims, t, mode)
            for mode in ("off", "auto")
            for t in thresholds
        }
    out["split"] = "held-out simulations (seed 2024, never used in training); no real data"
    return out


def bench_choice() -> dict:
    """Which model auto picks, the FFT coherence behind it (atoms.lattice_check), and the
    graphene model's warnings, on every real file (all 11 Pt images; the LibraryNet
    patches and every movie frame: bench/model_choice.py)."""
    from atomlens.atoms.suitability import choose_model, image_traits, model_fit_warnings
    from atomlens.io import read_stack
    from atomlens.segment.registry import load_model

    graphene = load_model("graphene")
    files = sorted(REAL.glob("*.np[yz]")) + sorted(PT_DIR.glob("*.tif"))
    files += [FORMATS / n for n in (*STO_FILES.values(), "mos2_se_implanted.dm3")]
    out = {}
    for f in files:
        st = read_stack(f)
        ps = float(st.pixel_size or 0.078)
        frame = np.asarray(st.data[0], np.float32)
        name, why = choose_model(frame, ps)
        tr = image_traits(frame, ps)
        out[f.name] = {
            "auto": name,
            "why": why,
            "coherence": None if tr.hex_coherence is None else round(tr.hex_coherence, 1),
            "graphene_warnings": model_fit_warnings(frame, ps, graphene),
        }
    noise = np.random.default_rng(0).normal(100, 10, (512, 512)).astype(np.float32)
    out["pure_noise"] = {
        "auto": choose_model(noise, 0.1)[0],
        "graphene_warnings": model_fit_warnings(noise, 0.1, graphene),
        "general_warnings": model_fit_warnings(noise, 0.1, load_model("general")),
    }
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--what", default="pt,mos2,srtio3,choice")
    ap.add_argument("--model", default="general", help="registry name or .pt path")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    if not SHARED.exists():
        print(json.dumps({"skipped": f"{SHARED} not found"}))
        return 0
    out: dict = {"model": args.model}
    for what in args.what.split(","):
        fn = {
            "pt": bench_pt,
            "mos2": bench_mos2,
            "mos2dm3": bench_mos2_dm3,
            "srtio3": bench_srtio3,
            "ptstats": bench_ptstats,
            "ptscale": bench_ptscale,
            "ptsim": bench_ptsim,
        }.get(what)
        t = time.perf_counter()
        out[what] = fn(args.model) if fn else bench_choice() if what == "choice" else None
        print(f"{what}: {time.perf_counter() - t:.0f} s", file=sys.stderr, flush=True)
    print(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
