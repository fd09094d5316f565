"""``atomlens`` command line: one module per subcommand, each exposing ``register``.

A subcommand module defines ``register(subparsers) -> None`` that adds its parser and
sets ``func`` (taking the parsed ``argparse.Namespace`` and returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import sys

from atomlens import __version__

# module name under atomlens.cli -> imported lazily so `atomlens --help` stays fast
SUBCOMMANDS = [
    "simulate",
    "demo",
    "detect",
    "train_detector",
    "finetune",
    "calibrate",
    "chem",
    "rvae",
    "simulate_pfm",
    "pfm",
    "run",
    "batch",
    "movie",
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="atomlens",
        description="AtomLens: atom-resolved STEM movies from pixels to chemistry.",
    )
    parser.add_argument("--version", action="version", version=f"atomlens {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in SUBCOMMANDS:
        try:
            module = importlib.import_module(f"atomlens.cli.{name}")
        except ModuleNotFoundError as exc:
            if exc.name == f"atomlens.cli.{name}":
                continue  # not built yet
            raise
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except (ValueError, FileNotFoundError, RuntimeError) as exc:
        # user-facing errors: one clear line, no traceback
        print(f"atomlens {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
