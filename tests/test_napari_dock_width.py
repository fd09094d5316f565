"""Every AtomLens dock fits its content across: scrolled vertically, never cut at the
right edge (the Correct dock's buttons were clipped behind a horizontal scrollbar)."""

from __future__ import annotations

import numpy as np


def test_docks_are_as_wide_as_their_content(make_napari_viewer):
    from qtpy.QtWidgets import QApplication, QScrollArea

    from atomlens._napari._base import tabify_with_atomlens
    from atomlens._napari.correction import CorrectionWidget
    from atomlens._napari.defects_dock import DefectsDock
    from atomlens._napari.detect_widget import DetectWidget

    viewer = make_napari_viewer(show=True)
    viewer.window._qt_window.resize(1280, 800)
    viewer.add_image(np.zeros((2, 64, 64), np.float32), name="movie")
    widgets = []
    docks = ((DetectWidget, "Detect"), (CorrectionWidget, "Correct"), (DefectsDock, "Defects"))
    for cls, name in docks:
        w = cls(viewer)
        viewer.window.add_dock_widget(w, name=name, area="right")
        tabify_with_atomlens(w.native)
        widgets.append(w)
    for _ in range(3):
        QApplication.processEvents()
    for w in widgets:
        scroll = w.native.parentWidget()
        while scroll is not None and not isinstance(scroll, QScrollArea):
            scroll = scroll.parentWidget()
        assert scroll is not None, "the dock's content is not in a scroll area"
        need = w.native.minimumSizeHint().width()
        assert scroll.viewport().width() >= need, (type(w).__name__, need)
        assert not scroll.horizontalScrollBar().isVisible()
        # and none is wider than a 1280-px window's right dock area can give (~450 px)
        assert need <= 450, (type(w).__name__, need)
