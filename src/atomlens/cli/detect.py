"""``atomlens detect``: find atoms in a stack and write the atom table (and maps)."""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from pathlib import Path
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``detect`` subcommand."""
    p = subparsers.add_parser(
        "detect",
        help="find atoms (or atom columns) in a STEM image or movie, any material",
        description=(
            "Run the atom-finding network on every frame and write a CSV with columns "
            "frame,y,x,cls,prob,border (positions in pixels). --maps also writes the class "
            "probability maps as a (T, C, Y, X) float32 .npy, streamed frame by frame."
        ),
    )
    p.add_argument(
        "stack", help="image or movie file (npy, npz, tif, dm3/dm4, emd, ser, hspy, ...)"
    )
    p.add_argument("--out", default="atoms.csv", help="output CSV (default atoms.csv)")
    p.add_argument(
        "--model",
        default="auto",
        help="detector: graphene (C/Si), general (atom columns in any material, "
        "HAADF and ABF), a .pt file, or auto (default: chosen from the first frame; "
        "the choice and why are printed)",
    )
    p.add_argument(
        "--contrast",
        choices=["auto", "bright", "dark"],
        default="auto",
        help="atoms bright (HAADF) or dark (ABF/BF); auto (default) decides from "
        "the image and inverts dark atoms for models trained on bright ones",
    )
    p.add_argument(
        "--pixel-size",
        type=float,
        default=None,
        help="Å per pixel, overriding the file's calibration",
    )
    p.add_argument("--frames", default=None, help="frames to analyse, e.g. 0:10 or 1,5,9")
    p.add_argument("--maps", default=None, help="also write probability maps to this .npy")
    p.add_argument(
        "--threshold",
        type=float,
        default=0.5,
        help="foreground probability for atom pixels (default 0.5)",
    )
    p.add_argument(
        "--refine",
        choices=["gaussian", "com", "none"],
        default="gaussian",
        help="sub-pixel refinement on the raw image (default gaussian)",
    )
    p.add_argument("--device", default="auto", help="auto (CUDA if present), cpu or cuda")
    p.add_argument("--batch-size", type=int, default=4, help="frames per network batch")
    p.add_argument(
        "--refuse-nonfinite",
        action="store_true",
        help="refuse a movie with NaN/inf pixels (default: mask them, no atoms there)",
    )
    p.add_argument(
        "--species",
        choices=["model", "contrast"],
        default="model",
        help="name species by the model's classes (default) or by each atom's "
        "integrated intensity, clustered into --classes (any material)",
    )
    p.add_argument(
        "--classes",
        default="auto",
        help="number of contrast classes, or auto (default: one per --names name, "
        "else chosen by ICL)",
    )
    p.add_argument("--names", default="", help="contrast class names, dimmest first, e.g. S2,Mo")
    p.add_argument(
        "--si-neighbours",
        choices=["auto", "on", "off"],
        default="auto",
        help="search each Si's ring for dim C neighbours on its probe halo "
        "(auto: on for models with C and Si classes)",
    )
    p.add_argument(
        "--spot-scale",
        default="auto",
        help="spot-width resampling before the network: auto (default; the general model "
        "measures the spots and shrinks broad ones, e.g. defocused single atoms), off, "
        "or the spots' FWHM in Å",
    )
    p.add_argument(
        "--tta",
        type=int,
        choices=[1, 2, 4, 8],
        default=1,
        help="test-time augmentation: mean map over this many symmetries of the square "
        "(default 1 = off; 8 x the network time; general model: cross-validated with "
        "--tta 8 --refine none --threshold 0.4, see its card)",
    )
    p.set_defaults(func=run)


def recipe_from_args(args: argparse.Namespace) -> Any:
    """The :class:`~atomlens.workflows.detect.DetectRecipe` the options describe."""
    from atomlens.workflows.detect import DetectRecipe

    return DetectRecipe(
        model=args.model,
        contrast=args.contrast,
        threshold=args.threshold,
        refine=args.refine,
        batch_size=args.batch_size,
        device=args.device,
        save_maps=bool(args.maps),
        species=args.species,
        contrast_classes=args.classes,
        class_names=args.names,
        si_neighbours=args.si_neighbours,
        spot_scale=args.spot_scale,
        tta=getattr(args, "tta", 1),
    )


def run(args: argparse.Namespace) -> int:
    """Fill in the detect recipe, run the detect workflow (streaming maps to disk if
    asked), write the atom table, print a summary line."""
    import numpy as np

    from atomlens.io import read_stack
    from atomlens.io.atomic import atomic_npy_memmap, check_output_path
    from atomlens.io.atoms_table import write_atoms
    from atomlens.io.frames import parse_frames
    from atomlens.workflows import detect
    from atomlens.workflows.events import drain

    t0 = time.perf_counter()
    if args.species == "model" and (args.names or str(args.classes).strip().lower() != "auto"):
        from atomlens.errors import SettingsError

        raise SettingsError(
            "--names and --classes name contrast classes, which --species model does not "
            "make: add --species contrast (species from each atom's intensity)"
        )
    recipe = recipe_from_args(args)
    stack = read_stack(
        args.stack,
        pixel_size=args.pixel_size,
        lazy=True,
        nonfinite="refuse" if args.refuse_nonfinite else "mask",
    )
    frames = parse_frames(args.frames, stack.n_frames)
    if recipe.model == "auto":  # pick a shipped model from the first frame, and say why
        from atomlens.atoms.suitability import choose_model, first_frame
        from atomlens.io.pixel_size import resolve_pixel_size

        ps = resolve_pixel_size(stack, user=args.pixel_size).value
        recipe.model, why = choose_model(first_frame(stack, frames), ps)
        print(f"model: {recipe.model} ({why}; --model picks another)", flush=True)
    check_output_path(args.out, what="atom table")  # fail now, not after detecting
    on_maps = None
    maps_file = contextlib.nullcontext(None)
    if args.maps:
        det = detect.load_recipe_detector(recipe)
        shape = (len(frames), len(det.classes), *stack.shape[1:])
        check_output_path(args.maps, 4 * int(np.prod(shape)), "maps file")
        # the .npy is filled at a temporary name (renamed when whole, removed on failure),
        # mapped again for each frame so written pages leave this process's memory
        maps_file = atomic_npy_memmap(args.maps, shape, np.float32)

    tty = sys.stderr.isatty()  # a log file gets one line per frame, not \r-joined ones
    start = "\r" if tty else ""

    def show(ev: Any) -> None:
        print(
            f"{start}{ev.stage[:-1]} {ev.done}/{ev.total}: {ev.message.split(': ')[-1]}",
            end="" if tty else "\n",
            file=sys.stderr,
            flush=True,
        )

    with maps_file as maps_tmp:
        if maps_tmp is not None:

            def on_maps(i: int, maps: np.ndarray) -> None:
                out_maps = np.load(maps_tmp, mmap_mode="r+")
                out_maps[i] = maps
                out_maps.flush()
                del out_maps

        res = drain(detect.run(stack, recipe, frames, maps=False, on_maps=on_maps), show)
    if tty:
        print(file=sys.stderr)
    if res.spot_scale.get("factor", 1.0) != 1.0:  # broad spots shrunk for the network
        print(f"spot scale: {res.spot_scale['why']}", file=sys.stderr, flush=True)
    for warning in res.warnings:  # the model may not fit this image: the next step is named
        print(f"warning: {warning}", file=sys.stderr, flush=True)
    atoms = res.atoms
    if res.species_model:  # --species contrast: what the intensities separated into
        m = res.species_model
        print(
            f"contrast classes: {m['k']} ("
            + ", ".join(f"{n}: {c}" for n, c in atoms["cls"].astype(str).value_counts().items())
            + ")",
            file=sys.stderr,
            flush=True,
        )
        names = [n.strip() for n in args.names.split(",") if n.strip()]
        if names and len(names) < int(m["k"]):  # the brightest classes stay unnamed
            print(
                f"warning: {m['k']} contrast classes but {len(names)} names "
                f"({', '.join(names)}): names go to the dimmest classes first, the rest keep "
                f"class<k>; give {m['k']} names or --classes {len(names)}",
                file=sys.stderr,
                flush=True,
            )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_atoms(out, atoms.assign(cls=atoms["cls"].astype(str)))
    print(
        f"{len(atoms)} atoms{species_summary(atoms)} in {len(frames)} "
        f"frame{'' if len(frames) == 1 else 's'} -> {out}"
        + (f", maps -> {args.maps}" if args.maps else "")
        + f" [{time.perf_counter() - t0:.1f} s]"
    )
    return 0


def species_summary(atoms: Any) -> str:
    """The summary line's species part: ``" (3 Si)"`` for graphene's C/Si classes,
    ``" (Mo: 2297, S2: 2055)"`` for other named species, empty for one species (the
    general model's 'atom')."""
    counts = atoms["cls"].astype(str).value_counts() if len(atoms) else {}
    names = set(getattr(counts, "index", []))
    if "C" in names and names <= {"C", "Si"}:
        return f" ({int(counts.get('Si', 0))} Si)"
    if len(names) < 2:
        return ""
    return " (" + ", ".join(f"{n}: {int(c)}" for n, c in counts.sort_index().items()) + ")"
