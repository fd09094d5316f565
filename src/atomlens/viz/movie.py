"""Render a movie of atoms over their frames and write it as MP4 or GIF (no Qt, no napari).

Each output frame shows one data frame at the data's own resolution times an integer
``zoom`` (nearest neighbour: one data pixel is ``zoom x zoom`` movie pixels, never
resampled), the atoms coloured by one feature (fixed limits over all frames; atoms
without a value in neutral grey), a scale bar in Å or nm, a frame counter, and the colour
key (:mod:`atomlens.viz.keys`) in a panel on the right. Rendering uses matplotlib's Agg
backend, so it runs on any thread (the napari dock renders on a worker) and headless (the
``atomlens movie`` command). MP4 is written with imageio-ffmpeg (H.264, yuv420p), GIF with
Pillow through imageio.

Shapes: ``frames`` is ``(T, Y, X)``; ``atoms`` has ``frame, y, x`` in pixels.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from atomlens.viz.colours import ColourSpec, colour_spec
from atomlens.viz.keys import ColourKey, draw_key, key_for_spec, rgba_colours

#: Movie formats by file suffix.
MOVIE_SUFFIXES = (".mp4", ".gif")
#: Nice scale-bar lengths in Å.
_BAR_LENGTHS_A = (0.5, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


@dataclass(frozen=True)
class MovieStyle:
    """How a movie looks.

    zoom : movie pixels per data pixel (integer; ``None``: the smallest that makes the
        frame's long side at least ``min_side`` movie pixels, at most 4).
    marker_A : atom marker diameter in Å (pixels when the pixel size is unknown).
    key_width : width of the colour-key panel in movie pixels.
    contrast_limits : image grey levels shown black and white (``None``: 0.5-99.5 %
        percentiles over all frames, fixed for the whole movie).
    """

    zoom: int | None = None
    min_side: int = 512
    marker_A: float = 0.6
    key_width: int = 170
    contrast_limits: tuple[float, float] | None = None
    image_cmap: str = "gray"
    show_atoms: bool = True


def nice_bar_length(field_A: float) -> float:
    """A round scale-bar length (Å) of about a fifth of the field of view ``field_A`` (Å)."""
    target = field_A / 5.0
    fitting = [v for v in _BAR_LENGTHS_A if v <= target]
    return float(fitting[-1] if fitting else _BAR_LENGTHS_A[0])


def bar_label(length_A: float) -> str:
    """``5 Å`` below 10 Å, ``1 nm`` / ``2.5 nm`` from 10 Å."""
    if length_A >= 10:
        return f"{length_A / 10:g} nm"
    return f"{length_A:g} Å"


def auto_zoom(shape: tuple[int, int], style: MovieStyle) -> int:
    """Integer zoom for a ``(Y, X)`` frame (see :class:`MovieStyle`)."""
    if style.zoom is not None:
        if int(style.zoom) < 1:
            raise ValueError(f"zoom must be a whole number >= 1, got {style.zoom}")
        return int(style.zoom)
    return int(np.clip(np.ceil(style.min_side / max(shape)), 1, 4))


def _image_limits(frames: Any, style: MovieStyle) -> tuple[float, float]:
    if style.contrast_limits is not None:
        return (float(style.contrast_limits[0]), float(style.contrast_limits[1]))
    n = len(frames)
    take = np.linspace(0, n - 1, min(n, 8)).round().astype(int)
    sample = np.concatenate([np.asarray(frames[int(i)], dtype=np.float32).ravel() for i in take])
    lo, hi = (float(v) for v in np.nanpercentile(sample, [0.5, 99.5]))
    return (lo, hi) if hi > lo else (lo, lo + 1.0)


class MovieRenderer:
    """Draws one movie frame at a time into a reused Agg figure (fast: only the image
    data, the atom positions and colours and the counter change between frames)."""

    def __init__(
        self,
        frames: Any,
        atoms: pd.DataFrame | None,
        pixel_size: float | None,
        colour: str | None = None,
        style: MovieStyle | None = None,
        spec: ColourSpec | None = None,
        frame_numbers: Sequence[int] | None = None,
    ) -> None:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure

        self.style = style or MovieStyle()
        if getattr(frames, "ndim", 3) == 2:
            frames = np.asarray(frames)[None]
        if getattr(frames, "ndim", 0) != 3 or len(frames) == 0:
            raise ValueError(
                f"expected a (T, Y, X) movie with at least one frame, got shape "
                f"{getattr(frames, 'shape', None)}"
            )
        self.frames = frames
        self.n_frames = len(frames)
        self.frame_numbers = (
            list(frame_numbers) if frame_numbers is not None else list(range(self.n_frames))
        )
        self.pixel_size = float(pixel_size) if pixel_size else None
        h, w = (int(v) for v in frames.shape[-2:])
        self.zoom = auto_zoom((h, w), self.style)
        self.atoms, self.colours, self.key = self._atom_colours(atoms, colour, spec)
        key_w = self.style.key_width if self.key is not None else 0
        # even sizes: H.264 in yuv420p needs them
        self.width = w * self.zoom + key_w + (w * self.zoom + key_w) % 2
        self.height = h * self.zoom + (h * self.zoom) % 2
        dpi = 100
        self.figure = Figure(
            figsize=(self.width / dpi, self.height / dpi), dpi=dpi, facecolor="black"
        )
        self.canvas = FigureCanvasAgg(self.figure)
        img_w = w * self.zoom / self.width
        ax = self.figure.add_axes(
            (0.0, 1.0 - h * self.zoom / self.height, img_w, h * self.zoom / self.height)
        )
        ax.set_axis_off()
        lo, hi = _image_limits(frames, self.style)
        self.image = ax.imshow(
            np.zeros((h, w), np.float32),
            cmap=self.style.image_cmap,
            vmin=lo,
            vmax=hi,
            interpolation="nearest",
            extent=(-0.5, w - 0.5, h - 0.5, -0.5),
        )
        marker_px = (
            self.style.marker_A / self.pixel_size if self.pixel_size else self.style.marker_A
        )
        marker_pt = max(2.0, marker_px * self.zoom) * 72.0 / dpi
        self.scatter = ax.scatter([], [], s=marker_pt**2, linewidths=0)
        ax.set_xlim(-0.5, w - 0.5)
        ax.set_ylim(h - 0.5, -0.5)
        fs = max(8.0, min(14.0, h * self.zoom / 45))
        self.counter = ax.text(
            0.02,
            0.98,
            "",
            transform=ax.transAxes,
            color="white",
            fontsize=fs,
            va="top",
            ha="left",
            family="monospace",
            bbox={"facecolor": "black", "alpha": 0.6, "edgecolor": "none"},
        )
        self._scale_bar(ax, w, h, fs)
        if self.key is not None:
            kx = img_w + 0.1 * key_w / self.width
            if self.key.kind == "continuous":
                kax = self.figure.add_axes((kx, 0.1, 0.15 * key_w / self.width, 0.8))
            else:
                kax = self.figure.add_axes((kx, 0.05, 0.85 * key_w / self.width, 0.9))
            draw_key(kax, self.key, "white", fontsize=max(7.0, min(11.0, fs - 1)))

    def _atom_colours(
        self, atoms: pd.DataFrame | None, colour: str | None, spec: ColourSpec | None
    ) -> tuple[pd.DataFrame | None, np.ndarray | None, ColourKey | None]:
        if atoms is None or not self.style.show_atoms:
            return None, None, None
        atoms = atoms.reset_index(drop=True)
        missing = {"frame", "y", "x"} - set(atoms.columns)
        if missing:
            raise ValueError(
                f"the atom table lacks column(s) {sorted(missing)}; it needs frame, y, x"
            )
        colour = colour or ("cls" if "cls" in atoms else None)
        if colour is None:
            return atoms, np.tile([1.0, 1.0, 1.0, 1.0], (len(atoms), 1)), None
        if colour not in atoms.columns:
            choices = ", ".join(str(c) for c in atoms.columns if c not in ("frame", "y", "x"))
            raise ValueError(
                f"the atom table has no column '{colour}' to colour by; choose one of: {choices}"
            )
        spec = spec or colour_spec(colour, atoms[colour])
        return atoms, rgba_colours(spec, atoms[colour]), key_for_spec(spec, atoms[colour])

    def _scale_bar(self, ax: Any, w: int, h: int, fontsize: float) -> None:
        from matplotlib.patches import Rectangle

        if not self.pixel_size:
            return
        length_A = nice_bar_length(w * self.pixel_size)
        length_px = length_A / self.pixel_size
        x0, y0 = 0.05 * w, 0.93 * h
        thick = max(1.5, 0.012 * h)
        ax.add_patch(
            Rectangle(
                (x0, y0), length_px, thick, facecolor="white", edgecolor="black", linewidth=0.8
            )
        )
        ax.text(
            x0 + length_px / 2,
            y0 - 0.01 * h,
            bar_label(length_A),
            color="white",
            ha="center",
            va="bottom",
            fontsize=fontsize,
            bbox={"facecolor": "black", "alpha": 0.5, "edgecolor": "none", "pad": 1},
        )
        self.bar_length_A = length_A

    def render(self, i: int) -> np.ndarray:
        """The ``(height, width, 3)`` uint8 picture of movie frame ``i`` (0-based position
        in ``frames``; its atoms are those with ``frame == frame_numbers[i]``)."""
        number = self.frame_numbers[i]
        self.image.set_data(np.asarray(self.frames[i], dtype=np.float32))
        if self.atoms is not None:
            sel = self.atoms["frame"].to_numpy() == number
            self.scatter.set_offsets(
                self.atoms.loc[sel, ["x", "y"]].to_numpy(dtype=float).reshape(-1, 2)
            )
            self.scatter.set_facecolors(self.colours[sel])
        self.counter.set_text(f"frame {number + 1}/{max(self.frame_numbers) + 1}")
        self.canvas.draw()
        return np.asarray(self.canvas.buffer_rgba())[..., :3].copy()

    def __iter__(self) -> Iterator[np.ndarray]:
        for i in range(self.n_frames):
            yield self.render(i)


def open_writer(
    path: str | Path, fps: float, quality: float = 5.0
) -> tuple[Callable[[np.ndarray], None], Callable[[], Path]]:
    """``(append, close)`` for a movie file chosen by suffix: ``.mp4`` (H.264 through
    imageio-ffmpeg, streamed; ``quality`` 0-10, higher is larger and sharper) or ``.gif``
    (Pillow, looping; kept in memory until close)."""
    import imageio.v2 as iio2
    import imageio.v3 as iio3

    path = Path(path).expanduser()
    suffix = path.suffix.lower()
    if suffix not in MOVIE_SUFFIXES:
        raise ValueError(f"'{path.name}' is not a movie file name: end it with .mp4 or .gif")
    if not fps > 0:
        raise ValueError(f"frames per second must be > 0, got {fps}")
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".mp4":
        try:
            import imageio_ffmpeg  # noqa: F401
        except ImportError as exc:  # pragma: no cover - a dependency of atomlens
            raise RuntimeError(
                "MP4 export needs imageio-ffmpeg: pip install imageio-ffmpeg"
            ) from exc
        writer = iio2.get_writer(
            path,
            format="FFMPEG",
            mode="I",
            fps=float(fps),
            codec="libx264",
            quality=float(quality),
            pixelformat="yuv420p",
            macro_block_size=1,
        )

        def _close_mp4() -> Path:
            writer.close()
            return path

        return writer.append_data, _close_mp4
    frames: list[np.ndarray] = []

    def _close_gif() -> Path:
        if not frames:
            raise ValueError("no frames to write: the movie has no time steps")
        iio3.imwrite(path, np.stack(frames), extension=".gif", duration=1000.0 / fps, loop=0)
        return path

    return frames.append, _close_gif


def write_movie(
    frames: Iterable[np.ndarray], path: str | Path, fps: float = 5.0, quality: float = 5.0
) -> Path:
    """Write ``(H, W, 3)`` uint8 frames (all the same shape) as ``.mp4`` or ``.gif``."""
    append, close = open_writer(path, fps, quality)
    n = 0
    for frame in frames:
        append(np.ascontiguousarray(np.asarray(frame)[..., :3], dtype=np.uint8))
        n += 1
    if n == 0:
        raise ValueError("no frames to write: the movie has no time steps")
    return close()


@dataclass(frozen=True)
class MovieProgress:
    """One rendered frame: ``done`` of ``total``; ``elapsed_s`` since the start."""

    done: int
    total: int
    elapsed_s: float

    @property
    def eta_s(self) -> float:
        """Estimated seconds left."""
        return self.elapsed_s / max(self.done, 1) * (self.total - self.done)


def movie_events(
    frames: Any,
    atoms: pd.DataFrame | None,
    pixel_size: float | None,
    path: str | Path,
    colour: str | None = None,
    fps: float = 5.0,
    style: MovieStyle | None = None,
    spec: ColourSpec | None = None,
    frame_numbers: Sequence[int] | None = None,
    stop: threading.Event | None = None,
    quality: float = 5.0,
) -> Generator[MovieProgress, None, Path]:
    """Render and write a movie, yielding a :class:`MovieProgress` after every frame;
    returns the path. When ``stop`` is set the frames done so far are written (a shorter
    movie that plays), so a stopped export is still usable."""
    import time

    t0 = time.perf_counter()
    renderer = MovieRenderer(frames, atoms, pixel_size, colour, style, spec, frame_numbers)
    append, close = open_writer(path, fps, quality)
    done = 0
    for i in range(renderer.n_frames):
        if stop is not None and stop.is_set() and done:
            break
        append(renderer.render(i))
        done += 1
        yield MovieProgress(done, renderer.n_frames, time.perf_counter() - t0)
    return close()


def export_movie(
    frames: Any,
    atoms: pd.DataFrame | None,
    pixel_size: float | None,
    path: str | Path,
    colour: str | None = None,
    fps: float = 5.0,
    style: MovieStyle | None = None,
    **kwargs: Any,
) -> Path:
    """Render and write a whole movie (see :func:`movie_events`); returns the path."""
    gen = movie_events(frames, atoms, pixel_size, path, colour, fps, style, **kwargs)
    while True:
        try:
            next(gen)
        except StopIteration as done:
            return done.value
