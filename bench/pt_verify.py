"""Contrast verification of sparse heavy atoms (atomlens.atoms.spot_verify) with the
general model: simulations with known truth and the real pt_single_atoms; one JSON.

  ptlike    simulated Pt single atoms on amorphous carbon matched to the measured
            pt_single_atoms statistics (bench/general.py ptstats: peak over the support
            level ~0.2, peak over pixel noise ~2-4, spots 2.2-4.2 Å FWHM at 0.25-0.35 Å/px,
            support lumps 0.03-0.08 x an atom's peak, 0.0015-0.004 atoms/Å²), 20 images of
            ~350² px, seed 77 (never used in training). The verification's settings
            (segment.general.SPOT_VERIFY) were chosen here: the grid of candidate threshold
            x z_min x t_min with the best pooled F1 is printed.
  simsets   the held-out sets of bench/general.py sim_sets (broad_faint: SNR 0.5-3, support
            0.05-6 x the atom's peak with lumps up to 1 x; sharp_single; training mix).
  pt        the 11 real images (all test images: nothing tuned on them), pooled and per
            image, and the leave-one-image-out choice of the same grid (for comparison).

  labels    what the hand labels allow (no model): local maxima of each image smoothed at
            the measured spot width, each maximum's and each label's contrast evidence
            (spot_verify.spot_evidence: z = I / sigma_I, support_t); labels matched one-to-
            one to maxima within 6 px; the best in-sample F1 of one threshold on z /
            support_t (global and per image); labels with no visible spot (z < 3 or
            support_t < 1.5 at the label and at every maximum within 6 px) and unlabelled
            maxima brighter (support_t) than the median labelled one of their image, with
            figures under --out (per image, and a montage of 14 Å patches).

Each set is scored with the verification off (the card's spot_verify removed) and on.
Usage: .venv/bin/python bench/pt_verify.py [--what ptlike,simsets,pt,labels] [--grid]
       [--out /tmp/h14pt]
"""

from __future__ import annotations

import argparse
import itertools
import json
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from general import SHARED, _f1, pt_images, pt_labels, sim_sets  # noqa: E402

GRID = {
    "candidate_factor": (0.4, 0.6, 1.0),
    "z_min": (-np.inf, 3.0, 4.0),
    "t_min": (-np.inf, 1.0, 1.5, 2.0, 2.5, 3.0, 3.5),
}


def ptlike_sims(n: int = 20, seed: int = 77) -> list[tuple]:
    """``[(image, truth yx px, pixel size Å, match radius Å)]``: Pt single atoms on carbon
    with the measured pt_single_atoms statistics (see the module docstring)."""
    from atomlens.segment.general import general_config, render_native
    from atomlens.simulate.materials import single_atoms
    from atomlens.simulate.probe import Probe

    cfg = general_config(crop=512)
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        px = float(rng.uniform(0.25, 0.35))
        fw = float(np.exp(rng.uniform(np.log(2.2), np.log(4.2))))
        ratio = float(np.exp(rng.uniform(np.log(0.7), np.log(2.0))))
        lumps = float(rng.uniform(0.03, 0.08))
        target = float(rng.uniform(3.0, 5.5))  # peak over shot noise without the support
        snr = target * np.sqrt(1 + ratio) / (px / 0.1)
        dens = float(np.exp(rng.uniform(np.log(0.0015), np.log(0.004))))

        def cols(size, r, d=dens, ra=ratio, lu=lumps):
            return single_atoms(size, r, element="Pt", density=d, support_ratio=ra, lumps=lu)

        img, yx, info = render_native(
            cfg,
            rng,
            cols,
            pixel_size_A=px,
            snr=snr,
            z_exponent=1.7,
            probe_override=Probe.with_fwhm(fw, 200.0, 25.0),
        )
        out.append((img, yx, px, max(0.6, 0.6 * info["probe_fwhm_A"])))
    return out


def _candidates(det, img, px, factor):
    """Detections with the verification off at ``factor`` x the card's threshold, their
    evidence (spot_verify.spot_evidence) and whether the frame was spot-resampled."""
    from atomlens.atoms import detect
    from atomlens.atoms.spot_verify import spot_evidence

    res = detect(img, det, threshold=0.5 * factor, pixel_size=px)
    resampled = res.spot_scale.get("factor", 1.0) > 1.0
    if not resampled and factor != 1.0:  # the candidate factor acts on resampled frames only
        res = detect(img, det, threshold=0.5, pixel_size=px)
    yx = res.atoms[["y", "x"]].to_numpy(float)
    if resampled and len(yx):
        ev = spot_evidence(np.asarray(img, float), yx, res.spot_scale["fwhm_A"] / px)
        z, t = ev["z"].to_numpy(), ev["support_t"].to_numpy()
    else:
        z = t = np.full(len(yx), np.nan)
    return yx, z, t, resampled


def _records(det, sims, inner_A: float = 2.0) -> list[dict]:
    """Per image and candidate factor: candidates, evidence and truth matches (atoms
    within ``inner_A`` of the border left out on both sides)."""
    from atomlens.atoms.match import match_atoms

    recs = []
    for i, (img, truth, px, match_A) in enumerate(sims):
        m = inner_A / px
        hi = img.shape[0] - 1 - m

        def inner(a, m=m, hi=hi):
            if not len(a):
                return np.zeros(0, bool)
            return np.all((a > m) & (a < hi), axis=1) if m > 0 else np.ones(len(a), bool)

        tr = truth[inner(truth)]
        for cf in GRID["candidate_factor"]:
            yx, z, t, rs = _candidates(det, img, px, cf)
            k = inner(yx)
            yx, z, t = yx[k], z[k], t[k]
            tp = np.zeros(len(yx), bool)
            if len(yx) and len(tr):
                tp[match_atoms(yx, tr, match_A / px)[0]] = True
            recs.append(dict(i=i, cf=cf, resampled=rs, z=z, t=t, tp=tp, n_true=len(tr)))
    return recs


def _score(recs, cf, z_min, t_min, images=None, min_kept: int | None = None) -> dict:
    """Pooled counts of a rule (verification only on resampled frames; the unverified
    baseline is cf = 1 with no thresholds). A resampled frame where fewer than
    ``min_kept`` (default: the card's) candidates pass is scored with its unverified
    cf = 1 detections, as detection does."""
    if min_kept is None:
        from atomlens.segment.general import SPOT_VERIFY

        min_kept = int(SPOT_VERIFY.get("min_kept", 0))
    plain = {r["i"]: r for r in recs if r["cf"] == 1.0}
    tp = n_p = n_t = 0
    per = {}
    for r in recs:
        if r["cf"] != cf or (images is not None and r["i"] not in images):
            continue
        keep = np.ones(len(r["tp"]), bool)
        if r["resampled"]:
            z, t = r["z"], r["t"]
            keep = ~np.isfinite(z) | ((z >= z_min) & (t >= t_min))
            if keep.sum() < min_kept:
                r = plain[r["i"]]
                keep = np.ones(len(r["tp"]), bool)
        m = int(r["tp"][keep].sum())
        tp, n_p, n_t = tp + m, n_p + int(keep.sum()), n_t + r["n_true"]
        per[r["i"]] = round(2 * m / max(int(keep.sum()) + r["n_true"], 1), 4)
    out = _f1(tp, n_p, n_t)
    out["per_image_f1"] = per
    return out


def _rules():
    return list(itertools.product(*GRID.values()))


def _card_rule() -> tuple:
    from atomlens.segment.general import SPOT_VERIFY as v

    return (v["candidate_factor"], v["z_min"], v["t_min"])


def _summary(recs, name: str, grid: bool) -> dict:
    base = _score(recs, 1.0, -np.inf, -np.inf)
    on = _score(recs, *_card_rule())
    out = {
        "images": len({r["i"] for r in recs}),
        "resampled": int(sum(r["resampled"] for r in recs if r["cf"] == 1.0)),
        "verification_off": base,
        "verification_on_card_rule": on,
    }
    if grid:
        sc = sorted(((_score(recs, *g)["f1"], g) for g in _rules()), reverse=True)[:5]
        out["best_rules_cf_zmin_tmin"] = [[round(f, 4), [float(x) for x in g]] for f, g in sc]
    return out


def bench_pt_loio(recs) -> dict:
    """Leave one image out over the Pt images: the grid rule best on the other 10."""
    keys = sorted({r["i"] for r in recs})
    tp = n_p = n_t = 0
    per = {}
    for k in keys:
        rest = set(keys) - {k}
        g = max(_rules(), key=lambda g: _score(recs, *g, images=rest)["f1"])
        s = _score(recs, *g, images={k})
        tp, n_p, n_t = tp + s["matched"], n_p + s["detected"], n_t + s["labelled"]
        per[k] = {"f1": s["f1"], "rule": [float(x) for x in g]}
    return {"pooled": _f1(tp, n_p, n_t), "per_image": per}  # keyed by image position


def _best_threshold(v: np.ndarray, hit: np.ndarray, n_true: int) -> tuple[float, int, int, float]:
    """(F1, matched, kept, threshold) of the best 'keep v >= threshold' (in-sample)."""
    v = np.nan_to_num(np.asarray(v, float), nan=-1e9)
    o = np.argsort(-v)
    c = np.cumsum(hit[o])
    k = np.arange(1, len(v) + 1)
    f = 2 * c / (k + n_true)
    i = int(f.argmax())
    return float(f[i]), int(c[i]), int(k[i]), float(v[o][i])


def bench_labels(out_dir: Path | None) -> dict:
    """What the pt_single_atoms labels allow a spot detector (see the module docstring)."""
    import pandas as pd
    from scipy import ndimage as ndi
    from skimage.feature import peak_local_max

    from atomlens.atoms.match import match_atoms
    from atomlens.atoms.spot_scale import estimate_spot_fwhm
    from atomlens.atoms.spot_verify import spot_evidence
    from atomlens.io import read_stack

    rows, labs, imgs = [], [], {}
    for key, tif, csv in pt_images():
        st = read_stack(tif)
        img, px = np.asarray(st.data[0], float), float(st.pixel_size)
        fw = estimate_spot_fwhm(img, px).fwhm_A / px
        sm = ndi.gaussian_filter(img, fw / 2.3548)
        pk = peak_local_max(sm, min_distance=max(2, int(round(fw / 2))), exclude_border=False)
        pk = pk.astype(float)
        true = pt_labels(csv)
        ev, evl = spot_evidence(img, pk, fw), spot_evidence(img, true, fw)
        ip, it = match_atoms(pk, true, 6.0)
        lab = np.zeros(len(pk), bool)
        lab[ip] = True
        zmax, tmax = np.full(len(true), np.nan), np.full(len(true), np.nan)
        zmax[it], tmax[it] = ev["z"].to_numpy()[ip], ev["support_t"].to_numpy()[ip]
        rows.append(
            pd.DataFrame(
                {
                    "img": key,
                    "y": pk[:, 0],
                    "x": pk[:, 1],
                    "z": ev["z"],
                    "t": ev["support_t"],
                    "labelled": lab,
                }
            )
        )
        labs.append(
            pd.DataFrame(
                {
                    "img": key,
                    "y": true[:, 0],
                    "x": true[:, 1],
                    "z": evl["z"],
                    "t": evl["support_t"],
                    "z_max": zmax,
                    "t_max": tmax,
                }
            )
        )
        imgs[key] = (img, fw)
    m, lb = pd.concat(rows, ignore_index=True), pd.concat(labs, ignore_index=True)
    n = len(lb)

    def vis(z, t):
        return (z >= 3) & (t >= 1.5)

    invisible = ~vis(lb.z, lb.t) & ~vis(lb.z_max, lb.t_max)
    t_med = m[m.labelled].groupby("img").t.median()
    bright = (~m.labelled) & (m.t >= m.img.map(t_med)) & (m.z >= 3)

    def q(v):
        return [round(float(x), 2) for x in np.nanpercentile(v, [10, 25, 50, 75, 90])]

    out: dict = {
        "labels": n,
        "local_maxima": len(m),
        "labels_with_a_maximum_within_6px": int(m.labelled.sum()),
        "z_q10_25_50_75_90": {
            "at_labels": q(lb.z),
            "labelled_maxima": q(m.z[m.labelled]),
            "unlabelled_maxima": q(m.z[~m.labelled]),
        },
        "support_t_q10_25_50_75_90": {
            "at_labels": q(lb.t),
            "labelled_maxima": q(m.t[m.labelled]),
            "unlabelled_maxima": q(m.t[~m.labelled]),
        },
        "visible_spot": "z >= 3 and support_t >= 1.5 at the label or its maximum within 6 px",
        "labels_no_visible_spot": int(invisible.sum()),
        "unlabelled_maxima_brighter_than_median_labelled_same_image": int(bright.sum()),
        "per_image_no_visible_bright_unlabelled": {
            k: [int(invisible[lb.img == k].sum()), int(bright[m.img == k].sum())] for k in imgs
        },
    }
    for c in ("z", "t"):
        f, hit, kept, thr = _best_threshold(m[c].to_numpy(), m.labelled.to_numpy(), n)
        tot = np.zeros(3)
        for k, g in m.groupby("img"):
            nk = int((lb.img == k).sum())
            _, hk, kk, _ = _best_threshold(g[c].to_numpy(), g.labelled.to_numpy(), nk)
            tot += (hk, kk, nk)
        out[f"best_in_sample_f1_threshold_on_{c}"] = {
            "global": round(f, 3),
            "matched": hit,
            "kept": kept,
            "threshold": round(thr, 2),
            "per_image_thresholds": round(2 * tot[0] / (tot[1] + tot[2]), 3),
        }
    if out_dir is not None:
        _label_figures(out_dir, imgs, m, lb, invisible, bright)
        out["figures"] = (
            str(out_dir / "labels_<image>.png") + ", " + str(out_dir / "labels_montage.png")
        )
    return out


def _label_figures(out_dir: Path, imgs, m, lb, invisible, bright) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from scipy import ndimage as ndi

    out_dir.mkdir(parents=True, exist_ok=True)
    for key, (img, fw) in imgs.items():
        fig, ax = plt.subplots(1, 2, figsize=(14, 7.4))
        sm = ndi.gaussian_filter(img, fw / 2.3548 / 2)
        for a, im, t in zip(ax, (img, sm), ("raw", "smoothed (half the spot sigma)")):
            a.imshow(im, cmap="gray", vmin=np.percentile(im, 0.5), vmax=np.percentile(im, 99.9))
            a.set_title(f"{key} {t}")
            a.axis("off")
        sel = lb.img == key
        ok, bad = lb[sel & ~invisible], lb[sel & invisible]
        b = m[(m.img == key) & bright]
        ax[1].scatter(
            ok.x,
            ok.y,
            s=200,
            facecolors="none",
            edgecolors="lime",
            label=f"label with a spot ({len(ok)})",
        )
        ax[1].scatter(
            bad.x,
            bad.y,
            s=200,
            facecolors="none",
            edgecolors="magenta",
            lw=2,
            label=f"label, no visible spot ({len(bad)})",
        )
        ax[1].scatter(
            b.x,
            b.y,
            s=200,
            marker="s",
            facecolors="none",
            edgecolors="red",
            label=f"unlabelled spot brighter than the median label ({len(b)})",
        )
        ax[1].legend(loc="lower left", fontsize=8)
        plt.tight_layout()
        plt.savefig(out_dir / f"labels_{key}.png", dpi=70)
        plt.close(fig)
    rng = np.random.default_rng(0)
    good = lb[~invisible]
    sets = [
        ("labelled atom with a spot", good),
        ("label, no visible spot", lb[invisible]),
        ("unlabelled, brighter than median label", m[bright]),
    ]
    fig, ax = plt.subplots(3, 10, figsize=(20, 6.6))
    h = 24
    for i, (name, df) in enumerate(sets):
        pick = df.iloc[rng.choice(len(df), min(10, len(df)), replace=False)]
        for j, (_, r) in enumerate(pick.iterrows()):
            im = ndi.gaussian_filter(imgs[r.img][0], 1.5)
            y, x = int(r.y), int(r.x)
            p = np.pad(im, h, mode="reflect")[y : y + 2 * h + 1, x : x + 2 * h + 1]
            ax[i, j].imshow(p, cmap="gray")
            ax[i, j].plot(h, h, "+", c=("lime", "magenta", "red")[i], ms=14)
            ax[i, j].set_title(f"{r.img} z{r.z:.1f} t{r.t:.1f}", fontsize=8)
        for a in ax[i]:
            a.axis("off")
        ax[i, 0].text(
            -0.1,
            0.5,
            name,
            transform=ax[i, 0].transAxes,
            rotation=90,
            va="center",
            ha="right",
            fontsize=9,
        )
    plt.suptitle("pt_single_atoms: 49 x 49 px patches (14 Å), Gaussian 1.5 px, each stretched")
    plt.tight_layout()
    plt.savefig(out_dir / "labels_montage.png", dpi=65)
    plt.close(fig)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--what", default="ptlike,simsets,pt")
    ap.add_argument("--grid", action="store_true", help="also print the best grid rules")
    ap.add_argument("--out", type=Path, default=None, help="folder for the labels figures")
    ap.add_argument("--model", default="general", help="registry name or .pt path")
    args = ap.parse_args(argv)
    import torch

    from atomlens.io import read_stack
    from atomlens.segment.registry import load_model

    torch.set_num_threads(1)
    if not SHARED.exists():
        print(json.dumps({"skipped": f"{SHARED} not found"}))
        return 0
    det = load_model(args.model)
    det.card.pop("spot_verify", None)  # candidates unverified; the rules are applied here
    out: dict = {"card_rule_cf_zmin_tmin": list(_card_rule())}
    for what in args.what.split(","):
        t0 = time.perf_counter()
        if what == "labels":
            out["labels"] = bench_labels(args.out)
        elif what == "ptlike":
            out["ptlike"] = _summary(_records(det, ptlike_sims()), what, args.grid)
        elif what == "simsets":
            for name, sims in sim_sets().items():
                out[f"simsets_{name}"] = _summary(_records(det, sims), name, args.grid)
        elif what == "pt":
            sims = []
            names = []
            for key, tif, csv in pt_images():
                st = read_stack(tif)
                px = float(st.pixel_size)
                sims.append((np.asarray(st.data[0], float), pt_labels(csv), px, 6.0 * px))
                names.append(key)
            recs = _records(det, sims, inner_A=0.0)
            out["pt"] = _summary(recs, what, args.grid)
            for k in ("verification_off", "verification_on_card_rule"):
                per = out["pt"][k]["per_image_f1"]
                out["pt"][k]["per_image_f1"] = {names[i]: v for i, v in per.items()}
            loio = bench_pt_loio(recs)
            loio["per_image"] = {names[i]: v for i, v in loio["per_image"].items()}
            out["pt"]["loio_grid_choice"] = loio
            out["pt"]["split"] = (
                "all 11 images are test images for the card rule (chosen on ptlike); "
                "loio_grid_choice: each image scored with the grid rule best on the other 10"
            )
        print(f"{what}: {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    print(json.dumps(out, indent=1, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
