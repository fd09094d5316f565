"""``atomlens chem atoms.csv --pixel-size Å --out chem.csv``: bonds, rings, defects, tracks."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "chem",
        help="chemistry from an atom table: coordination, rings, defects, tracks",
        description=(
            "Read an atom table (CSV with frame, y, x in pixels, cls species) and write it back "
            "with coordination, ring5..ring8, edge, defect_id, defect_type and track_id."
        ),
    )
    p.add_argument("atoms", help="atom table CSV (columns frame, y, x, cls[, prob])")
    p.add_argument("--pixel-size", type=float, required=True, help="Å per pixel")
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
        "default 1.0 and Si=3.0",
    )
    p.add_argument("--max-gap", type=int, default=2, help="tracking: frames a track may miss")
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
    out = {"*": 1.0, "Si": 3.0}
    for item in items:
        key, sep, value = item.rpartition("=")
        try:
            out[key.strip() if sep else "*"] = float(value)
        except ValueError:
            raise ValueError(f"--max-disp {item!r}: write Å or SPECIES=Å, e.g. Si=4") from None
    return out


def _tuples_to_text(df):
    out = df.copy()
    for col in out.columns:
        if out[col].dtype == object and len(out) and isinstance(out[col].iloc[0], tuple):
            out[col] = [" ".join(f"{v:.6g}" if isinstance(v, float) else str(v) for v in t) for t in out[col]]
    return out


def run(args: argparse.Namespace) -> int:
    import pandas as pd

    from atomlens.chem import ChemParams, analyze

    path = Path(args.atoms)
    if not path.exists():
        raise FileNotFoundError(f"no such file: {path}")
    atoms = pd.read_csv(path)
    params = ChemParams(
        max_bond_A=_parse_bonds(args.max_bond),
        track=bool(args.tracks),
        max_disp_A=_parse_disp(args.max_disp),
        max_gap=args.max_gap,
    )
    res = analyze(atoms, args.pixel_size, params)
    res.atoms.to_csv(args.out, index=False)
    for name, table in (
        ("rings", res.rings),
        ("defects", res.defects),
        ("bonds", res.bonds),
        ("dopants", res.dopants),
    ):
        target = getattr(args, name)
        if target:
            _tuples_to_text(table).to_csv(target, index=False)
    n_frames = res.atoms["frame"].nunique()
    sizes = ", ".join(f"{k}: {v}" for k, v in res.ring_histogram().items())
    kinds = ", ".join(f"{k}: {v}" for k, v in res.defects["type"].value_counts().items()) if len(res.defects) else "none"
    print(f"{len(res.atoms)} atoms in {n_frames} frame(s); {len(res.bonds)} bonds")
    print(f"rings by size: {sizes or 'none'}")
    print(f"defects: {kinds}")
    if args.tracks:
        print(f"tracks: {res.atoms['track_id'].nunique()}")
    print(f"wrote {args.out}")
    return 0
