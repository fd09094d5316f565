"""Cross-validate the Si-neighbour search threshold on the LibraryNet patches; prints JSON.

Each of the 79 patches (../shared/data/real/librarynet_dev) is detected once with the
ring search off, at the pixel size of AtomLens' own calibration; the search
(:func:`atomlens.atoms.halo.add_si_neighbours`) is then applied with each ``min_ratio``
of a grid. Folds: 5 folds by file, stratified by motif (files of each motif shuffled with
seed 0 and dealt round-robin). For each fold the ratio that maximises (patches with every
labelled atom found + Si1C3/Si1C4 patches with the coordination right) on the other 4
folds is chosen (ties: the largest ratio) and scored on the held-out fold.

Usage: .venv/bin/python bench/librarynet_cv.py [--threads 1] [--folds 5]
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from detect import LIBRARYNET, calibrated_pixel_size, score_librarynet_patch  # noqa: E402

GRID = np.round(np.arange(0.15, 1.01, 0.05), 2)


def folds_by_file(files: list[Path], k: int, seed: int = 0) -> dict[str, int]:
    """File name -> fold, stratified by the motif in the name (Si1C3_187 -> Si1C3)."""
    rng = np.random.default_rng(seed)
    kinds = sorted({f.stem.split("_")[0] for f in files})
    out, start = {}, 0
    for kind in kinds:
        names = sorted(f.name for f in files if f.stem.split("_")[0] == kind)
        rng.shuffle(names)
        for j, n in enumerate(names):
            out[n] = (start + j) % k
        start += len(names)  # small motifs do not all land in fold 0
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--folds", type=int, default=5)
    args = p.parse_args()
    import torch

    from atomlens.atoms import detect
    from atomlens.atoms.halo import RingSettings, add_si_neighbours
    from atomlens.segment.model_file import load_detector

    torch.set_num_threads(args.threads)
    det = load_detector(None)
    files = sorted(LIBRARYNET.glob("*.npz"))
    if not files:
        raise SystemExit(f"no LibraryNet patches in {LIBRARYNET}")
    table: dict[str, list[tuple[bool, bool | None]]] = {}
    for f in files:
        img = np.load(f)["image"]
        ps, _ = calibrated_pixel_size(img)
        a = detect(img, det, pixel_size=ps, si_neighbours="off").atoms
        row = []
        for t in [None, *GRID]:
            b = (
                a
                if t is None
                else add_si_neighbours(
                    a, img, ps, settings=replace(RingSettings(), min_ratio=float(t))
                )
            )
            sc = score_librarynet_patch(
                f, b[["y", "x"]].to_numpy(float), b["cls"].astype(str).to_numpy(), ps
            )
            row.append((sc["all_found"], sc.get("coordination_right")))
        table[f.name] = row
    fold = folds_by_file(files, args.folds)

    def score(names: list[str], i: int) -> tuple[int, int, int]:
        af = sum(table[n][i][0] for n in names)
        coord = [table[n][i][1] for n in names if table[n][i][1] is not None]
        return af, sum(coord), len(coord)

    names = sorted(table)
    out: dict = {
        "patches": len(names),
        "split": f"{args.folds} folds by file, stratified by motif (seed 0)",
        "off": dict(zip(("all_found", "coord_right", "n_coord"), score(names, 0))),
        "grid_all_patches": {
            str(t): dict(zip(("all_found", "coord_right", "n_coord"), score(names, i + 1)))
            for i, t in enumerate(GRID)
        },
        "folds": [],
    }
    for k in range(args.folds):
        train = [n for n in names if fold[n] != k]
        test = [n for n in names if fold[n] == k]
        tot = [sum(score(train, i + 1)[:2]) for i in range(len(GRID))]
        best = max(i for i, v in enumerate(tot) if v == max(tot))
        af, cr, nc = score(test, best + 1)
        af0, cr0, _ = score(test, 0)
        out["folds"].append(
            {
                "fold": k,
                "test_files": len(test),
                "min_ratio": float(GRID[best]),
                "all_found": f"{af}/{len(test)}",
                "coord_right": f"{cr}/{nc}",
                "off_all_found": f"{af0}/{len(test)}",
                "off_coord_right": f"{cr0}/{nc}",
                "_af": af / len(test),
                "_cr": cr / max(nc, 1),
            }
        )
    af = np.array([f.pop("_af") for f in out["folds"]])
    cr = np.array([f.pop("_cr") for f in out["folds"]])
    out["cv_all_found_pct"] = {"mean": round(100 * af.mean(), 1), "sd": round(100 * af.std(), 1)}
    out["cv_coord_right_pct"] = {"mean": round(100 * cr.mean(), 1), "sd": round(100 * cr.std(), 1)}
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
