"""Signal connections a dock makes to napari, and their clean removal."""

from __future__ import annotations

from typing import Any


def disconnect_all(links: list[tuple[Any, Any]]) -> None:
    """Disconnect every ``(emitter, callback)`` pair, ignoring ones already gone, and
    empty the list (docks call this when their layer or viewer goes away)."""
    for emitter, callback in links:
        try:
            emitter.disconnect(callback)
        except (RuntimeError, ValueError, TypeError):
            pass
    links.clear()
