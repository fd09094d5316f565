"""``atomlens rvae``: train an rVAE (or skip-rVAE) on atom-centred windows of a movie and
write the model, the atom table with latent columns, and figures."""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path


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
    p.add_argument("--window", type=int, default=32, help="window size in pixels (default 32)")
    p.add_argument("--epochs", type=int, default=100, help="training epochs (default 100)")
    p.add_argument("--batch-size", type=int, default=200, help="windows per step (default 200)")
    p.add_argument("--latent", type=int, default=2, help="content latents z1..zk (default 2)")
    p.add_argument("--skip", action="store_true", help="skip-rVAE (latent into every layer)")
    p.add_argument("--hidden", default=None,
                   help="hidden widths, e.g. 128,128 (default; skip: 256,256,256,256)")
    p.add_argument("--lr", type=float, default=1e-4, help="Adam learning rate (default 1e-4)")
    p.add_argument("--rot-prior", type=float, default=0.1,
                   help="SD of the angle prior in radians (default 0.1)")
    p.add_argument("--no-translation", action="store_true",
                   help="no x/y shift latents (with --latent 0 and a wide --rot-prior the "
                        "angle alone carries the sublattice; see docs/rvae.md)")
    p.add_argument("--loss", choices=["mse", "bce"], default="mse")
    p.add_argument("--encoder", choices=["mlp", "conv"], default="mlp")
    p.add_argument("--source", choices=["raw", "maps"], default="raw",
                   help="raw: normalised image intensities; maps: detector probability maps")
    p.add_argument("--channels", default=None,
                   help="with --source maps: channel indices to use, e.g. 1,2 (default: all "
                   "but background)")
    p.add_argument("--train-fraction", type=float, default=0.75)
    p.add_argument("--subset", type=float, default=None,
                   help="train on this fraction of windows (encode all)")
    p.add_argument("--pixel-size", type=float, default=None, help="Å per pixel override")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or mps")
    p.add_argument("--seed", type=int, default=0)
    p.set_defaults(func=run)


def _load_maps(stack, args: argparse.Namespace):
    try:
        from atomlens.segment.predict import predict_maps_array
    except ImportError as exc:
        raise RuntimeError(
            "--source maps needs the atom detector (atomlens.segment), which is not "
            f"available ({exc}); use --source raw"
        ) from exc
    maps = predict_maps_array(stack, pixel_size=args.pixel_size, device=args.device)
    if args.channels:
        chans = [int(c) for c in args.channels.split(",")]
    else:
        chans = list(range(1, maps.shape[1])) if maps.shape[1] > 1 else [0]
    return maps, chans


def run(args: argparse.Namespace) -> int:
    """Read, extract, train (printing one line per epoch), encode, write."""
    import numpy as np
    import pandas as pd

    from atomlens.descriptors import extract_windows, normalize_stack
    from atomlens.io import read_stack
    from atomlens.latent import (
        decode_manifold,
        encode_atoms,
        plot_latent_vs_frame,
        plot_manifold,
    )
    from atomlens.models import make_model
    from atomlens.train import EpochEnd, Finished, Started, fit_events

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
    if args.source == "maps":
        data, chans = _load_maps(stack, args)
    else:
        data, chans = normalize_stack(np.asarray(stack.data), "percentile"), None
    subs = extract_windows(data, atoms, args.window, border="drop", channels=chans)
    if len(subs) == 0:
        raise ValueError(
            f"no atom lies at least {args.window // 2} pixels from the frame edge; "
            "use a smaller --window"
        )
    kind = "skip-rvae" if args.skip else "rvae"
    kw = dict(window=args.window, latent_dim=args.latent, seed=args.seed, lr=args.lr,
              rot_prior=args.rot_prior, loss=args.loss, encoder=args.encoder,
              channels=subs.n_channels, translation=not args.no_translation)  # fmt: skip
    if args.hidden:
        kw["hidden"] = tuple(int(h) for h in args.hidden.split(","))
    model = make_model(kind, **kw)
    model.card.update(source=args.source, stack=str(args.stack), atoms=str(args.atoms),
                      pixel_size=stack.pixel_size, n_windows=len(subs))  # fmt: skip
    t0 = time.perf_counter()
    for ev in fit_events(model, subs, epochs=args.epochs, batch_size=args.batch_size,
                         train_fraction=args.train_fraction, device=args.device,
                         seed=args.seed, subset=args.subset):  # fmt: skip
        if isinstance(ev, Started):
            print(f"training {kind} on {ev.n_train} windows ({ev.n_test} test) of "
                  f"{args.window}x{args.window} on {ev.device}", file=sys.stderr)  # fmt: skip
        elif isinstance(ev, EpochEnd):
            test = f" test {ev.test_loss:.4g}" if ev.test_loss is not None else ""
            print(f"epoch {ev.epoch + 1}/{ev.n_epochs} loss {ev.train_loss:.4g}{test} "
                  f"({ev.images_per_s:.0f} windows/s, eta {ev.eta_s:.0f} s)", file=sys.stderr)  # fmt: skip
        elif isinstance(ev, Finished) and ev.reason != "done":
            print(f"training ended early: {ev.reason}", file=sys.stderr)
    model.save(out / "rvae.pt")
    table = encode_atoms(model, data, atoms, args.window, channels=chans)
    table.to_csv(out / "atoms_latent.csv", index=False)
    lat = table[model.latent_names()].dropna()
    n = 10
    if args.latent >= 1:
        z1 = np.nanpercentile(lat["z1"], [2, 98]) if len(lat) else (-2.0, 2.0)
        z2 = np.nanpercentile(lat["z2"], [2, 98]) if args.latent > 1 and len(lat) else z1
        extent = (float(z1[0]), float(z1[1]), float(z2[0]), float(z2[1]))
        manifold = decode_manifold(model, n=n, extent=extent, latents=lat)
        plot_manifold(manifold, n, extent=extent, path=out / "manifold.png")
    cols = ["angle"] + [f"z{i + 1}" for i in range(min(args.latent, 2))]
    plot_latent_vs_frame(table, cols, n_frames=stack.n_frames, path=out / "latent_vs_frame.png")
    print(f"wrote {out / 'rvae.pt'}, {out / 'atoms_latent.csv'} ({len(lat)} of {len(table)} "
          f"atoms encoded) and figures in {time.perf_counter() - t0:.1f} s")  # fmt: skip
    return 0
