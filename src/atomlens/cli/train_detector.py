"""``atomlens train-detector``: (re)build the atom-finding network from simulations."""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``train-detector`` subcommand."""
    p = subparsers.add_parser(
        "train-detector",
        help="train the atom-finding U-Net on simulated images (graphene or general "
        "preset; CPU friendly)",
        description=(
            "Train the detector on freshly simulated, augmented crops (the preset's "
            "materials: graphene, or many lattices for general) and write a "
            "model file with its card (also as <out stem>_card.json). The defaults rebuild "
            "the shipped model: atomlens train-detector --preset graphene --out model.pt"
        ),
    )
    p.add_argument(
        "--preset",
        default="graphene",
        help="training preset: graphene (C/Si) or general (atom columns in any "
        "material, HAADF and ABF) (default graphene)",
    )
    p.add_argument("--out", default="model.pt", help="output model file (default model.pt)")
    p.add_argument("--steps", type=int, default=None, help="optimiser steps (preset default)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.add_argument("--batch", type=int, default=None, help="samples per step (preset default)")
    p.add_argument("--lr", type=float, default=None, help="peak learning rate (preset default)")
    p.add_argument(
        "--init",
        default=None,
        help="start from this model file's weights (same network), e.g. the shipped one",
    )
    p.add_argument(
        "--average-from",
        type=int,
        default=0,
        metavar="STEP",
        help="write the mean of the weights after steps STEP..--steps (BatchNorm statistics "
        "recomputed on training samples; kept in the checkpoint) instead of the last "
        "weights (default 0: off)",
    )
    p.add_argument(
        "--no-validate", action="store_true", help="skip the held-out validation at the end"
    )
    p.add_argument(
        "--checkpoint-every",
        type=int,
        default=25,
        help="save a resumable <out>.ckpt.pt every N steps (0: never; default 25)",
    )
    p.add_argument(
        "--resume",
        action="store_true",
        help="continue from <out>.ckpt.pt when it exists (same options as that run)",
    )
    p.add_argument(
        "--trained-on", default=None, help="a note for the model card: the machine and its load"
    )
    p.set_defaults(func=run)


def overrides(args: argparse.Namespace) -> dict:
    """The training-config overrides given on the command line (seed, threads and any of
    steps, batch, lr, init, average_from), each checked with a one-line error."""
    over: dict = {"seed": args.seed, "threads": args.threads}
    for name in ("steps", "batch"):
        value = getattr(args, name, None)
        if value is not None:
            if value < 1:
                raise ValueError(f"--{name} must be at least 1, got {value}")
            over[name] = value
    if getattr(args, "lr", None) is not None:
        if not args.lr > 0:
            raise ValueError(f"--lr must be positive, got {args.lr}")
        over["lr"] = args.lr
    if getattr(args, "init", None):
        if not Path(args.init).is_file():
            raise ValueError(
                f"--init {args.init}: no such model file; give a .pt written by "
                f"train-detector (e.g. src/atomlens/segment/weights/{args.preset}.pt)"
            )
        over["init"] = str(args.init)
    if getattr(args, "average_from", 0):
        over["average_from"] = int(args.average_from)
    if getattr(args, "checkpoint_every", 0) < 0:
        raise ValueError(f"--checkpoint-every must be >= 0, got {args.checkpoint_every}")
    return over


def command_line(args: argparse.Namespace, cfg) -> str:
    """The command that rebuilds this run, for the model card (``cfg``: its TrainConfig)."""
    return (
        f"atomlens train-detector --preset {shlex.quote(args.preset)} --out "
        f"{shlex.quote(str(args.out))} --steps {cfg.steps} --seed {cfg.seed} "
        f"--threads {cfg.threads}"
        + (f" --batch {cfg.batch}" if getattr(args, "batch", None) is not None else "")
        + (f" --lr {cfg.lr}" if getattr(args, "lr", None) is not None else "")
        + (f" --init {shlex.quote(str(args.init))}" if getattr(args, "init", None) else "")
        + (f" --average-from {cfg.average_from}" if cfg.average_from else "")
    )


def run(args: argparse.Namespace) -> int:
    """Train and write the model."""
    from atomlens.atoms.evaluate import validate_general, validation_metrics
    from atomlens.segment.train import preset, train_detector

    def log(line: str) -> None:
        print(line, flush=True)

    over = overrides(args)
    extra: dict = {}
    if args.preset == "general":
        from atomlens.segment.general import card_fields, general_config, make_batch

        cfg = general_config(**over)
        validate = None if args.no_validate else validate_general
        extra = {"batches": make_batch, "card_fields": card_fields(cfg)}
    else:
        cfg = preset(args.preset, **over)
        validate = None if args.no_validate else (lambda det: validation_metrics(det, log=log))
    train_detector(
        cfg,
        args.out,
        command=command_line(args, cfg),
        validate=validate,
        log=log,
        checkpoint_every=args.checkpoint_every,
        resume=args.resume,
        notes={"trained_on": args.trained_on} if args.trained_on else None,
        **extra,
    )
    return 0
