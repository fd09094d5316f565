"""``atomlens movie RESULTS --colour z1 --out movie.mp4``: a shareable movie of a run.

RESULTS is an ``atomlens run`` output folder: the movie is read from the path in its
``run.json``, the atoms from ``atoms.parquet`` (or ``atoms.csv``), and the frames the run
analysed are rendered with :mod:`atomlens.viz.movie` (scale bar, frame counter, colour
bar with the feature's name, units and limits fixed over all frames).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "movie",
        help="MP4 or GIF of a run's atoms coloured by a feature (scale bar, colour bar)",
        description=(
            "Render the frames an `atomlens run` analysed with its atoms coloured by one feature "
            "(a latent such as z1, angle, cls, coordination...), with scale bar, frame counter "
            "and colour bar, and write them as .mp4 (H.264) or .gif."
        ),
    )
    p.add_argument(
        "results", help="an `atomlens run` output folder (holds run.json, atoms.parquet)"
    )
    p.add_argument(
        "--colour",
        "--color",
        dest="colour",
        default="cls",
        help="feature column to colour the atoms by (default cls: species)",
    )
    p.add_argument("--out", required=True, help="movie file to write: .mp4 or .gif")
    p.add_argument("--fps", type=float, default=5.0, help="frames per second (default 5)")
    p.add_argument(
        "--zoom",
        type=int,
        default=None,
        help="movie pixels per data pixel (default: smallest giving >= 512 px, max 4)",
    )
    p.add_argument(
        "--stack",
        default=None,
        help="the movie file, when it moved since the run (default: run.json's path)",
    )
    p.add_argument(
        "--quality",
        type=float,
        default=5.0,
        help="MP4 quality 0-10 (default 5; higher is sharper and larger)",
    )
    p.add_argument("--no-atoms", action="store_true", help="the frames only, no atom markers")
    p.set_defaults(func=run)


def load_results(results: str | Path, stack: str | None = None) -> dict[str, Any]:
    """The pieces of a run folder a movie needs: ``stack`` (an :class:`atomlens.io.Stack`),
    ``atoms`` (DataFrame), ``pixel_size`` (Å) and ``frames`` (indices the run analysed)."""
    import pandas as pd

    from atomlens.io import read_stack
    from atomlens.io.frames import parse_frames

    out = Path(results)
    if (out / "run").is_dir() and not (out / "run.json").exists():
        out = out / "run"  # an `atomlens demo` folder
    info_path = out / "run.json"
    if not info_path.exists():
        raise FileNotFoundError(
            f"{results} is not an `atomlens run` output folder (no run.json inside); "
            "pass the folder given to `atomlens run --out`"
        )
    info = json.loads(info_path.read_text())
    if (out / "atoms.parquet").exists():
        atoms = pd.read_parquet(out / "atoms.parquet")
    elif (out / "atoms.csv").exists():
        atoms = pd.read_csv(out / "atoms.csv")
    else:
        raise FileNotFoundError(f"{out} has no atoms.parquet or atoms.csv: the run did not finish")
    stack_path = Path(stack or info["stack"])
    if not stack_path.exists():
        raise FileNotFoundError(
            f"the run's movie {stack_path} is gone; pass its new path with --stack"
        )
    movie = read_stack(stack_path)
    spec = ((info.get("config") or {}).get("input") or {}).get("frames")
    frames = parse_frames(spec, movie.n_frames)
    px = float(info.get("pixel_size_A") or movie.pixel_size or 0.0) or None
    return {"stack": movie, "atoms": atoms, "pixel_size": px, "frames": frames}


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from atomlens.viz.movie import MovieStyle, movie_events

    parts = load_results(args.results, args.stack)
    frames = parts["frames"]
    data = parts["stack"].data
    images = np.stack([np.asarray(data[i], dtype=np.float32) for i in frames])
    style = MovieStyle(zoom=args.zoom, show_atoms=not args.no_atoms)
    gen = movie_events(
        images,
        parts["atoms"],
        parts["pixel_size"],
        args.out,
        args.colour,
        fps=args.fps,
        style=style,
        frame_numbers=frames,
        quality=args.quality,
    )
    while True:
        try:
            ev = next(gen)
        except StopIteration as done:
            path = done.value
            break
        print(f"\rmovie: frame {ev.done}/{ev.total}, ~{ev.eta_s:.0f} s left", end="", flush=True)
    size_mb = Path(path).stat().st_size / 1e6
    print(f"\nwrote {path} ({len(frames)} frames, {size_mb:.2f} MB)")
    return 0
