"""Safetensors weights in a folder: one file or shards with an index, read and written.

Only safetensors are read, never pickles (``.bin``, ``.pth``, ``.pt``, ``.ckpt``): unpickling can
run code, so a folder that holds only those is refused with a sentence saying to convert it.
Shapes are read from the file headers without loading tensors, so a 14B checkpoint can be
checked before any memory is spent on it.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from world.base import WorldError

WEIGHTS_NAMES = ("diffusion_pytorch_model", "model")
PICKLE_SUFFIXES = (".bin", ".pth", ".pt", ".ckpt", ".pkl")


def index_name(basename: str) -> str:
    return f"{basename}.safetensors.index.json"


def weight_files(folder: str | Path) -> list[Path]:
    """The safetensors files that hold the weights of ``folder``.

    Looked for in order: ``diffusion_pytorch_model.safetensors.index.json`` (its shards),
    ``diffusion_pytorch_model.safetensors``, the same two for ``model``, and a single
    ``*.safetensors`` file of any name (single-file releases).

    Raises
    ------
    WorldError
        If the folder is missing, holds no safetensors (only pickles, or nothing), names a shard
        that is not there, or has several unrelated safetensors files.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise WorldError(f"No checkpoint folder at {folder}; pass the folder that holds the "
                         "model's config.json and .safetensors weights.")
    for base in WEIGHTS_NAMES:
        index = folder / index_name(base)
        if index.is_file():
            return _shards(index)
        single = folder / f"{base}.safetensors"
        if single.is_file():
            return [single]
    found = sorted(folder.glob("*.safetensors"))
    if len(found) == 1:
        return found
    if len(found) > 1:
        raise WorldError(f"{folder} holds {len(found)} .safetensors files but no index json "
                         f"saying which belong together ({', '.join(p.name for p in found[:3])}); "
                         "keep one, or add the shards' diffusion_pytorch_model.safetensors."
                         "index.json.")
    pickles = sorted(p.name for p in folder.iterdir() if p.suffix in PICKLE_SUFFIXES)
    if pickles:
        raise WorldError(f"{folder} holds only pickle weights ({', '.join(pickles[:3])}), which "
                         "are never loaded because unpickling can run code; convert them once "
                         "to .safetensors (safetensors.torch.save_file) in a trusted session.")
    raise WorldError(f"{folder} holds no model weights (.safetensors); it is not a checkpoint "
                     "folder, pass the one with config.json and the weights.")


def _shards(index: Path) -> list[Path]:
    try:
        data = json.loads(index.read_text(encoding="utf-8"))
        weight_map = data["weight_map"]
        names = sorted(set(weight_map.values()))
    except (OSError, json.JSONDecodeError, KeyError, TypeError, AttributeError) as err:
        raise WorldError(f"{index} is not a valid shard index ({err}); restore it from the "
                         "checkpoint's download.") from err
    missing = [n for n in names if not (index.parent / n).is_file()]
    if missing:
        raise WorldError(f"{index.parent} lacks shard {missing[0]}"
                         f"{f' and {len(missing) - 1} more' if len(missing) > 1 else ''} named "
                         "by its index; the download is incomplete, fetch the missing files.")
    if not names:
        raise WorldError(f"{index} lists no weights; restore it from the checkpoint's download.")
    return [index.parent / n for n in names]


def _open(path: Path):
    try:
        return safe_open(str(path), framework="pt", device="cpu")
    except (SafetensorError, OSError, ValueError) as err:
        raise WorldError(f"{path} is not a readable safetensors file ({err}); the file is "
                         "corrupt or not safetensors, download it again.") from err


def read_shapes(files: list[Path]) -> dict[str, tuple[int, ...]]:
    """Weight name -> shape over all ``files``, from the headers only.

    Raises
    ------
    WorldError
        If a file is not safetensors or two files hold the same name.
    """
    shapes: dict[str, tuple[int, ...]] = {}
    for path in files:
        with _open(path) as f:
            for name in f.keys():
                if name in shapes:
                    raise WorldError(f"Weight {name} is in two shards (one is {path.name}); the "
                                     "folder mixes two checkpoints, keep one.")
                shapes[name] = tuple(f.get_slice(name).get_shape())
    return shapes


def read_state(files: list[Path], rename: Mapping[str, str] | None = None,
               dtype: torch.dtype | None = None) -> dict[str, torch.Tensor]:
    """Load all tensors of ``files`` on the CPU, optionally renamed and cast to ``dtype``.

    Raises
    ------
    WorldError
        If a file is corrupt or truncated.
    """
    state: dict[str, torch.Tensor] = {}
    for path in files:
        try:
            with _open(path) as f:
                for name in f.keys():
                    t = f.get_tensor(name)
                    if dtype is not None and t.is_floating_point():
                        t = t.to(dtype)
                    state[rename.get(name, name) if rename else name] = t
        except (SafetensorError, RuntimeError) as err:
            raise WorldError(f"{path} is corrupt or truncated ({err}); download it "
                             "again.") from err
    return state


def save_state(state: Mapping[str, torch.Tensor], folder: str | Path,
               basename: str = "diffusion_pytorch_model", max_shard_bytes: int | None = None,
               metadata: Mapping[str, str] | None = None) -> list[Path]:
    """Write ``state`` as one safetensors file, or shards plus an index json (HF format).

    Parameters
    ----------
    max_shard_bytes : int, optional
        Start a new shard when one would grow past this size; None = one file.
    """
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    tensors = {k: v.detach().to("cpu").contiguous() for k, v in state.items()}
    meta = {"format": "pt", **(metadata or {})}
    if max_shard_bytes is None:
        path = folder / f"{basename}.safetensors"
        save_file(tensors, str(path), metadata=meta)
        return [path]
    groups: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for name, t in tensors.items():
        nbytes = t.numel() * t.element_size()
        if groups[-1] and size + nbytes > max_shard_bytes:
            groups.append({})
            size = 0
        groups[-1][name] = t
        size += nbytes
    paths, weight_map = [], {}
    for i, group in enumerate(groups, 1):
        path = folder / f"{basename}-{i:05d}-of-{len(groups):05d}.safetensors"
        save_file(group, str(path), metadata=meta)
        weight_map.update(dict.fromkeys(group, path.name))
        paths.append(path)
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    (folder / index_name(basename)).write_text(
        json.dumps({"metadata": {"total_size": total}, "weight_map": weight_map}, indent=2),
        encoding="utf-8")
    return paths
