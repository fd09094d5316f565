"""The built-in demo: simulate → write → run the pipeline → score against the truth."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd


def preview_figure(path: Path, frames: np.ndarray, atoms: pd.DataFrame) -> Path:
    """First and last simulated frame with the true atoms (C grey, Si orange)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ts = sorted({0, len(frames) - 1})
    fig, axes = plt.subplots(2, len(ts), figsize=(5 * len(ts), 10), squeeze=False)
    for c, t in enumerate(ts):
        lo, hi = np.percentile(frames[t], [1, 99.5])
        for r in range(2):
            axes[r, c].imshow(frames[t], cmap="gray", vmin=lo, vmax=hi)
            axes[r, c].set_axis_off()
        a = atoms[atoms["frame"] == t]
        colours = np.where(a["cls"].astype(str) == "Si", "#ff7f0e", "#4fc3f7")
        axes[1, c].scatter(a["x"], a["y"], s=6, c=colours, edgecolors="none")
        axes[0, c].set_title(f"simulated frame {t}")
        axes[1, c].set_title(f"truth: {len(a)} atoms, {(a['cls'] == 'Si').sum()} Si")
    fig.tight_layout()
    fig.savefig(path, dpi=80)
    plt.close(fig)
    return path


def run_demo(
    out: Path,
    n_frames: int = 12,
    size: int = 256,
    epochs: int = 20,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Simulate a movie, run the whole pipeline on it and score it against the truth."""
    from atomlens.atoms.match import table_scores
    from atomlens.io import write_tiff
    from atomlens.pipeline import PipelineConfig, run_pipeline
    from atomlens.simulate import simulate_movie

    out.mkdir(parents=True, exist_ok=True)
    movie = simulate_movie(n_frames=n_frames, size=size, pixel_size=0.1, seed=seed)
    tif = write_tiff(out / "movie.tif", movie.frames, movie.pixel_size)
    movie.atoms.to_csv(out / "movie_truth_atoms.csv", index=False)
    preview_figure(out / "movie_preview.png", movie.frames, movie.atoms)
    cfg = PipelineConfig()
    cfg.latent.epochs = epochs
    cfg.descriptors.window = 24
    res = run_pipeline(tif, out / "run", cfg, scheduler=None, progress=progress)
    score = table_scores(res.atoms, movie.atoms, movie.pixel_size)
    si_truth = movie.atoms[movie.atoms["cls"] == "Si"]
    si_found = res.atoms[res.atoms["cls"] == "Si"]
    si_score = table_scores(si_found, si_truth, movie.pixel_size)
    return {
        "movie": str(tif),
        "frames": n_frames,
        "size": size,
        "pixel_size_A": movie.pixel_size,
        "true_atoms": int(len(movie.atoms)),
        "found_atoms": int(len(res.atoms)),
        "detection_vs_truth": score,
        "si_detection_vs_truth": si_score,
        "stages": res.stages,
        "seconds": res.seconds,
        "report": str(res.files.get("report", "")),
        "files": {k: str(v) for k, v in res.files.items()},
    }
