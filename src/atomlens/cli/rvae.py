"""``atomlens rvae``: train an rVAE (or skip-rVAE) on atom-centred windows of a movie and
write the model, the atom table with latent columns, and figures."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``rvae`` subcommand."""
    p = subparsers.add_parser(
        "rvae",
        help="rotationally invariant VAE on atom-centred windows",
        description=(
            "Cut windows around every atom of ATOMS (CSV with frame,y,x in pixels), train a "
            "rotationally invariant VAE, and write DIR/rvae.pt, DIR/atoms_latent.csv (the "
            "atom table with angle,dx,dy,z1,z2,... columns; NaN where a window crossed the "
            "frame edge), DIR/manifold.png and DIR/latent_vs_frame.png."
        ),
    )
    p.add_argument("stack", help="image or movie file (npy, npz, tif, dm3/dm4, emd, ...)")
    p.add_argument("atoms", help="atom table CSV with frame, y, x (pixels)")
    p.add_argument("--out", required=True, help="output directory")
    d, r = _defaults()
    p.add_argument(
        "--window",
        type=int,
        default=d.window,
        help=f"window side in pixels of the (binned) movie (default {d.window})",
    )
    p.add_argument(
        "--bin",
        type=int,
        default=d.bin,
        help=f"average BIN x BIN pixels before cutting windows (default {d.bin})",
    )
    p.add_argument(
        "--normalize",
        choices=["percentile", "minmax", "zscore", "none"],
        default=d.normalize,
        help=f"movie intensity scaling (default {d.normalize})",
    )
    p.add_argument(
        "--epochs", type=int, default=r.epochs, help=f"training epochs (default {r.epochs})"
    )
    p.add_argument(
        "--batch-size",
        type=int,
        default=r.batch_size,
        help=f"windows per step (default {r.batch_size})",
    )
    p.add_argument(
        "--latent",
        type=int,
        default=r.latent_dim,
        help=f"content latents z1..zk (default {r.latent_dim})",
    )
    p.add_argument("--skip", action="store_true", help="skip-rVAE (latent into every layer)")
    p.add_argument(
        "--hidden",
        default=None,
        help="hidden widths, e.g. 128,128 (default "
        f"{','.join(map(str, r.hidden)) if r.hidden else 'the models'})",
    )
    p.add_argument("--lr", type=float, default=r.lr, help=f"Adam learning rate (default {r.lr:g})")
    p.add_argument(
        "--rot-prior",
        type=float,
        default=r.rot_prior,
        help=f"SD of the angle prior in radians (default {r.rot_prior:g})",
    )
    p.add_argument(
        "--no-translation",
        action="store_true",
        help="no x/y shift latents (with --latent 0 and a wide --rot-prior the "
        "angle alone carries the sublattice; see docs/rvae.md)",
    )
    p.add_argument("--loss", choices=["mse", "bce"], default=r.loss)
    p.add_argument("--encoder", choices=["mlp", "conv"], default=r.encoder)
    p.add_argument(
        "--source",
        choices=["raw", "maps"],
        default=d.source,
        help="raw: scaled image intensities; maps: detector probability maps",
    )
    p.add_argument(
        "--channels",
        default=None,
        help="with --source maps: channel indices to use, e.g. 1,2 (default: all but background)",
    )
    p.add_argument("--train-fraction", type=float, default=r.train_fraction)
    p.add_argument(
        "--max-train-windows",
        type=int,
        default=r.max_train_windows,
        help=f"train on a random subset this large, encode all (default {r.max_train_windows})",
    )
    p.add_argument("--pixel-size", type=float, default=None, help="Å per pixel override")
    p.add_argument("--frames", default=None, help="frames to use, e.g. 0:10 or 0:3,8 (default all)")
    p.add_argument("--device", default=r.device, help="auto, cpu, cuda or mps")
    p.add_argument("--seed", type=int, default=r.seed)
    p.add_argument(
        "--threads",
        type=int,
        default=r.threads,
        help="torch CPU threads while training (default: as set)",
    )
    p.set_defaults(func=run)


def _defaults():
    from atomlens.workflows.latent import DescriptorRecipe, LatentRecipe

    return DescriptorRecipe(), LatentRecipe()


def recipes_from_args(args: argparse.Namespace) -> tuple[Any, Any]:
    """The descriptor and latent recipes the options describe."""
    from atomlens.errors import SettingsError
    from atomlens.workflows.latent import DescriptorRecipe, LatentRecipe

    try:
        hidden = (
            tuple(int(h) for h in args.hidden.split(",")) if args.hidden else LatentRecipe().hidden
        )
        chans = tuple(int(c) for c in args.channels.split(",")) if args.channels else None
    except ValueError:
        raise SettingsError(
            "--hidden and --channels take comma-separated integers, e.g. 128,128"
        ) from None
    desc = DescriptorRecipe(
        window=args.window,
        source=args.source,
        normalize=args.normalize,
        bin=args.bin,
        channels=chans,
    )
    rec = LatentRecipe(
        model="skip-rvae" if args.skip else "rvae",
        latent_dim=args.latent,
        hidden=hidden,
        epochs=args.epochs,
        batch_size=args.batch_size,
        lr=args.lr,
        rot_prior=args.rot_prior,
        translation=not args.no_translation,
        loss=args.loss,
        encoder=args.encoder,
        train_fraction=args.train_fraction,
        max_train_windows=args.max_train_windows,
        seed=args.seed,
        device=args.device,
        threads=args.threads,
    )
    return desc, rec


def _load_maps(stack, args: argparse.Namespace):
    try:
        from atomlens.segment.predict import predict_maps_array
    except ImportError as exc:
        raise RuntimeError(
            "--source maps needs the atom detector (atomlens.segment), which is not "
            f"available ({exc}); use --source raw"
        ) from exc
    return predict_maps_array(stack, pixel_size=args.pixel_size, device=args.device)


def run(args: argparse.Namespace) -> int:
    """Fill in the recipes, run the latent workflow (one line per epoch), write."""
    import numpy as np
    import pandas as pd

    from atomlens.io import read_stack
    from atomlens.io.atoms_table import write_atoms
    from atomlens.latent import decode_manifold, plot_latent_vs_frame, plot_manifold
    from atomlens.train import EpochEnd, Finished, Started
    from atomlens.workflows import latent
    from atomlens.workflows.events import Log, drain

    desc, rec = recipes_from_args(args)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    stack = read_stack(args.stack, pixel_size=args.pixel_size)
    atoms = pd.read_csv(args.atoms)
    missing = {"frame", "y", "x"} - set(atoms.columns)
    if missing:
        raise ValueError(f"{args.atoms} lacks column(s) {sorted(missing)}; need frame, y, x")
    if len(atoms) and atoms["frame"].max() >= stack.n_frames:
        raise ValueError(
            f"{args.atoms} refers to frame {int(atoms['frame'].max())} but {args.stack} has "
            f"{stack.n_frames} frames"
        )
    if args.frames is not None:
        from atomlens.io.frames import parse_frames

        atoms = atoms[atoms["frame"].isin(parse_frames(args.frames, stack.n_frames))]
    movie = _load_maps(stack, args) if args.source == "maps" else stack.data

    def show(ev: Any) -> None:
        if isinstance(ev, Log):
            print(ev.message, file=sys.stderr)
        elif isinstance(ev, Started):
            print(f"training {rec.model} on {ev.n_train} windows ({ev.n_test} test) of "
                  f"{desc.window}x{desc.window} on {ev.device}", file=sys.stderr)  # fmt: skip
        elif isinstance(ev, EpochEnd):
            test = f" test {ev.test_loss:.4g}" if ev.test_loss is not None else ""
            print(f"epoch {ev.epoch + 1}/{ev.n_epochs} loss {ev.train_loss:.4g}{test} "
                  f"({ev.images_per_s:.0f} windows/s, eta {ev.eta_s:.0f} s)", file=sys.stderr)  # fmt: skip
        elif isinstance(ev, Finished) and ev.reason != "done":
            print(f"training ended early: {ev.reason}", file=sys.stderr)

    t0 = time.perf_counter()
    res = drain(latent.run(movie, atoms, desc, rec, pixel_size=stack.pixel_size), show)
    model = res.model
    model.card.update(stack=str(args.stack), atoms=str(args.atoms), pixel_size=stack.pixel_size)
    model.save(out / "rvae.pt")
    table = latent.latents_on_atoms(atoms, res.latents, res.windows)
    write_atoms(out / "atoms_latent.csv", table)
    lat = table[model.latent_names()].dropna()
    n = 10
    if rec.latent_dim >= 1:
        z1 = np.nanpercentile(lat["z1"], [2, 98]) if len(lat) else (-2.0, 2.0)
        z2 = np.nanpercentile(lat["z2"], [2, 98]) if rec.latent_dim > 1 and len(lat) else z1
        extent = (float(z1[0]), float(z1[1]), float(z2[0]), float(z2[1]))
        manifold = decode_manifold(model, n=n, extent=extent, latents=lat)
        plot_manifold(manifold, n, extent=extent, path=out / "manifold.png")
    cols = ["angle"] + [f"z{i + 1}" for i in range(min(rec.latent_dim, 2))]
    plot_latent_vs_frame(table, cols, n_frames=stack.n_frames, path=out / "latent_vs_frame.png")
    print(f"wrote {out / 'rvae.pt'}, {out / 'atoms_latent.csv'} ({len(lat)} of {len(table)} "
          f"atoms encoded) and figures in {time.perf_counter() - t0:.1f} s")  # fmt: skip
    return 0
