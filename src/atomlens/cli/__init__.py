"""``atomlens`` command line: one module per subcommand, each exposing ``register``.

A subcommand module defines ``register(subparsers) -> None`` that adds its parser and
sets ``func`` (taking the parsed ``argparse.Namespace`` and returning an exit code).
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from atomlens import __version__

# module name under atomlens.cli -> imported lazily so `atomlens --help` stays fast
SUBCOMMANDS = [
    "simulate",
    "demo",
    "detect",
    "train_detector",
    "finetune",
    "export_model",
    "calibrate",
    "chem",
    "rvae",
    "simulate_pfm",
    "pfm",
    "run",
    "batch",
    "movie",
    "watch",
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
    """Run one subcommand; returns the exit code.

    0: done; 2: a user error (bad file, setting, project, model, output), printed as one
    line ``atomlens COMMAND: error: ...`` without a traceback; 1: a bug, printed as one
    line too (set ``ATOMLENS_DEBUG=1`` to see its traceback); 130: interrupted.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    command = args.command
    try:
        check_common_settings(args)
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print(f"atomlens {command}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # noqa: BLE001 - every error ends as one line and a code
        code, text = error_line(exc)
        if code == 1 and os.environ.get("ATOMLENS_DEBUG"):
            raise
        print(f"atomlens {command}: error: {text}", file=sys.stderr)
        return code


def error_line(exc: BaseException) -> tuple[int, str]:
    """The exit code and one-line message for an exception raised by a subcommand."""
    from atomlens.errors import AtomLensError
    from atomlens.io.gate import safe_reason

    if isinstance(exc, AtomLensError):
        return 2, _one_line(str(exc))
    if isinstance(exc, MemoryError):
        return 2, (
            "out of memory: analyse fewer frames (--frames), a smaller region, or "
            "raise the memory limit"
        )
    if isinstance(exc, OSError):
        where = f" {exc.filename}" if getattr(exc, "filename", None) else ""
        reason = exc.strerror or safe_reason(exc)
        fix = {
            PermissionError: "check the permissions or choose another path",
            FileNotFoundError: "check the path",
            IsADirectoryError: "give a file, not a folder",
            NotADirectoryError: "a parent of the path is a file; check the path",
        }.get(type(exc), "check the path and free disk space")
        if isinstance(exc, FileNotFoundError) and not exc.strerror:
            return 2, _one_line(str(exc))
        return 2, _one_line(f"{reason}:{where}; {fix}")
    if isinstance(exc, ValueError | RuntimeError | TypeError | KeyError | IndexError):
        # user-facing errors not yet in the AtomLensError family; never relay unsafe advice
        text = str(exc) if not _unsafe(str(exc)) else safe_reason(exc)
        if isinstance(exc, ValueError | RuntimeError):
            return 2, _one_line(text)
    return 1, _one_line(
        f"unexpected {type(exc).__name__}: {safe_reason(exc)} (a bug in AtomLens; please "
        "report it with the command; ATOMLENS_DEBUG=1 shows the traceback)"
    )


def _unsafe(text: str) -> bool:
    from atomlens.io.gate import _UNSAFE_ADVICE

    return bool(_UNSAFE_ADVICE.search(text))


def _one_line(text: str) -> str:
    return "; ".join(line.strip() for line in str(text).splitlines() if line.strip())


#: Integer options that count something and must be >= 1 (option dest -> upper bound).
_COUNTS = {
    "epochs": 1_000_000,
    "steps": 10_000_000,
    "batch_size": 1_000_000,
    "batch": 1_000_000,
    "window": 4096,
    "size": 16384,
    "latent": 1024,
    "threads": 4096,
    "grid": 16384,
    "crop": 16384,
    "per_frame": 10_000_000,
    "zoom": 64,
}
#: Float options that are probabilities or fractions in [0, 1].
_FRACTIONS = ("threshold", "min_prob", "train_fraction")


def check_common_settings(args: argparse.Namespace) -> None:
    """Refuse settings no subcommand can use, before any work: non-finite numbers,
    a pixel size that is not a plausible positive Å/px, counts below 1 or absurdly
    large, probabilities outside 0..1. Raises :class:`~atomlens.errors.SettingsError`."""
    import math

    from atomlens.errors import SettingsError
    from atomlens.io.gate import check_number, check_pixel_size

    for name, value in vars(args).items():
        opt = "--" + name.replace("_", "-")
        if isinstance(value, float) and not math.isfinite(value):
            raise SettingsError(f"{opt} must be a finite number, got {value!r}")
        if value is None or isinstance(value, bool):
            continue
        if name == "pixel_size":
            check_pixel_size(value, opt)
        elif name in _COUNTS and isinstance(value, int):
            check_number(value, opt, minimum=1, maximum=_COUNTS[name], integer=True)
        elif name == "frames" and isinstance(value, int):
            check_number(value, opt, minimum=1, maximum=1_000_000, integer=True)
        elif name in _FRACTIONS and isinstance(value, float):
            check_number(value, opt, minimum=0.0, maximum=1.0)
        elif name == "lr" and isinstance(value, float):
            check_number(value, opt, minimum=0.0, exclusive_min=True, maximum=10.0)
        elif name == "seed" and isinstance(value, int):
            check_number(value, opt, minimum=0, maximum=2**32 - 1, integer=True)
        elif isinstance(value, str) and "\x00" in value:
            raise SettingsError(f"{opt} contains a NUL character; check the value")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
