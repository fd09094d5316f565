"""``atomlens finetune``: retrain the atom finder on corrected (or self-labelled) frames."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``finetune`` subcommand."""
    p = subparsers.add_parser(
        "finetune",
        help="retrain the atom finder on corrected frames of a movie",
        description=(
            "Fine-tune a detector on frames whose atoms were corrected (all atoms of a "
            "listed frame are taken as the truth), with the detector's own augmentation "
            "and loss, and write a new model whose card records the base model, frames, "
            "number of corrections and steps. --self-train needs no corrections: confident "
            "detections of the base model, refined by a Gaussian fit, become the labels. "
            "STACK may also be an AtomLens project folder (NAME.atomlens): then its stack, "
            "atoms, pixel size and corrected frames are used."
        ),
    )
    p.add_argument("stack", help="image/movie file, or a NAME.atomlens project folder")
    p.add_argument(
        "atoms",
        nargs="?",
        default=None,
        help="atom table CSV (frame,y,x,cls[,edited,source]); optional with "
        "--self-train or a project",
    )
    p.add_argument(
        "--frames",
        default=None,
        help="frames to train on, e.g. 0:5 (frames 0-4) or 0,3,7; default: the "
        "project's corrected frames, or the frames with edited atoms",
    )
    p.add_argument("--out", required=True, help="new model file (.pt)")
    p.add_argument(
        "--base",
        default=None,
        help="model to start from: a shipped model name (graphene, general) or a .pt file "
        "(default: the shipped graphene model)",
    )
    p.add_argument(
        "--steps",
        type=int,
        default=None,
        help="most optimisation steps (default: chosen from the data, 150-300; "
        "early stopping may end sooner)",
    )
    p.add_argument("--seed", type=int, default=0, help="random seed (default 0)")
    p.add_argument(
        "--lr",
        type=float,
        default=None,
        help="peak learning rate (default: chosen from the data, 5e-4 or 1e-3)",
    )
    p.add_argument("--batch", type=int, default=8, help="crops per step (default 8)")
    p.add_argument(
        "--crop",
        type=int,
        default=None,
        help="crop edge, model pixels (default: 96-128 from the atom spacing)",
    )
    p.add_argument(
        "--classes",
        default=None,
        help="species the new model predicts, e.g. Mo,S2 (default: the base "
        "model's if they cover the labels, else the labels' own species)",
    )
    p.add_argument(
        "--val-fraction",
        type=float,
        default=0.25,
        help="share of each labelled frame's width held back to score the model "
        "and stop early (default 0.25; 0 = none)",
    )
    p.add_argument(
        "--self-train",
        action="store_true",
        help="labels from confident, Gaussian-refined detections of the base model",
    )
    p.add_argument(
        "--min-prob",
        type=float,
        default=None,
        help="self-training labels detections with prob >= this (default: all but "
        "the least confident 30 %% of each frame)",
    )
    p.add_argument("--class-map", default=None, help="rename species before training, e.g. S=S2")
    p.add_argument(
        "--pixel-size",
        type=float,
        default=None,
        help="Å per pixel, overriding the file's calibration",
    )
    p.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    p.set_defaults(func=run)


def _class_map(text: str | None) -> dict[str, str]:
    if not text:
        return {}
    out = {}
    for part in text.split(","):
        if "=" not in part:
            raise ValueError(f"--class-map expects FROM=TO pairs like Mo=Si,S=C, got {text!r}")
        a, b = part.split("=", 1)
        out[a.strip()] = b.strip()
    return out


def _classes(text: str | None) -> tuple[str, ...] | None:
    if not text:
        return None
    return tuple(c.strip() for c in text.split(",") if c.strip())


def run(args: argparse.Namespace) -> int:
    """Read inputs, fine-tune with a progress line, write the model and print its card."""
    from atomlens.atoms.finetune import (
        FinetuneFinished,
        FinetuneNote,
        FinetuneStep,
        FinetuneValidation,
        iter_finetune,
    )
    from atomlens.corrections import edited_frames, format_frames, parse_frames
    from atomlens.io import read_stack
    from atomlens.io.atoms_table import read_atoms_csv
    from atomlens.io.project import is_project, load_project

    atoms = None
    corrected: list[int] = []
    px = args.pixel_size
    base = args.base
    if is_project(args.stack):
        proj = load_project(args.stack)
        # replaying a saved correction session: start from its latest detector
        models = proj.models or {}
        if base is None and models.get("finetuned", models.get("detector")) not in (
            None,
            "shipped",
        ):
            base = models.get("finetuned", models.get("detector"))
        if not proj.stack_path:
            raise ValueError(f"project {args.stack} records no stack file")
        stack_path = proj.stack_path
        atoms = proj.atoms
        corrected = proj.corrected_frames
        px = px if px is not None else proj.pixel_size
        # the session's own retraining settings, unless given here
        recorded = (proj.settings or {}).get("correct") or {}
        if args.steps is None and recorded.get("steps"):
            args.steps = int(recorded["steps"])
    else:
        stack_path = args.stack
    stack = read_stack(stack_path, pixel_size=px)
    if args.atoms:
        atoms = read_atoms_csv(args.atoms)
    if atoms is None and not args.self_train:
        raise ValueError("no atom table: pass atoms.csv, a project, or use --self-train")
    if args.frames:
        frames = parse_frames(args.frames, stack.n_frames)
    elif corrected:
        frames = corrected
    elif atoms is not None and edited_frames(atoms):
        frames = edited_frames(atoms)
    else:
        raise ValueError("say which frames to train on with --frames (e.g. --frames 0:5)")

    def stop_never() -> bool:
        return False

    result = None
    for ev in iter_finetune(
        stack,
        atoms,
        frames,
        base,
        out=args.out,
        stop=stop_never,
        stack_path=str(Path(stack_path).resolve()),
        steps=args.steps,
        seed=args.seed,
        lr=args.lr,
        batch=args.batch,
        crop=args.crop,
        self_train=args.self_train,
        min_prob=args.min_prob,
        class_map=_class_map(args.class_map),
        threads=args.threads,
        classes=_classes(args.classes),
        val_fraction=args.val_fraction,
    ):
        if isinstance(ev, FinetuneStep):
            print(
                f"\rstep {ev.step}/{ev.steps} loss {ev.loss_ema:.4f} {ev.elapsed_s:.0f}s",
                end="",
                file=sys.stderr,
                flush=True,
            )
        elif isinstance(ev, FinetuneValidation):
            print(
                f"\rstep {ev.step}: held-back F1 {ev.scores['f1']:.3f} (best {ev.best:.3f})",
                file=sys.stderr,
                flush=True,
            )
        elif isinstance(ev, FinetuneFinished):
            result = ev.result
        elif isinstance(ev, FinetuneNote):  # e.g. the spot classifier learning (seconds)
            print(f"\r{ev.message}", file=sys.stderr, flush=True)
        else:
            print(
                f"training on frames {format_frames(ev.frames)}: {ev.n_labels} atoms "
                f"({ev.n_corrections} corrected), crops of {ev.crop} px",
                file=sys.stderr,
            )
            for note in ev.plan.get("notes", []):
                print(f"  {note}", file=sys.stderr)
            if ev.before is not None:
                print(f"  before: held-back F1 {ev.before['f1']:.3f}", file=sys.stderr)
    print(file=sys.stderr)
    assert result is not None
    ft = result.card["finetune"]
    summary = {
        "out": str(result.path),
        "reason": result.reason,
        **{
            k: ft[k]
            for k in (
                "base_model",
                "mode",
                "frames",
                "n_labelled_atoms",
                "n_corrections",
                "steps",
                "final_loss_ema",
                "time_s",
            )
        },
        "classes": result.card["classes"],
    }
    if result.scores:
        b, a = result.scores["before"], result.scores["after"]
        summary["before"] = {k: b[k] for k in ("f1", "precision", "recall", "species_accuracy")}
        summary["after"] = {k: a[k] for k in ("f1", "precision", "recall", "species_accuracy")}
        print(
            f"held-back strip ({b['n_true']} atoms): F1 {b['f1']:.3f} before -> "
            f"{a['f1']:.3f} after (kept step {result.scores['kept_step']})",
            file=sys.stderr,
        )
    spot = ft.get("spot_classifier") or {}
    if "threshold" in spot:  # sparse spots: the learned verifier decides what is an atom
        summary["spot_classifier"] = {k: spot.get(k) for k in ("threshold", "held_out_f1")}
        print(
            f"spot classifier: threshold {spot['threshold']:.2f}, F1 "
            f"{spot.get('held_out_f1')} on the labelled frames ({spot.get('threshold_by')})",
            file=sys.stderr,
        )
    if is_project(args.stack):  # the new model joins the saved session's lineage
        from atomlens.workflows.correct import CorrectionSession

        session = CorrectionSession.load(args.stack)
        session.adopt_model(result)
        summary["project"] = str(session.save())
    print(json.dumps(summary))
    return 0
