"""``atomlens calibrate STACK --lattice graphene|mos2|srtio3|<Å>|square:<Å>``: pixel size
from the lattice."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "calibrate",
        help="estimate the true pixel size from the lattice (FFT spots) and compare with metadata",
        description=(
            "Estimate Å per pixel from the lattice and print it beside the file's metadata "
            "value and their discrepancy. Without --pixel-size no nominal value is used: "
            "atoms found in real space under trial pixel sizes settle which FFT spot order "
            "is seen (the x√3 ambiguity), then the FFT spots give the precise value, and "
            "the output says how sure it is. With --pixel-size the FFT spots are searched "
            "around that value."
        ),
    )
    p.add_argument("stack", help="image or movie file (anything atomlens.io.read_stack reads)")
    p.add_argument(
        "--lattice",
        default=None,
        help="the image's lattice: graphene (a = 2.46 Å), mos2 (a = 3.16 Å) or a hexagonal "
        "lattice constant a in Å; srtio3 (square, a = 3.905 Å, seen along [001] or [110]) or "
        "square:<a in Å> for another square lattice (default graphene; an image that does "
        "not look like graphene at the estimate is then reported UNSURE)",
    )
    p.add_argument(
        "--pixel-size",
        type=float,
        default=None,
        help="nominal Å per pixel: search the FFT spots around it (default: no nominal "
        "value is used; the file's metadata is only compared with)",
    )
    p.add_argument(
        "--search",
        type=float,
        default=0.35,
        help="relative search window around the nominal spot radius (default 0.35)",
    )
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument(
        "--apply",
        metavar="OUT",
        default=None,
        help="write the stack as an ImageJ TIFF calibrated with the estimate",
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import numpy as np

    from atomlens.chem.calibrate import CalibrationError, calibrate_fft, calibrate_lattice
    from atomlens.io import read_stack

    stack = read_stack(args.stack)
    n = stack.n_frames
    idx = np.unique(np.linspace(0, n - 1, min(n, 16)).astype(int))
    frames = np.stack([stack.frame(int(t)) for t in idx])
    lattice = args.lattice or "graphene"
    if args.pixel_size is not None:
        cal = calibrate_fft(frames, lattice, args.pixel_size, search=args.search)
    else:
        cal = calibrate_lattice(frames, lattice, stack.pixel_size)
    if args.lattice is None:  # graphene assumed: does the image look like graphene?
        doubt = not_graphene(frames[0], cal.pixel_size)
        if doubt:
            cal.warnings.append(doubt)
            if args.apply:
                raise CalibrationError(f"not applied: {doubt}")
    if args.json:
        print(json.dumps(cal.to_dict(), indent=2, default=float))
        return 0 if not args.apply else _apply(args, stack, cal)
    print(
        f"estimate:    {cal.pixel_size:.5f} Å/px  (method {cal.method}, lattice {cal.lattice_A:.3f} Å)"
    )
    if cal.metadata_pixel_size:
        source = "--pixel-size" if args.pixel_size is not None else stack.pixel_size_source
        print(f"metadata:    {cal.metadata_pixel_size:.5f} Å/px  ({source})")
        print(f"discrepancy: {cal.discrepancy_pct:+.2f} %  (metadata relative to estimate)")
    else:
        print("metadata:    none (the file carries no pixel size)")
    if "zone" in cal.details:  # square lattice: the order from the spots' own lattice
        d = cal.details
        order = (
            f"the {d['order_family']} spots that fix it have {cal.evidence_ratio:.1f}x the "
            "strength a √2 or 2x larger cell would add"
            if cal.evidence_ratio is not None
            else "order read from --pixel-size"
        )
        print(
            f"spot order:  from the lattice the FFT spots generate: {d['geometry']} cell (zone "
            f"{d['zone']}) indexing {d['n_spots']} spots; {order}; spot spread "
            f"{d['spread_pct']:.2f} %"
        )
        print("verdict:     " + ("sure" if cal.sure else "UNSURE: " + " ".join(cal.warnings)))
    elif cal.evidence_ratio is None:
        print(
            f"confidence:  spot/background {cal.confidence:.1f}, spot spread {cal.details['spread_pct']:.2f} %"
        )
        if cal.warnings:
            print("verdict:     UNSURE: " + " ".join(cal.warnings))
    else:
        d = cal.details
        agree = d.get("fft_nn_agreement_pct")
        print(
            f"spot order:  settled by atoms in real space: {d['geometry']} NN distance gives "
            f"{d['nn_pixel_size']:.5f} Å/px; evidence {cal.evidence_ratio:.1f}:1 over the other "
            f"orders; {100 * cal.confidence:.0f} % of {d['n_atoms']} atoms in the lattice geometry, "
            f"NN spread {d['nn_spread_pct']:.1f} %"
        )
        if agree is not None:
            print(
                f"fft:         {d['fft_pixel_size']:.5f} Å/px, {agree:+.1f} % from the real-space value, "
                f"spot spread {d.get('spread_pct', float('nan')):.2f} %"
            )
        print("verdict:     " + ("sure" if cal.sure else "UNSURE: " + " ".join(cal.warnings)))
    return 0 if not args.apply else _apply(args, stack, cal)


def _apply(args: argparse.Namespace, stack, cal) -> int:
    import numpy as np

    from atomlens.io import write_tiff

    out = write_tiff(args.apply, np.asarray(stack.data), cal.pixel_size)
    print(f"wrote {out} at {cal.pixel_size:.5f} Å/px")
    return 0


def not_graphene(frame, pixel_size: float) -> str:
    """Empty when one (Y, X) ``frame`` looks like graphene at ``pixel_size`` Å/px (or
    the field is too small to judge); else one sentence: why not (the detector choice's
    reason, e.g. two unequal sublattices for MoS2) and the fix (``--lattice``)."""
    import numpy as np

    from atomlens.atoms.suitability import choose_model

    name, why = choose_model(np.asarray(frame, np.float32), float(pixel_size))
    if name == "graphene":
        return ""
    return (
        f"the image does not look like graphene at {pixel_size:.5f} Å/px ({why}): the "
        "estimate assumed graphene's lattice; name the image's lattice with --lattice "
        "(mos2, or its lattice constant in Å)"
    )
