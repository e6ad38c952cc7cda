"""Action prompts -> tokens for the DiT's text cross-attention (Yume's text injection).

Yume feeds the action as a text prompt (``control.actions.action_prompt``) through the video
model's text encoder. A multi-billion-parameter T5 is out of reach on a CPU, so the prompt is read
by a small learned encoder: a fixed word-level tokenizer whose vocabulary is built from the prompt
templates (deterministic, stored in the config), token + position embeddings and two small
transformer layers. The null prompt (empty string, or ``None``) is the unconditional input of
classifier-free guidance.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import torch
from torch import nn

from control.actions import Action, action_prompt, vocabulary

PAD, UNK, NULL = "<pad>", "<unk>", "<null>"
SPECIAL_TOKENS = (PAD, UNK, NULL)
_WORD = re.compile(r"\w+|[^\w\s]")

ActionLike = Action | str | None


def tokenize_words(text: str) -> list[str]:
    """Split a prompt into words and single punctuation/arrow characters."""
    return _WORD.findall(text)


def build_vocab() -> list[str]:
    """Word vocabulary of every action prompt of both templates, specials first, sorted."""
    words: set[str] = set()
    for action in vocabulary():
        for template in ("14b", "5b"):
            words.update(tokenize_words(action_prompt(action, template)))
    return list(SPECIAL_TOKENS) + sorted(words)


class ActionTokenizer:
    """Deterministic word-level tokenizer over a fixed vocabulary.

    Parameters
    ----------
    vocab : sequence of str
        Tokens; the first three must be ``<pad>``, ``<unk>``, ``<null>``.
    max_tokens : int
        Every prompt is padded (or truncated) to this length.
    template : {"14b", "5b"}
        Template used to turn an :class:`Action` into a prompt.
    """

    def __init__(self, vocab: Sequence[str], max_tokens: int, template: str = "14b") -> None:
        if tuple(vocab[:3]) != SPECIAL_TOKENS:
            raise ValueError("Action vocabulary must start with <pad>, <unk>, <null>.")
        self.vocab = list(vocab)
        self.index = {w: i for i, w in enumerate(self.vocab)}
        self.max_tokens = int(max_tokens)
        self.template = template

    def prompt(self, action: ActionLike) -> str:
        """Prompt text of an action (``""`` for the null prompt)."""
        if action is None:
            return ""
        if isinstance(action, Action):
            return action_prompt(action, self.template)
        if isinstance(action, str):
            return "" if action.strip().lower() in ("", "drop") else action
        raise TypeError(f"Expected an Action, a prompt string or None, got {type(action)}.")

    def encode(self, action: ActionLike) -> list[int]:
        """Token ids of one prompt, padded to ``max_tokens``."""
        words = tokenize_words(self.prompt(action))
        ids = [self.index.get(w, 1) for w in words] if words else [self.index[NULL]]
        ids = ids[: self.max_tokens]
        return ids + [0] * (self.max_tokens - len(ids))

    def __call__(self, actions: Sequence[ActionLike]) -> torch.Tensor:
        """(B, max_tokens) int64 ids."""
        return torch.tensor([self.encode(a) for a in actions], dtype=torch.long)


class ActionEncoder(nn.Module):
    """Token embeddings + learned positions + small pre-norm transformer layers.

    Returns ``(B, max_tokens, action_dim)``; padded positions are zero (as Wan zero-pads its
    text embeddings), so only real words reach the cross-attention with content.
    """

    def __init__(
        self,
        vocab_size: int,
        max_tokens: int,
        dim: int,
        layers: int = 2,
        heads: int = 4,
        ffn_dim: int = 128,
    ) -> None:
        super().__init__()
        self.embed = nn.Embedding(vocab_size, dim)
        self.pos = nn.Parameter(torch.zeros(1, max_tokens, dim))
        nn.init.normal_(self.pos, std=0.02)
        self.layers = nn.ModuleList(
            nn.TransformerEncoderLayer(
                dim, heads, ffn_dim, dropout=0.0, activation="gelu", batch_first=True,
                norm_first=True,
            )
            for _ in range(layers)
        )
        self.norm = nn.LayerNorm(dim)

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        pad = ids == 0
        x = self.embed(ids) + self.pos[:, : ids.shape[1]]
        # Boolean key-padding mask; computed in the same dtype path for train and eval.
        attn_mask = torch.zeros(pad.shape, dtype=x.dtype, device=x.device).masked_fill(
            pad, float("-inf"))
        for layer in self.layers:
            x = layer(x, src_key_padding_mask=attn_mask)
        x = self.norm(x)
        return x.masked_fill(pad.unsqueeze(-1), 0.0)
