"""Live benchmark: a writer drops simulated frames into a folder at a set rate while
``atomlens watch`` analyses them.

Usage: .venv/bin/python bench/live.py [--frames 100] [--size 1024] [--rate 1.0]
           [--latent-model FILE] [--policy all] [--work /tmp/al_live] [--seed 0]

Measures, from outside the watch process:
- latency per frame: from the writer's rename of the file into the folder to the
  frame's rows being committed in OUT (its key in ``watch_state.json``), median and p95;
- the queue: frames waiting when each frame was taken up (``frames.csv``), and whether
  it grows (slope of latency over the run, s per frame);
- the highest sustainable rate: 1 / median service time (the time the watch spends
  per frame once it is free to start it);
- drift error against the simulator's truth (px RMS over frames);
- Si-hop recall and precision against the truth (matched within 0.7 Å on the same frame);
- CPU seconds per frame (all threads of the watch): on a shared machine the wall time
  per frame is inflated by the load, the CPU time much less so.
Prints one JSON object (also written to WORK/live_bench.json), with the machine load.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np


def simulate(frames: int, size: int, seed: int):
    from atomlens.simulate import simulate_movie

    return simulate_movie(
        frames,
        size=size,
        pixel_size=0.1,
        seed=seed,
        n_si3=max(4, size // 64),
        si_hop_prob=0.2,
        drift_px_per_frame=0.3,
        n_holes=1,
    )


def writer(movie, folder: Path, rate: float, arrived: dict, done: threading.Event) -> None:
    """Drop one frame every 1/rate s (write to a hidden temporary, then rename)."""
    from atomlens.io.writers import write_tiff

    t0 = time.time()
    for t in range(movie.n_frames):
        wait = t0 + t / rate - time.time()
        if wait > 0:
            time.sleep(wait)
        tmp = folder / f".frame_{t:04d}.tif.tmp"
        write_tiff(tmp, movie.frames[t], movie.pixel_size)
        name = f"frame_{t:04d}.tif"
        os.replace(tmp, folder / name)
        arrived[f"{name}#0"] = time.time()
    done.set()


def watch_cmd(folder: Path, out: Path, args: argparse.Namespace) -> list[str]:
    cmd = [
        sys.executable,
        "-m",
        "atomlens",
        "watch",
        str(folder),
        "--out",
        str(out),
        "--settle",
        "0",
        "--idle-stop",
        "20",
        "--policy",
        args.policy,
        "--max-frames",
        str(args.frames),
    ]
    if args.latent_model:
        cmd += ["--latent-model", args.latent_model]
    return cmd


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--frames", type=int, default=100)
    ap.add_argument("--size", type=int, default=1024)
    ap.add_argument("--rate", type=float, default=1.0, help="frames per second written")
    ap.add_argument("--policy", default="all", choices=("all", "newest"))
    ap.add_argument("--latent-model", default=None)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default="/tmp/al_live")
    args = ap.parse_args()

    from atomlens.live.evaluate import drift_rms, match_events, truth_drift, truth_hops
    from atomlens.live.output import read_state, read_table

    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    folder, out = work / "incoming", work / "out"
    folder.mkdir(parents=True)
    t0 = time.time()
    movie = simulate(args.frames, args.size, args.seed)
    sim_s = time.time() - t0
    movie.atoms.to_parquet(work / "truth_atoms.parquet")  # for a closer look afterwards
    load_before = os.getloadavg()

    proc = subprocess.Popen(
        watch_cmd(folder, out, args), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.extend(proc.stdout), daemon=True)
    reader.start()
    time.sleep(8.0)  # let the watch import torch and load the detector before frames come
    arrived: dict[str, float] = {}
    committed: dict[str, float] = {}
    done = threading.Event()
    wt = threading.Thread(
        target=writer, args=(movie, folder, args.rate, arrived, done), daemon=True
    )
    wt.start()
    loads = []
    while proc.poll() is None:
        if (out / "watch_state.json").exists():
            try:
                state = read_state(out)
            except Exception:  # noqa: BLE001 - replaced while reading: try again
                state = None
            now = time.time()
            for key in (state or {}).get("processed", []):
                committed.setdefault(key, now)
        if len(loads) < 1000 and int(time.time() * 10) % 50 == 0:
            loads.append(os.getloadavg()[0])
        time.sleep(0.02)
    reader.join(5)
    if proc.returncode:
        raise SystemExit("watch failed:\n" + "".join(lines[-30:]))

    keys = [k for k in arrived if k in committed]
    lat = np.array([committed[k] - arrived[k] for k in keys])
    frames = read_table(out, "frames")
    proc_rows = frames[frames["status"] == "processed"].sort_values("frame")
    # service time: from when the watch could start a frame to its commit
    start = np.maximum(
        proc_rows["arrived"].to_numpy(), np.r_[-np.inf, proc_rows["done"].to_numpy()[:-1]]
    )
    service = proc_rows["done"].to_numpy() - start
    slope = float(np.polyfit(np.arange(len(lat)), lat, 1)[0]) if len(lat) > 2 else float("nan")

    drift = read_table(out, "drift").sort_values("frame")[["dy_px", "dx_px"]].to_numpy()
    truth = truth_drift(movie.atoms)
    events = read_table(out, "events")
    hops = events[events["type"] == "si_hop"] if len(events) else events
    true_hops = truth_hops(movie.atoms, movie.pixel_size)
    if args.policy == "newest":
        kept = set(proc_rows["frame"])
        true_hops = true_hops[true_hops["frame"].isin(kept)]
    score = match_events(hops, true_hops, radius_px=0.7 / movie.pixel_size)
    stage_cols = [c for c in frames if c.startswith("t_")]
    result = {
        "frames": args.frames,
        "size": args.size,
        "rate_fps": args.rate,
        "policy": args.policy,
        "latent_model": args.latent_model,
        "processed": int(len(proc_rows)),
        "skipped": int((frames["status"] == "skipped").sum()),
        "latency_s": {
            "median": float(np.median(lat)),
            "p95": float(np.percentile(lat, 95)),
            "max": float(lat.max()),
            "slope_s_per_frame": slope,
        },
        "queue_max": int(proc_rows["queue"].max()),
        "queue_last10_mean": float(proc_rows["queue"].tail(10).mean()),
        "service_s": {
            "median": float(np.median(service)),
            "p95": float(np.percentile(service, 95)),
        },
        "max_sustained_fps": float(1.0 / np.median(service)),
        "cpu_s_per_frame_median": (
            float(proc_rows["cpu_s"].median()) if "cpu_s" in proc_rows else None
        ),
        "stage_median_s": {
            c[2:]: float(proc_rows[c].median()) for c in stage_cols if proc_rows[c].notna().any()
        },
        "drift_rms_px": drift_rms(drift, truth[: len(drift)]) if len(drift) == len(truth) else None,
        "drift_max_px": float(np.abs(truth).max()),
        "si_hops": {"truth": int(len(true_hops)), "found": int(len(hops)), **score},
        "events_by_type": events["type"].value_counts().to_dict(),
        "machine": {
            "cpus": os.cpu_count(),
            "load_before": load_before,
            "load_during_mean": float(np.mean(loads)) if loads else None,
            "load_after": os.getloadavg(),
        },
        "simulate_s": sim_s,
    }
    (work / "live_bench.json").write_text(json.dumps(result, indent=2))
    print(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
