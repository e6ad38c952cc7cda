"""Inference-time reuse of results that depend only on constants, the action or the chunk.

Sampling one chunk calls the model several times (sampler steps, guidance) with inputs of which
most never change: the action-prompt tokens and their projections, the history's and the
chunk's RoPE tables, the geometric-memory conditioning and what the model derives from it, the
cross-attention keys and values of the prompt. :class:`InferenceMemo` keeps such results, keyed
by the exact inputs (tensors by identity and version, weights by storage and version), so a
reused value is the very tensor the same computation would produce again: the frames do not
change, not even by float round-off.

Reuse is on by default and only ever active without autograd (training never sees it).
``YUME_MVDT_REUSE=0`` in the environment, or :func:`disabled` in code, turns it off: the
computation is then the one before reuse existed (benchmarks and tests compare both).
"""

from __future__ import annotations

import os
import weakref
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import nn

ENV_VAR = "YUME_MVDT_REUSE"
_state = {"enabled": os.environ.get(ENV_VAR, "1").strip() not in ("0", "false", "off", "no")}


def switched_on() -> bool:
    """Whether inference reuse is switched on (for results that involve no weights)."""
    return _state["enabled"]


def enabled() -> bool:
    """Whether inference reuse may be used now (switched on, and autograd off)."""
    return _state["enabled"] and not torch.is_grad_enabled()


def set_enabled(flag: bool) -> None:
    """Switch inference reuse on or off for the whole process."""
    _state["enabled"] = bool(flag)


@contextmanager
def disabled() -> Iterator[None]:
    """Run the block with every inference reuse off (the computation before reuse existed)."""
    before = _state["enabled"]
    _state["enabled"] = False
    try:
        yield
    finally:
        _state["enabled"] = before


def version(t: torch.Tensor) -> int:
    """``t._version``, the count of in-place changes; -1 for an inference-mode tensor, which
    keeps none (and cannot be changed in place outside inference mode)."""
    return -1 if t.is_inference() else t._version


def weights_key(*modules: nn.Module) -> tuple:
    """Storage and version of every parameter of ``modules``: changes whenever a weight does
    (an optimiser step, ``load_state_dict``, ``.to()``)."""
    return tuple((p.data_ptr(), version(p), p.dtype, p.device)
                 for m in modules for p in m.parameters())


class InferenceMemo:
    """A bounded memo whose keys may hold tensors, compared by identity and version.

    A tensor in a key stands for itself: a hit needs the very same live tensor object, not
    modified in place since (its ``_version``); a freed tensor's entries can never be hit again
    (a weak reference checks it), so a new tensor at a recycled address is not mistaken for it.

    Parameters
    ----------
    max_entries : int
        Oldest entries are dropped beyond this many.
    """

    def __init__(self, max_entries: int = 256) -> None:
        self.max_entries = int(max_entries)
        self._store: OrderedDict[Hashable, tuple[list, Any]] = OrderedDict()
        self.hits = 0
        self.misses = 0

    def clear(self) -> None:
        self._store.clear()

    # A memo holds weak references and results derived from its owner's tensors: a copied or
    # pickled owner (a deep-copied model) starts with an empty one.
    def __getstate__(self) -> dict:
        return {"max_entries": self.max_entries}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["max_entries"])

    def __deepcopy__(self, memo: dict) -> InferenceMemo:
        return InferenceMemo(self.max_entries)

    def __len__(self) -> int:
        return len(self._store)

    @staticmethod
    def _key(parts: tuple) -> tuple[tuple, list[weakref.ref]]:
        key, refs = [], []
        for p in parts:
            if isinstance(p, torch.Tensor):
                key.append(("tensor", id(p), version(p)))
                refs.append(weakref.ref(p))
            else:
                key.append(p)
        return tuple(key), refs

    def get(self, parts: tuple, compute: Callable[[], Any]) -> Any:
        """The value stored under ``parts``, or ``compute()`` stored and returned."""
        key, refs = self._key(parts)
        entry = self._store.get(key)
        # A live referent at the id of the key is the tensor the entry was made from (ids are
        # unique among live objects); a dead one means the id may have been recycled.
        if entry is not None and all(ref() is not None for ref in entry[0]):
            self._store.move_to_end(key)
            self.hits += 1
            return entry[1]
        self.misses += 1
        value = compute()
        # Only weak references: the memo must not keep a caller's tensors alive.
        self._store[key] = (refs, value)
        while len(self._store) > self.max_entries:
            self._store.popitem(last=False)
        return value
