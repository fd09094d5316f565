"""Matplotlib plots docked in napari, linked to layers through the atoms' features table.

- :class:`LossPlot`: train/test loss of a :class:`~atomlens._napari.state.TrainingState`,
  redrawn at most every 250 ms.
- :class:`ManifoldPlot`: an image (the decoded latent manifold).
- :class:`LatentScatter`: two features of an atoms layer against each other; a lasso
  writes a boolean ``selected`` feature (highlighted in the viewer), and points selected
  in the layer are highlighted in the scatter.
- :class:`FrameDistribution`: the per-frame distribution of one feature as a heat map
  (frames on x) with the current frame marked, following the time slider.

The numbers come from headless functions (``atomlens.latent``); these classes only draw.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
from matplotlib.figure import Figure
from matplotlib.path import Path as MplPath
from matplotlib.ticker import FormatStrFormatter, NullFormatter
from matplotlib.widgets import LassoSelector
from qtpy.QtWidgets import QComboBox, QHBoxLayout, QLabel, QVBoxLayout, QWidget

from atomlens._napari._layers import current_frame, numeric_feature_columns
from atomlens._napari._links import disconnect_all
from atomlens._napari._workers import Throttle
from atomlens._napari.mpl_canvas import BackgroundCanvas
from atomlens.viz.colours import SELECTED_COLOURS

if TYPE_CHECKING:
    import napari
    from napari.layers import Points

    from atomlens._napari.state import TrainingState

_BG = "#262930"
_FG = "#d0d0d0"


def _style(ax) -> None:
    ax.set_facecolor(_BG)
    ax.tick_params(colors=_FG, labelsize=8)
    for spine in ax.spines.values():
        spine.set_color(_FG)
    ax.xaxis.label.set_color(_FG)
    ax.yaxis.label.set_color(_FG)
    ax.title.set_color(_FG)


class MplWidget(QWidget):
    """A QWidget holding one matplotlib figure, with throttled redraws; full draws render
    on a helper thread (:class:`~atomlens._napari.mpl_canvas.BackgroundCanvas`).

    Artists listed in ``self.animated`` are blitted: a redraw that changes only them
    repaints them over a cached background (a few ms) instead of drawing the whole figure.
    ``_update_artists`` returns True when the rest of the figure changed too.
    """

    def __init__(self, parent: QWidget | None = None, interval_ms: int = 250) -> None:
        super().__init__(parent)
        # fixed margins: tight_layout measures every label on every draw (slow)
        self.figure = Figure(figsize=(4, 3), facecolor=_BG)
        self.figure.subplots_adjust(left=0.17, right=0.96, bottom=0.17, top=0.9)
        self.canvas = BackgroundCanvas(self.figure)
        self.ax = self.figure.add_subplot(111)
        _style(self.ax)
        self.controls = QHBoxLayout()
        layout = QVBoxLayout(self)
        layout.setContentsMargins(2, 2, 2, 2)
        layout.addLayout(self.controls)
        layout.addWidget(self.canvas)
        self.setMinimumHeight(110)  # small enough that a plots dock fits a 800 px screen
        self.animated: list = []
        self._background = None
        self.canvas.mpl_connect("draw_event", self._on_full_draw)
        self.redraw = Throttle(self._draw, interval_ms, parent=self)
        self.n_draws = 0
        self.n_blits = 0
        self._links: list[tuple[Any, Any]] = []
        links = self._links
        self.destroyed.connect(lambda *_: disconnect_all(links))

    def link(self, emitter: Any, callback: Any) -> None:
        """Connect ``callback`` to a napari/psygnal ``emitter``; disconnected when this
        widget is destroyed (so a closed plot never hears from a living layer)."""
        emitter.connect(callback)
        self._links.append((emitter, callback))

    def _update_artists(self) -> bool:
        """Bring the artists up to date; True if more than ``animated`` changed."""
        return True

    def _on_full_draw(self, event: Any = None) -> None:
        self._background = self.canvas.copy_from_bbox(self.figure.bbox)
        for artist in self.animated:
            self.ax.draw_artist(artist)

    def _draw(self) -> None:
        try:
            self._draw_now()
        except RuntimeError:  # the Qt canvas is already deleted (viewer closing)
            pass

    def _draw_now(self) -> None:
        full = self._update_artists()
        if full or self._background is None or not self.animated:
            self.canvas.draw_idle()
            self.n_draws += 1
            return
        with self.canvas.lock:  # never into a renderer a full draw is filling
            self.canvas.restore_region(self._background)
            for artist in self.animated:
                self.ax.draw_artist(artist)
        self.canvas.blit(self.figure.bbox)
        self.n_blits += 1


class LossPlot(MplWidget):
    """Train and test loss per epoch, following a TrainingState.

    Losses are drawn relative to the first epoch's train loss on a log axis whose limits
    are set before training starts (and only widen if a loss leaves them), and the
    absolute values are printed in a blitted read-out: during training each epoch only
    blits two lines and a line of text (milliseconds) instead of redrawing the figure.
    """

    def __init__(self, state: TrainingState, parent: QWidget | None = None) -> None:
        super().__init__(parent, interval_ms=500)
        self.state = state
        (self.train_line,) = self.ax.plot(
            [], [], "-", color="#4da6ff", label="train", animated=True
        )
        (self.test_line,) = self.ax.plot([], [], "-", color="#ff9933", label="test", animated=True)
        # (a placeholder, so the first full draw already caches the read-out's glyphs)
        self.readout = self.ax.text(
            0.03,
            0.05,
            "epoch 0: train -, test -",
            transform=self.ax.transAxes,
            color=_FG,
            fontsize=8,
            animated=True,
        )
        self.animated = [self.train_line, self.test_line, self.readout]
        self.ax.set_xlabel("epoch")
        self.ax.set_ylabel("loss / first epoch")
        self.ax.set_yscale("log")
        # plain tick labels: mathtext (10^k) is slow to lay out
        self.ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
        self.ax.yaxis.set_minor_formatter(NullFormatter())
        self._ylim = (0.1, 2.0)
        self.ax.set_ylim(*self._ylim)
        self.ax.legend(fontsize=8, facecolor=_BG, labelcolor=_FG, loc="upper right")
        self._n_epochs = 0
        self.link(state.events.epoch, self._on_epoch)
        self.link(state.events.status, self._on_status)

    def _on_epoch(self, _epoch: int) -> None:
        self.redraw()

    def _on_status(self, _status: str) -> None:
        self.redraw.flush()

    def set_epoch_range(self, n_epochs: int) -> None:
        """Lay the x axis out for ``n_epochs`` while the user sets them, so that starting
        a run of that length needs no full redraw (only blits) on the main thread."""
        n = max(int(n_epochs), 1)
        if n != self._n_epochs:
            self._n_epochs = n
            self.ax.set_xlim(0.5, n + 0.5)
            self.canvas.draw_idle()
            self.n_draws += 1

    def relative_losses(self) -> tuple[np.ndarray, np.ndarray]:
        """Train and test losses divided by the first train loss (what is plotted)."""
        train = np.asarray(self.state.train_loss, float)
        test = np.asarray(self.state.test_loss, float)
        ref = abs(train[0]) if len(train) and np.isfinite(train[0]) and train[0] != 0 else 1.0
        return train / ref, test / ref

    def _update_artists(self) -> bool:
        train, test = self.relative_losses()
        epochs = np.arange(1, len(train) + 1)
        self.train_line.set_data(epochs, train)
        self.test_line.set_data(epochs[: len(test)], test)
        if len(self.state.train_loss):
            last_test = self.state.test_loss[-1] if self.state.test_loss else float("nan")
            self.readout.set_text(
                f"epoch {len(train)}: train {self.state.train_loss[-1]:.4g}"
                + ("" if not np.isfinite(last_test) else f", test {last_test:.4g}")
            )
        else:
            self.readout.set_text("epoch 0: train -, test -")
        full = False
        n = max(int(self.state.n_epochs), len(train), 1)
        if n != self._n_epochs:
            self._n_epochs = n
            self.ax.set_xlim(0.5, n + 0.5)
            full = True
        values = np.concatenate([train, test])
        values = values[np.isfinite(values) & (values > 0)]
        if len(values) and (values.min() < self._ylim[0] or values.max() > self._ylim[1]):
            self._ylim = (
                min(self._ylim[0], values.min() / 3),
                max(self._ylim[1], values.max() * 3),
            )
            self.ax.set_ylim(*self._ylim)
            full = True
        return full


class ManifoldPlot(MplWidget):
    """An image of decoded windows tiled over a grid of latent values."""

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.ax.set_xticks([])
        self.ax.set_yticks([])
        self.image_artist = None

    def show_image(self, image: np.ndarray, title: str = "decoded latent manifold") -> None:
        image = np.asarray(image, float)
        if self.image_artist is None:
            self.image_artist = self.ax.imshow(image, cmap="gray")
        else:
            self.image_artist.set_data(image)
            self.image_artist.set_extent((-0.5, image.shape[1] - 0.5, image.shape[0] - 0.5, -0.5))
        self.image_artist.set_clim(float(np.nanmin(image)), float(np.nanmax(image)))
        self.ax.set_title(title, fontsize=9)
        self.redraw.flush()


class _FeatureCombos:
    """Mix-in: combo boxes listing an atoms layer's numeric features."""

    def _combo(self, label: str) -> QComboBox:
        box = QComboBox()
        self.controls.addWidget(QLabel(label))
        self.controls.addWidget(box)
        return box

    @staticmethod
    def _fill(box: QComboBox, columns: list[str], prefer: str) -> None:
        current = box.currentText() or prefer
        box.blockSignals(True)
        box.clear()
        box.addItems(columns)
        if current in columns:
            box.setCurrentText(current)
        box.blockSignals(False)


class LatentScatter(MplWidget, _FeatureCombos):
    """Scatter of two features of an atoms layer; lasso to select, linked both ways."""

    def __init__(
        self, layer: Points, x: str = "z1", y: str = "z2", parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.layer = layer
        self.x_box = self._combo("x")
        self.y_box = self._combo("y")
        self._defaults = (x, y)
        self.refresh_columns()
        self.points = self.ax.scatter([], [], s=2, c="#8fa3bf", linewidths=0)
        # the highlight is blitted: a selection change repaints only it (no full draw)
        self.highlight = self.ax.scatter(
            [], [], s=6, c=SELECTED_COLOURS[True], linewidths=0, animated=True
        )
        self.animated.append(self.highlight)
        self._selection_only = False
        self._xy_cache: tuple[Any, tuple, np.ndarray] | None = None
        self.lasso = LassoSelector(self.ax, self.on_lasso)
        self.x_box.currentTextChanged.connect(lambda _t: self._full_redraw())
        self.y_box.currentTextChanged.connect(lambda _t: self._full_redraw())
        self.link(layer.events.features, self._on_features)
        self.link(layer.selected_data.events.items_changed, self._on_selection)
        self._draw()

    def _on_selection(self, *_: Any) -> None:
        self._selection_only = True  # (unless a full redraw is asked for meanwhile)
        self.redraw()

    def _full_redraw(self) -> None:
        self._selection_only = False
        self.redraw()

    def _on_features(self, event: Any = None) -> None:
        self.refresh_columns()
        self._full_redraw()

    def refresh_columns(self) -> None:
        cols = numeric_feature_columns(self.layer)
        self._fill(self.x_box, cols, self._defaults[0])
        self._fill(self.y_box, cols, self._defaults[1])

    def xy(self) -> np.ndarray:
        """``(N, 2)`` values of the two chosen features (NaN where missing)."""
        feats = self.layer.features
        cx, cy = self.x_box.currentText(), self.y_box.currentText()
        key = (cx, cy, len(feats))  # the table itself is kept: no reused id can match
        cache = self._xy_cache
        if cache is not None and cache[0] is feats and cache[1] == key:
            return cache[2]
        if cx not in feats or cy not in feats:
            xy = np.full((len(feats), 2), np.nan)
        else:
            xy = np.column_stack([feats[cx].to_numpy(float), feats[cy].to_numpy(float)])
        self._xy_cache = (feats, key, xy)
        return xy

    def _update_artists(self) -> bool:
        xy = self.xy()
        selected = self.highlighted_rows()
        self.highlight.set_offsets(xy[selected] if len(selected) else np.empty((0, 2)))
        if self._selection_only:  # only the highlight changed: blit it
            self._selection_only = False
            return False
        self.points.set_offsets(xy if len(xy) else np.empty((0, 2)))
        finite = xy[np.all(np.isfinite(xy), axis=1)]
        if len(finite):
            lo, hi = finite.min(0), finite.max(0)
            pad = np.where(hi > lo, (hi - lo) * 0.05, 0.5)
            self.ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
            self.ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
        self.ax.set_xlabel(self.x_box.currentText())
        self.ax.set_ylabel(self.y_box.currentText())
        return True

    def highlighted_rows(self) -> np.ndarray:
        """Rows selected in the layer, or (when none) rows whose ``selected`` feature is set."""
        rows = np.array(sorted(self.layer.selected_data), dtype=int)
        if len(rows) == 0 and "selected" in self.layer.features:
            rows = np.flatnonzero(self.layer.features["selected"].to_numpy(bool))
        return rows

    def on_lasso(self, vertices: list[tuple[float, float]]) -> np.ndarray:
        """Mark the points inside the lasso polygon as ``selected`` in the layer."""
        xy = self.xy()
        ok = np.all(np.isfinite(xy), axis=1)
        inside = np.zeros(len(xy), bool)
        if len(vertices) >= 3 and ok.any():
            inside[ok] = MplPath(np.asarray(vertices)).contains_points(xy[ok])
        mark_selected(self.layer, inside)
        self.redraw()
        return inside


def mark_selected(layer: Points, mask: np.ndarray) -> None:
    """Write a boolean ``selected`` feature and outline those atoms in bright yellow."""
    feats = layer.features.copy()
    feats["selected"] = np.asarray(mask, bool)
    layer.features = feats
    layer.border_color_cycle = dict(SELECTED_COLOURS)
    layer.border_width_is_relative = True
    layer.border_width = 0.25
    layer.border_color = "selected"
    # unselected atoms: transparent border, so only the selection stands out
    colors = layer.border_color.copy()
    colors[~feats["selected"].to_numpy(bool), 3] = 0.0
    layer.border_color = colors


class FrameDistribution(MplWidget, _FeatureCombos):
    """Per-frame histogram of one feature (heat map, frames on x), current frame marked."""

    def __init__(
        self,
        viewer: napari.Viewer,
        layer: Points,
        column: str = "angle",
        bins: int = 36,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.viewer, self.layer, self.bins = viewer, layer, bins
        self.column_box = self._combo("feature")
        self._fill(self.column_box, numeric_feature_columns(layer), column)
        self.image = None
        self.marker = self.ax.axvline(0, color="#ffff00", lw=1.5, animated=True)
        self.animated = [self.marker]
        self._full = True
        self.ax.set_xlabel("frame")
        self.column_box.currentTextChanged.connect(lambda _t: self.recompute())
        self.link(layer.events.features, self._on_features)
        self.link(viewer.dims.events.current_step, self.on_step)
        self.recompute()

    def _on_features(self, event: Any = None) -> None:
        self._fill(
            self.column_box, numeric_feature_columns(self.layer), self.column_box.currentText()
        )
        self.recompute()

    def recompute(self) -> None:
        """Recompute the heat map (headless :func:`atomlens.latent.per_frame_histograms`)."""
        from atomlens._napari._layers import layer_atoms
        from atomlens.latent import per_frame_histograms

        column = self.column_box.currentText()
        if not column:
            return
        hist = per_frame_histograms(layer_atoms(self.layer), column, self.bins)
        counts, edges, frames = _hist_parts(hist)
        extent = (frames[0] - 0.5, frames[-1] + 0.5, edges[0], edges[-1])
        if self.image is None:
            self.image = self.ax.imshow(
                counts.T,
                origin="lower",
                aspect="auto",
                cmap="magma",
                extent=extent,
                interpolation="nearest",
            )
        else:
            self.image.set_data(counts.T)
            self.image.set_extent(extent)
        self.image.set_clim(0, max(float(np.nanmax(counts)), 1e-9))
        self.ax.set_xlim(extent[0], extent[1])
        self.ax.set_ylim(extent[2], extent[3])
        self.ax.set_ylabel(column)
        self._full = True
        self.on_step()
        self.redraw.flush()

    def on_step(self, event: Any = None) -> None:
        """Move the current-frame marker (cheap; redraw throttled)."""
        t = current_frame(self.viewer, self.layer)
        self.marker.set_xdata([t, t])
        self.current = t
        self.redraw()

    def _update_artists(self) -> bool:
        full, self._full = self._full, False
        return full


def _hist_parts(hist: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """``(counts (T, bins), edges (bins+1,), frames (T,))`` from per_frame_histograms's
    result (an object with those attributes, or a ``(counts, edges[, frames])`` tuple)."""
    if hasattr(hist, "counts"):
        counts, edges = np.asarray(hist.counts, float), np.asarray(hist.edges, float)
        frames = getattr(hist, "frames", None)
    else:
        counts, edges, *rest = hist
        counts, edges = np.asarray(counts, float), np.asarray(edges, float)
        frames = rest[0] if rest else None
    frames = np.arange(len(counts)) if frames is None else np.asarray(frames)
    return counts, edges, frames
