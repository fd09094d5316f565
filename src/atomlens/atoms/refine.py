"""Sub-pixel refinement of atom positions on the raw image, vectorised over atoms.

All atoms' patches are stacked into one ``(N, P)`` array; centre of mass and a 2-D
Gaussian (``b + A exp(-r^2 / 2 s^2)``) are fitted with a few damped Gauss-Newton steps
on all atoms at once. Atoms whose fit fails (moves too far, negative amplitude, NaN)
keep their input position.

Position uncertainty: the Gaussian fit's heteroscedasticity-robust (sandwich)
covariance ``(J^T J)^-1 J^T diag(r^2) J (J^T J)^-1 · n/(n-k)`` (``r`` the residuals of
the atom's window, ``J`` the Jacobian at the optimum; position, amplitude and background
fitted, width fixed) gives
each atom's standard error per axis in pixels (:func:`refine_gaussian` with
``return_cov=True``; :mod:`atomlens.atoms.uncertainty` turns it into table columns).
"""

from __future__ import annotations

import numpy as np


def _patches(
    image: np.ndarray, yx: np.ndarray, half: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Stacked patches: values (N, P), offsets (P, 2) from the integer centres, centres (N, 2)."""
    oy, ox = np.mgrid[-half : half + 1, -half : half + 1]
    off = np.stack([oy.ravel(), ox.ravel()], 1)
    c = np.round(yx).astype(int)
    py = np.clip(c[:, :1] + off[None, :, 0], 0, image.shape[0] - 1)
    px = np.clip(c[:, 1:] + off[None, :, 1], 0, image.shape[1] - 1)
    return image[py, px].astype(np.float64), off.astype(np.float64), c.astype(np.float64)


def refine_window(pixel_size: float, spot_factor: float = 1.0) -> tuple[float, float]:
    """The refinement window radius and largest allowed move (pixels) for atoms imaged
    at ``pixel_size`` Å/px: about half a C-C bond (0.65 Å, at least 2 px) and 0.3 Å (at
    least 1 px), both ``spot_factor`` times larger for spots that much broader than
    the detector's (spot-width resampling)."""
    return max(2.0, 0.65 * spot_factor / pixel_size), max(1.0, 0.3 * spot_factor / pixel_size)


def refine_com(image: np.ndarray, yx: np.ndarray, radius_px: float, iters: int = 3) -> np.ndarray:
    """Centre-of-mass refinement within ``radius_px`` (background = patch minimum); (N, 2)."""
    yx = np.asarray(yx, float).copy()
    if len(yx) == 0:
        return yx
    half = int(np.ceil(radius_px)) + 1
    for _ in range(iters):
        v, off, c = _patches(image, yx, half)
        d = (c[:, None, :] + off[None]) - yx[:, None, :]
        inside = (d**2).sum(-1) <= radius_px**2
        w = np.where(inside, v - np.where(inside, v, np.inf).min(1, keepdims=True), 0.0)
        s = w.sum(1)
        ok = s > 0
        new = (c[:, None, :] + off[None]) * w[..., None]
        new = new.sum(1) / np.where(ok, s, 1)[:, None]
        yx[ok] = new[ok]
    return yx


def refine_gaussian(
    image: np.ndarray,
    yx: np.ndarray,
    radius_px: float,
    sigma_px: float | None = None,
    iters: int = 5,
    max_shift_px: float | None = None,
    n_sigma_fit: int = 400,
    return_cov: bool = False,
) -> tuple[np.ndarray, np.ndarray, float] | tuple[np.ndarray, np.ndarray, float, np.ndarray]:
    """2-D Gaussian fit around each atom (vectorised Levenberg-Marquardt).

    Parameters
    ----------
    image : (Y, X) raw frame.
    yx : (N, 2) start positions (pixels).
    radius_px : fit window radius (pixels); keep it below ~half a bond length.
    sigma_px : fixed Gaussian width; ``None`` = first fit it freely on up to
        ``n_sigma_fit`` atoms, then refit all with the median width of the good fits
        fixed (robust on noisy data).
    max_shift_px : fits that move farther than this keep the start (default radius/2).
    return_cov : also return the (N, 2, 2) covariance of each refined (y, x) in px²
        (sandwich estimate from the fit's residuals; NaN where the fit failed).

    Returns
    -------
    (yx_refined (N, 2), ok (N,) bool, sigma_px used[, cov (N, 2, 2)]).
    """
    yx0 = np.asarray(yx, float)
    if len(yx0) == 0:
        empty = (yx0.copy(), np.zeros(0, bool), float(sigma_px or 0.0))
        return (*empty, np.zeros((0, 2, 2))) if return_cov else empty
    max_shift = radius_px / 2 if max_shift_px is None else max_shift_px
    if sigma_px is None:
        sub = yx0
        if len(yx0) > n_sigma_fit:
            sub = yx0[np.linspace(0, len(yx0) - 1, n_sigma_fit).astype(int)]
        p, ok, _ = _fit(
            image, sub, radius_px, radius_px / 2.5, iters, free_sigma=True, max_shift=max_shift
        )
        good = ok & (p[:, 4] > 0.3) & (p[:, 4] < radius_px)
        sigma_px = float(np.median(p[good, 4])) if good.sum() >= 3 else radius_px / 2.5
    p, ok, cov = _fit(image, yx0, radius_px, sigma_px, iters, free_sigma=False, max_shift=max_shift)
    out = np.where(ok[:, None], p[:, :2], yx0)
    if return_cov:
        cov = np.where(ok[:, None, None], cov, np.nan)
        return out, ok, float(sigma_px), cov
    return out, ok, float(sigma_px)


def _fit(
    image: np.ndarray,
    yx0: np.ndarray,
    radius_px: float,
    sigma0: float,
    iters: int,
    free_sigma: bool,
    max_shift: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Vectorised LM fit; returns parameters (N, 5) (y, x, A, b, s), ok (N,) and the
    (N, 2, 2) sandwich covariance of (y, x) in px²."""
    half = int(np.ceil(radius_px))
    oy, ox = np.mgrid[-half : half + 1, -half : half + 1]
    inside = (oy**2 + ox**2) <= radius_px**2  # circular window around the integer centre
    off = np.stack([oy[inside], ox[inside]], 1).astype(np.float64)
    c = np.round(yx0).astype(int)
    py = np.clip(c[:, :1] + off[None, :, 0].astype(int), 0, image.shape[0] - 1)
    px = np.clip(c[:, 1:] + off[None, :, 1].astype(int), 0, image.shape[1] - 1)
    # float32 patches and model (half the memory traffic); parameters stay float64
    v = image[py, px].astype(np.float32)  # (N, P)
    rel_y = (c[:, :1] + off[None, :, 0]).astype(np.float32)  # pixel coordinates (N, P)
    rel_x = (c[:, 1:] + off[None, :, 1]).astype(np.float32)
    n, npix = v.shape
    q = max(0, int(0.1 * npix) - 1)
    b0 = np.partition(v, q, axis=1)[:, q]
    a0 = np.maximum(v.max(1) - b0, 1e-6)
    p = np.column_stack([yx0, a0, b0, np.full(n, float(sigma0))])  # y, x, A, b, s
    lam = np.full(n, 1e-2)
    k = 5 if free_sigma else 4

    def resid_jac(p: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        q = p.astype(np.float32)
        dy = rel_y - q[:, None, 0]
        dx = rel_x - q[:, None, 1]
        s2 = (q[:, 4] ** 2)[:, None]
        d2 = dy * dy + dx * dx
        g = np.exp(-d2 / (2 * s2))
        ag = q[:, None, 2] * g
        r = v - q[:, None, 3] - ag
        j = np.empty((n, npix, k), np.float32)
        j[..., 0] = ag * dy / s2
        j[..., 1] = ag * dx / s2
        j[..., 2] = g
        j[..., 3] = 1.0
        if free_sigma:
            j[..., 4] = ag * d2 / (s2 * q[:, None, 4])
        return r, j

    r, j = resid_jac(p)
    cost = (r.astype(np.float64) ** 2).sum(1)
    eye = np.eye(k)[None]
    for _ in range(iters):
        jt = j.transpose(0, 2, 1)
        jtj = (jt @ j).astype(np.float64)
        jtr = (jt @ r[..., None])[..., 0].astype(np.float64)
        diag = np.einsum("nii->ni", jtj)
        a = jtj + lam[:, None, None] * eye * (diag[:, :, None] + 1e-9)
        try:
            step = np.linalg.solve(a, jtr[..., None])[..., 0]
        except np.linalg.LinAlgError:
            break
        trial = p.copy()
        trial[:, :k] += step
        trial[:, 4] = np.clip(trial[:, 4], 0.3, 2 * radius_px)
        r2, j2 = resid_jac(trial)
        c2 = (r2.astype(np.float64) ** 2).sum(1)
        better = np.isfinite(c2) & (c2 < cost)
        p[better], r[better], j[better], cost[better] = (
            trial[better],
            r2[better],
            j2[better],
            c2[better],
        )
        lam = np.where(better, lam * 0.3, lam * 10)
    shift = np.hypot(*(p[:, :2] - yx0).T)
    # amplitude significance: A over its least-squares standard error sigma / sqrt(sum g^2)
    noise = np.sqrt(cost / max(npix - k, 1))
    se_a = noise / np.sqrt(np.maximum((j[..., 2].astype(np.float64) ** 2).sum(1), 1e-12))
    flat = np.ptp(v, axis=1) <= 0
    ok = np.isfinite(p).all(1) & (p[:, 2] > 3 * se_a) & ~flat & (shift <= max_shift)
    jj = j.astype(np.float64)
    info = np.einsum("npi,npj->nij", jj, jj)
    info += 1e-12 * np.eye(k)[None] * (np.einsum("nii->ni", info).max(1)[:, None, None] + 1e-30)
    try:
        inv = np.linalg.inv(info)
    except np.linalg.LinAlgError:
        inv = np.full_like(info, np.nan)
    # sandwich (heteroscedasticity-robust) covariance: shot noise is larger on the atom
    # than on the background, and the model misses probe tails; n / (n - k) for the
    # fitted parameters
    rr = r.astype(np.float64) ** 2 * (npix / max(npix - k, 1))
    meat = np.einsum("npi,np,npj->nij", jj, rr, jj)
    cov = (inv @ meat @ inv)[:, :2, :2]
    return p, ok, cov
