"""``atomlens demo [--out DIR] [--gui]``: the whole pipeline on a built-in simulated movie.

Simulates a graphene-Si movie with exact ground truth, writes it as a calibrated TIFF with
its truth tables and a preview figure, runs ``atomlens run`` on it (detection,
chemistry, descriptors, rVAE, latents, HTML report) and scores the detected atoms
against the truth. With ``--gui`` napari opens with every layer loaded.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "demo", help="run the whole pipeline on a built-in simulated movie", description=__doc__
    )
    p.add_argument("--out", default="demo_output", help="output directory (default demo_output)")
    p.add_argument("--frames", type=int, default=12, help="frames to simulate (default 12)")
    p.add_argument("--size", type=int, default=256, help="frame size in pixels (default 256)")
    p.add_argument("--epochs", type=int, default=20, help="rVAE epochs (default 20)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--gui", action="store_true", help="open napari with the results loaded")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    p.set_defaults(func=_demo)


def _demo(args: argparse.Namespace) -> int:
    from atomlens.demo import run_demo

    t0 = time.perf_counter()
    summary = run_demo(
        Path(args.out),
        n_frames=args.frames,
        size=args.size,
        epochs=args.epochs,
        seed=args.seed,
        progress=not args.quiet,
    )
    summary["seconds_total"] = round(time.perf_counter() - t0, 1)
    (Path(args.out) / "demo_summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    if args.gui:
        from atomlens._napari.open_results import open_results_in_napari

        open_results_in_napari(Path(args.out))
    return 0
