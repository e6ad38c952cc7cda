"""Configurations of the Wan families Yume builds on, as data (diffusers' constructor arguments).

Two families:

- ``wan2.2-ti2v-5b``: Wan2.2-TI2V-5B, the base of Yume 1.5 / Yume-5B-720P. 48 latent channels
  from the Wan 2.2 VAE (residual, 2x2 patchified, 4x16x16 compression); image conditioning by
  clean first latent frames with timestep 0 (per-token timesteps, ``conditioning="expand"``).
- ``wan2.1-i2v-14b``: Wan2.1-I2V-14B, the base of Yume-I2V-540P. 16 latent channels from the
  Wan 2.1 VAE (4x8x8); the transformer reads 36 channels = 16 noisy + 4 mask + 16 condition
  latents (``conditioning="concat"``) and 257 CLIP image tokens through ``img_emb``.

The numbers are those of the published ``config.json`` files (Wan-AI ``*-Diffusers`` repos); the
folder's own ``config.json`` always wins when a checkpoint is loaded, these are for building
random-weight models (benchmarks) and for :func:`tiny_family` (tests), whose models keep the
structure (channel relations, VAE type and compression, I2V image branch) at toy sizes.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from world.base import WorldError

Conditioning = Literal["expand", "concat"]

WAN21_LATENTS_MEAN = [
    -0.7571, -0.7089, -0.9113, 0.1075, -0.1745, 0.9653, -0.1517, 1.5508,
    0.4134, -0.0715, 0.5517, -0.3632, -0.1922, -0.9497, 0.2503, -0.2921,
]
WAN21_LATENTS_STD = [
    2.8184, 1.4541, 2.3275, 2.6558, 1.2196, 1.7708, 2.6052, 2.0743,
    3.2687, 2.1526, 2.8652, 1.5579, 1.6382, 1.1253, 2.8251, 1.9160,
]
WAN22_LATENTS_MEAN = [
    -0.2289, -0.0052, -0.1323, -0.2339, -0.2799, 0.0174, 0.1838, 0.1557,
    -0.1382, 0.0542, 0.2813, 0.0891, 0.1570, -0.0098, 0.0375, -0.1825,
    -0.2246, -0.1207, -0.0698, 0.5109, 0.2665, -0.2108, -0.2158, 0.2502,
    -0.2055, -0.0322, 0.1109, 0.1567, -0.0729, 0.0899, -0.2799, -0.1230,
    -0.0313, -0.1649, 0.0117, 0.0723, -0.2839, -0.2083, -0.0520, 0.3748,
    0.0152, 0.1957, 0.1433, -0.2944, 0.3573, -0.0548, -0.1681, -0.0667,
]
WAN22_LATENTS_STD = [
    0.4765, 1.0364, 0.4514, 1.1677, 0.5313, 0.4990, 0.4818, 0.5013,
    0.8158, 1.0344, 0.5894, 1.0901, 0.6885, 0.6165, 0.8454, 0.4978,
    0.5759, 0.3523, 0.7135, 0.6804, 0.5833, 1.4146, 0.8986, 0.5659,
    0.7069, 0.5338, 0.4889, 0.4917, 0.4069, 0.4999, 0.6866, 0.4093,
    0.5709, 0.6065, 0.6415, 0.4944, 0.5726, 1.2042, 0.5458, 1.6887,
    0.3971, 1.0600, 0.3943, 0.5537, 0.5444, 0.4089, 0.7468, 0.7744,
]

_TRANSFORMER_COMMON: dict[str, Any] = {
    "patch_size": [1, 2, 2], "attention_head_dim": 128, "text_dim": 4096, "freq_dim": 256,
    "cross_attn_norm": True, "qk_norm": "rms_norm_across_heads", "eps": 1e-6,
    "rope_max_seq_len": 1024, "pos_embed_seq_len": None,
}
_VAE_COMMON: dict[str, Any] = {
    "dim_mult": [1, 2, 4, 4], "num_res_blocks": 2, "attn_scales": [],
    "temperal_downsample": [False, True, True], "dropout": 0.0, "scale_factor_temporal": 4,
}

WAN22_TI2V_5B_TRANSFORMER: dict[str, Any] = {
    **_TRANSFORMER_COMMON, "num_attention_heads": 24, "in_channels": 48, "out_channels": 48,
    "ffn_dim": 14336, "num_layers": 30, "image_dim": None, "added_kv_proj_dim": None,
}
WAN22_VAE: dict[str, Any] = {
    **_VAE_COMMON, "base_dim": 160, "decoder_base_dim": 256, "z_dim": 48, "is_residual": True,
    "in_channels": 12, "out_channels": 12, "patch_size": 2, "scale_factor_spatial": 16,
    "latents_mean": WAN22_LATENTS_MEAN, "latents_std": WAN22_LATENTS_STD,
}
WAN21_I2V_14B_TRANSFORMER: dict[str, Any] = {
    **_TRANSFORMER_COMMON, "num_attention_heads": 40, "in_channels": 36, "out_channels": 16,
    "ffn_dim": 13824, "num_layers": 40, "image_dim": 1280, "added_kv_proj_dim": 5120,
}
WAN21_VAE: dict[str, Any] = {
    **_VAE_COMMON, "base_dim": 96, "decoder_base_dim": None, "z_dim": 16, "is_residual": False,
    "in_channels": 3, "out_channels": 3, "patch_size": None, "scale_factor_spatial": 8,
    "latents_mean": WAN21_LATENTS_MEAN, "latents_std": WAN21_LATENTS_STD,
}

# Extra weights Yume's checkpoints carry beside the Wan ones (history compression convolutions
# with 4x..32x larger spatial patches); see :data:`world.wan.keys.YUME_EXTRA_PREFIXES`.
YUME_PATCH_EMBEDDINGS = ("patch_embedding_2x", "patch_embedding_4x", "patch_embedding_8x",
                         "patch_embedding_16x", "patch_embedding_2x_f")


@dataclass(frozen=True)
class WanFamily:
    """A Wan model family: transformer and VAE configs plus how the pair is conditioned.

    Attributes
    ----------
    name : str
        Registry name (``"wan2.2-ti2v-5b"``...).
    transformer : dict
        ``diffusers.WanTransformer3DModel`` arguments.
    vae : dict
        ``diffusers.AutoencoderKLWan`` arguments.
    conditioning : {"expand", "concat"}
        ``"expand"``: known latent frames enter clean with timestep 0 (Wan 2.2 TI2V);
        ``"concat"``: noisy latents are concatenated with a 4-channel frame mask and the known
        latents (Wan 2.1 I2V), and CLIP image tokens feed ``img_emb``.
    prompt_template : {"14b", "5b"}
        Which Yume prompt template (:func:`control.actions.action_prompt`) fits the family.
    text_len : int
        Prompt tokens (umT5 sequence length) the model was trained with.
    image_tokens : int
        CLIP image tokens of the I2V branch (0 without one).
    """

    name: str
    transformer: dict = field(repr=False)
    vae: dict = field(repr=False)
    conditioning: Conditioning = "expand"
    prompt_template: Literal["14b", "5b"] = "5b"
    text_len: int = 512
    image_tokens: int = 0

    @property
    def compression(self) -> tuple[int, int, int]:
        """(time, height, width) factor from pixels to latents."""
        return (int(self.vae["scale_factor_temporal"]), int(self.vae["scale_factor_spatial"]),
                int(self.vae["scale_factor_spatial"]))

    @property
    def latent_channels(self) -> int:
        return int(self.vae["z_dim"])


FAMILIES: dict[str, WanFamily] = {
    "wan2.2-ti2v-5b": WanFamily("wan2.2-ti2v-5b", WAN22_TI2V_5B_TRANSFORMER, WAN22_VAE,
                                conditioning="expand", prompt_template="5b"),
    "wan2.1-i2v-14b": WanFamily("wan2.1-i2v-14b", WAN21_I2V_14B_TRANSFORMER, WAN21_VAE,
                                conditioning="concat", prompt_template="14b", image_tokens=257),
}
# Yume's releases by the family they fine-tune.
ALIASES = {"yume-5b-720p": "wan2.2-ti2v-5b", "yume-1.5": "wan2.2-ti2v-5b",
           "yume-i2v-540p": "wan2.1-i2v-14b", "5b": "wan2.2-ti2v-5b", "14b": "wan2.1-i2v-14b"}


def family(name: str) -> WanFamily:
    """The :class:`WanFamily` called ``name`` (or a Yume alias such as ``"yume-i2v-540p"``)."""
    key = ALIASES.get(str(name).lower(), str(name).lower())
    if key not in FAMILIES:
        raise WorldError(f"Unknown Wan family {name!r}; choose one of "
                         f"{', '.join(sorted(FAMILIES) + sorted(ALIASES))}.")
    fam = FAMILIES[key]
    return replace(fam, transformer=copy.deepcopy(fam.transformer), vae=copy.deepcopy(fam.vae))


def tiny_family(name: str) -> WanFamily:
    """A toy-sized copy of family ``name`` for CPU tests (same structure, random weights).

    Kept: the VAE type (residual 2x2-patchified Wan 2.2 or plain Wan 2.1) and its 4x16x16 or
    4x8x8 compression, ``in_channels == z_dim`` (expand) or ``2 * z_dim + 4`` (concat), the I2V
    image branch (``image_dim`` != ``dim``, ``added_kv_proj_dim == dim``) and the cross-attention
    norm. Shrunk: layers, heads, widths, latent channels.
    """
    fam = family(name)
    heads, head_dim = 2, 12  # head_dim 12 splits into RoPE t/h/w = 4/4/4 as Wan's 128 does
    dim = heads * head_dim
    z = 8 if fam.conditioning == "expand" else 4
    vae = dict(fam.vae)
    vae.update(base_dim=8, z_dim=z, latents_mean=[0.1 * i for i in range(z)],
               latents_std=[1.0 + 0.05 * i for i in range(z)], dim_mult=[1, 2, 2, 2],
               num_res_blocks=1)
    if vae["decoder_base_dim"] is not None:
        vae["decoder_base_dim"] = 16
    tr = dict(fam.transformer)
    tr.update(num_attention_heads=heads, attention_head_dim=head_dim, num_layers=2, ffn_dim=32,
              text_dim=16, freq_dim=16, out_channels=z,
              in_channels=z if fam.conditioning == "expand" else 2 * z + 4)
    if tr["image_dim"] is not None:
        tr.update(image_dim=20, added_kv_proj_dim=dim)
    # text_len stays 512: diffusers' I2V attention splits image tokens from text by that number.
    return replace(fam, name=f"tiny-{fam.name}", transformer=tr, vae=vae,
                   image_tokens=3 if fam.image_tokens else 0)
