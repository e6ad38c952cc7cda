"""Wan 2.1 / 2.2 and Yume checkpoints from local folders (diffusers or original layout).

- :mod:`world.wan.configs`: the 5B (Wan2.2-TI2V-5B, Yume 1.5) and 14B I2V (Wan2.1-I2V-14B,
  Yume-I2V-540P) families as data, and toy-sized copies for tests (:func:`tiny_family`);
- :mod:`world.wan.keys`: the original Wan/Yume -> diffusers weight renames, as tables;
- :mod:`world.wan.files`: safetensors folders (single file or shards + index), never pickles;
- :mod:`world.wan.loading`: :func:`load_transformer`, :func:`load_vae` and their writers;
- :mod:`world.wan.prompts`: prompt embeddings from a local umT5 folder (needs ``transformers``),
  a cache file, or zeros;
- :mod:`world.wan.history`: Yume's compressed history (the MVDT's plan) for a diffusers Wan
  transformer, run token by token through the transformer's own parts (Yume's trained history
  convolutions where a checkpoint carries them, residual caching of chosen blocks);
- :mod:`world.wan.engine`: :class:`WanWorld`, the pair behind the world-engine interface
  (``make_world("wan", checkpoint=DIR)``).

Importing this package does not import torch-heavy modules beyond what each submodule needs.
"""

from world.wan.configs import FAMILIES, WanFamily, family, tiny_family

__all__ = ["FAMILIES", "WanFamily", "family", "tiny_family"]
