"""Benchmark: the napari Subimages + Train latent model docks' DEFAULT training on the real
48-frame Si-graphene movie, driven headless through the calls the docks make
(:func:`atomlens._napari.subimage_widget.window_job` with the dock's pixel size and
``DescriptorRecipe()``, then :func:`atomlens._napari.train_widget.training_events` with
the Train dock's default ``LatentRecipe``; ``tests/test_napari_rvae.py`` checks that the
docks' defaults are these recipes). Reports the wall time of cutting and training and,
after encoding every window, the Si-vs-C figures of ``bench/workflow_latent.py``.

Usage::

    .venv/bin/python bench/gui_train_real.py [--atoms /tmp/h15_run_real/atoms.csv]

Atoms: ``--atoms`` (a CSV or Parquet with ``frame, y, x``, e.g. from ``atomlens detect``
or ``atomlens run``), else the detect workflow's (cached by bench/workflow_latent.py).
Prints JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from pathlib import Path

import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))


def main() -> None:
    import workflow_latent as wl
    from atomlens._napari.subimage_widget import window_job
    from atomlens._napari.train_widget import training_events
    from atomlens.io import read_stack
    from atomlens.io.pixel_size import resolve_pixel_size
    from atomlens.workflows import drain
    from atomlens.workflows.latent import DescriptorRecipe, LatentRecipe

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--atoms", default=None, help="atoms table (CSV/Parquet: frame, y, x)")
    p.add_argument("--no-score", action="store_true", help="skip encoding and the AUC")
    a = p.parse_args()
    stack = read_stack(wl.REAL)
    if a.atoms:
        path = Path(a.atoms)
        atoms = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_csv(path)
        atoms = atoms[["frame", "y", "x"]].reset_index(drop=True)
        label = wl.labels(atoms)
    else:
        _, atoms, label = wl.real_atoms()
    px = resolve_pixel_size(stack, required=False)
    desc = DescriptorRecipe()  # the Subimages dock's default window
    # the Train dock's defaults: LatentRecipe() with one core left to the viewer
    rec = LatentRecipe(threads=max(1, (os.cpu_count() or 2) - 1)).validate()
    t0 = time.perf_counter()
    windows = drain(window_job(stack.data, atoms, desc, px.value if px else None))
    t1 = time.perf_counter()
    epochs = []
    model = drain(
        training_events(windows, rec, threading.Event()),
        lambda ev: epochs.append(time.perf_counter()) if type(ev).__name__ == "EpochEnd" else 0,
    )
    t2 = time.perf_counter()
    out = {
        "movie": str(wl.REAL.name),
        "pixel_size_A": px.value if px else None,
        "bin": windows.recipe.bin,
        "window": windows.recipe.window,
        "windows": len(windows),
        "recipe": rec.to_dict(),
        "cpu_count": os.cpu_count(),
        "cut_s": round(t1 - t0, 1),
        "train_s": round(t2 - t1, 1),
        "per_epoch_s": round((t2 - t1) / max(1, len(epochs)), 1),
        "cut_and_train_s": round(t2 - t0, 1),
    }
    print(json.dumps(out), flush=True)
    if not a.no_score:
        lat = model.transform(windows.images).reset_index(drop=True)
        t3 = time.perf_counter()
        idx = windows.index
        out["encode_s"] = round(t3 - t2, 1)
        out.update(wl.si_vs_c(lat, label[idx], atoms["frame"].to_numpy()[idx]))
        print(json.dumps(out), flush=True)


if __name__ == "__main__":
    main()
