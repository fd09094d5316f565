"""Live analysis: frames analysed while the microscope writes them.

``atomlens watch DIR --out OUT`` and the napari Live dock call :func:`watch.run`, which
follows a folder (:mod:`.follower`), analyses each complete frame with the workflow
recipes (:mod:`.processor`: register, detect, chemistry, track, optional encoding),
finds events against the previous frame (:mod:`.events`) and appends whole rows to
the output with a resumable state (:mod:`.output`). Headless; no Qt.
"""

from atomlens.live.events import EVENT_COLUMNS, EventParams, frame_events, movie_events
from atomlens.live.output import read_state, read_table
from atomlens.live.tracker import OnlineLinker

__all__ = [
    "EVENT_COLUMNS",
    "EventParams",
    "OnlineLinker",
    "frame_events",
    "movie_events",
    "read_state",
    "read_table",
]
