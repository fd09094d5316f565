"""Bench for issue 8: chemical-space maps, ring-centred skip-rVAE, latent trajectories
and the PFM switching degree, on simulated data with ground truth. Prints one JSON.

    .venv/bin/python bench/chemspace.py            # the figures reported in the docs
    .venv/bin/python bench/chemspace.py --quick    # a smoke run (small, few epochs)

Atom-centred and ring-centred windows are cut from "ideal segmentation" maps: one
equal Gaussian (sigma = 0.22 bond) per simulated atom (C or Si), the stand-in for the
U-Net's atom probability map that the paper feeds to the rVAE, centred on the true atom
/ ring positions; truth ring counts come from the simulator. Bonds are 0.5-1.3 l (the
paper's 1.2 l misses Si-C bonds, 1.77 Å = 1.25 l).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from scipy import ndimage as ndi
from scipy.stats import spearmanr


def ideal_maps(atoms: pd.DataFrame, shape: tuple[int, int, int], sigma: float) -> np.ndarray:
    """(T, Y, X) maps with a unit-peak Gaussian of ``sigma`` pixels at every atom."""
    out = np.zeros(shape, np.float32)
    f = atoms["frame"].to_numpy()
    y, x = atoms["y"].to_numpy(), atoms["x"].to_numpy()
    y0, x0 = np.floor(y).astype(int), np.floor(x).astype(int)
    fy, fx = y - y0, x - x0
    for dy, dx, w in ((0, 0, (1 - fy) * (1 - fx)), (1, 0, fy * (1 - fx)),
                      (0, 1, (1 - fy) * fx), (1, 1, fy * fx)):  # fmt: skip
        yy, xx = y0 + dy, x0 + dx
        ok = (yy >= 0) & (yy < shape[1]) & (xx >= 0) & (xx < shape[2])
        np.add.at(out, (f[ok], yy[ok], xx[ok]), w[ok])
    return ndi.gaussian_filter(out, (0, sigma, sigma)) * (2 * np.pi * sigma**2)


def make(args: argparse.Namespace, window: int):
    """The latent model: the paper's skip-rVAE, or the plain VAE baseline."""
    from atomlens.models import VAE, SkipRVAE

    if args.model == "vae":
        return VAE(window=window, latent_dim=2, hidden=args.hidden, lr=args.lr, seed=args.seed)
    return SkipRVAE(window=window, latent_dim=2, hidden=args.hidden, lr=args.lr, seed=args.seed)


def atom_and_ring_part(args: argparse.Namespace, out: Path) -> dict:
    from atomlens.descriptors import extract_windows
    from atomlens.latent import decode_manifold, plot_manifold
    from atomlens.latent.chemspace import (
        agreement,
        analyze_decoded,
        chemical_space_map,
        cluster_latents,
        cluster_purity,
        plot_chemspace,
    )
    from atomlens.latent.trajectory import latent_trajectory, longest_track, plot_trajectory
    from atomlens.simulate import CC_BOND_A, simulate_movie

    res: dict = {}
    px = args.pixel_size
    bond = CC_BOND_A / px
    t0 = time.perf_counter()
    movie = simulate_movie(
        args.frames, args.size, px, args.seed, dose=None, read_noise=0.0,
        contamination_fraction=0.0, n_stone_wales=args.stone_wales, reconstruct_prob=0.3,
        n_si3=3,
    )  # fmt: skip
    images = ideal_maps(movie.atoms, movie.frames.shape, 0.22 * bond)
    images = np.clip(images / np.percentile(images, 99.9), 0, 1).astype(np.float32)
    br = (0.5, 1.3)
    res["simulate_s"] = round(time.perf_counter() - t0, 1)
    res["bond_length_px"] = round(bond, 2)

    # --- atom-centred windows -> skip-rVAE -> chemical-space map
    sub = extract_windows(images, movie.atoms, args.window)
    truth = movie.atoms.iloc[sub.index].reset_index(drop=True)
    raw = analyze_decoded(sub.images, bond, bond_range=br)  # the method's ceiling
    cols = ["ring5", "ring6", "ring7"]
    res["atom_raw_window_agreement"] = round(
        float((raw[cols].to_numpy() == truth[cols].to_numpy()).all(axis=1).mean()), 4
    )
    model = make(args, args.window)
    t0 = time.perf_counter()
    model.fit(sub.images, epochs=args.epochs, batch_size=args.batch, device="cpu", seed=args.seed)
    res["atom_windows"] = len(sub.images)
    res["atom_fit_s"] = round(time.perf_counter() - t0, 1)
    lat = model.transform(sub.images)
    z = lat[["z1", "z2"]].to_numpy()
    t0 = time.perf_counter()
    cmap = chemical_space_map(model, bond, grid=args.grid, z=z, bond_range=br)
    res["map_grid"] = args.grid
    res["map_s"] = round(time.perf_counter() - t0, 1)
    agr = agreement(cmap, z, truth)
    res["atom_map_agreement"] = round(agr["agreement"], 4)
    res["atom_map_unphysical_at_atoms"] = round(agr["unphysical"], 4)
    pristine = (truth[["ring5", "ring6", "ring7"]].to_numpy() == [0, 3, 0]).all(axis=1)
    res["atom_share_pristine_0_3_0"] = round(float(pristine.mean()), 4)
    look = cmap.lookup(z)
    ok = (look[["ring5", "ring6", "ring7"]].to_numpy() == truth[["ring5", "ring6", "ring7"]].to_numpy()).all(axis=1)
    res["atom_map_agreement_non_pristine"] = round(float(ok[~pristine].mean()), 4) if (~pristine).any() else None
    plot_chemspace(cmap, out / "chemspace_atoms.png", z=z)
    ext = (cmap.z1[0], cmap.z1[-1], cmap.z2[0], cmap.z2[-1])
    plot_manifold(decode_manifold(model, 12, ext), 12, ext, out / "manifold_atoms.png")
    cmap.save(out / "chemspace_atoms.npz")

    # --- latent trajectory of the longest-lived Si (truth atom ids as tracks)
    table = pd.concat([truth, lat], axis=1)
    si = longest_track(table, "atom_id", "Si")
    traj = latent_trajectory(table, si, "atom_id")
    plot_trajectory(traj, cmap, model, path=out / "trajectory_si.png", title=f"Si atom {si}")
    traj.to_csv(out / "trajectory_si.csv", index=False)
    res["trajectory_frames"] = len(traj)

    # --- timing of a 200 x 200 map (40,000 decodings)
    if args.time_200:
        t0 = time.perf_counter()
        chemical_space_map(model, bond, grid=200, z=z, bond_range=br)
        res["map_200x200_s"] = round(time.perf_counter() - t0, 1)

    # --- ring-centred (hollow-site) windows
    rings = movie.rings[movie.rings["size"] <= 8]
    rsub = extract_windows(images, rings, args.ring_window)
    rtruth = rings.iloc[rsub.index].reset_index(drop=True)
    rraw = analyze_decoded(rsub.images, bond, mode="ring", bond_range=br)
    res["ring_raw_window_agreement"] = round(
        float((rraw["centre_ring"].to_numpy() == rtruth["size"].to_numpy()).mean()), 4
    )
    rmodel = make(args, args.ring_window)
    t0 = time.perf_counter()
    rmodel.fit(rsub.images, epochs=args.epochs, batch_size=args.batch, device="cpu", seed=args.seed)
    res["ring_windows"] = len(rsub.images)
    res["ring_sizes"] = {int(k): int(v) for k, v in rtruth["size"].value_counts().items()}
    res["ring_fit_s"] = round(time.perf_counter() - t0, 1)
    rlat = rmodel.transform(rsub.images)
    rz = rlat[["z1", "z2"]].to_numpy()
    k = rtruth["size"].nunique()
    for method in ("gmm", "kmeans"):
        cp = cluster_purity(cluster_latents(rz, k, method, args.seed), rtruth["size"].to_numpy())
        res[f"ring_{method}_purity"] = round(cp["purity"], 4)
        res[f"ring_{method}_balanced_recall"] = round(cp["balanced_recall"], 4)
    res["ring_majority_share"] = round(cp["majority_share"], 4)
    rmap = chemical_space_map(rmodel, bond, grid=args.grid, z=rz, mode="ring", bond_range=br)
    res["ring_map_agreement"] = round(agreement(rmap, rz, rtruth)["agreement"], 4)
    plot_chemspace(rmap, out / "chemspace_rings.png", z=rz)
    return res


def pfm_part(args: argparse.Namespace, out: Path) -> dict:
    from atomlens.pfm.simulate import simulate_pfm
    from atomlens.pfm.workflow import PFMConfig, run_pfm, truth_velocity, write_pfm_outputs

    res: dict = {}
    t0 = time.perf_counter()
    movie = simulate_pfm(n_frames=args.pfm_frames, size=args.pfm_size, seed=args.seed)
    res["pfm_simulate_s"] = round(time.perf_counter() - t0, 1)
    cfg = PFMConfig(window=args.pfm_window, n_per_frame=args.pfm_per_frame, delta=1,
                    epochs=args.pfm_epochs, seed=args.seed)  # fmt: skip
    t0 = time.perf_counter()
    result = run_pfm(movie.phase, cfg)
    res["pfm_run_s"] = round(time.perf_counter() - t0, 1)
    res["pfm_windows"] = len(result.table)
    res["pfm_config"] = {"window": cfg.window, "n_per_frame": cfg.n_per_frame, "delta": cfg.delta,
                         "epochs": cfg.epochs, "hidden": list(cfg.hidden), "lr": cfg.lr}
    tv = truth_velocity(movie, result.table, cfg.window, cfg.delta)
    for col in ("D", "D_raw", "D_manifold", "D_direct", "D_direct_raw"):
        for v in ("v_window", "v_centre"):
            rho = spearmanr(result.table[col], tv[v], nan_policy="omit")[0]
            res[f"pfm_spearman_{col}_{v}"] = round(float(rho), 4)
    result.table = result.table.assign(v_centre=tv["v_centre"], v_window=tv["v_window"])
    write_pfm_outputs(result, out / "pfm", movie.phase)
    return res


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--quick", action="store_true", help="tiny smoke run")
    p.add_argument("--out", default="bench_out/chemspace", help="figure directory")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch threads (1 is fastest on a busy 2-core box)")
    p.add_argument("--skip-stem", action="store_true")
    p.add_argument("--skip-pfm", action="store_true")
    p.add_argument("--time-200", action="store_true", help="also time a 200x200 map")
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs (default 40 for skip-rvae, 300 for vae)")
    p.add_argument("--model", choices=("skip-rvae", "vae"), default="skip-rvae",
                   help="latent model of the STEM part (PFM always uses the skip-rVAE)")
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    # STEM part: 0.3 Å/px -> bond 4.7 px; windows of ~4.7 bonds
    args.frames, args.size, args.pixel_size = (3, 96, 0.3) if args.quick else (6, 128, 0.3)
    args.window, args.ring_window = 24, 18
    args.stone_wales = 6
    if args.epochs is None:
        args.epochs = 40 if args.model == "skip-rvae" else 300
    args.epochs = 2 if args.quick else args.epochs
    if args.model == "vae":
        args.hidden, args.lr = ((32, 32) if args.quick else (256, 256)), 1e-3
    else:
        args.hidden, args.lr = ((32, 32) if args.quick else (64, 64, 64)), 1e-3
    args.batch = 32
    args.grid = 24 if args.quick else 100
    args.pfm_frames, args.pfm_size = (8, 64) if args.quick else (30, 128)
    args.pfm_window, args.pfm_per_frame = (16, 10) if args.quick else (24, 40)
    args.pfm_epochs = 2 if args.quick else 30
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    res: dict = {"quick": args.quick}
    if not args.skip_stem:
        res.update(model=args.model, epochs=args.epochs, hidden=list(args.hidden))
    t0 = time.perf_counter()
    if not args.skip_stem:
        res.update(atom_and_ring_part(args, out))
    if not args.skip_pfm:
        res.update(pfm_part(args, out))
    res["total_s"] = round(time.perf_counter() - t0, 1)
    print(json.dumps(res, indent=1))


if __name__ == "__main__":
    main()
