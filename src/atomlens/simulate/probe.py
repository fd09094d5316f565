"""The STEM probe of an aberration-corrected microscope, from its optics.

The probe wave is the inverse Fourier transform of the condenser aperture times the
aberration phase; the (incoherent, Z-contrast) image is the specimen's atoms convolved
with the probe *intensity*. That is one small FFT, not a multislice calculation.

Conventions (those of abTEM and of Krivanek's aberration notation):

- spatial frequency ``k`` in Å⁻¹, scattering angle ``θ = λ k`` (rad);
- ``χ(k) = 2π/λ · (½ C1 θ² + ¼ C3 θ⁴ + ⅙ C5 θ⁶) + astigmatism``, with ``C1 = -defocus``
  (a positive ``defocus_A`` is underfocus, as in abTEM), ``C3 = Cs``;
- ``ψ(k) = A(k) · exp(-i χ(k))``, ``A`` = 1 inside the semi-angle ``α``;
- a finite effective source (partial spatial coherence) multiplies the intensity's
  Fourier transform by a Gaussian of the source FWHM.

The intensity comes back normalised to unit sum (so a convolution conserves counts);
:func:`peak_normalised` rescales so that an atom's noise-free peak is 1.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np

FWHM_TO_SIGMA = 1.0 / (2.0 * np.sqrt(2.0 * np.log(2.0)))


def wavelength_A(voltage_kV: float) -> float:
    """Relativistic electron wavelength in Å for an accelerating voltage in kV
    (60 kV -> 0.04866 Å, 200 kV -> 0.02508 Å)."""
    if not voltage_kV > 0:
        raise ValueError(f"voltage_kV must be positive, got {voltage_kV}")
    v = voltage_kV * 1e3
    return float(12.2642598 / np.sqrt(v * (1.0 + 0.97847573e-6 * v)))


@dataclass(frozen=True)
class Probe:
    """Optics of a probe-corrected STEM (lengths in Å, angles in mrad).

    Attributes
    ----------
    voltage_kV : accelerating voltage (60 for graphene at a Nion UltraSTEM).
    alpha_mrad : convergence semi-angle (aperture radius).
    defocus_A : defocus ``-C1`` in Å (positive = underfocus).
    Cs_A : third-order spherical aberration ``C3`` in Å (1 µm = 1e4 Å).
    C5_A : fifth-order spherical aberration in Å (1 mm = 1e7 Å).
    astig_A, astig_angle_rad : two-fold astigmatism ``A1`` magnitude (Å) and direction.
    source_fwhm_A : FWHM of the Gaussian effective source (partial spatial coherence);
        0 gives the fully coherent probe that abTEM computes by default.
    """

    voltage_kV: float = 60.0
    alpha_mrad: float = 31.0
    defocus_A: float = 0.0
    Cs_A: float = 0.0
    C5_A: float = 0.0
    astig_A: float = 0.0
    astig_angle_rad: float = 0.0
    source_fwhm_A: float = 0.0

    def __post_init__(self) -> None:
        if not self.voltage_kV > 0 or not self.alpha_mrad > 0:
            raise ValueError(
                "Probe: voltage_kV and alpha_mrad must be positive "
                f"(got {self.voltage_kV} kV, {self.alpha_mrad} mrad)"
            )
        if self.source_fwhm_A < 0:
            raise ValueError(f"Probe: source_fwhm_A must be >= 0, got {self.source_fwhm_A}")

    @property
    def wavelength_A(self) -> float:
        return wavelength_A(self.voltage_kV)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def random(cls, rng: np.random.Generator, voltage_kV: float = 60.0) -> Probe:
        """A draw over what a tuned-but-imperfect 60 kV corrected probe looks like:
        α 25-35 mrad, defocus N(0, 12 Å), C3 ±3 µm, C5 ±3 mm, astigmatism up to 10 Å,
        source 0.3-0.8 Å FWHM (intensity FWHM ~0.8-1.2 Å, 45-75 % within 0.7 Å)."""
        return cls(
            voltage_kV=voltage_kV,
            alpha_mrad=float(rng.uniform(25, 35)),
            defocus_A=float(rng.normal(0, 12)),
            Cs_A=float(rng.uniform(-3e4, 3e4)),
            C5_A=float(rng.uniform(-3e7, 3e7)),
            astig_A=float(rng.uniform(0, 10)) if rng.random() < 0.4 else 0.0,
            astig_angle_rad=float(rng.uniform(0, np.pi)),
            source_fwhm_A=float(rng.uniform(0.3, 0.8)),
        )

    @classmethod
    def with_fwhm(cls, fwhm_A: float, voltage_kV: float = 60.0, alpha_mrad: float = 31.0) -> Probe:
        """An aberration-free probe whose source size makes the intensity FWHM about
        ``fwhm_A`` (for settings given as a spot width; never narrower than the
        diffraction limit ``0.51 λ/α``)."""
        diff = 0.51 * wavelength_A(voltage_kV) / (alpha_mrad * 1e-3) * 1.0234
        src = float(np.sqrt(max(fwhm_A**2 - diff**2, 0.0)))
        return cls(voltage_kV=voltage_kV, alpha_mrad=alpha_mrad, source_fwhm_A=src)

    def _k(self, shape: tuple[int, int], pixel_size_A: float) -> tuple[np.ndarray, np.ndarray]:
        ky = np.fft.fftfreq(int(shape[0]), d=pixel_size_A)[:, None]
        kx = np.fft.fftfreq(int(shape[1]), d=pixel_size_A)[None, :]
        return ky, kx

    def wave_fourier(self, shape: tuple[int, int], pixel_size_A: float) -> np.ndarray:
        """``A(k) exp(-i χ(k))`` on the FFT grid of a ``shape`` image at ``pixel_size_A``
        (complex (Y, X), unshifted FFT order)."""
        lam = self.wavelength_A
        ky, kx = self._k(shape, pixel_size_A)
        k2 = ky**2 + kx**2
        theta2 = lam**2 * k2
        phi = np.arctan2(ky, kx)
        chi = (2 * np.pi / lam) * (
            -0.5 * self.defocus_A * theta2
            + 0.25 * self.Cs_A * theta2**2
            + (1.0 / 6.0) * self.C5_A * theta2**3
            + 0.5 * self.astig_A * theta2 * np.cos(2 * (phi - self.astig_angle_rad))
        )
        aperture = theta2 <= (self.alpha_mrad * 1e-3) ** 2
        return aperture * np.exp(-1j * chi)

    def coherent_intensity(self, shape: tuple[int, int], pixel_size_A: float) -> np.ndarray:
        """Coherent probe intensity ``|ψ(r)|²`` (Y, X), centred at pixel (0, 0) (FFT order,
        periodic), unit sum."""
        psi = np.fft.ifft2(self.wave_fourier(shape, pixel_size_A))
        inten = np.abs(psi) ** 2
        return inten / inten.sum()

    def otf(self, shape: tuple[int, int], pixel_size_A: float) -> np.ndarray:
        """Fourier transform of the (partially coherent) probe intensity on an rfft2 grid
        of a ``shape`` image: multiply ``rfft2(image)`` by it to convolve (value 1 at k=0)."""
        inten = self.coherent_intensity(shape, pixel_size_A)
        f = np.fft.rfft2(inten)
        if self.source_fwhm_A > 0:
            s = self.source_fwhm_A * FWHM_TO_SIGMA
            ky = np.fft.fftfreq(int(shape[0]), d=pixel_size_A)[:, None]
            kx = np.fft.rfftfreq(int(shape[1]), d=pixel_size_A)[None, :]
            f = f * np.exp(-2 * (np.pi * s) ** 2 * (ky**2 + kx**2))
        return f

    def intensity(self, size_A: float = 16.0, pixel_size_A: float = 0.05) -> np.ndarray:
        """The probe intensity (partially coherent) on a centred square of ``size_A`` Å
        sampled at ``pixel_size_A``: (n, n) float64 with the probe at pixel (n//2, n//2),
        unit sum."""
        n = int(round(size_A / pixel_size_A))
        inten = np.fft.irfft2(self.otf((n, n), pixel_size_A), s=(n, n))
        inten = np.clip(np.fft.fftshift(inten), 0, None)
        return inten / inten.sum()

    def fwhm_A(self, pixel_size_A: float = 0.02) -> float:
        """Full width at half maximum of the (partially coherent) intensity, Å (radial
        average)."""
        img = self.intensity(8.0, pixel_size_A)
        n = img.shape[0]
        yy, xx = np.indices(img.shape) - n // 2
        r = np.hypot(yy, xx) * pixel_size_A
        bins = np.round(r / pixel_size_A).astype(int)
        prof = np.bincount(bins.ravel(), img.ravel()) / np.bincount(bins.ravel())
        prof = prof / prof[0]
        i = int(np.argmax(prof < 0.5))
        r0, r1 = (i - 1) * pixel_size_A, i * pixel_size_A
        p0, p1 = prof[i - 1], prof[i]
        return float(2 * (r0 + (p0 - 0.5) / (p0 - p1) * (r1 - r0)))

    def peak_fraction(self, pixel_size_A: float = 0.05) -> float:
        """Peak value of the unit-sum intensity per Å² (so an atom's peak = weight x this);
        used to put images in C-peak units."""
        return float(self.intensity(16.0, pixel_size_A).max() / pixel_size_A**2)

    def encircled(self, radius_A: float, pixel_size_A: float = 0.05) -> float:
        """Fraction of the intensity within ``radius_A`` of the centre (the rest is the
        tail that puts a halo under a neighbouring atom)."""
        img = self.intensity(24.0, pixel_size_A)
        n = img.shape[0]
        yy, xx = np.indices(img.shape) - n // 2
        return float(img[np.hypot(yy, xx) * pixel_size_A <= radius_A].sum())
