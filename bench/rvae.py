"""Benchmark: rVAE training / encoding throughput against AtomAI 0.8.1, and window extraction.

Usage::

    .venv/bin/python bench/rvae.py [--n 2000] [--epochs 2] [--batch 200] [--threads 2]
                                    [--repeats 2] [--peer-python PATH] [--skip-peer]

Prints one JSON object. Both implementations train on the same saved 24x24 windows
(cut around the atoms of a simulated graphene movie), with the same batch size and
thread count, on all windows (no test split, as the peer script does); runs alternate
ours / peer ``--repeats`` times and the medians are reported, since the machine may be
shared. Our default rVAE has the paper's decoder (2 hidden layers of 128); AtomAI's
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


def ours_train(x: np.ndarray, epochs: int, batch: int, threads: int, hidden) -> float:
    m = RVAE(window=x.shape[1:], hidden=hidden, seed=0)
    t = time.perf_counter()
    for _ in fit_events(m, x, epochs=epochs, batch_size=batch, train_fraction=1.0,
                        device="cpu", threads=threads):  # fmt: skip
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
    out = subprocess.run([py, str(PEER_RVAE), str(path), "--epochs", str(epochs), "--batch",
                          str(batch), "--threads", str(threads)],
                         capture_output=True, text=True, check=True)  # fmt: skip
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
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    x = make_windows(a.n)
    result: dict = {"n": len(x), "window": list(x.shape[1:]), "epochs": a.epochs,
                    "batch": a.batch, "threads": a.threads, "torch": torch.__version__,
                    "cpu_count": os.cpu_count(), "load_avg_start": os.getloadavg()[0]}  # fmt: skip
    py = None if a.skip_peer else peer_python(a.peer_python)
    ours, ours_deep, peer, enc, peer_enc = [], [], [], [], []
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
    med = statistics.median
    result["ours_train_images_per_s"] = round(med(ours), 1)
    result["ours_train_images_per_s_runs"] = [round(v, 1) for v in ours]
    result["ours_same_depth_as_peer_train_images_per_s"] = round(med(ours_deep), 1)
    result["ours_encode_images_per_s"] = round(med(enc), 1)
    if peer:
        result["peer_train_images_per_s"] = round(med(peer), 1)
        result["peer_train_images_per_s_runs"] = peer
        result["peer_encode_images_per_s"] = round(med(peer_enc), 1)
        result["train_ratio"] = round(med(ours) / med(peer), 2)
        result["train_ratio_same_depth"] = round(med(ours_deep) / med(peer), 2)
        result["encode_ratio"] = round(med(enc) / med(peer_enc), 2)
    if not a.skip_extraction:
        result["extraction"] = extraction()
    result["load_avg_end"] = os.getloadavg()[0]
    print(json.dumps(result, indent=1))


if __name__ == "__main__":
    main()
