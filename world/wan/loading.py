"""Load Wan 2.1/2.2 and Yume transformers and VAEs from local folders, nothing from a hub.

Accepted folders:

- a **pipeline folder** in diffusers layout (``transformer/``, ``vae/``, optional
  ``text_encoder/`` + ``tokenizer/``), as the Wan-AI ``*-Diffusers`` repositories ship;
- a **transformer folder** in diffusers layout (``config.json`` with
  ``"_class_name": "WanTransformer3DModel"`` and ``diffusion_pytorch_model*.safetensors``),
  loaded with ``from_pretrained(path, local_files_only=True, use_safetensors=True)``;
- a **transformer folder in the original Wan/Yume layout** (Wan-AI's non-Diffusers repos, Yume's
  ``Yume-Dit``): ``diffusion_pytorch_model*.safetensors`` (sharded with an index json or not) and
  optionally Wan's own ``config.json`` (``"_class_name": "WanModel"``); the weights are renamed by
  :mod:`world.wan.keys`, the config is read from the shapes, and Yume's extra weights are kept.

Every check that can fail is done on the file headers before tensors are loaded, and names and
shapes must cover the model exactly (no missing, unexpected or misshapen weight), so a wrong
folder fails with one sentence instead of a half-loaded model.
"""

from __future__ import annotations

import json
import logging
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from world.base import WorldError
from world.wan import files as wfiles
from world.wan.keys import (
    Layout,
    convert_diffusers_to_original,
    convert_original_to_diffusers,
    detect_layout,
    diffusers_config_from_original,
    original_config_from_diffusers,
)

logger = logging.getLogger(__name__)

CONFIG_NAME = "config.json"
TRANSFORMER_CLASS = "WanTransformer3DModel"
VAE_CLASS = "AutoencoderKLWan"


@dataclass
class LoadedTransformer:
    """A Wan transformer and what loading it found.

    Attributes
    ----------
    model : diffusers.WanTransformer3DModel
        In eval mode.
    layout : {"diffusers", "original"}
        The layout of the folder's weights.
    extras : dict
        Yume's extra weights (history patch embeddings...), empty for plain Wan.
    folder : Path
    """

    model: Any
    layout: Layout
    extras: dict[str, torch.Tensor] = field(default_factory=dict)
    folder: Path | None = None


def _read_json(path: Path) -> dict | None:
    if not path.is_file():
        return None
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as err:
        raise WorldError(f"{path} is not valid JSON ({err}); restore it from the checkpoint's "
                         "download.") from err
    if not isinstance(data, dict):
        raise WorldError(f"{path} does not hold a config object; restore it from the "
                         "checkpoint's download.")
    return data


def component_folder(folder: str | Path, name: str) -> Path:
    """``folder/name`` for a pipeline folder, else ``folder`` itself."""
    folder = Path(folder)
    if not folder.exists():
        raise WorldError(f"No checkpoint folder at {folder}; check the path.")
    if folder.is_file():
        raise WorldError(f"{folder} is a file; pass the folder that holds it and its "
                         "config.json.")
    sub = folder / name
    return sub if sub.is_dir() else folder


def _meta_model(config: dict):
    from diffusers import WanTransformer3DModel

    args = {k: v for k, v in config.items() if not k.startswith("_")}
    try:
        with torch.device("meta"):
            return WanTransformer3DModel(**args)
    except (TypeError, ValueError, AssertionError, RuntimeError) as err:
        raise WorldError(f"The transformer config is not a valid Wan config ({err}); restore "
                         "config.json from the checkpoint's download.") from err


def check_coverage(expected: dict[str, tuple[int, ...]], found: dict[str, tuple[int, ...]],
                   where: str) -> None:
    """Raise a :class:`WorldError` unless ``found`` has exactly ``expected``'s names and shapes."""
    missing = sorted(set(expected) - set(found))
    unexpected = sorted(set(found) - set(expected))
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected (e.g. {', '.join(unexpected[:3])})")
        raise WorldError(f"{where} does not match its config: weights {' and '.join(parts)}; "
                         "the shards are incomplete or belong to another model.")
    wrong = [n for n in expected if tuple(expected[n]) != tuple(found[n])]
    if wrong:
        n = wrong[0]
        raise WorldError(f"{where}: weight {n} has shape {tuple(found[n])}, the config needs "
                         f"{tuple(expected[n])}; the config.json belongs to another model.")


def _keep_fp32(name: str, patterns: list[str] | None) -> bool:
    # diffusers' rule for `_keep_in_fp32_modules`: a pattern equal to one dotted part of the name.
    return bool(patterns) and any(p in name.split(".") for p in patterns)


def load_transformer(folder: str | Path, *, dtype: torch.dtype = torch.float32,
                     device: str | torch.device = "cpu", num_heads: int | None = None
                     ) -> LoadedTransformer:
    """Load a Wan/Yume transformer from a local folder in diffusers or original layout.

    Parameters
    ----------
    folder : path
        A transformer folder, or a pipeline folder with ``transformer/``.
    dtype : torch.dtype
        Weights' precision (``torch.bfloat16`` on CUDA); the modules diffusers keeps in float32
        (time embedder, modulation tables, norms) stay float32 as in ``from_pretrained``.
    device : str or torch.device
    num_heads : int, optional
        Attention heads of an original-layout folder without ``config.json``; default: width
        / 128, as in every released Wan model.

    Raises
    ------
    WorldError
        A missing folder or file, pickle-only weights, an index naming absent shards, weights of
        another model or layout, or a config that contradicts the weights.
    """
    folder = component_folder(folder, "transformer")
    files = wfiles.weight_files(folder)
    shapes = wfiles.read_shapes(files)
    layout = detect_layout(shapes)
    config = _read_json(folder / CONFIG_NAME)
    if layout is None:
        raise WorldError(f"{folder} holds no Wan transformer weights (names such as "
                         f"{', '.join(sorted(shapes)[:2])}); pass the transformer folder of a Wan "
                         "or Yume checkpoint.")
    if config is not None and config.get("_class_name") not in (None, TRANSFORMER_CLASS,
                                                                 "WanModel"):
        raise WorldError(f"{folder / CONFIG_NAME} describes a {config.get('_class_name')}, not "
                         "a Wan transformer; pass the transformer folder.")
    is_diffusers_config = config is not None and config.get("_class_name") == TRANSFORMER_CLASS
    if layout == "diffusers":
        if not is_diffusers_config:
            raise WorldError(f"{folder} has diffusers-layout weights but no diffusers "
                             "config.json (_class_name WanTransformer3DModel); restore it from "
                             "the checkpoint's download.")
        meta = _meta_model(config)
        # Names diffusers itself ignores when loading (e.g. norm_added_q of early conversions).
        ignored = getattr(meta, "_keys_to_ignore_on_load_unexpected", None) or []
        kept = {k: v for k, v in shapes.items() if not any(re.search(p, k) for p in ignored)}
        check_coverage({k: tuple(v.shape) for k, v in meta.state_dict().items()}, kept,
                       str(folder))
        from diffusers import WanTransformer3DModel

        try:
            model = WanTransformer3DModel.from_pretrained(
                folder, local_files_only=True, use_safetensors=True, torch_dtype=dtype)
        except (OSError, ValueError, RuntimeError) as err:
            raise WorldError(f"diffusers could not load {folder} ({err}); check the folder "
                             "against the checkpoint's download.") from err
        return LoadedTransformer(model.to(device).eval(), "diffusers", {}, folder)

    # Original Wan/Yume layout: rename (names only first, to check before loading).
    renamed = convert_original_to_diffusers(shapes)
    if is_diffusers_config:
        dconfig = {k: v for k, v in config.items() if not k.startswith("_")}
    else:
        orig_shapes = {k: v for k, v in shapes.items() if k in renamed.renamed}
        cfg = dict(config or {})
        if num_heads is not None:
            cfg["num_heads"] = num_heads
        dconfig = diffusers_config_from_original(orig_shapes, cfg)
    meta = _meta_model(dconfig)
    check_coverage({k: tuple(v.shape) for k, v in meta.state_dict().items()}, renamed.state,
                   str(folder))
    state = wfiles.read_state(files)
    converted = convert_original_to_diffusers(state)
    return LoadedTransformer(build_transformer(dconfig, converted.state, dtype, device),
                             "original", converted.extras, folder)


def build_transformer(config: dict, state: dict[str, torch.Tensor],
                      dtype: torch.dtype = torch.float32, device: str | torch.device = "cpu"):
    """A ``WanTransformer3DModel`` of ``config`` holding ``state`` (diffusers names), eval mode.

    The model is built on the meta device and takes the tensors as they are (no second copy,
    no random initialisation of 14B parameters); RoPE tables, which are buffers outside the
    state dict, are then computed on the CPU.
    """
    from diffusers.models.transformers.transformer_wan import WanRotaryPosEmbed

    model = _meta_model(config)
    keep = getattr(model, "_keep_in_fp32_modules", None) if dtype in (
        torch.float16, torch.bfloat16) else None
    cast = {k: v.to(torch.float32 if _keep_fp32(k, keep) else dtype) for k, v in state.items()}
    model.load_state_dict(cast, strict=True, assign=True)
    c = model.config
    model.rope = WanRotaryPosEmbed(c.attention_head_dim, tuple(c.patch_size), c.rope_max_seq_len)
    leftover = [n for n, t in [*model.named_parameters(), *model.named_buffers()] if t.is_meta]
    if leftover:  # a new diffusers version added a buffer this loader does not know
        raise WorldError(f"Loading left {', '.join(leftover[:3])} unset; this diffusers version "
                         "is not supported by world.wan, use the pinned one.")
    return model.to(device).eval()


def save_transformer(model, folder: str | Path, layout: Layout = "diffusers", *,
                     max_shard_bytes: int | None = None,
                     extras: dict[str, torch.Tensor] | None = None,
                     dtype: torch.dtype | None = None) -> Path:
    """Write a ``WanTransformer3DModel`` in diffusers or original (Wan/Yume) layout.

    ``extras`` (Yume's extra weights, original names) are added to an original-layout folder.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: (v.to(dtype) if dtype is not None and v.is_floating_point() else v)
             for k, v in model.state_dict().items()}
    if layout == "diffusers":
        if extras:
            raise WorldError("Yume's extra weights have no place in diffusers layout; save "
                             "with layout='original'.")
        # diffusers' own writer, so the folder is exactly what from_pretrained expects.
        model.save_pretrained(folder, safe_serialization=True,
                              max_shard_size=max_shard_bytes or "10GB")
        return folder
    original = convert_diffusers_to_original(state)
    original.update(extras or {})
    (folder / CONFIG_NAME).write_text(
        json.dumps(original_config_from_diffusers(dict(model.config)), indent=2),
        encoding="utf-8")
    wfiles.save_state(original, folder, max_shard_bytes=max_shard_bytes)
    return folder


def load_vae(folder: str | Path, *, dtype: torch.dtype = torch.float32,
             device: str | torch.device = "cpu"):
    """Load ``diffusers.AutoencoderKLWan`` (Wan 2.1 16-channel or Wan 2.2 48-channel) from a
    local folder in diffusers layout (or a pipeline folder with ``vae/``).

    Raises
    ------
    WorldError
        A missing folder, config or weights, pickle-only weights (Wan-AI's ``Wan2.x_VAE.pth``:
        use the ``vae/`` folder of the ``*-Diffusers`` release instead), or weights that do not
        match the config.
    """
    folder = component_folder(folder, "vae")
    config = _read_json(folder / CONFIG_NAME)
    if config is None or config.get("_class_name") != VAE_CLASS:
        what = "no config.json" if config is None else f"a {config.get('_class_name')} config"
        raise WorldError(f"{folder} has {what}, not a diffusers AutoencoderKLWan; pass the vae/ "
                         "folder of a Wan *-Diffusers checkpoint (the original Wan2.x_VAE.pth "
                         "is a pickle and is never loaded).")
    files = wfiles.weight_files(folder)
    shapes = wfiles.read_shapes(files)
    from diffusers import AutoencoderKLWan

    args = {k: v for k, v in config.items() if not k.startswith("_")}
    try:
        with torch.device("meta"):
            meta = AutoencoderKLWan(**args)
    except (TypeError, ValueError, AssertionError, RuntimeError) as err:
        raise WorldError(f"{folder / CONFIG_NAME} is not a valid AutoencoderKLWan config "
                         f"({err}); restore it from the checkpoint's download.") from err
    check_coverage({k: tuple(v.shape) for k, v in meta.state_dict().items()}, shapes,
                   str(folder))
    try:
        vae = AutoencoderKLWan.from_pretrained(folder, local_files_only=True,
                                               use_safetensors=True, torch_dtype=dtype)
    except (OSError, ValueError, RuntimeError) as err:
        raise WorldError(f"diffusers could not load {folder} ({err}); check the folder against "
                         "the checkpoint's download.") from err
    return vae.to(device).eval()


def save_vae(vae, folder: str | Path) -> Path:
    """Write an ``AutoencoderKLWan`` in diffusers layout (config.json + safetensors)."""
    vae.save_pretrained(folder, safe_serialization=True)
    return Path(folder)
