"""Latent variables on atoms: encoding, manifold traversal, per-frame statistics."""

from atomlens.latent.encode import (
    circular_correlation,
    content_columns,
    decode_manifold,
    encode_atoms,
    per_frame_histograms,
    per_frame_stats,
    threshold_accuracy,
)
from atomlens.latent.figures import plot_latent_vs_frame, plot_manifold

__all__ = [
    "circular_correlation",
    "content_columns",
    "decode_manifold",
    "encode_atoms",
    "per_frame_histograms",
    "per_frame_stats",
    "plot_latent_vs_frame",
    "threshold_accuracy",
    "plot_manifold",
]
