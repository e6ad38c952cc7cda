"""The procedural sandbox city: a world engine that is exact where the learned ones guess.

- :mod:`world.sandbox.scene`: the seeded city (streets, buildings, parks, landmarks, textures);
- :mod:`world.sandbox.render`: the numpy raycaster that draws it from a camera;
- :mod:`world.sandbox.engine`: :class:`SandboxWorld`, the :class:`~world.base.WorldEngine` that
  walks a camera through it (registry name ``"sandbox"``).

The old module paths ``world.sandbox_scene`` and ``world.sandbox_render`` still import.
"""

from world.sandbox.engine import SandboxWorld, cached_scene, dominant_colours, image_seed
from world.sandbox.render import SandboxRenderer
from world.sandbox.scene import SandboxScene, generate_scene

__all__ = ["SandboxRenderer", "SandboxScene", "SandboxWorld", "cached_scene", "dominant_colours",
           "generate_scene", "image_seed"]
