"""``atomlens pfm``: domain walls -> skip-rVAE -> switching degree and curvature."""

from __future__ import annotations

import argparse
import time
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``pfm`` subcommand."""
    p = subparsers.add_parser(
        "pfm",
        help="PFM domain-wall workflow: Canny walls, skip-rVAE, switching degree, curvature",
        description=(
            "Find domain walls in a PFM phase movie (Canny), cut windows centred on wall "
            "pixels (time-delayed: frames t and t+delta as two channels), train a "
            "skip-rVAE, and write one row per window (latents, switching degree D, wall "
            "count, curvature) as pfm_windows.csv plus the latent manifold and figures. "
            "With --truth (a simulate-pfm .npz) the true wall velocities are added and "
            "the Spearman correlations printed."
        ),
    )
    p.add_argument("stack", help="phase movie (.npz from simulate-pfm, .npy, .tif, ...)")
    p.add_argument("--out", required=True, help="output directory")
    r = _default()
    p.add_argument(
        "--window", type=int, default=r.window, help=f"window side, pixels (default {r.window})"
    )
    p.add_argument(
        "--per-frame",
        type=int,
        default=r.n_per_frame,
        help=f"wall pixels per frame (default {r.n_per_frame})",
    )
    p.add_argument(
        "--delta",
        type=int,
        default=r.delta,
        help=f"time delay in frames; 0 = same-time windows (default {r.delta})",
    )
    p.add_argument(
        "--canny-sigma",
        type=float,
        default=r.canny_sigma,
        help=f"Canny smoothing (default {r.canny_sigma:g})",
    )
    p.add_argument(
        "--epochs", type=int, default=r.epochs, help=f"rVAE training epochs (default {r.epochs})"
    )
    p.add_argument(
        "--hidden",
        default=",".join(map(str, r.hidden)),
        help="rVAE layer widths, comma separated (paper: 256,256,256,256)",
    )
    p.add_argument(
        "--grid",
        type=int,
        default=r.manifold_grid,
        help=f"latent manifold grid side (default {r.manifold_grid})",
    )
    p.add_argument("--seed", type=int, default=r.seed, help=f"random seed (default {r.seed})")
    p.add_argument("--frames", default=None, help="frames to use, e.g. 0:10 or 0:3,8 (default all)")
    p.add_argument("--truth", default=None, help="simulate-pfm .npz with ground truth")
    p.set_defaults(func=run)


def _default():
    from atomlens.workflows.pfm import PFMRecipe

    return PFMRecipe()


def recipe_from_args(args: argparse.Namespace):  # noqa: ANN201
    """The :class:`~atomlens.workflows.pfm.PFMRecipe` the options describe."""
    from atomlens.errors import SettingsError
    from atomlens.workflows.pfm import PFMRecipe

    try:
        hidden = tuple(int(v) for v in str(args.hidden).split(","))
    except ValueError:
        raise SettingsError(
            f"--hidden must be comma-separated integers, got {args.hidden!r}"
        ) from None
    return PFMRecipe(
        window=args.window,
        n_per_frame=args.per_frame,
        delta=args.delta,
        canny_sigma=args.canny_sigma,
        epochs=args.epochs,
        hidden=hidden,
        manifold_grid=args.grid,
        seed=args.seed,
    )


def run(args: argparse.Namespace) -> int:
    """Fill in the PFM recipe, run the PFM workflow, write the table and figures."""
    from scipy.stats import spearmanr

    from atomlens.io import read_stack
    from atomlens.pfm.simulate import PFMMovie
    from atomlens.pfm.workflow import truth_velocity, write_pfm_outputs
    from atomlens.workflows import pfm
    from atomlens.workflows.events import drain

    recipe = recipe_from_args(args)
    t0 = time.perf_counter()
    stack = read_stack(args.stack)
    phase = stack.frame(0)[None] if stack.n_frames == 1 else stack.data[:]
    if args.frames is not None:
        from atomlens.io.frames import parse_frames

        phase = phase[parse_frames(args.frames, stack.n_frames)]
    result = drain(pfm.run(phase, recipe), lambda ev: print(f"[pfm] {ev.message}", flush=True))
    cfg = result.config
    if args.truth:
        movie = PFMMovie.load(args.truth)
        if movie.phase.shape != phase.shape:
            raise ValueError(
                f"--truth movie {movie.phase.shape} does not match the stack {phase.shape}"
            )
        tv = truth_velocity(movie, result.table, cfg.window, cfg.delta)
        result.table = result.table.assign(v_centre=tv["v_centre"], v_window=tv["v_window"])
        for col in ("D", "D_direct"):
            rho_c = spearmanr(result.table[col], tv["v_centre"], nan_policy="omit")[0]
            rho_w = spearmanr(result.table[col], tv["v_window"], nan_policy="omit")[0]
            print(f"[pfm] Spearman({col}, v_centre) = {rho_c:.3f}; ({col}, v_window) = {rho_w:.3f}")
    paths = write_pfm_outputs(result, Path(args.out), phase)
    print(
        f"wrote {len(paths)} files to {args.out}: {len(result.table)} windows from "
        f"{result.table['frame'].nunique()} frames ({time.perf_counter() - t0:.1f} s)"
    )
    return 0
