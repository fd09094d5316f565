"""Benchmark the atom finder; prints one JSON object.

  speed     frames/s and atoms/s on 1024² frames at 0.1 Å/px (simulated graphene), and
            AtomAI 0.8.1's U-Net on the same frames with the same threads (peer venv)
  memory    peak RSS of `atomlens detect` on a 50-frame 1024² memmapped .npy movie
  accuracy  held-out simulated frames (F1 within 0.5 Å, RMSE Å, Si precision/recall)
  real      the real graphene files in ../shared/data/real (no per-file tuning)
  librarynet  the 79 held-out LibraryNet patches (../shared/data/real/librarynet_dev), pixel
            size from AtomLens' own calibration (no nominal value, no per-file settings):
            patches with every labelled atom found within 0.5 Å, Si coordination right in
            the Si1C3/Si1C4 patches, patches with no extra Si within 3 Å of a labelled Si;
            the same per frame of the 48-frame Si1C3 movie with the Si-neighbour search
            (local test-time-augmented pass + ring search) on and off; ms per Si of each
            (bench/librarynet_cv.py cross-validates their thresholds); the coordination
            again with the simulator-chosen Si bond rules (chem.bonds.SIM_SI_RULES, off
            by default; bench/si_bond_rules.py)
  general   the shipped general model and model choice (bench/general.py: pt_single_atoms
            F1 within 6 px, MoS2 vs the lattice fit, SrTiO3 HAADF/ABF on the column lattice,
            auto choice and warnings on every real file)

Usage: .venv/bin/python bench/detect.py [--what speed,memory,accuracy,real,librarynet,general]
       [--threads 2] [--frames 6] [--model PATH]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "data" / "real"
PEER_SETUP = REPO.parent / "shared" / "tools" / "peers" / "setup.sh"
PEER_UNET = REPO.parent / "shared" / "tools" / "peers" / "atomai_unet.py"


def sim_frames(n: int, size: int = 1024, pixel_size: float = 0.1, seed: int = 7) -> np.ndarray:
    """``n`` simulated graphene frames (T, size, size) at ``pixel_size`` Å/px."""
    from atomlens.simulate.patches import graphene_patch
    from atomlens.simulate.training import Imaging, render_sample

    rng = np.random.default_rng(seed)
    out = np.empty((n, size, size), np.float32)
    for t in range(n):
        patch = graphene_patch(size * pixel_size * 1.45 + 4, rng)
        out[t], _, _, _ = render_sample(
            patch,
            (size, size),
            pixel_size,
            classes=("background", "C", "Si"),
            radius_A=0.35,
            rng=rng,
            imaging=Imaging(snr=8.0),
        )
    return out


def bench_speed(args: argparse.Namespace) -> dict:
    import torch

    from atomlens.atoms import detect
    from atomlens.segment.model_file import load_detector
    from atomlens.segment.nets import n_params
    from atomlens.segment.predict import predict_maps

    torch.set_num_threads(args.threads)
    det = load_detector(args.model)
    frames = sim_frames(args.frames)
    detect(frames[:1], det, pixel_size=0.1)  # warm-up
    t = time.perf_counter()
    for _ in predict_maps(frames, det, pixel_size=0.1):
        pass
    t_maps = time.perf_counter() - t
    t = time.perf_counter()
    res = detect(frames, det, pixel_size=0.1)
    t_det = time.perf_counter() - t
    out = {
        "frames": args.frames,
        "shape": [1024, 1024],
        "pixel_size_A": 0.1,
        "threads": args.threads,
        "params": n_params(det.net),
        "maps_frames_per_s": round(args.frames / t_maps, 3),
        "detect_frames_per_s": round(args.frames / t_det, 3),
        "atoms_per_s": round(len(res.atoms) / t_det, 1),
        "atoms_per_frame": round(len(res.atoms) / args.frames, 1),
    }
    try:
        py = (
            subprocess.run(["bash", str(PEER_SETUP)], capture_output=True, text=True, check=True)
            .stdout.strip()
            .splitlines()[-1]
        )
        with tempfile.TemporaryDirectory() as tmp:
            f = Path(tmp) / "frames.npy"
            np.save(f, frames)
            r = subprocess.run(
                [py, str(PEER_UNET), str(f), "--threads", str(args.threads)],
                capture_output=True,
                text=True,
                check=True,
            )
        peer = json.loads(r.stdout.strip().splitlines()[-1])
        out["atomai_unet_frames_per_s"] = peer["frames_per_s"]
        out["ratio_maps_vs_atomai"] = round(out["maps_frames_per_s"] / peer["frames_per_s"], 2)
        out["ratio_detect_vs_atomai"] = round(out["detect_frames_per_s"] / peer["frames_per_s"], 2)
    except (subprocess.CalledProcessError, OSError, ValueError, KeyError) as exc:
        out["atomai_error"] = repr(exc)[:300]
    return out


def bench_memory(args: argparse.Namespace) -> dict:
    n = 50
    with tempfile.TemporaryDirectory() as tmp:
        f = Path(tmp) / "movie.npy"
        mm = np.lib.format.open_memmap(f, mode="w+", dtype=np.float32, shape=(n, 1024, 1024))
        base = sim_frames(4)
        for t in range(n):  # 4 distinct frames, shifted, so no two are identical
            mm[t] = np.roll(base[t % 4], 7 * t, axis=1)
        mm.flush()
        del mm
        cmd = [
            sys.executable,
            "-m",
            "atomlens",
            "detect",
            str(f),
            "--pixel-size",
            "0.1",
            "--out",
            str(Path(tmp) / "atoms.csv"),
            "--maps",
            str(Path(tmp) / "maps.npy"),
        ]
        if args.model:
            cmd += ["--model", args.model]
        env = dict(os.environ, OMP_NUM_THREADS=str(args.threads))
        t = time.perf_counter()
        if Path("/usr/bin/time").exists():  # the detect process's own peak RSS
            r = subprocess.run(
                ["/usr/bin/time", "-v", *cmd], capture_output=True, text=True, env=env
            )
            line = [ln for ln in r.stderr.splitlines() if "Maximum resident set size" in ln]
            peak_kb = int(line[-1].split(":")[-1]) if line else -1
        else:  # max over all children so far (an upper bound)
            r = subprocess.run(cmd, capture_output=True, text=True, env=env)
            peak_kb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss  # Linux: kB
        dt = time.perf_counter() - t
    return {
        "frames": n,
        "shape": [1024, 1024],
        "input": "memmapped .npy (200 MB)",
        "maps_written": "(50, 3, 1024, 1024) float32 .npy, memmapped per frame (600 MB)",
        "returncode": r.returncode,
        "seconds": round(dt, 1),
        "peak_rss_MB": round(peak_kb / 1024, 1),
        "summary": r.stdout.strip()[-200:] or r.stderr.strip()[-300:],
    }


def bench_accuracy(args: argparse.Namespace) -> dict:
    from atomlens.atoms.evaluate import validation_metrics
    from atomlens.segment.model_file import load_detector

    return validation_metrics(
        load_detector(args.model), log=lambda s: None, n_frames=args.val_frames
    )


def _lattice(atoms, ref: np.ndarray, shape: tuple[int, int], ps: float) -> dict:
    from atomlens.atoms import detection_scores

    yx = atoms[["y", "x"]].to_numpy()
    m = 1.0 / ps

    def inside(p: np.ndarray) -> np.ndarray:
        return (p.min(1) >= m) & (p[:, 0] <= shape[0] - 1 - m) & (p[:, 1] <= shape[1] - 1 - m)

    s = detection_scores(yx[inside(yx)], ref[inside(ref)], m)
    a = detection_scores(yx, ref, m)
    return {
        "f1_1A_interior": round(s["f1"], 4),
        "precision_interior": round(s["precision"], 4),
        "recall_interior": round(s["recall"], 4),
        "f1_1A_all": round(a["f1"], 4),
        "n": len(yx),
        "n_ref": len(ref),
    }


def real_scores(model: str | None = None) -> dict:
    """The real-data figures (same definitions as tests/test_detect_real.py)."""
    from atomlens.atoms import detect
    from atomlens.segment.model_file import load_detector

    det = load_detector(model)
    out: dict = {}
    d = np.load(REAL / "graphene_si-2nm.npz")
    for ps in (0.072, 0.078125, 0.0648, 0.0792):
        a = detect(d["image"], det, pixel_size=ps).atoms
        si = a[a["cls"] == "Si"][["y", "x"]].to_numpy()
        out[f"si-2nm@{ps}"] = {
            **_lattice(a, d["nn_rows_cols"], d["image"].shape, ps),
            "n_Si": len(si),
            "Si_yx": si.round(1).tolist(),
        }
    g = np.load(REAL / "graphene_grainboundary-4nm.npz")
    for ps in (0.078125, 0.0703, 0.0859):
        a = detect(g["image"], det, pixel_size=ps).atoms
        out[f"grainboundary@{ps}"] = {
            **_lattice(a, g["nn_rows_cols"], g["image"].shape, ps),
            "n_Si": int((a["cls"] == "Si").sum()),
        }
    m = np.load(REAL / "graphene_si1c3_movie.npz")
    for ps in (0.078125, 0.0703, 0.0859):
        a = detect(m["frames"], det, pixel_size=ps).atoms
        hits, counts = 0, []
        for t in range(len(m["frames"])):
            sel = (m["atom_frame"] == t) & (m["atom_element"] == "Si")
            ref = np.c_[m["atom_row"][sel], m["atom_col"][sel]]
            si = a[(a["frame"] == t) & (a["cls"] == "Si")][["y", "x"]].to_numpy()
            counts.append(len(si))
            if len(si) and len(ref):
                dmin = np.min(np.hypot(*(si[:, None] - ref[None]).transpose(2, 0, 1)))
                hits += int(dmin * ps <= 1.0)
        out[f"si1c3_movie@{ps}"] = {
            "frames_with_Si_within_1A": hits,
            "frames": len(m["frames"]),
            "Si_per_frame_hist": np.bincount(counts).tolist(),
        }
    return out


LIBRARYNET = REAL / "librarynet_dev"


def calibrated_pixel_size(image: np.ndarray) -> tuple[float, str]:
    """AtomLens' own pixel size for a graphene image with no nominal value (Å/px) and
    the method that gave it: the real-space-resolved lattice calibration when present
    (chem.calibrate.calibrate_lattice), else the FFT one."""
    from atomlens.chem import calibrate as cal

    if hasattr(cal, "calibrate_lattice"):
        c = cal.calibrate_lattice(image, "graphene")
    else:
        c = cal.calibrate_pixel_size(image, "graphene")
    return float(c.pixel_size), str(c.method)


def librarynet_atoms(image: np.ndarray, det, pixel_size: float):
    """The atoms (table, pixels) detection finds in a LibraryNet patch at ``pixel_size``
    Å/px: the network's atoms, then the local test-time-augmented pass and the
    Si-neighbour ring search, as ``detect``'s ``si_neighbours="auto"`` does for the
    graphene model (the steps of :func:`librarynet_patch`, untimed)."""
    from atomlens.atoms import detect
    from atomlens.atoms.halo import add_si_neighbours
    from atomlens.atoms.site_tta import local_pass

    a = detect(image, det, pixel_size=pixel_size, si_neighbours="off").atoms
    a = local_pass(a, image, det, pixel_size, "auto")
    return add_si_neighbours(a, image, pixel_size).reset_index(drop=True)


def librarynet_patch(path: Path, det, pixel_size: float) -> dict:
    """Scores of one LibraryNet patch detected at ``pixel_size`` (Å/px), with the time
    the local test-time-augmented pass (``tta_s``) and the Si-neighbour ring search
    (``ring_s``) took and the Si they worked around (``n_Si_det``): the network's atoms,
    then :func:`atomlens.atoms.site_tta.local_pass` and
    :func:`atomlens.atoms.halo.add_si_neighbours` as ``detect``'s
    ``si_neighbours="auto"`` does for the graphene model."""
    from atomlens.atoms import detect
    from atomlens.atoms.halo import add_si_neighbours
    from atomlens.atoms.site_tta import local_pass

    d = np.load(path, allow_pickle=True)
    a = detect(d["image"], det, pixel_size=pixel_size, si_neighbours="off").atoms
    n_si = int((a["cls"] == "Si").sum())
    t = time.perf_counter()
    a = local_pass(a, d["image"], det, pixel_size, "auto")
    tta_s = time.perf_counter() - t
    t = time.perf_counter()
    a = add_si_neighbours(a, d["image"], pixel_size).reset_index(drop=True)
    ring_s = time.perf_counter() - t
    from atomlens.chem.bonds import SIM_SI_RULES

    yx, cls = a[["y", "x"]].to_numpy(float), a["cls"].astype(str).to_numpy()
    out = score_librarynet_patch(path, yx, cls, pixel_size)
    # the same atoms with the simulator-chosen Si bond rules (chem.bonds.SIM_SI_RULES)
    ruled = score_librarynet_patch(path, yx, cls, pixel_size, si_rules=SIM_SI_RULES)
    if "coordination_right" in ruled:
        out["coordination_right_sim_si_rules"] = ruled["coordination_right"]
    out["C_without_peak"] = labels_without_peak(d, yx, pixel_size)
    return {**out, "tta_s": tta_s, "ring_s": ring_s, "n_Si_det": n_si}


def labels_without_peak(d, yx: np.ndarray, pixel_size: float) -> dict:
    """How many labelled C of a LibraryNet patch ``d`` show no peak of their own: a 2-D
    Gaussian fit (:func:`atomlens.atoms.refine.refine_gaussian`, detection's window)
    started at the label fails (negative amplitude, NaN or a drift past the window),
    split by whether a detection ``yx`` (N, 2) px lies within 0.5 Å of the label:
    ``{"found": [no peak, C], "missed": [no peak, C]}``."""
    from atomlens.atoms.refine import refine_gaussian, refine_window

    ref = np.c_[d["atom_row"], d["atom_col"]].astype(float)
    is_c = np.asarray(d["atom_element"]).astype(str) == "C"
    _, ok, _ = refine_gaussian(np.asarray(d["image"], float), ref, refine_window(pixel_size)[0])
    near = (
        np.hypot(*(ref[:, None] - yx[None]).transpose(2, 0, 1)).min(1) * pixel_size <= 0.5
        if len(yx)
        else np.zeros(len(ref), bool)
    )
    return {
        k: [int((is_c & sel & ~ok).sum()), int((is_c & sel).sum())]
        for k, sel in (("found", near), ("missed", ~near))
    }


def score_librarynet_patch(
    path: Path,
    yx: np.ndarray,
    cls: np.ndarray,
    pixel_size: float,
    bond_pixel_size: float | None = None,
    si_rules=None,
) -> dict:
    """Scores of detections ``yx`` (N, 2) px, ``cls`` (N,) against the labels of one
    LibraryNet patch (see :func:`score_against_labels`)."""
    d = np.load(path, allow_pickle=True)
    ref = np.c_[d["atom_row"], d["atom_col"]].astype(float)
    el = np.asarray(d["atom_element"]).astype(str)
    return score_against_labels(
        ref, el, path.stem.split("_")[0], yx, cls, pixel_size, bond_pixel_size, si_rules
    )


def score_against_labels(
    ref: np.ndarray,
    el: np.ndarray,
    kind: str,
    yx: np.ndarray,
    cls: np.ndarray,
    pixel_size: float,
    bond_pixel_size: float | None = None,
    si_rules=None,
) -> dict:
    """Every labelled atom (``ref`` (M, 2) px, ``el`` (M,)) found within 0.5 Å, the Si
    coordination (``kind`` Si1C3 or Si1C4), extra Si within 3 Å of a labelled Si.
    Bonds (:func:`atomlens.chem.bonds.find_bonds`) are found at ``bond_pixel_size``
    (default ``pixel_size``; bench/librarynet_cv.py tries the pixel size implied by the
    patch's own C-C bonds, :mod:`atomlens.chem.bond_scale`) with ``si_rules``
    (:class:`atomlens.chem.bonds.SiRules`; default: find_bonds' default)."""
    import pandas as pd

    from atomlens.chem.bonds import coordination, find_bonds

    yx = np.asarray(yx, float).reshape(-1, 2)
    cls = np.asarray(cls).astype(str)
    tol = 0.5 / pixel_size
    if len(yx):
        dist = np.hypot(*(ref[:, None] - yx[None]).transpose(2, 0, 1))  # (n_ref, n_det)
        near = dist.argmin(1)
        found = dist.min(1) <= tol
    else:
        dist = np.full((len(ref), 0), np.inf)
        near = np.zeros(len(ref), int)
        found = np.zeros(len(ref), bool)
    right_cls = found & (cls[near] == el) if len(yx) else found
    out = {
        "kind": kind,
        "pixel_size_A": round(pixel_size, 5),
        "n_ref": len(ref),
        "n_found": int(found.sum()),
        "all_found": bool(found.all()),
        "all_found_right_species": bool(right_cls.all()),
        "missed": [f"{e}@{r[0]:.0f},{r[1]:.0f}" for e, r, f in zip(el, ref, found) if not f],
    }
    si_ref = ref[el == "Si"]
    si_det = np.flatnonzero(cls == "Si")
    # extra Si: a detected Si within 3 Å of a labelled Si that is no labelled Si itself
    extra = 0
    for i in si_det:
        dd = np.hypot(*(si_ref - yx[i]).T)
        if len(dd) and dd.min() <= 3.0 / pixel_size and dd.min() > tol:
            extra += 1
    out["extra_Si"] = extra
    if kind in ("Si1C3", "Si1C4"):
        want = 3 if kind == "Si1C3" else 4
        atoms = (
            pd.DataFrame({"frame": 0, "y": yx[:, 0], "x": yx[:, 1], "cls": cls})
            if len(yx)
            else None
        )
        bps = pixel_size if bond_pixel_size is None else bond_pixel_size
        coord = (
            coordination(len(yx), find_bonds(atoms, bps, si_rules=si_rules))
            if atoms is not None
            else []
        )
        got = []
        for r in si_ref:
            j = int(np.argmin(np.hypot(*(yx - r).T))) if len(yx) else -1
            ok = j >= 0 and np.hypot(*(yx[j] - r)) <= tol and cls[j] == "Si"
            got.append(int(coord[j]) if ok else -1)  # -1: the Si itself not found as Si
        out["Si_coordination"] = got
        out["coordination_right"] = bool(got) and all(g == want for g in got)
    return out


def movie_si_scores(
    model: str | None = None, pixel_size: float = 0.078125, si_neighbours: str = "auto"
) -> dict:
    """The LibraryNet scores on each frame of the 48-frame Si1C3 movie (its Si and the
    3 C bonded to it are labelled per frame): a regression check of the Si-neighbour
    search on data the model was shaped on."""
    from atomlens.atoms import detect
    from atomlens.segment.model_file import load_detector

    m = np.load(REAL / "graphene_si1c3_movie.npz")
    det = load_detector(model)
    a = detect(m["frames"], det, pixel_size=pixel_size, si_neighbours=si_neighbours).atoms
    rows = []
    for t in range(len(m["frames"])):
        sel = m["atom_frame"] == t
        ref = np.c_[m["atom_row"][sel], m["atom_col"][sel]].astype(float)
        at = a[a["frame"] == t]
        yx, cls = at[["y", "x"]].to_numpy(float), at["cls"].astype(str).to_numpy()
        rows.append(score_against_labels(ref, m["atom_element"][sel], "Si1C3", yx, cls, pixel_size))
    n = len(rows)
    return {
        "pixel_size_A": pixel_size,
        "si_neighbours": si_neighbours,
        "all_atoms_found_0.5A": f"{sum(r['all_found'] for r in rows)}/{n}",
        "Si_coordination_right": f"{sum(r['coordination_right'] for r in rows)}/{n}",
        "no_extra_Si_3A": f"{sum(r['extra_Si'] == 0 for r in rows)}/{n}",
        "atoms_per_frame": round(len(a) / n, 1),
    }


def librarynet_scores(model: str | None = None, files: list[Path] | None = None) -> dict:
    """The LibraryNet figures (issue 13): one pixel size per patch from AtomLens'
    calibration, one model, no per-file settings."""
    from atomlens.segment.model_file import load_detector

    det = load_detector(model)
    files = files or sorted(LIBRARYNET.glob("*.npz"))
    rows = []
    for f in files:
        img = np.load(f)["image"]
        try:
            ps, method = calibrated_pixel_size(img)
        except Exception as exc:  # noqa: BLE001 - a failed calibration is a failed patch
            rows.append({"file": f.name, "kind": f.stem.split("_")[0], "error": repr(exc)[:200]})
            continue
        rows.append({"file": f.name, "calibration": method, **librarynet_patch(f, det, ps)})
    ok = [r for r in rows if "error" not in r]
    coord = [r for r in ok if "coordination_right" in r]
    n, n_coord = len(rows), sum(r["kind"] in ("Si1C3", "Si1C4") for r in rows)
    return {
        "patches": n,
        "all_atoms_found_0.5A": f"{sum(r['all_found'] for r in ok)}/{n}",
        "all_atoms_found_0.5A_pct": round(100 * sum(r["all_found"] for r in ok) / max(n, 1), 1),
        "all_atoms_found_right_species": f"{sum(r['all_found_right_species'] for r in ok)}/{n}",
        "Si_coordination_right": f"{sum(r['coordination_right'] for r in coord)}/{n_coord}",
        "Si_coordination_right_pct": round(
            100 * sum(r["coordination_right"] for r in coord) / max(n_coord, 1), 1
        ),
        "Si_coordination_right_sim_si_rules": (
            f"{sum(r['coordination_right_sim_si_rules'] for r in coord)}/{n_coord}"
        ),
        "no_extra_Si_3A": f"{sum(r['extra_Si'] == 0 for r in ok)}/{n}",
        # labelled C where a Gaussian fit from the label finds no peak, by found / missed
        "labelled_C_without_peak": {
            k: "{}/{}".format(*np.sum([r["C_without_peak"][k] for r in ok], axis=0).tolist())
            for k in ("found", "missed")
        }
        if ok
        else None,
        "no_extra_Si_3A_pct": round(100 * sum(r["extra_Si"] == 0 for r in ok) / max(n, 1), 1),
        "local_pass_ms_per_Si": round(
            1000 * sum(r["tta_s"] for r in ok) / max(sum(r["n_Si_det"] for r in ok), 1), 1
        ),
        "ring_search_ms_per_Si": round(
            1000 * sum(r["ring_s"] for r in ok) / max(sum(r["n_Si_det"] for r in ok), 1), 2
        ),
        "calibration_errors": n - len(ok),
        "pixel_size_range_A": [
            round(min(r["pixel_size_A"] for r in ok), 4),
            round(max(r["pixel_size_A"] for r in ok), 4),
        ]
        if ok
        else None,
        "per_patch": rows,
    }


def main() -> None:
    p = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--what", default="speed,memory,accuracy,real")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--frames", type=int, default=6, help="1024² frames for the speed test")
    p.add_argument("--val-frames", type=int, default=8, help="held-out frames per source")
    p.add_argument("--model", default=None, help="model file (default: shipped)")
    args = p.parse_args()
    import torch

    torch.set_num_threads(args.threads)
    out: dict = {"cpu_count": os.cpu_count()}
    for what in args.what.split(","):
        t = time.perf_counter()
        if what == "speed":
            out["speed"] = bench_speed(args)
        elif what == "memory":
            out["memory"] = bench_memory(args)
        elif what == "accuracy":
            out["accuracy"] = bench_accuracy(args)
        elif what == "real":
            out["real"] = real_scores(args.model) if REAL.is_dir() else "no ../shared/data/real"
        elif what == "librarynet":
            out["librarynet"] = (
                librarynet_scores(args.model)
                if LIBRARYNET.is_dir()
                else "no ../shared/data/real/librarynet_dev"
            )
            if (REAL / "graphene_si1c3_movie.npz").is_file():  # the same scores, per frame
                out["si1c3_movie_neighbours"] = [
                    movie_si_scores(args.model, ps, mode)
                    for ps in (0.078125, 0.0703, 0.0859)
                    for mode in ("auto", "off")
                ]
        elif what == "calibration":  # no nominal pixel size; σ honesty (bench/calibration.py)
            out["calibration"] = __import__("calibration").figures(REAL)
        elif what == "general":
            sys.path.insert(0, str(Path(__file__).resolve().parent))
            import general as general_bench  # bench/general.py

            out["general"] = {
                k: fn(args.model or "general") if k != "choice" else fn()
                for k, fn in (
                    ("pt", general_bench.bench_pt),
                    ("mos2", general_bench.bench_mos2),
                    ("srtio3", general_bench.bench_srtio3),
                    ("choice", general_bench.bench_choice),
                )
            }
        else:
            raise SystemExit(f"unknown --what {what!r}")
        out.setdefault("bench_seconds", {})[what] = round(time.perf_counter() - t, 1)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
