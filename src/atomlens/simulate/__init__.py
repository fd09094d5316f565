"""Synthetic atom-resolved STEM movies of graphene with Si dopants, with exact truth.

The source of the sample data, of the U-Net's training images and of ground truth for
the tests. Positions are pixels unless a name ends in ``_A`` (Å).

- :class:`SimConfig`: every parameter, validated.
- :func:`simulate_movie` / :func:`simulate_frame`: a :class:`SimulatedMovie`
  (frames plus atoms, bonds, rings, defects tables, hole mask, contamination).
- :func:`render`: image formation alone (Gaussian probe, Z^1.7, noise, scan jitter).
- :func:`sample_movie`: the small deterministic movie shipped as sample data.
"""

from atomlens.simulate.config import SimConfig, SimConfigError
from atomlens.simulate.lattice import A_LATTICE_A, CC_BOND_A
from atomlens.simulate.movie import SimulatedMovie, sample_movie, simulate_frame, simulate_movie
from atomlens.simulate.render import render

__all__ = [
    "A_LATTICE_A",
    "CC_BOND_A",
    "SimConfig",
    "SimConfigError",
    "SimulatedMovie",
    "render",
    "sample_movie",
    "simulate_frame",
    "simulate_movie",
]
