"""World engines: the procedural sandbox and the MVDT video model, behind one interface."""

from world.base import Chunk, WorldEngine, WorldError, check_resolution

__all__ = ["Chunk", "WorldEngine", "WorldError", "check_resolution"]
