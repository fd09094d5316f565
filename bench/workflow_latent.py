"""Benchmark: the DEFAULT latent recipe (what `atomlens run`, `atomlens rvae` and the Train
dock use) on the real 48-frame Si-graphene movie: training time on 2 threads and the
Si-vs-C separation of ``bench/rvae.py --science`` (Mahalanobis distance of the content
latents from the bulk-C cloud; the Si's rank in its frame; ROC AUC Si vs bulk C).

Usage::

    .venv/bin/python bench/workflow_latent.py [--seeds 0 1 2] [--set key=value ...]
    .venv/bin/python bench/workflow_latent.py --from-run OUT   # score `atomlens run` output

Atoms: the detect workflow with the default DetectRecipe (cached in /tmp). Labels as in
bench/rvae.py: the Si is the detection nearest (< 5 px) to the annotated Si of its frame;
bulk C = detections farther than 40 px (3 Å) from every annotated atom. Prints JSON.
"""

from __future__ import annotations

import argparse
import ast
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
REAL = REPO.parent / "shared" / "data" / "real" / "graphene_si1c3_movie.npz"
CACHE = Path("/tmp/atomlens_bench_real_atoms.parquet")


def real_atoms() -> tuple[object, pd.DataFrame, np.ndarray]:
    """The movie, the detected atoms (default detect recipe) and their labels."""
    from atomlens.io import read_stack
    from atomlens.workflows import detect, drain

    stack = read_stack(REAL)
    if CACHE.exists():
        atoms = pd.read_parquet(CACHE)
    else:
        atoms = drain(detect.run(stack, detect.DetectRecipe(save_maps=False, device="cpu"))).atoms
        atoms.to_parquet(CACHE)
    return stack, atoms, labels(atoms)


def labels(atoms: pd.DataFrame) -> np.ndarray:
    """'Si', 'near' (within 3 Å of an annotated atom) or 'C' (bulk) per detection."""
    d = np.load(REAL)
    ann = pd.DataFrame(
        {
            "frame": d["atom_frame"],
            "y": d["atom_row"],
            "x": d["atom_col"],
            "element": d["atom_element"],
        }
    )
    label = np.full(len(atoms), "C", object)
    for fr, grp in ann.groupby("frame"):
        rows = np.flatnonzero(atoms["frame"].to_numpy() == fr)
        if not len(rows):
            continue
        dist = np.hypot(
            atoms["y"].to_numpy()[rows, None] - grp["y"].to_numpy()[None],
            atoms["x"].to_numpy()[rows, None] - grp["x"].to_numpy()[None],
        )
        label[rows[(dist < 40).any(1)]] = "near"
        for k, el in enumerate(grp["element"]):
            if el == "Si" and dist[:, k].min() < 5:
                label[rows[dist[:, k].argmin()]] = "Si"
    return label


def si_vs_c(lat: pd.DataFrame, label: np.ndarray, frame: np.ndarray) -> dict:
    """Mahalanobis distance from bulk C in the content latents; Si rank and AUC."""
    from sklearn.metrics import roc_auc_score

    cols = [c for c in lat.columns if c.startswith("z")]
    lat = lat[cols].copy()
    lat["label"], lat["frame"] = label, frame
    c = lat.loc[lat["label"] == "C", cols].to_numpy()
    diff = lat[cols].to_numpy() - c.mean(0)
    cov = np.atleast_2d(np.cov(c.T))
    lat["maha"] = np.sqrt(np.einsum("ij,jk,ik->i", diff, np.linalg.pinv(cov), diff))
    si = lat["label"] == "Si"
    rank = [
        int((g["maha"] > g.loc[si[g.index], "maha"].iloc[0]).sum()) + 1
        for _, g in lat.groupby("frame")
        if si[g.index].any()
    ]
    both = lat["label"].isin(["C", "Si"])
    return {
        "si_windows": int(si.sum()),
        "si_mahalanobis_median": round(float(lat.loc[si, "maha"].median()), 2),
        "bulk_c_mahalanobis_median": round(float(lat.loc[lat["label"] == "C", "maha"].median()), 2),
        "si_rank_in_frame_median": float(np.median(rank)),
        "atoms_per_frame_median": float(lat.groupby("frame").size().median()),
        "si_vs_c_auc": round(float(roc_auc_score(si[both], lat.loc[both, "maha"])), 3),
    }


def main() -> None:
    import torch

    from atomlens.workflows import drain, latent

    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, nargs="+", default=[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--set", nargs="*", default=[], help="recipe overrides, e.g. latent_dim=6")
    p.add_argument(
        "--from-run",
        default=None,
        help="score the atoms.parquet of an `atomlens run` on the movie instead",
    )
    a = p.parse_args()
    if a.from_run:
        atoms = pd.read_parquet(Path(a.from_run) / "atoms.parquet")
        ok = atoms["z1"].notna().to_numpy()
        lat = atoms.loc[ok].reset_index(drop=True)
        print(
            json.dumps(
                {
                    "run": a.from_run,
                    "windows": int(ok.sum()),
                    **si_vs_c(lat, labels(atoms)[ok], atoms["frame"].to_numpy()[ok]),
                }
            )
        )
        return
    torch.set_num_threads(a.threads)
    stack, atoms, label = real_atoms()
    over = {k: ast.literal_eval(v) for k, v in (s.split("=", 1) for s in a.set)}
    desc_keys = set(latent.DescriptorRecipe.docs())
    desc = latent.DescriptorRecipe().replace(**{k: v for k, v in over.items() if k in desc_keys})
    out = {"descriptors": desc.to_dict(), "runs": []}
    for seed in a.seeds:
        rec = latent.LatentRecipe().replace(
            seed=seed, **{k: v for k, v in over.items() if k not in desc_keys}
        )
        t = time.perf_counter()
        res = drain(latent.run(stack, atoms, desc, rec))
        elapsed = time.perf_counter() - t
        idx = res.windows.index
        row = {
            "seed": seed,
            "recipe": rec.to_dict(),
            "windows": len(idx),
            "train_and_encode_s": round(elapsed, 1),
            **si_vs_c(res.latents, label[idx], atoms["frame"].to_numpy()[idx]),
        }
        out["runs"].append(row)
        print(json.dumps(row), flush=True)
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
