"""``atomlens run STACK --out DIR [--config FILE]``: the whole chain on one movie."""

from __future__ import annotations

import argparse


def add_run_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--config", help="TOML/YAML/JSON settings (see --print-config)")
    p.add_argument(
        "--scheduler",
        default="local",
        help="'local' (default): 2 worker threads of this process (no open "
        "port); 'none': one after the other in this process; 'local-cluster': "
        "a 2-process Dask cluster on 127.0.0.1; or the address of a "
        "dask.distributed scheduler",
    )
    p.add_argument(
        "--model",
        default=None,
        help="detector: graphene, general, auto (chosen from the first frame) or a .pt "
        "file (overrides [detect] model; default: a project's fine-tuned detector, else "
        "auto, as atomlens detect and the Detect dock)",
    )
    p.add_argument("--pixel-size", type=float, help="Å per pixel (overrides metadata)")
    p.add_argument("--frames", help="frames to analyse, e.g. 0:10")
    p.add_argument("--epochs", type=int, help="latent-model epochs (overrides the config)")
    p.add_argument(
        "--latent-model",
        default=None,
        choices=["rvae", "skip-rvae", "vae", "conv-ae", "pca", "nmf", "gmm"],
        help="latent model (overrides [latent] model)",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bars")


def config_from_args(args: argparse.Namespace):  # noqa: ANN201
    from atomlens.pipeline import PipelineConfig

    cfg = PipelineConfig.from_file(args.config)
    if getattr(args, "model", None):
        cfg.detect.model = args.model
    if args.pixel_size:
        cfg.input.pixel_size = args.pixel_size
    if args.frames:
        cfg.input.frames = args.frames
    if args.epochs:
        cfg.latent.epochs = args.epochs
    if getattr(args, "latent_model", None):
        cfg.latent.model = args.latent_model
    return cfg.validate()


def scheduler_from_args(args: argparse.Namespace) -> str | None:
    return None if args.scheduler in ("none", "", None) else args.scheduler


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "run",
        help="detect, chemistry, descriptors, rVAE and report in one go",
        description=(
            "The whole chain on one movie: detect atoms, chemistry (graphene's; holes only "
            "on other materials), descriptors, a latent model and an HTML report, written "
            "under --out (atoms.csv/.parquet, bonds, rings, defects, maps, run.json, "
            "report.html). Settings: --config FILE (see --print-config); the detector is "
            "a project's fine-tuned one, else picked from the image ('auto', as atomlens "
            "detect does) unless [detect] model or --model names one."
        ),
    )
    p.add_argument("stack", nargs="?", help="movie file or AtomLens project folder")
    p.add_argument("--out", help="output directory")
    p.add_argument(
        "--print-config",
        action="store_true",
        help="print the default configuration (TOML) and exit",
    )
    add_run_options(p)
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    if args.print_config:
        from atomlens.pipeline import default_config_toml

        print(default_config_toml(), end="")
        return 0
    if not args.stack or not args.out:
        raise ValueError("give a STACK and --out DIR (or --print-config)")
    from atomlens.pipeline import run_pipeline

    res = run_pipeline(
        args.stack,
        args.out,
        config_from_args(args),
        scheduler=scheduler_from_args(args),
        progress=not args.quiet,
    )
    ran = ", ".join(f"{k}: {v}" for k, v in res.stages.items())
    n = res.atoms["frame"].nunique()
    print(
        f"{len(res.atoms)} atoms in {n} frame{'' if n == 1 else 's'} ({ran}); "
        f"report: {res.files.get('report', '-')}"
    )
    return 0
