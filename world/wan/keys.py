"""Weight names of the original Wan/Yume transformer layout and their diffusers equivalents.

The Wan-AI repositories' ``diffusion_pytorch_model*.safetensors`` (and Yume's ``Yume-Dit``
shards) name the weights after Wan's own ``WanModel`` (``blocks.3.self_attn.q.weight``);
diffusers' :class:`~diffusers.WanTransformer3DModel` holds the same tensors under other names
(``blocks.3.attn1.to_q.weight``). The renames are data, in two tables: one for the top-level
modules and one for the modules inside a transformer block. An entry names a module (its
``.weight`` / ``.bias`` follow) or a parameter itself (``modulation``). No tensor changes shape.

One rename is not a plain spelling change: Wan calls the cross-attention norm ``norm3`` and the
(parameter-free) feed-forward norm ``norm2``; diffusers swaps them, so ``norm3`` becomes
``norm2``.

Yume's checkpoints carry extra weights diffusers' model has no place for: the history
compression patch embeddings (``patch_embedding_2x``... ``patch_embedding_16x``,
``patch_embedding_2x_f``) and, in MDT-style training checkpoints, ``sideblock.*`` and
``mask_token``. They are returned apart (``extras``), block names converted, never dropped
silently; any other unknown name is an error.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from world.base import WorldError

Layout = Literal["diffusers", "original"]

# Top-level modules/parameters: original Wan name -> diffusers name.
ORIGINAL_TO_DIFFUSERS: dict[str, str] = {
    "patch_embedding": "patch_embedding",
    "text_embedding.0": "condition_embedder.text_embedder.linear_1",
    "text_embedding.2": "condition_embedder.text_embedder.linear_2",
    "time_embedding.0": "condition_embedder.time_embedder.linear_1",
    "time_embedding.2": "condition_embedder.time_embedder.linear_2",
    "time_projection.1": "condition_embedder.time_proj",
    "head.head": "proj_out",
    "head.modulation": "scale_shift_table",
    # I2V: the CLIP image tokens' projection (LayerNorm, Linear, GELU, Linear, LayerNorm).
    "img_emb.proj.0": "condition_embedder.image_embedder.norm1",
    "img_emb.proj.1": "condition_embedder.image_embedder.ff.net.0.proj",
    "img_emb.proj.3": "condition_embedder.image_embedder.ff.net.2",
    "img_emb.proj.4": "condition_embedder.image_embedder.norm2",
    "img_emb.emb_pos": "condition_embedder.image_embedder.pos_embed",  # FLF2V only
}

# Inside ``blocks.N.``: original Wan name -> diffusers name.
BLOCK_ORIGINAL_TO_DIFFUSERS: dict[str, str] = {
    "self_attn.q": "attn1.to_q",
    "self_attn.k": "attn1.to_k",
    "self_attn.v": "attn1.to_v",
    "self_attn.o": "attn1.to_out.0",
    "self_attn.norm_q": "attn1.norm_q",
    "self_attn.norm_k": "attn1.norm_k",
    "cross_attn.q": "attn2.to_q",
    "cross_attn.k": "attn2.to_k",
    "cross_attn.v": "attn2.to_v",
    "cross_attn.o": "attn2.to_out.0",
    "cross_attn.norm_q": "attn2.norm_q",
    "cross_attn.norm_k": "attn2.norm_k",
    "cross_attn.k_img": "attn2.add_k_proj",  # I2V: keys/values of the image tokens
    "cross_attn.v_img": "attn2.add_v_proj",
    "cross_attn.norm_k_img": "attn2.norm_added_k",
    "norm3": "norm2",  # the cross-attention norm (see the module docstring)
    "ffn.0": "ffn.net.0.proj",
    "ffn.2": "ffn.net.2",
    "modulation": "scale_shift_table",
}

DIFFUSERS_TO_ORIGINAL: dict[str, str] = {v: k for k, v in ORIGINAL_TO_DIFFUSERS.items()}
BLOCK_DIFFUSERS_TO_ORIGINAL: dict[str, str] = {v: k for k, v in BLOCK_ORIGINAL_TO_DIFFUSERS.items()}

# Wrappers some trainers and UIs put in front of every name (ComfyUI, DDP, torch.compile).
STRIP_PREFIXES = ("model.diffusion_model.", "diffusion_model.", "module.", "_orig_mod.")

# Yume's extra weights (kept apart, see the module docstring).
YUME_EXTRA_PREFIXES = ("patch_embedding_2x", "patch_embedding_4x", "patch_embedding_8x",
                       "patch_embedding_16x", "patch_embedding_32x", "mask_token")
SIDEBLOCK = "sideblock."

_BLOCK = re.compile(r"^blocks\.(\d+)\.(.+)$")


def _rename(name: str, table: Mapping[str, str]) -> str | None:
    """``name`` through ``table``: a parameter entry, or a module entry plus its leaf."""
    if name in table:
        return table[name]
    module, _, leaf = name.rpartition(".")
    if module in table:
        return f"{table[module]}.{leaf}"
    return None


def strip_prefix(name: str) -> str:
    """``name`` without the wrapper prefixes of :data:`STRIP_PREFIXES`."""
    changed = True
    while changed:
        changed = False
        for prefix in STRIP_PREFIXES:
            if name.startswith(prefix):
                name, changed = name[len(prefix):], True
    return name


def original_to_diffusers_name(name: str) -> str | None:
    """The diffusers name of one original Wan weight name, or None if it is not a Wan weight."""
    name = strip_prefix(name)
    match = _BLOCK.match(name)
    if match:
        inner = _rename(match.group(2), BLOCK_ORIGINAL_TO_DIFFUSERS)
        return None if inner is None else f"blocks.{match.group(1)}.{inner}"
    return _rename(name, ORIGINAL_TO_DIFFUSERS)


def diffusers_to_original_name(name: str) -> str | None:
    """The original Wan name of one diffusers weight name, or None if it has none."""
    match = _BLOCK.match(name)
    if match:
        inner = _rename(match.group(2), BLOCK_DIFFUSERS_TO_ORIGINAL)
        return None if inner is None else f"blocks.{match.group(1)}.{inner}"
    return _rename(name, DIFFUSERS_TO_ORIGINAL)


@dataclass
class Converted:
    """Result of :func:`convert_original_to_diffusers`.

    Attributes
    ----------
    state : dict
        Diffusers-named weights for :class:`~diffusers.WanTransformer3DModel`.
    extras : dict
        Yume's extra weights (history patch embeddings, ``sideblock.*`` with block names
        converted, ``mask_token``).
    renamed : dict
        Original name -> new name of every weight, for reports.
    """

    state: dict[str, Any]
    extras: dict[str, Any] = field(default_factory=dict)
    renamed: dict[str, str] = field(default_factory=dict)


def convert_original_to_diffusers(state: Mapping[str, Any], *,
                                  allow_unknown: bool = False) -> Converted:
    """Rename an original-layout Wan/Yume state dict to diffusers' names.

    Parameters
    ----------
    state : mapping
        Weight name -> tensor (or anything: values pass through untouched, so shapes or lazy
        handles work too).
    allow_unknown : bool
        Put names that are neither Wan nor known Yume extras into ``extras`` instead of raising.

    Raises
    ------
    WorldError
        If a name is unknown (and ``allow_unknown`` is false) or two names map to one.
    """
    out = Converted(state={})
    unknown = []
    for raw, value in state.items():
        name = strip_prefix(raw)
        new = original_to_diffusers_name(name)
        target = out.state
        if new is None and name.startswith(SIDEBLOCK):
            inner = _rename(name[len(SIDEBLOCK):], BLOCK_ORIGINAL_TO_DIFFUSERS)
            new, target = (SIDEBLOCK + inner if inner else name), out.extras
        elif new is None and name.startswith(YUME_EXTRA_PREFIXES):
            new, target = name, out.extras
        elif new is None:
            if not allow_unknown:
                unknown.append(raw)
                continue
            new, target = name, out.extras
        if new in target:
            raise WorldError(f"Two weights, {out_name(out.renamed, new)} and {raw}, both become "
                             f"{new}; the checkpoint mixes layouts, keep one of them.")
        target[new] = value
        out.renamed[raw] = new
    if unknown:
        raise WorldError(f"{len(unknown)} weights are not part of the Wan/Yume layout (e.g. "
                         f"{', '.join(sorted(unknown)[:3])}); pass a Wan or Yume transformer "
                         "checkpoint, not another model's.")
    return out


def out_name(renamed: Mapping[str, str], new: str) -> str:
    """The original name that was renamed to ``new`` (for error messages)."""
    return next((k for k, v in renamed.items() if v == new), new)


def convert_diffusers_to_original(state: Mapping[str, Any]) -> dict[str, Any]:
    """Rename a diffusers :class:`~diffusers.WanTransformer3DModel` state dict to Wan's names.

    Raises
    ------
    WorldError
        If a name has no original equivalent (diffusers-only modules).
    """
    out, missing = {}, []
    for name, value in state.items():
        new = diffusers_to_original_name(name)
        if new is None:
            missing.append(name)
        else:
            out[new] = value
    if missing:
        raise WorldError(f"{len(missing)} weights have no original Wan name (e.g. "
                         f"{', '.join(sorted(missing)[:3])}); save this model in diffusers "
                         "layout instead.")
    return out


def detect_layout(names: Iterable[str]) -> Layout | None:
    """``"diffusers"`` or ``"original"`` from weight names, None if neither is recognised."""
    names = [strip_prefix(n) for n in names]
    if any(n.startswith(("condition_embedder.", "proj_out.")) for n in names):
        return "diffusers"
    if any(n.startswith(("head.head.", "time_embedding.", "text_embedding.")) for n in names):
        return "original"
    return None


def diffusers_config_from_original(shapes: Mapping[str, tuple[int, ...]],
                                   original_config: Mapping[str, Any] | None = None,
                                   head_dim: int = 128) -> dict[str, Any]:
    """diffusers ``WanTransformer3DModel`` arguments for an original-layout checkpoint.

    Sizes come from the tensors' shapes (original names); the head count, which no shape shows
    (Wan normalises q/k across heads), from the original ``config.json`` (``num_heads``) or else
    from Wan's head size of 128, the one every released Wan model uses.

    Raises
    ------
    WorldError
        If core weights are missing or ``config.json`` contradicts the shapes.
    """
    shapes = {strip_prefix(k): tuple(v) for k, v in shapes.items()}
    cfg = dict(original_config or {})
    need = ("patch_embedding.weight", "head.head.weight", "text_embedding.0.weight",
            "time_embedding.0.weight", "blocks.0.ffn.0.weight")
    lacking = [n for n in need if n not in shapes]
    if lacking:
        raise WorldError(f"The checkpoint lacks {', '.join(lacking)}; it is not a complete Wan "
                         "transformer (check that every shard is there).")
    dim, in_ch, *patch = shapes["patch_embedding.weight"]
    layers = 1 + max(int(m.group(1)) for n in shapes if (m := _BLOCK.match(n)))
    if not cfg.get("num_heads") and (dim < head_dim or dim % head_dim):
        raise WorldError(f"The head count of a {dim}-wide model is not {head_dim}-sized heads; "
                         "put Wan's config.json (with num_heads) beside the weights.")
    heads = int(cfg.get("num_heads") or dim // head_dim)
    if heads <= 0 or dim % heads:
        raise WorldError(f"A model width of {dim} does not split into {heads} heads; fix "
                         "num_heads in config.json.")
    out = {
        "patch_size": [int(p) for p in patch],
        "num_attention_heads": heads,
        "attention_head_dim": dim // heads,
        "in_channels": int(in_ch),
        "out_channels": shapes["head.head.weight"][0] // (patch[0] * patch[1] * patch[2]),
        "text_dim": shapes["text_embedding.0.weight"][1],
        "freq_dim": shapes["time_embedding.0.weight"][1],
        "ffn_dim": shapes["blocks.0.ffn.0.weight"][0],
        "num_layers": layers,
        "cross_attn_norm": "blocks.0.norm3.weight" in shapes,
        "qk_norm": "rms_norm_across_heads",
        "eps": float(cfg.get("eps", 1e-6)),
        "image_dim": shapes["img_emb.proj.0.weight"][0] if "img_emb.proj.0.weight" in shapes
        else None,
        "added_kv_proj_dim": dim if "blocks.0.cross_attn.k_img.weight" in shapes else None,
        "rope_max_seq_len": 1024,
        "pos_embed_seq_len": shapes["img_emb.emb_pos"][1] if "img_emb.emb_pos" in shapes
        else None,
    }
    if "blocks.0.self_attn.norm_q.weight" not in shapes:
        raise WorldError("The checkpoint has no q/k norms (qk_norm=False); diffusers' Wan "
                         "transformer always has them, so this model cannot be loaded here.")
    stated = {"dim": dim, "in_dim": out["in_channels"], "out_dim": out["out_channels"],
              "ffn_dim": out["ffn_dim"], "freq_dim": out["freq_dim"], "num_layers": layers,
              "text_dim": out["text_dim"]}
    wrong = [f"{k}={cfg[k]} (weights: {v})" for k, v in stated.items()
             if k in cfg and int(cfg[k]) != int(v)]
    if wrong:
        raise WorldError(f"config.json disagrees with the weights ({'; '.join(wrong)}); the "
                         "config belongs to another model, put the matching one back.")
    return out


def original_config_from_diffusers(config: Mapping[str, Any], text_len: int = 512) -> dict:
    """The original Wan ``config.json`` (``WanModel``) for diffusers transformer arguments."""
    dim = int(config["num_attention_heads"]) * int(config["attention_head_dim"])
    return {
        "_class_name": "WanModel",
        "model_type": "i2v" if config.get("image_dim") else
        ("ti2v" if config["in_channels"] == config["out_channels"] else "t2v"),
        "patch_size": list(config["patch_size"]), "text_len": int(text_len),
        "in_dim": int(config["in_channels"]), "dim": dim, "ffn_dim": int(config["ffn_dim"]),
        "freq_dim": int(config["freq_dim"]), "text_dim": int(config["text_dim"]),
        "out_dim": int(config["out_channels"]), "num_heads": int(config["num_attention_heads"]),
        "num_layers": int(config["num_layers"]), "eps": float(config["eps"]),
        "cross_attn_norm": bool(config["cross_attn_norm"]), "qk_norm": True,
    }
