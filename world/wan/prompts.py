"""Prompt embeddings for Wan/Yume: a local umT5 encoder, a cache file, or zeros.

Wan reads umT5-XXL hidden states (512 tokens x 4096). Three sources, tried in this order by
:func:`make_prompt_encoder`:

1. a **cache file** (``prompt_embeds.safetensors``): embeddings computed once where the text
   encoder runs (:func:`save_prompt_cache`), one tensor per prompt; the 81 action prompts of
   either Yume template make a small file, so a GPU host without ``transformers`` still gets
   real prompt conditioning;
2. a **local umT5 folder** (``text_encoder/`` + ``tokenizer/`` of a diffusers pipeline folder),
   used only when ``transformers`` is installed, loaded with ``local_files_only=True`` and
   safetensors only;
3. **zeros** (the unconditional prompt), with a warning, so the engine still runs.

A prompt missing from the cache falls through to the next source.
"""

from __future__ import annotations

import importlib.util
import json
import logging
from pathlib import Path
from typing import Protocol

import torch
from safetensors import SafetensorError, safe_open
from safetensors.torch import save_file

from world.base import WorldError

logger = logging.getLogger(__name__)

CACHE_NAME = "prompt_embeds.safetensors"


class PromptSource(Protocol):
    name: str

    def get(self, text: str) -> torch.Tensor | None:
        """``(text_len, text_dim)`` float32 embedding of ``text``, or None if unknown here."""


class ZeroPrompts:
    """The all-zero embedding for every prompt (what an empty, unconditional prompt gives)."""

    name = "zeros"

    def __init__(self, text_len: int, text_dim: int) -> None:
        self.text_len, self.text_dim = int(text_len), int(text_dim)

    def get(self, text: str) -> torch.Tensor:
        return torch.zeros(self.text_len, self.text_dim)


class CachedPrompts:
    """Embeddings stored by :func:`save_prompt_cache` (safetensors, prompts in the metadata)."""

    name = "cache"

    def __init__(self, path: str | Path, text_dim: int | None = None) -> None:
        path = Path(path)
        try:
            with safe_open(str(path), framework="pt", device="cpu") as f:
                prompts = json.loads((f.metadata() or {}).get("prompts", "null"))
                if not isinstance(prompts, list):
                    raise ValueError("no prompt list in the metadata")
                self._table = {str(t): f.get_tensor(f"prompt_{i}").float()
                               for i, t in enumerate(prompts)}
        except (SafetensorError, OSError, ValueError, json.JSONDecodeError) as err:
            raise WorldError(f"{path} is not a prompt cache ({err}); write one with "
                             "world.wan.prompts.save_prompt_cache.") from err
        wrong = [t for t, e in self._table.items()
                 if e.ndim != 2 or (text_dim is not None and e.shape[1] != text_dim)]
        if wrong:
            raise WorldError(f"{path} holds embeddings of another width than the model's "
                             f"{text_dim} (prompt {wrong[0][:40]!r}); rebuild the cache with this "
                             "model's text encoder.")
        self.path = path

    def __len__(self) -> int:
        return len(self._table)

    def get(self, text: str) -> torch.Tensor | None:
        return self._table.get(text)


def save_prompt_cache(path: str | Path, embeddings: dict[str, torch.Tensor]) -> Path:
    """Write ``{prompt: (text_len, text_dim) tensor}`` as a prompt cache file."""
    prompts = list(embeddings)
    tensors = {f"prompt_{i}": embeddings[t].detach().to("cpu", torch.float32).contiguous()
               for i, t in enumerate(prompts)}
    save_file(tensors, str(path), metadata={"prompts": json.dumps(prompts, ensure_ascii=False)})
    return Path(path)


def transformers_available() -> bool:
    return importlib.util.find_spec("transformers") is not None


class UMT5Prompts:
    """umT5 from a local folder (needs ``transformers``), as diffusers' Wan pipelines use it.

    Parameters
    ----------
    folder : path
        A pipeline folder with ``text_encoder/`` and ``tokenizer/``, or a text-encoder folder
        that also holds the tokenizer files.
    text_len : int
        Tokens kept; positions after the prompt's own tokens are zero, as in Wan.
    """

    name = "umt5"

    def __init__(self, folder: str | Path, text_len: int = 512, device: str = "cpu",
                 dtype: torch.dtype = torch.float32) -> None:
        if not transformers_available():
            raise WorldError("A text encoder needs the transformers package, which is not "
                             "installed; install it or use a prompt cache file instead.")
        from transformers import AutoTokenizer, UMT5EncoderModel

        folder = Path(folder)
        enc = folder / "text_encoder" if (folder / "text_encoder").is_dir() else folder
        tok = folder / "tokenizer" if (folder / "tokenizer").is_dir() else enc
        if not (enc / "config.json").is_file():
            raise WorldError(f"No text encoder at {enc} (no config.json); pass the folder of a "
                             "diffusers Wan pipeline with text_encoder/ and tokenizer/.")
        try:
            self.tokenizer = AutoTokenizer.from_pretrained(tok, local_files_only=True)
            self.model = UMT5EncoderModel.from_pretrained(
                enc, local_files_only=True, use_safetensors=True, torch_dtype=dtype).to(device)
        except (OSError, ValueError) as err:
            raise WorldError(f"The text encoder at {enc} could not be loaded ({err}); check the "
                             "folder against the checkpoint's download.") from err
        self.model.eval()
        self.text_len, self.device = int(text_len), device

    @torch.no_grad()
    def get(self, text: str) -> torch.Tensor:
        ids = self.tokenizer([text], padding="max_length", max_length=self.text_len,
                             truncation=True, add_special_tokens=True, return_tensors="pt")
        mask = ids.attention_mask.to(self.device)
        hidden = self.model(ids.input_ids.to(self.device), mask).last_hidden_state[0].float()
        n = int(mask.sum())
        hidden[n:] = 0  # Wan zeroes the padding positions
        return hidden.cpu()


class PromptEncoder:
    """Embeddings for prompt texts from the first source that knows each (memoised)."""

    def __init__(self, sources: list[PromptSource]) -> None:
        self.sources = sources
        self._memo: dict[str, tuple[torch.Tensor, str]] = {}
        self._warned = False

    def encode(self, text: str) -> tuple[torch.Tensor, str]:
        """``((text_len, text_dim) float32 tensor, source name)`` for ``text``."""
        if text not in self._memo:
            for source in self.sources:
                emb = source.get(text)
                if emb is not None:
                    if source.name == "zeros" and not self._warned:
                        logger.warning("No text encoder or cached embedding for %r; using the "
                                       "zero (unconditional) prompt.", text[:60])
                        self._warned = True
                    self._memo[text] = (emb, source.name)
                    break
        return self._memo[text]


def make_prompt_encoder(text_len: int, text_dim: int, *, checkpoint: str | Path | None = None,
                        text_encoder: str | Path | None = None,
                        prompt_cache: str | Path | None = None, device: str = "cpu",
                        dtype: torch.dtype = torch.float32) -> PromptEncoder:
    """The prompt path of a Wan world: cache, then local umT5 (if installed), then zeros.

    ``prompt_cache`` / ``text_encoder`` default to ``CHECKPOINT/prompt_embeds.safetensors`` and
    ``CHECKPOINT`` (its ``text_encoder/``) when present. An explicitly given text encoder
    without ``transformers`` raises; a checkpoint's own is skipped with a log line.
    """
    sources: list[PromptSource] = []
    root = Path(checkpoint) if checkpoint is not None else None
    cache = prompt_cache or (root / CACHE_NAME if root and (root / CACHE_NAME).is_file() else None)
    if cache is not None:
        sources.append(CachedPrompts(cache, text_dim))
    if text_encoder is not None:
        sources.append(UMT5Prompts(text_encoder, text_len, device, dtype))
    elif root is not None and (root / "text_encoder").is_dir():
        if transformers_available():
            sources.append(UMT5Prompts(root, text_len, device, dtype))
        else:
            logger.info("%s has a text encoder but transformers is not installed; prompts "
                        "come from the cache or are zero.", root)
    sources.append(ZeroPrompts(text_len, text_dim))
    return PromptEncoder(sources)
