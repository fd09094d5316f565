"""Pipeline benchmark: peak memory of detection + chemistry on a long 1024² movie, and
identical atom tables from the in-process and the Dask (2-worker local cluster) paths.

Usage: .venv/bin/python bench/pipeline.py [--frames 200] [--size 1024] [--work /tmp/al_bench]
Prints one JSON object. The movie is a simulated 1024² sequence (a few simulated frames
cycled with fresh noise) written as a .npy file and read memory-mapped.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

CONFIG = """
[input]
lazy = true
[detect]
save_maps = false
[latent]
enabled = false
[report]
enabled = false
"""


def make_movie(path: Path, frames: int, size: int) -> float:
    from atomlens.simulate import simulate_movie

    if path.exists():
        return 0.1
    base = simulate_movie(n_frames=min(frames, 4), size=size, pixel_size=0.1, seed=1)
    out = np.lib.format.open_memmap(path, mode="w+", dtype=np.float32, shape=(frames, size, size))
    rng = np.random.default_rng(0)
    for t in range(frames):
        f = base.frames[t % len(base.frames)]
        out[t] = f + rng.normal(0, 0.02 * float(f.std()), f.shape).astype(np.float32)
    out.flush()
    del out
    return base.pixel_size


def run(stack: Path, out: Path, cfg: Path, scheduler: str) -> tuple[float, float]:
    shutil.rmtree(out, ignore_errors=True)  # measure a fresh run, not the cache
    cmd = [
        "/usr/bin/time",
        "-v",
        sys.executable,
        "-m",
        "atomlens",
        "run",
        str(stack),
        "--out",
        str(out),
        "--config",
        str(cfg),
        "--pixel-size",
        "0.1",
        "--scheduler",
        scheduler,
        "--quiet",
    ]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    dt = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(proc.stderr[-3000:])
    rss_kb = float(re.search(r"Maximum resident set size \(kbytes\): (\d+)", proc.stderr).group(1))
    return dt, rss_kb / 1024**2


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--frames", type=int, default=200)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--work", default="/tmp/al_bench")
    a = ap.parse_args()
    work = Path(a.work)
    work.mkdir(parents=True, exist_ok=True)
    cfg = work / "bench.toml"
    cfg.write_text(CONFIG)
    big = work / f"movie_{a.frames}x{a.size}.npy"
    make_movie(big, a.frames, a.size)
    seconds, peak_gb = run(big, work / "out_big", cfg, "none")
    small = work / "movie_8x512.npy"
    make_movie(small, 8, 512)
    _, _ = run(small, work / "out_mem", cfg, "none")
    dask_s, _ = run(small, work / "out_dask", cfg, "local")
    exact = [
        "frame",
        "cls",
        "coordination",
        "ring5",
        "ring6",
        "ring7",
        "edge",
        "defect_id",
        "track_id",
    ]
    mem = pd.read_parquet(work / "out_mem" / "atoms.parquet")
    dsk = pd.read_parquet(work / "out_dask" / "atoms.parquet")
    exact = [c for c in exact if c in mem.columns]
    same_rows = len(mem) == len(dsk)
    same = same_rows and mem[exact].reset_index(drop=True).equals(dsk[exact].reset_index(drop=True))
    # positions may differ in the last float digits (workers run torch with other thread
    # counts, so convolutions sum in another order)
    max_dpos = (
        float(np.abs(mem[["y", "x"]].to_numpy() - dsk[["y", "x"]].to_numpy()).max())
        if same_rows
        else float("nan")
    )
    print(
        json.dumps(
            {
                "movie": [a.frames, a.size, a.size],
                "movie_GB_float32": round(a.frames * a.size**2 * 4 / 1024**3, 3),
                "detect_chem_seconds": round(seconds, 1),
                "frames_per_s": round(a.frames / seconds, 3),
                "peak_rss_GB": round(peak_gb, 3),
                "peak_target_GB": 1.5,
                "dask_local_2_workers_same_atoms_species_chemistry_tracks": bool(same),
                "dask_max_position_difference_px": max_dpos,
                "dask_seconds_8x512": round(dask_s, 1),
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
