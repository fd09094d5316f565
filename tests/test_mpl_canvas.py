"""BackgroundCanvas: figures render off the main thread, requests coalesce, and the
buffer holds the drawn figure (what the paint copies)."""

from __future__ import annotations

import threading

import numpy as np
import pytest

pytestmark = pytest.mark.gui


def test_draws_off_the_main_thread_and_coalesces(qtbot) -> None:
    from matplotlib.figure import Figure

    from atomlens._napari.mpl_canvas import BackgroundCanvas

    fig = Figure(figsize=(2, 2), facecolor="black")
    canvas = BackgroundCanvas(fig)
    qtbot.addWidget(canvas)
    ax = fig.add_axes((0, 0, 1, 1))
    ax.set_axis_off()
    ax.imshow(np.ones((4, 4)), cmap="gray", vmin=0, vmax=1)  # a white figure
    threads: list[str] = []
    fig.canvas.mpl_connect("draw_event", lambda _e: threads.append(threading.current_thread().name))
    for _ in range(5):  # a burst of requests: one render running, one more after it
        canvas.draw_idle()
    assert canvas.wait_drawn(10.0)
    assert threads and all(name == "atomlens-mpl" for name in threads)
    assert 1 <= canvas.n_background_draws <= 2
    rgba = np.asarray(canvas.buffer_rgba())
    assert rgba.shape[-1] == 4 and rgba[..., :3].mean() > 250  # the image, not the black face
    # a synchronous draw (print_figure, tests) still works on the main thread
    canvas.draw()
    assert threads[-1] == threading.main_thread().name
