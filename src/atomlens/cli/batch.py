"""``atomlens batch FILES... --out DIR``: the whole chain on many movies, resumable."""

from __future__ import annotations

import argparse
from pathlib import Path

from atomlens.cli.run import add_run_options, config_from_args, scheduler_from_args


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("batch", help="run the pipeline on many movies", description=__doc__)
    p.add_argument("files", nargs="+", help="movie files or project folders")
    p.add_argument("--out", required=True, help="output directory: one sub-folder per movie")
    add_run_options(p)
    p.set_defaults(func=_batch)


def _batch(args: argparse.Namespace) -> int:
    """Run every movie; a movie that fails is reported on one line and the next one runs.

    Exit code 0 when all succeeded, 2 when any failed (each failure printed as
    ``FILE: FAILED: reason``).
    """
    from atomlens.cli import error_line
    from atomlens.pipeline import run_pipeline

    cfg = config_from_args(args)
    out = Path(args.out)
    failed = []
    names: set[str] = set()
    for f in args.files:
        name = Path(f).stem
        while name in names:  # two movies with one stem get distinct folders
            name += "_"
        names.add(name)
        try:
            res = run_pipeline(
                f, out / name, cfg, scheduler=scheduler_from_args(args), progress=not args.quiet
            )
            print(f"{f}: {len(res.atoms)} atoms -> {out / name}")
        except KeyboardInterrupt:
            raise
        except Exception as exc:  # noqa: BLE001 - one bad movie must not stop the batch
            failed.append(f)
            print(f"{f}: FAILED: {error_line(exc)[1]}", flush=True)
    print(f"batch: {len(args.files) - len(failed)} done, {len(failed)} failed")
    return 2 if failed else 0
