"""Pure geometry shared by the simulator's ground truth and the chemistry module."""

from atomlens.geometry.faces import Face, planar_faces

__all__ = ["Face", "planar_faces"]
