"""Benchmark: rVAE training / encoding throughput against AtomAI 0.8.1, and window extraction.

Usage::

    .venv/bin/python bench/rvae.py [--n 2000] [--epochs 2] [--batch 200] [--threads 2]
                                    [--repeats 2] [--peer-python PATH] [--skip-peer]

Prints one JSON object. Both implementations train on the same saved 24x24 windows
(cut around the atoms of a simulated graphene movie), with the same batch size and
thread count, on all windows (no test split, as the peer script does); runs alternate
ours / peer ``--repeats`` times and the medians are reported, since the machine may be
shared. Ours runs with its defaults (``micro_batch="auto"``: chunks of 5 windows on
worker threads); ``train_ratio`` is that path against AtomAI, ``train_ratio_whole_batch``
ours with ``micro_batch=None``. Our default rVAE has the paper's decoder (2 hidden layers of 128); AtomAI's
default decoder has 3 (a coordinate/latent layer plus 2 hidden layers), so the same-depth
number (``hidden=(128, 128, 128)``) is reported too.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from atomlens.descriptors import extract_windows, normalize_stack
from atomlens.models import RVAE
from atomlens.train import fit_events

REPO = Path(__file__).resolve().parents[1]
PEER_SETUP = REPO.parent / "shared" / "tools" / "peers" / "setup.sh"
PEER_RVAE = REPO.parent / "shared" / "tools" / "peers" / "atomai_rvae.py"

PEER_ENCODE = """
import sys, time, json, numpy as np, torch, atomai as aoi
torch.set_num_threads(int(sys.argv[2]))
x = np.load(sys.argv[1]).astype(np.float32)
m = aoi.models.rVAE(x.shape[1:], latent_dim=2, seed=0)
m.encode(x[:200], batch_size=200)
t = time.perf_counter(); m.encode(x, batch_size=int(sys.argv[3])); dt = time.perf_counter() - t
print(json.dumps({"images_per_s": round(len(x) / dt, 1)}))
"""


def make_windows(n: int, window: int = 24, seed: int = 0) -> np.ndarray:
    """``n`` atom-centred windows from a simulated graphene movie (random atoms)."""
    try:
        from atomlens.simulate import simulate_movie

        movie = simulate_movie(4, size=256, pixel_size=0.1, seed=seed)
        frames, atoms = movie.frames, movie.atoms[["frame", "y", "x"]]
    except Exception as exc:  # noqa: BLE001 - fall back to noise if the simulator changes
        print(f"simulator unavailable ({exc}); using random windows", file=sys.stderr)
        rng = np.random.default_rng(seed)
        frames = rng.random((4, 256, 256), dtype=np.float32)
        atoms = pd.DataFrame({"frame": rng.integers(0, 4, 4000), "y": rng.uniform(0, 256, 4000),
                              "x": rng.uniform(0, 256, 4000)})  # fmt: skip
    sub = extract_windows(normalize_stack(frames, "percentile"), atoms, window)
    rng = np.random.default_rng(seed)
    return sub.images[rng.choice(len(sub), n, replace=len(sub) < n)]


def ours_train(x: np.ndarray, epochs: int, batch: int, threads: int, hidden,
               micro_batch: int | str | None = "auto") -> tuple[float, RVAE]:  # fmt: skip
    m = RVAE(window=x.shape[1:], hidden=hidden, seed=0)
    t = time.perf_counter()
    for _ in fit_events(m, x, epochs=epochs, batch_size=batch, train_fraction=1.0,
                        device="cpu", threads=threads, micro_batch=micro_batch):  # fmt: skip
        pass
    dt = time.perf_counter() - t
    return len(x) * epochs / dt, m


def ours_encode(m: RVAE, x: np.ndarray, threads: int, batch: int = 2048) -> float:
    torch.set_num_threads(threads)
    m.transform(x[:200])
    t = time.perf_counter()
    m.transform(x, batch_size=batch)
    return len(x) / (time.perf_counter() - t)


def peer_python(arg: str | None) -> str | None:
    if arg:
        return arg
    try:
        out = subprocess.run(["bash", str(PEER_SETUP)], capture_output=True, text=True, check=True)
        return out.stdout.strip().splitlines()[-1]
    except (subprocess.CalledProcessError, FileNotFoundError) as exc:
        print(f"peer setup failed: {exc}", file=sys.stderr)
        return None


def peer_train(py: str, path: Path, epochs: int, batch: int, threads: int) -> dict:
    out = subprocess.run(
        [
            py,
            str(PEER_RVAE),
            str(path),
            "--epochs",
            str(epochs),
            "--batch",
            str(batch),
            "--threads",
            str(threads),
        ],
        capture_output=True,
        text=True,
        check=True,
        cwd=path.parent,
    )  # AtomAI saves model.tar in its working directory
    return json.loads(out.stdout.strip().splitlines()[-1])


def peer_encode(py: str, path: Path, threads: int, batch: int = 2048) -> dict:
    out = subprocess.run([py, "-c", PEER_ENCODE, str(path), str(threads), str(batch)],
                         capture_output=True, text=True, check=True)  # fmt: skip
    return json.loads(out.stdout.strip().splitlines()[-1])


def extraction(n: int = 80_000, window: int = 48, frames: int = 50, size: int = 512,
               repeats: int = 3) -> dict:  # fmt: skip
    rng = np.random.default_rng(0)
    stack = rng.random((frames, size, size), dtype=np.float32)
    half = window // 2
    centres = pd.DataFrame({"frame": rng.integers(0, frames, n),
                            "y": rng.uniform(half, size - half - 1, n),
                            "x": rng.uniform(half, size - half - 1, n)})  # fmt: skip
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        sub = extract_windows(stack, centres, window)
        times.append(time.perf_counter() - t)
        assert len(sub) == n
        del sub
    return {"n_windows": n, "window": window, "frames": frames, "frame_size": size,
            "seconds_best": round(min(times), 3), "seconds_median": round(statistics.median(times), 3)}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--n", type=int, default=2000)
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--batch", type=int, default=200)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--repeats", type=int, default=2)
    p.add_argument("--peer-python", default=None)
    p.add_argument("--skip-peer", action="store_true")
    p.add_argument("--skip-extraction", action="store_true")
    p.add_argument(
        "--science",
        action="store_true",
        help="instead: sublattice/edge on a simulated movie, Si vs C on real data",
    )
    p.add_argument("--science-epochs", type=int, default=20)
    p.add_argument("--science-small", action="store_true", help="the small movie of the tests")
    p.add_argument("--real-epochs", type=int, default=15)
    p.add_argument("--real-seed", type=int, default=0)
    p.add_argument("--skip-simulated", action="store_true", help="--science: the real movie only")
    a = p.parse_args()
    if a.science:
        real = REPO.parent / "shared" / "data" / "real" / "graphene_si1c3_movie.npz"
        res = (
            {}
            if a.skip_simulated
            else {"simulated": science_simulated(a.science_epochs, small=a.science_small)}
        )
        if real.exists():
            res["real_si1c3"] = science_real(real, a.real_epochs, seed=a.real_seed)
        print(json.dumps(res, indent=1))
        return
    torch.set_num_threads(a.threads)
    x = make_windows(a.n)
    result: dict = {"n": len(x), "window": list(x.shape[1:]), "epochs": a.epochs,
                    "batch": a.batch, "threads": a.threads, "torch": torch.__version__,
                    "cpu_count": os.cpu_count(), "load_avg_start": os.getloadavg()[0]}  # fmt: skip
    py = None if a.skip_peer else peer_python(a.peer_python)
    ours, ours_deep, peer, enc, peer_enc, ours_plain = [], [], [], [], [], []
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "windows.npy"
        np.save(path, x)
        for _ in range(a.repeats):
            ips, model = ours_train(x, a.epochs, a.batch, a.threads, (128, 128))
            ours.append(ips)
            enc.append(ours_encode(model, x, a.threads))
            if py:
                peer.append(peer_train(py, path, a.epochs, a.batch, a.threads)["images_per_s"])
                peer_enc.append(peer_encode(py, path, a.threads)["images_per_s"])
            ours_deep.append(ours_train(x, a.epochs, a.batch, a.threads, (128, 128, 128))[0])
            ours_plain.append(ours_train(x, a.epochs, a.batch, a.threads, (128, 128), None)[0])
    med = statistics.median
    result["ours_train_images_per_s"] = round(med(ours), 1)
    result["ours_train_images_per_s_runs"] = [round(v, 1) for v in ours]
    result["ours_same_depth_as_peer_train_images_per_s"] = round(med(ours_deep), 1)
    result["ours_encode_images_per_s"] = round(med(enc), 1)
    result["micro_batch_auto"] = RVAE(window=x.shape[1:]).auto_micro_batch()
    result["ours_whole_batch_train_images_per_s"] = round(med(ours_plain), 1)
    if peer:
        result["peer_train_images_per_s"] = round(med(peer), 1)
        result["peer_train_images_per_s_runs"] = peer
        result["peer_encode_images_per_s"] = round(med(peer_enc), 1)
        result["train_ratio"] = round(med(ours) / med(peer), 2)
        result["train_ratio_per_repeat"] = [round(o / q, 2) for o, q in zip(ours, peer)]
        result["train_ratio_same_depth"] = round(med(ours_deep) / med(peer), 2)
        result["encode_ratio"] = round(med(enc) / med(peer_enc), 2)
        result["train_ratio_whole_batch"] = round(med(ours_plain) / med(peer), 2)
    if not a.skip_extraction:
        result["extraction"] = extraction()
    result["load_avg_end"] = os.getloadavg()[0]
    print(json.dumps(result, indent=1))


# -- science checks (python bench/rvae.py --science) ---------------------------------------

#: rVAE settings under which the angle latent, not a content latent or the shifts, takes up
#: the sublattice (docs/rvae.md, "Sublattices in the angle")
ANGLE_SETTINGS = dict(latent_dim=0, translation=False, loss="bce", rot_prior=3.14, lr=3e-3)
#: settings for the Si vs C check on the real movie (frames binned 4 x 4, ~0.31 A/px)
REAL_SETTINGS = dict(latent_dim=6, loss="mse", hidden=(64, 64), lr=1e-3)


def science_simulated(epochs: int = 20, threads: int = 1, small: bool = False) -> dict:
    """Sublattice (threshold accuracy of ``angle``, ``z`` and the shifts against the
    simulator's sublattice) and edge (content-latent ROC AUC) on a simulated movie, for the
    default settings and for :data:`ANGLE_SETTINGS`."""
    from sklearn.metrics import roc_auc_score

    from atomlens.latent import encode_atoms, threshold_accuracy
    from atomlens.simulate import simulate_movie

    if small:  # the movie of tests/test_rvae_sublattice.py
        movie = simulate_movie(2, size=96, pixel_size=0.3, seed=1, n_holes=1, hole_radius_A=5.0)
        window, hidden, batch = 16, (64, 64), 25
    else:
        movie = simulate_movie(4, size=160, pixel_size=0.3, seed=1, n_holes=2, hole_radius_A=5.0)
        window, hidden, batch = 24, (128, 128), 50
    data = normalize_stack(movie.frames, "percentile")
    subs = extract_windows(data, movie.atoms, window)
    out: dict = {"windows": len(subs), "window": window, "epochs": epochs}
    runs = {"default": dict(latent_dim=2, lr=2e-3, rot_prior=0.1), "angle": ANGLE_SETTINGS}
    for name, kw in runs.items():
        model = RVAE(window=window, hidden=hidden, seed=0, **kw)
        t = time.perf_counter()
        model.fit(subs, epochs=epochs, batch_size=batch, threads=threads)
        table = encode_atoms(model, data, movie.atoms).dropna(subset=["angle"])
        lat = table[table["sublattice"] >= 0]
        sub = lat["sublattice"].to_numpy()
        res = {"settings": {k: v for k, v in kw.items()}, "train_s": round(time.perf_counter() - t, 1),
               "angle_mean_by_sublattice": [round(float(lat.loc[sub == k, "angle"].mean()), 4) for k in (0, 1)],
               "angle_sd_within": round(float(lat.groupby("sublattice")["angle"].std().mean()), 4)}  # fmt: skip
        cols = ["angle", "dx", "dy"] + [f"z{i + 1}" for i in range(kw["latent_dim"])]
        for c in cols:
            res[f"sublattice_accuracy_{c}"] = round(threshold_accuracy(lat[c].to_numpy(), sub), 3)
        for c in cols[3:]:
            auc = roc_auc_score(table["edge"], table[c])
            res[f"edge_auc_{c}"] = round(max(auc, 1 - auc), 3)
        out[name] = res
    return out


def bin_frames(frames: np.ndarray, b: int) -> np.ndarray:
    """Mean over b x b pixel blocks (the frame is cropped to a multiple of b)."""
    t, y, x = frames.shape[0], frames.shape[1] // b * b, frames.shape[2] // b * b
    return frames[:, :y, :x].reshape(t, y // b, b, x // b, b).mean((2, 4))


def science_real(path: Path, epochs: int = 15, threads: int = 1, out_dir: Path | None = None,
                 binning: int = 4, window: int = 16, seed: int = 0) -> dict:  # fmt: skip
    """Latents of the annotated Si atom against bulk C in the real Si-graphene movie.

    Atoms: the shipped detector (``atomlens.atoms.detect``) on the raw frames. Windows:
    frames binned ``binning`` x ``binning`` (0.078 -> 0.31 A/px, C-C ~ 4.5 px) and scaled
    by percentiles, ``window`` px around every detected atom; rVAE with
    :data:`REAL_SETTINGS`. The Si is the detection nearest (< 5 px) to the annotated Si of
    its frame; bulk C = detections farther than 40 px (3 A) from every annotated atom.
    Reported: the Mahalanobis distance of the Si from the bulk-C cloud in (z1..zk), the
    Si's percentile and rank (1 = farthest) among all atoms of its frame by that distance
    (medians over frames), the ROC AUC of that distance for Si vs bulk C, and z-scores."""
    from sklearn.metrics import roc_auc_score

    from atomlens.atoms import detect

    d = np.load(path)
    frames = d["frames"].astype(np.float32)
    t = time.perf_counter()
    det = detect(frames, pixel_size=float(d["nominal_pixel_size_angstrom"]), device="cpu").atoms
    detect_s = time.perf_counter() - t
    ann = pd.DataFrame({"frame": d["atom_frame"], "y": d["atom_row"], "x": d["atom_col"],
                        "element": d["atom_element"]})  # fmt: skip
    label = np.full(len(det), "C", object)
    for fr, grp in ann.groupby("frame"):
        rows = np.flatnonzero(det["frame"].to_numpy() == fr)
        if not len(rows):
            continue
        dist = np.hypot(det["y"].to_numpy()[rows, None] - grp["y"].to_numpy()[None],
                        det["x"].to_numpy()[rows, None] - grp["x"].to_numpy()[None])  # fmt: skip
        label[rows[(dist < 40).any(1)]] = "near"
        for k, el in enumerate(grp["element"]):
            if el == "Si" and dist[:, k].min() < 5:
                label[rows[dist[:, k].argmin()]] = "Si"
    data = normalize_stack(bin_frames(frames, binning), "percentile")
    atoms = det[["frame", "y", "x"]].copy()
    atoms[["y", "x"]] /= binning
    subs = extract_windows(data, atoms, window)
    model = RVAE(window=window, seed=seed, **REAL_SETTINGS)
    t = time.perf_counter()
    model.fit(subs, epochs=epochs, batch_size=50, threads=threads)
    lat = model.transform(subs)
    lat["label"], lat["frame"] = label[subs.index], atoms["frame"].to_numpy()[subs.index]
    cols = [c for c in lat.columns if c.startswith("z")]
    c = lat.loc[lat["label"] == "C", cols].to_numpy()
    diff = lat[cols].to_numpy() - c.mean(0)
    lat["maha"] = np.sqrt(np.einsum("ij,jk,ik->i", diff, np.linalg.pinv(np.cov(c.T)), diff))
    si = lat["label"] == "Si"
    pct, rank = [], []
    for _, g in lat.groupby("frame"):
        if si[g.index].any():
            v = g.loc[si[g.index], "maha"].iloc[0]
            pct.append(float((g["maha"] < v).mean()))
            rank.append(int((g["maha"] > v).sum()) + 1)
    both = lat["label"].isin(["C", "Si"])
    out = {"detected_atoms": len(det), "detect_s": round(detect_s, 1), "binning": binning,
           "window": window, "windows": len(subs), "si_windows": int(si.sum()), "epochs": epochs,
           "settings": {k: v for k, v in REAL_SETTINGS.items()}, "seed": seed,
           "train_s": round(time.perf_counter() - t, 1),
           "si_mahalanobis_median": round(float(lat.loc[si, "maha"].median()), 2),
           "bulk_c_mahalanobis_median": round(float(lat.loc[lat["label"] == "C", "maha"].median()), 2),
           "si_percentile_in_frame_median": round(float(np.median(pct)), 3),
           "si_rank_in_frame_median": float(np.median(rank)),
           "atoms_per_frame_median": float(lat.groupby("frame").size().median()),
           "si_vs_c_auc": round(float(roc_auc_score(si[both], lat.loc[both, "maha"])), 3),
           **{f"si_z_score_{k}": round(float((lat.loc[si, k].median() - lat.loc[lat["label"] == "C", k].mean())
                                             / lat.loc[lat["label"] == "C", k].std()), 2) for k in cols}}  # fmt: skip
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
        model.save(out_dir / "rvae_real.pt")
    return out


if __name__ == "__main__":
    main()
