"""``atomlens train-detector``: (re)build the atom-finding network from simulations."""

from __future__ import annotations

import argparse
import shlex


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train-detector`` subcommand."""
    p = subparsers.add_parser(
        "train-detector",
        help="train the atom-finding U-Net on simulated graphene (CPU friendly)",
        description=(
            "Train the detector on freshly simulated, augmented graphene crops and write a "
            "model file with its card (also as <out stem>_card.json). The defaults rebuild "
            "the shipped model: atomlens train-detector --preset graphene --out model.pt"
        ),
    )
    p.add_argument("--preset", default="graphene", help="training preset (default graphene)")
    p.add_argument("--out", default="model.pt", help="output model file (default model.pt)")
    p.add_argument("--steps", type=int, default=None, help="optimiser steps (preset default)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--no-validate", action="store_true",
                   help="skip the held-out validation at the end")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Train and write the model."""
    from atomlens.segment.train import preset, train_detector

    over = {"seed": args.seed, "threads": args.threads}
    if args.steps is not None:
        if args.steps < 1:
            raise ValueError(f"--steps must be at least 1, got {args.steps}")
        over["steps"] = args.steps
    cfg = preset(args.preset, **over)
    cmd = (f"atomlens train-detector --preset {shlex.quote(args.preset)} --out "
           f"{shlex.quote(str(args.out))} --steps {cfg.steps} --seed {cfg.seed}")
    train_detector(cfg, args.out, command=cmd, evaluate=not args.no_validate,
                   log=lambda s: print(s, flush=True))
    return 0
