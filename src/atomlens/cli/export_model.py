"""``atomlens export-model``: write a detector in a community format (bioimage.io)."""

from __future__ import annotations

import argparse
import json


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the ``export-model`` subcommand."""
    p = subparsers.add_parser(
        "export-model",
        help="export a detector as a bioimage.io model package",
        description=(
            "Write MODEL (a shipped model's name or an AtomLens .pt detector) as a bioimage.io model package zip: TorchScript weights with the "
            "input normalisation and softmax inside, test input/output tensors, cover "
            "image, README and the rdf.yaml, validated by bioimageio.spec. The AtomLens "
            ".pt file stays the native format."
        ),
    )
    p.add_argument(
        "model",
        nargs="?",
        default=None,
        help="a shipped model's name (graphene, general) or a detector .pt file "
        "(default: graphene)",
    )
    p.add_argument(
        "--bioimageio", required=True, metavar="OUT.zip", help="the package to write (.zip)"
    )
    p.add_argument(
        "--name", default=None, help="model name in the package (default: the model card's name)"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Export, validate and print a one-line JSON summary."""
    from atomlens.segment.bioimageio import export_bioimageio
    from atomlens.segment.registry import load_model

    det = load_model(args.model)
    name = args.name or det.card.get("registry_name") or det.card.get("name")
    res = export_bioimageio(det, args.bioimageio, name=name)
    print(
        json.dumps(
            {
                "out": str(res.path),
                "name": res.name,
                "status": res.status,
                "format_version": res.format_version,
            }
        )
    )
    return 0
