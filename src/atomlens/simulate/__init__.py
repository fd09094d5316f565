"""Synthetic atom-resolved STEM movies of graphene with Si dopants, with exact truth.

The source of the sample data, of the U-Net's training images and of ground truth for
the tests. Positions are pixels unless a name ends in ``_A`` (Å).

- :class:`SimConfig`: every parameter, validated.
- :func:`simulate_movie` / :func:`simulate_frame`: a :class:`SimulatedMovie`
  (frames plus atoms, bonds, rings, defects tables, hole mask, contamination).
- :func:`render`: fast image formation with a Gaussian spot (the movie generator's).
- :func:`render_image`: image formation with a real probe (:class:`Probe`: aperture and
  aberration phase -> Airy rings and tails), Z^n contrast, dose, scan distortion
  (:class:`ScanDistortion`), afterglow, read noise; the renderer for any material and
  for detector training (:mod:`atomlens.simulate.patches`, :mod:`.training`).
- :func:`sample_movie`: the small deterministic movie shipped as sample data.
"""

from atomlens.simulate.config import SimConfig, SimConfigError
from atomlens.simulate.image import render_image
from atomlens.simulate.lattice import A_LATTICE_A, CC_BOND_A
from atomlens.simulate.movie import SimulatedMovie, sample_movie, simulate_frame, simulate_movie
from atomlens.simulate.probe import Probe
from atomlens.simulate.render import render
from atomlens.simulate.scan import ScanDistortion

__all__ = [
    "A_LATTICE_A",
    "CC_BOND_A",
    "Probe",
    "ScanDistortion",
    "SimConfig",
    "SimConfigError",
    "SimulatedMovie",
    "render",
    "render_image",
    "sample_movie",
    "simulate_frame",
    "simulate_movie",
]
