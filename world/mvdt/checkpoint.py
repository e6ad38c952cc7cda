"""MVDT checkpoints: ``model.safetensors`` + ``config.json`` in one folder.

Loading never executes code: weights are read with safetensors only, metadata is JSON. The
config is validated, the weights' names and shapes must match the model the config builds, and the
safetensors metadata carries a hash of the config, so a config from another checkpoint, a corrupt
or truncated file, or a pickle renamed to ``.safetensors`` all raise a one-sentence
:class:`~world.base.WorldError`.

This module knows the file format, not the model: :func:`load_into` takes the class to build, so
:mod:`world.mvdt.model` can offer ``save_pretrained``/``from_pretrained`` on top of it without the
two modules importing each other. :func:`world.mvdt.model.load_checkpoint` is the MVDT binding.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from world.base import WorldError
from world.mvdt.config import MVDTConfig

logger = logging.getLogger(__name__)

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
FORMAT = "yume-mvdt"
DEFAULT_CHECKPOINT = Path(__file__).resolve().parents[1] / "checkpoints" / "mvdt-warp"


def config_hash(config: MVDTConfig | dict) -> str:
    """SHA-256 of the canonical JSON of a config (stored in the weights' metadata).

    Hashing the keys as written (a dict read from ``config.json``) rather than the re-built
    dataclass keeps older checkpoints loadable when a later version adds a field with a default.
    """
    data = config.to_dict() if isinstance(config, MVDTConfig) else config
    text = json.dumps(data, indent=2, ensure_ascii=False, sort_keys=True)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def save_checkpoint(
    model: torch.nn.Module,
    directory: str | Path,
    dtype: torch.dtype = torch.float32,
    extra_metadata: dict[str, str] | None = None,
) -> Path:
    """Write ``config.json`` and ``model.safetensors`` (in ``dtype``) into ``directory``.

    The weights are written to a temporary name first and renamed, so an interrupted save never
    leaves a half-written ``model.safetensors`` behind. ``model`` is any module with an
    :class:`MVDTConfig` in ``model.config`` (an :class:`~world.mvdt.model.MVDTModel`).
    """
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().to("cpu", dtype).contiguous() for k, v in model.state_dict().items()}
    meta = {"format": FORMAT, "config_sha256": config_hash(model.config),
            "dtype": str(dtype).removeprefix("torch.")}
    meta.update({str(k): str(v) for k, v in (extra_metadata or {}).items()})
    tmp = directory / (WEIGHTS_NAME + ".tmp")
    save_file(state, str(tmp), metadata=meta)
    model.config.save(directory / CONFIG_NAME)
    tmp.replace(directory / WEIGHTS_NAME)
    logger.info("Saved MVDT checkpoint to %s", directory)
    return directory


def read_metadata(directory: str | Path) -> dict[str, str]:
    """The safetensors metadata of a checkpoint (format, config hash, dtype, extras)."""
    path = Path(directory) / WEIGHTS_NAME
    try:
        with safe_open(str(path), framework="pt") as f:
            return dict(f.metadata() or {})
    except (SafetensorError, OSError, ValueError) as err:
        raise WorldError(f"{path} is not a readable safetensors file ({err}); re-save or "
                         "re-train the checkpoint.") from err


def load_into(
    directory: str | Path,
    build: Callable[[MVDTConfig], torch.nn.Module],
    expected_config: MVDTConfig | None = None,
    device: str | torch.device = "cpu",
    dtype: torch.dtype = torch.float32,
) -> torch.nn.Module:
    """Build ``build(config)`` from ``directory/config.json`` and load its weights (eval mode).

    Parameters
    ----------
    directory : path
        Checkpoint folder with ``config.json`` and ``model.safetensors``.
    build : callable
        Makes the module from the checkpoint's config (``MVDTModel``).
    expected_config : MVDTConfig, optional
        If given, the checkpoint's config must equal it.
    device, dtype
        Where and in which precision to put the model.

    Raises
    ------
    WorldError
        Missing files, invalid config, config mismatch, corrupt/truncated/non-safetensors
        weights, or weights of another architecture.
    """
    directory = Path(directory)
    if not directory.is_dir():
        raise WorldError(f"No MVDT checkpoint folder at {directory}; train one with "
                         "`yume world train` or pass the folder of an existing checkpoint.")
    weights = directory / WEIGHTS_NAME
    if not weights.is_file():
        raise WorldError(f"{directory} has no {WEIGHTS_NAME}; the checkpoint is incomplete, "
                         "re-save or re-train it.")
    config = MVDTConfig.load(directory / CONFIG_NAME)
    if expected_config is not None and config.to_dict() != expected_config.to_dict():
        diff = sorted(k for k, v in config.to_dict().items() if expected_config.to_dict()[k] != v)
        raise WorldError(f"Checkpoint {directory} was made for another MVDT config (differs in "
                         f"{', '.join(diff)}); load it with its own config or pick another.")
    meta = read_metadata(directory)
    if meta.get("format") != FORMAT:
        raise WorldError(f"{weights} is not an MVDT checkpoint (format {meta.get('format')!r}); "
                         "pick a folder saved by save_checkpoint.")
    written = json.loads((directory / CONFIG_NAME).read_text(encoding="utf-8"))
    if meta.get("config_sha256") != config_hash(written):
        raise WorldError(f"{weights} was saved with a different config.json than the one in "
                         f"{directory}; put the matching config.json back or re-save the model.")
    model = build(config)
    expected = model.state_dict()
    state: dict[str, torch.Tensor] = {}
    try:
        with safe_open(str(weights), framework="pt", device="cpu") as f:
            names = set(f.keys())
            missing, unexpected = sorted(set(expected) - names), sorted(names - set(expected))
            if missing or unexpected:
                raise WorldError(f"{weights} holds weights of another architecture (missing "
                                 f"{missing[:3]}, unexpected {unexpected[:3]}); re-save it.")
            for name in expected:
                t = f.get_tensor(name)
                if tuple(t.shape) != tuple(expected[name].shape):
                    raise WorldError(f"{weights}: tensor {name} has shape {tuple(t.shape)}, the "
                                     f"config needs {tuple(expected[name].shape)}; re-save it.")
                if not t.is_floating_point():
                    raise WorldError(f"{weights}: tensor {name} is not floating point; the file is "
                                     "not an MVDT checkpoint.")
                state[name] = t
    except (SafetensorError, OSError, RuntimeError) as err:
        raise WorldError(f"{weights} is corrupt or truncated ({err}); re-save or re-train the "
                         "checkpoint.") from err
    model.load_state_dict(state, strict=True)
    return model.to(device=device, dtype=dtype).eval()


def checkpoint_summary(directory: str | Path) -> dict:
    """Config, metadata and file sizes of a checkpoint (for ``yume world info``)."""
    directory = Path(directory)
    config = MVDTConfig.load(directory / CONFIG_NAME)
    return {
        "config": config.to_dict(), "metadata": read_metadata(directory),
        "bytes": (directory / WEIGHTS_NAME).stat().st_size,
        "parameters": config.num_parameters(),
    }


