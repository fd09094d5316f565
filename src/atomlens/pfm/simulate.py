"""Synthetic piezoresponse (PFM) phase movies of ferroelectric domain walls under bias.

The model is a driven, time-dependent Ginzburg-Landau (Allen-Cahn) phase field on the
pixel grid (unit spacing, dimensionless time)::

    dphi/dt = m(r) * (kappa * lap(phi) + phi - phi**3 + h(t) + h_r(r))

``phi = +1`` is the *switched* polarisation (favoured by the bias ``h > 0``), ``-1`` the
unswitched one. Walls are the ``phi = 0`` level set; they move with normal speed
``~ m * h * 3 * sqrt(kappa / 2)`` towards the unswitched side, slowed down (pinned) where
the mobility ``m(r)`` drops at point defects, roughened by a weak smooth random field
``h_r``, and pulled by their own curvature. The observed PFM phase is ``sign(phi)``
(±1) blurred by the tip and with additive Gaussian noise.

Ground truth per frame: the domain map, the wall pixels (pixels of either domain that
touch the other one, 4-connected), and the local wall velocity (pixels / frame) from the
change of the signed distance to the wall between ``t`` and ``t + 1`` (positive when the
switched domain advances past the pixel).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi

from atomlens.errors import AtomLensError


class PFMSimulationError(AtomLensError):
    """Bad simulation parameters; the message names the fix."""


@dataclass
class PFMMovie:
    """A simulated PFM phase movie and its ground truth.

    Attributes
    ----------
    phase : (T, Y, X) float32 observed phase (≈ ±1 with blur and noise).
    domains : (T, Y, X) int8 true polarisation, +1 switched, -1 unswitched.
    field : (T, Y, X) float32 the phase field phi (its zero level set is the true wall,
        with sub-pixel precision).
    walls : (T, Y, X) bool true wall pixels.
    velocity : (T, Y, X) float32 local normal wall velocity in pixels / frame between
        frame t and t + 1 on the true wall pixels (NaN elsewhere and in the last frame).
    pinning : (K, 2) float pinning-site positions (y, x) in pixels.
    bias : (T,) float field ``h`` applied while evolving frame t - 1 -> t (dimensionless).
    params : the simulation parameters.
    """

    phase: np.ndarray
    domains: np.ndarray
    field: np.ndarray
    walls: np.ndarray
    velocity: np.ndarray
    pinning: np.ndarray
    bias: np.ndarray
    params: dict = field(default_factory=dict)

    @property
    def n_frames(self) -> int:
        return int(self.phase.shape[0])

    def save(self, path: str | Path) -> Path:
        """Write everything to one ``.npz``; the phase movie is stored as ``frames`` (the
        key :func:`atomlens.io.read_stack` opens)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        np.savez_compressed(
            path,
            frames=self.phase,
            domains=self.domains,
            field=self.field.astype(np.float16),
            walls=self.walls,
            velocity=self.velocity,
            pinning=self.pinning,
            bias=self.bias,
            params=np.array(repr(self.params)),
        )
        return path

    @classmethod
    def load(cls, path: str | Path) -> PFMMovie:
        """Read a movie written by :meth:`save`."""
        with np.load(Path(path), allow_pickle=False) as z:
            missing = {"frames", "domains", "walls", "velocity"} - set(z.files)
            if missing:
                raise PFMSimulationError(
                    f"{path} is not a simulated PFM movie (lacks {sorted(missing)}); "
                    "write one with `atomlens simulate-pfm`"
                )
            return cls(
                phase=z["frames"],
                domains=z["domains"],
                field=z["field"].astype(np.float32)
                if "field" in z.files
                else z["domains"].astype(np.float32),
                walls=z["walls"],
                velocity=z["velocity"],
                pinning=z["pinning"],
                bias=z["bias"],
                params={"repr": str(z["params"])} if "params" in z.files else {},
            )


def wall_mask(domains: np.ndarray) -> np.ndarray:
    """Pixels of a ±1 domain map (..., Y, X) that have a 4-neighbour of the other sign."""
    d = np.asarray(domains) > 0
    out = np.zeros(d.shape, dtype=bool)
    diff_y = d[..., 1:, :] != d[..., :-1, :]
    diff_x = d[..., :, 1:] != d[..., :, :-1]
    out[..., 1:, :] |= diff_y
    out[..., :-1, :] |= diff_y
    out[..., :, 1:] |= diff_x
    out[..., :, :-1] |= diff_x
    return out


def signed_distance(field: np.ndarray, upsample: int = 5) -> np.ndarray:
    """Signed distance (pixels) of every pixel centre to the wall (zero level set).

    ``field`` is a (Y, X) phase field or ±1 domain map; it is interpolated (bilinear) on
    a grid ``upsample`` times finer (odd, so pixel centres stay on the fine grid), split
    at 0 and measured with exact Euclidean distance transforms, so the result has
    ~1 / upsample pixel precision. Positive inside the switched (phi > 0) domain.
    """
    f = np.asarray(field, dtype=np.float32)
    k = int(upsample)
    if k < 1 or k % 2 == 0:
        raise PFMSimulationError(f"upsample must be an odd integer >= 1, got {upsample}")
    if k > 1:
        ny, nx = f.shape
        fy = (np.arange(k * ny) + 0.5) / k - 0.5
        fx = (np.arange(k * nx) + 0.5) / k - 0.5
        gy, gx = np.meshgrid(fy, fx, indexing="ij")
        f = ndi.map_coordinates(f, [gy, gx], order=1, mode="nearest")
    d = f > 0
    if d.all():
        out = np.full(d.shape, np.inf)
    elif not d.any():
        out = np.full(d.shape, -np.inf)
    else:
        s = 1.0 / k
        out = (ndi.distance_transform_edt(d, sampling=s) - 0.5 * s) - (
            ndi.distance_transform_edt(~d, sampling=s) - 0.5 * s
        )
    if k > 1:
        out = out[k // 2 :: k, k // 2 :: k]
    return out


def wall_velocity(field: np.ndarray, t: int, delta: int = 1, upsample: int = 5) -> np.ndarray:
    """Local wall velocity (pixels / frame) between frames ``t`` and ``t + delta``.

    ``(sd[t + delta] - sd[t]) / delta`` where ``sd`` is :func:`signed_distance` of the
    (T, Y, X) phase field (or ±1 domains): for a pixel on the wall at ``t`` this is how far
    the switched domain advanced past it along the wall normal (negative where the wall
    retreated). Returns a (Y, X) float array; values are meaningful near the wall at ``t``
    (inf where a domain vanished).
    """
    if not 0 <= t < t + delta < len(field):
        raise PFMSimulationError(
            f"need 0 <= t < t + delta < {len(field)} frames, got t={t}, delta={delta}"
        )
    with np.errstate(invalid="ignore"):
        return (
            signed_distance(field[t + delta], upsample) - signed_distance(field[t], upsample)
        ) / delta


def _laplacian(phi: np.ndarray) -> np.ndarray:
    """5-point Laplacian with zero-flux (reflecting) borders."""
    p = np.pad(phi, 1, mode="edge")
    return p[:-2, 1:-1] + p[2:, 1:-1] + p[1:-1, :-2] + p[1:-1, 2:] - 4.0 * phi


def _seed_domains(size: int, n_domains: int, rng: np.random.Generator) -> np.ndarray:
    """Initial phi: a wavy switched band along the left edge plus round switched nuclei."""
    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    front = 0.12 * size + 0.04 * size * np.sin(2 * np.pi * yy / size * rng.uniform(1, 2.5))
    switched = xx < front
    for _ in range(n_domains):
        cy, cx = rng.uniform(0.2, 0.8, size=2) * size
        r = rng.uniform(0.06, 0.12) * size
        switched |= (yy - cy) ** 2 + (xx - cx) ** 2 < r**2
    return np.where(switched, 1.0, -1.0)


def simulate_pfm(
    n_frames: int = 40,
    size: int = 128,
    seed: int = 0,
    n_pinning: int = 25,
    pinning_radius: float = 4.0,
    pinning_strength: float = 0.97,
    n_domains: int = 3,
    bias: float | np.ndarray = 0.12,
    bias_jitter: float = 0.6,
    kappa: float = 1.0,
    time_per_frame: float = 6.0,
    dt: float = 0.1,
    random_field: float = 0.03,
    blur: float = 1.0,
    noise: float = 0.25,
) -> PFMMovie:
    """Simulate a PFM phase movie with domain walls moving under bias and pinning.

    Parameters
    ----------
    n_frames : number of frames T.
    size : frame side in pixels (frames are size x size).
    seed : random seed (everything is reproducible from it).
    n_pinning : number of point defects that pin walls.
    pinning_radius : Gaussian radius of each pinning site, pixels.
    pinning_strength : fractional mobility drop at a site centre (0 = none, 1 = frozen).
    n_domains : number of round switched nuclei besides the switched band on the left.
    bias : field ``h`` (dimensionless; ``|h| < 0.38`` avoids bulk nucleation), a scalar
        or a (T,) array (frame t uses ``bias[t]`` to evolve from t - 1 to t).
    bias_jitter : for scalar ``bias``, each frame's field is ``bias * U(1 - j, 1 + j)`` so
        wall speeds vary between frames too.
    kappa : gradient coefficient (wall width ≈ sqrt(2 kappa) pixels).
    time_per_frame : model time between frames; ``dt`` the Euler step (< 0.2 / kappa).
    random_field : amplitude of the smooth random field that roughens walls.
    blur : Gaussian blur of the observed phase (tip size), pixels.
    noise : SD of the additive Gaussian noise on the observed ±1 phase.
    """
    if n_frames < 2:
        raise PFMSimulationError(f"need at least 2 frames, got {n_frames}")
    if size < 16:
        raise PFMSimulationError(f"frames must be at least 16 pixels wide, got {size}")
    if not 0 < dt * kappa < 0.25:
        raise PFMSimulationError(
            f"dt * kappa = {dt * kappa:g} is unstable; use dt < {0.25 / kappa:g}"
        )
    if not 0 <= pinning_strength <= 1:
        raise PFMSimulationError("pinning_strength must lie in [0, 1]")
    rng = np.random.default_rng(seed)
    if np.ndim(bias) == 0:
        lo, hi = 1.0 - bias_jitter, 1.0 + bias_jitter
        fields = float(bias) * rng.uniform(lo, hi, size=n_frames)
        fields[0] = 0.0
    else:
        fields = np.asarray(bias, dtype=float)
        if fields.shape != (n_frames,):
            raise PFMSimulationError(f"bias array must have shape ({n_frames},)")
    if np.any(np.abs(fields) >= 0.38) or (
        np.ndim(bias) == 0 and abs(float(bias)) * (1 + bias_jitter) >= 0.38
    ):
        raise PFMSimulationError(
            "|bias| (times 1 + bias_jitter) must stay below 0.38, the bulk nucleation "
            "threshold; lower bias or bias_jitter"
        )

    yy, xx = np.mgrid[0:size, 0:size].astype(float)
    pins = rng.uniform(0, size, size=(n_pinning, 2))
    pin = np.zeros((size, size))
    for py, px in pins:
        pin = np.maximum(pin, np.exp(-((yy - py) ** 2 + (xx - px) ** 2) / (2 * pinning_radius**2)))
    mobility = 1.0 - pinning_strength * pin
    h_r = ndi.gaussian_filter(rng.normal(size=(size, size)), 6.0)
    h_r *= random_field / (h_r.std() + 1e-12)

    phi = _seed_domains(size, n_domains, rng)
    # relax the sharp seed into a smooth wall profile without bias
    for _ in range(30):
        phi += dt * (kappa * _laplacian(phi) + phi - phi**3)
    n_steps = max(1, int(round(time_per_frame / dt)))
    fieldt = np.empty((n_frames, size, size), np.float32)
    fieldt[0] = phi
    for t in range(1, n_frames):
        drive = fields[t] + h_r
        for _ in range(n_steps):
            phi += dt * mobility * (kappa * _laplacian(phi) + phi - phi**3 + drive)
        fieldt[t] = phi
    domains = np.where(fieldt > 0, 1, -1).astype(np.int8)
    walls = wall_mask(domains)
    velocity = np.full(domains.shape, np.nan, np.float32)
    for t in range(n_frames - 1):
        v = wall_velocity(fieldt, t)
        velocity[t][walls[t]] = v[walls[t]]
    phase = (
        ndi.gaussian_filter(domains.astype(np.float32), sigma=(0, blur, blur))
        if blur > 0
        else domains.astype(np.float32)
    )
    phase = phase + rng.normal(scale=noise, size=phase.shape).astype(np.float32)
    params = dict(
        n_frames=n_frames,
        size=size,
        seed=seed,
        n_pinning=n_pinning,
        pinning_radius=pinning_radius,
        pinning_strength=pinning_strength,
        n_domains=n_domains,
        kappa=kappa,
        time_per_frame=time_per_frame,
        dt=dt,
        random_field=random_field,
        blur=blur,
        noise=noise,
    )
    return PFMMovie(
        phase=phase.astype(np.float32),
        domains=domains,
        field=fieldt,
        walls=walls,
        velocity=velocity,
        pinning=pins,
        bias=fields,
        params=params,
    )
