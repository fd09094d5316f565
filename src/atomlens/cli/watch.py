"""``atomlens watch DIR --out OUT``: analyse frames while the microscope writes them.

Follows DIR; each complete frame (any format ``read_stack`` reads; a growing stack
file too) is registered, detected, analysed (chemistry), tracked against the earlier
frames and optionally encoded with a latent model; its rows are appended to OUT (the
tables of ``atomlens run`` plus events.csv, drift.csv and frames.csv). One line per
frame with its latency. Ctrl+C stops after the current frame; running the same
command again resumes without redoing or repeating a frame.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "watch",
        help="analyse frames live as they arrive in a folder",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("folder", help="the folder the microscope writes frames to")
    p.add_argument("--out", required=True, help="output folder (resumed when it holds a watch)")
    p.add_argument(
        "--pixel-size", type=float, help="Å per pixel (default: the first file's metadata)"
    )
    p.add_argument(
        "--policy",
        choices=("all", "newest"),
        default="all",
        help="all: analyse every frame (the queue may grow); newest: when several "
        "frames wait, analyse the newest and DROP the older ones (default all)",
    )
    p.add_argument("--latent-model", help="encode atoms with this latent model file")
    p.add_argument(
        "--model",
        default="auto",
        help="detector: graphene, general, a .pt file, or auto (default: chosen from the "
        "first frame, as atomlens detect does)",
    )
    p.add_argument("--no-register", action="store_true", help="no drift registration")
    p.add_argument(
        "--settle",
        type=float,
        default=0.2,
        help="seconds a file must stay unchanged before it is read (default 0.2; "
        "0 when the writer renames finished files into place)",
    )
    p.add_argument("--max-frames", type=int, help="stop after this many frames")
    p.add_argument(
        "--idle-stop", type=float, help="stop when no frame has arrived for this many seconds"
    )
    p.add_argument("--quiet", action="store_true", help="no per-frame lines")
    p.set_defaults(func=_run)


def _run(args: argparse.Namespace) -> int:
    from atomlens.live.watch import FrameDone, FrameSkipped, WatchRecipe, run
    from atomlens.workflows.chemistry import ChemRecipe
    from atomlens.workflows.detect import DetectRecipe
    from atomlens.workflows.events import Log

    recipe = WatchRecipe(
        policy=args.policy,
        settle_s=args.settle,
        pixel_size=args.pixel_size,
        latent_model=args.latent_model,
        max_frames=args.max_frames,
        idle_stop_s=args.idle_stop,
    )
    detect = DetectRecipe(model=args.model, save_maps=False)
    chem = ChemRecipe(register=not args.no_register)
    stop = threading.Event()

    def on_sigint(signum, frame):  # noqa: ANN001, ARG001
        if stop.is_set():
            raise KeyboardInterrupt  # second Ctrl+C: leave now (the output stays consistent)
        stop.set()
        print(
            "stopping after the current frame (Ctrl+C again to leave at once)",
            file=sys.stderr,
            flush=True,
        )

    old = signal.signal(signal.SIGINT, on_sigint)
    gen = run(args.folder, args.out, recipe, detect=detect, chem=chem, stop=stop)
    try:
        while True:
            try:
                ev = next(gen)
            except StopIteration as done:
                summary = done.value
                break
            if isinstance(ev, (FrameDone, FrameSkipped)) and not args.quiet:
                print(ev.line(), flush=True)
            elif isinstance(ev, Log):
                print(ev.message, file=sys.stderr, flush=True)
    except KeyboardInterrupt:
        print("interrupted; run the same command again to resume", file=sys.stderr)
        return 130
    finally:
        signal.signal(signal.SIGINT, old)
    lat = sorted(summary.latency_s)
    med = f", median latency {lat[len(lat) // 2]:.2f} s" if lat else ""
    print(
        f"{summary.processed} frames analysed, {summary.skipped} skipped{med} "
        f"(stopped: {summary.stopped_by}); tables in {summary.out}",
        flush=True,
    )
    return 0
