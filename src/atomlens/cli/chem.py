"""``atomlens chem atoms.csv --pixel-size Å --out chem.csv``: bonds, rings, defects, tracks."""

from __future__ import annotations

import argparse
import sys
from typing import Any


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "chem",
        help="graphene chemistry from an atom table: coordination, rings, defects, tracks",
        description=(
            "Read an atom table (CSV with frame, y, x in pixels, cls species) and write it back "
            "with coordination, ring5..ring8, edge, defect_id, defect_type and track_id. The "
            "chemistry is graphene's: a C lattice in which every other species is a dopant. "
            "On a table without C atoms (MoS2, SrTiO3, the general model's 'atom') it says "
            "so and keeps only holes; bonds and rings are then geometry only."
        ),
    )
    p.add_argument("atoms", help="atom table CSV (columns frame, y, x, cls[, prob])")
    p.add_argument(
        "--pixel-size",
        type=float,
        default=None,
        help="Å per pixel (default: the --stack file's calibration; an atom table carries none)",
    )
    p.add_argument("--out", required=True, help="output atom table CSV")
    p.add_argument("--rings", default=None, help="write the ring-centre table to this CSV")
    p.add_argument("--defects", default=None, help="write the defect table to this CSV")
    p.add_argument("--bonds", default=None, help="write the bond table to this CSV")
    p.add_argument("--dopants", default=None, help="write dopant bond lengths/angles to this CSV")
    p.add_argument(
        "--tracks", action="store_true", help="link atoms across frames (track_id column)"
    )
    p.add_argument(
        "--max-disp",
        action="append",
        default=[],
        metavar="[SPECIES=]Å",
        help="tracking: largest step in Å, for all species or one (e.g. 1.0 or Si=4); repeatable; "
        "default 1.0 and Si=4.0 (the chemistry recipe)",
    )
    p.add_argument(
        "--max-gap",
        type=int,
        default=None,
        help="tracking: frames a track may miss (default 3, the chemistry recipe)",
    )
    p.add_argument(
        "--stack",
        default=None,
        help="the movie the atoms came from: tracking then follows registered "
        "positions (drift measured on the image)",
    )
    p.add_argument(
        "--no-register",
        action="store_true",
        help="with --stack: track raw positions (no drift registration)",
    )
    p.add_argument("--frames", default=None, help="frames to analyse, e.g. 0:10 or 0:3,8")
    p.add_argument(
        "--max-bond",
        action="append",
        default=[],
        metavar="PAIR=Å",
        help="maximum bond length per species pair, e.g. C-Si=2.1 (repeatable)",
    )
    p.set_defaults(func=run)


def _parse_bonds(items: list[str]) -> dict[str, float]:
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise ValueError(f"--max-bond {item!r}: write it as PAIR=Å, e.g. C-Si=2.1")
        try:
            out[key.strip()] = float(value)
        except ValueError:
            raise ValueError(f"--max-bond {item!r}: {value!r} is not a number of Å") from None
    return out


def _parse_disp(items: list[str]) -> dict[str, float]:
    from atomlens.workflows.chemistry import ChemRecipe

    out = dict(ChemRecipe().max_disp_A)
    for item in items:
        key, sep, value = item.rpartition("=")
        try:
            out[key.strip() if sep else "*"] = float(value)
        except ValueError:
            raise ValueError(f"--max-disp {item!r}: write Å or SPECIES=Å, e.g. Si=4") from None
    return out


def recipe_from_args(args: argparse.Namespace) -> Any:
    """The :class:`~atomlens.workflows.chemistry.ChemRecipe` the options describe."""
    from atomlens.workflows.chemistry import ChemRecipe

    base = ChemRecipe()
    return ChemRecipe(
        track=bool(args.tracks),
        max_disp_A=_parse_disp(args.max_disp),
        max_gap=base.max_gap if args.max_gap is None else args.max_gap,
        max_bond_A=_parse_bonds(args.max_bond),
        register=not args.no_register,
    )


def run(args: argparse.Namespace) -> int:
    """Fill in the chemistry recipe, run the chemistry workflow, write the tables."""
    import pandas as pd

    from atomlens.io.atoms_table import AtomsTableError, validate_atoms, write_atoms
    from atomlens.io.frames import parse_frames
    from atomlens.io.gate import check_input_path, safe_reason
    from atomlens.workflows import chemistry
    from atomlens.workflows.events import Log, drain

    path = check_input_path(args.atoms, "atom table", error=AtomsTableError)  # no FIFOs
    recipe = recipe_from_args(args)
    try:
        atoms = pd.read_csv(path)  # chemistry names a missing cls column itself
    except (pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError, ValueError) as exc:
        raise AtomsTableError(
            f"'{path.name}' is not a readable CSV atom table "
            f"({safe_reason(exc)}); export it again as CSV"
        ) from None
    if "frame" not in atoms and {"y", "x"} <= set(atoms.columns):
        atoms.insert(0, "frame", 0)
    atoms = validate_atoms(atoms, f"'{path.name}'")  # numbers, finite, whole frames
    movie, pixel_size = None, args.pixel_size
    if args.stack:
        from atomlens.io import read_stack
        from atomlens.io.pixel_size import resolve_pixel_size

        stack = read_stack(args.stack, lazy=True)
        movie = stack.data
        resolved = resolve_pixel_size(stack, user=args.pixel_size)
        pixel_size = resolved.value
        if args.pixel_size is None:  # say where it came from
            print(f"pixel size: {pixel_size:.5g} Å/px ({resolved.source})", file=sys.stderr)
    if pixel_size is None:
        from atomlens.errors import SettingsError

        raise SettingsError(
            "the pixel size is unknown (an atom table carries none): give --pixel-size Å "
            "or --stack MOVIE to use its calibration"
        )
    if args.frames is not None:
        n = int(movie.shape[0]) if movie is not None else int(atoms["frame"].max()) + 1
        atoms = atoms[atoms["frame"].isin(parse_frames(args.frames, n))]
    # on atoms that are not graphene's the workflow keeps only holes and logs a warning
    res = drain(
        chemistry.run(atoms, pixel_size, recipe, movie=movie),
        lambda ev: print(ev.message, file=sys.stderr, flush=True) if isinstance(ev, Log) else None,
    )
    write_atoms(args.out, res.atoms)
    for name, table in (
        ("rings", res.rings),
        ("defects", res.defects),
        ("bonds", res.bonds),
        ("dopants", res.dopants),
    ):
        target = getattr(args, name)
        if target:
            write_atoms(target, table)
    n_frames = res.atoms["frame"].nunique()
    sizes = (
        ", ".join(f"{k}: {v}" for k, v in res.rings["size"].value_counts().sort_index().items())
        if len(res.rings)
        else ""
    )
    kinds = (
        ", ".join(f"{k}: {v}" for k, v in res.defects["type"].value_counts().items())
        if len(res.defects)
        else "none"
    )
    print(f"{len(res.atoms)} atoms in {n_frames} frame(s); {len(res.bonds)} bonds")
    print(f"rings by size: {sizes or 'none'}")
    print(f"defects: {kinds}" + (" (holes only: not graphene)" if res.note else ""))
    if args.tracks:
        print(f"tracks: {res.atoms['track_id'].nunique()}")
    print(f"wrote {args.out}")
    return 0
